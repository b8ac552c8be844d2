"""The transformer family under both structures: every ``coupling T`` and ``autoregressive T``.

For each (structure, transformer) combination, the new ones included (``coupling dsf``,
``coupling umnn``, ``coupling sos``, ``autoregressive additive``, ...), compiled from spec text
with drawn masks, nets, orders, directions and transformer arguments (float64, parameters
perturbed first): round trip, log-det against the brute-force autograd Jacobian, inverse
log-det, the Jacobian's nonzero pattern equal to the declared dependency, strict monotonicity
in each dimension, declared parameter count == allocated numel, and the declared facts (log-det
kind, report, condition). Plus the registry's derivation: one layer per combination, the
structure's arguments first, the same torch module under both structures.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.layers.autoregressive_flows import AUTOREGRESSIVE_FLOW_LAYERS, AutoregressiveLayer
from flowdsl.layers.coupling import COUPLING_LAYERS, CouplingSpec
from flowdsl.layers.registry import LAYERS
from flowdsl.layers.transformers import TRANSFORMERS
from flowdsl.runtime.nets import resolve
from flowdsl.testing import brute_force_logdet, check_sparsity, jacobian_pattern, perturb_parameters

NAMES = [t.name for t in TRANSFORMERS]
ANALYTIC = {t.name for t in TRANSFORMERS if t.inverse_kind == "analytic"}
COMBINATIONS = [(word, name) for word in ("coupling", "autoregressive") for name in NAMES]
#: (input, mask, net) of the coupling setups: index masks (contiguous and not), channel, checkerboard, pixel lists
COUPLING_INPUTS = [
    ("vector[4]", "half", "mlp([8])"),
    ("vector[5]", "[0, 1, 1, 0, 1]", "mlp([8], activation=tanh)"),
    ("image[2, 2, 2]", "channel(1)", "resnet(1, 4)"),
    ("image[1, 2, 2]", "checkerboard(0)", "resnet(1, 4)"),
    ("image[2, 2, 2]", "[0, 0, 0, 0, 0, 0, 1, 0]", "conv_net(4)"),  # an image list not keeping whole channels
]
ORDERS = ["natural", "reverse", "random(seed=5)", "list"]


@st.composite
def transformer_args(draw, name: str) -> str:
    """Keyword arguments of transformer ``name``, small enough for brute force."""
    if name == "affine":
        return f"clamp={draw(st.sampled_from([0.5, 3.0]))}"
    if name in ("rq_spline", "cubic_spline"):  # one rq bin is the identity: no parameter would be read
        bins = draw(st.integers(2 if name == "rq_spline" else 1, 4))
        return f"bins={bins}, bound={draw(st.sampled_from([2.5, 4.0]))}"
    if name == "dsf":
        return f"hidden={draw(st.integers(1, 3))}"
    if name == "umnn":  # activation unset: silu, smooth, so 24 quadrature steps are accurate to 1e-6 here
        return f"integrand=mlp([4]), steps=24, embedding={draw(st.integers(1, 2))}"
    if name == "sos":
        return f"polynomials={draw(st.integers(1, 2))}, degree={draw(st.integers(0, 2))}"
    return ""


@st.composite
def setups(draw, word: str, name: str):
    """Spec text of one-layer flow ``word name(...)`` (maybe conditional) and a seed."""
    extra = draw(transformer_args(name))
    cond = draw(st.booleans())
    if word == "coupling":
        shape, mask, net = draw(st.sampled_from(COUPLING_INPUTS))
        call = f"coupling {name}(mask={mask}, net={net}" + (f", {extra})" if extra else ")")
    else:
        n = draw(st.integers(1, 4))
        order = draw(st.sampled_from(ORDERS))
        if order == "list":
            order = "[" + ", ".join(map(str, draw(st.permutations(range(n))))) + "]"
        direction = draw(st.sampled_from(["forward", "inverse"]))
        shape = f"vector[{n}]"
        call = (f"autoregressive {name}(net=made([16]), order={order}, direction={direction}"
                + (f", {extra})" if extra else ")"))
    header = f"    input x: {shape}\n" + ("    condition y: label[2]\n" if cond else "")
    return f"flow f {{\n{header}    {call}\n}}\n", cond, draw(st.integers(0, 2**16))


def _compile(text):
    flow = flowdsl.compile_source(text, filename="t.flow")
    assert not [d for d in flow.ir.diagnostics if d.severity == "error"], text
    return flow, flow.layers[0], flow.ir.layers[0]


def _monotone_in_each_dim(layer, x, context):
    """Sweep each input dimension over a grid, the others held at x[0]: that output strictly increases."""
    d = x[0].numel()
    grid = torch.linspace(-3, 3, 13)
    sweep = x[:1].reshape(1, d).repeat(d * len(grid), 1)
    for i in range(d):
        sweep[i * len(grid) : (i + 1) * len(grid), i] = grid
    ctx = None if context is None else context[:1].expand(len(sweep), -1)
    with torch.no_grad():
        y, _ = layer(sweep.reshape(-1, *x.shape[1:]), ctx)
    y = y.reshape(d, len(grid), d)
    for i in range(d):
        assert (y[i, 1:, i] > y[i, :-1, i]).all(), f"output {i} is not increasing in input {i}"


def _check_combination(word, name, setup):
    text, cond, seed = setup
    flow, layer, node = _compile(text)
    # facts: parameters allocated as declared, log-det kind and report from the transformer, the condition
    assert node.params == sum(p.numel() for p in layer.parameters()) == flow.ir.params
    assert node.logdet == ("zero" if name == "additive" else "exact")
    assert node.reads_condition == cond
    t = resolve(type(node.layer.transformer).runtime)
    assert type(layer.transformer) is t and layer.transformer.params_per_dim == node.meta["params_per_dim"]
    if word == "autoregressive":
        assert node.report.startswith(f"{name} transformer; order ")
    else:
        assert node.report == node.layer.transformer.report()
    perturb_parameters(layer, 0.3, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, *flow.input_shape, generator=gen).clamp(-2.2, 2.2)  # inside the splines' bounds
    context = torch.eye(2)[torch.tensor([0, 1, 1])] if cond else None
    y, ld = layer(x, context)
    back, ld_inv = layer.inverse(y, context)
    tol = 1e-8 if name in ANALYTIC else 1e-6
    assert ((back - x).abs() <= tol * (1 + x.abs())).all(), (text, (back - x).abs().max())
    assert (ld + ld_inv).abs().max() <= 1e-6, text
    assert (brute_force_logdet(layer, x, context) - ld).abs().max() <= 1e-6, text
    if name == "additive":
        assert torch.equal(ld, torch.zeros(3)) and torch.equal(ld_inv, torch.zeros(3))
    # the Jacobian is zero exactly where the declared dependency says, and nonzero everywhere else
    allowed = node.dependency.matrix()
    check_sparsity(layer, x, allowed, context)
    seen = jacobian_pattern(layer, x, context)
    assert (seen == allowed).all(), (text, seen.astype(int), allowed.astype(int))
    _monotone_in_each_dim(layer, x, context)
    if cond:  # the condition is read
        assert not torch.allclose(layer(x, 1 - context)[0], y)


@pytest.mark.parametrize("word,name", COMBINATIONS, ids=[f"{w}-{n}" for w, n in COMBINATIONS])
@settings(max_examples=8)
@given(data=st.data())
def test_every_combination_is_a_checked_bijection(float64, word, name, data):
    _check_combination(word, name, data.draw(setups(word, name)))


def test_registry_derives_both_structures_for_every_transformer():
    for word, layers, base in (("coupling", COUPLING_LAYERS, CouplingSpec),
                               ("autoregressive", AUTOREGRESSIVE_FLOW_LAYERS, AutoregressiveLayer)):
        assert [cls.name for cls in layers] == [f"{word} {n}" for n in NAMES]
        for cls, t in zip(layers, TRANSFORMERS):
            assert LAYERS.get(cls.name) is cls and issubclass(cls, base) and cls.transformer_spec is t
            # the structure's arguments first, then the transformer's, with its defaults
            assert list(cls.model_fields) == list(base.model_fields) + list(t.model_fields)
            for key, info in t.model_fields.items():
                assert cls.model_fields[key].default == info.default
            assert cls.summary and cls.__doc__


def test_combinations_share_the_transformer_module():
    for name in NAMES:
        coupling = flowdsl.compile_source(f"flow f {{\n input x: vector[2]\n coupling {name}(mask=half)\n}}\n")
        ar = flowdsl.compile_source(f"flow f {{\n input x: vector[2]\n autoregressive {name}(net=made([8]))\n}}\n")
        assert type(coupling.layers[0].transformer) is type(ar.layers[0].transformer)


@pytest.mark.parametrize("word", ["coupling", "autoregressive"])
def test_transformer_arguments_are_checked_under_both_structures(word):
    net = "" if word == "coupling" else "net=made([8]), "
    cases = [("affine", "clamp=0", "argument 'clamp' of {} must be > 0 (got 0)"),
             ("dsf", "hidden=0", "argument 'hidden' of {} must be >= 1 (got 0)"),
             ("sos", "degree=17", "argument 'degree' of {} must be <= 16 (got 17)"),
             ("rq_spline", "bins=2.5", "argument 'bins' of {} must be a whole number (got 2.5)"),
             ("additive", "clamp=2", "{} has no argument 'clamp'")]
    for name, arg, message in cases:
        text = f"flow f {{\n    input x: vector[4]\n    {word} {name}({net}{arg})\n}}\n"
        diags = flowdsl.analyze_source(text, "s.flow").diagnostics
        assert [(d.severity, d.message) for d in diags] == [("error", message.format(f"{word} {name}"))]


def test_umnn_findings_and_integrand_parameters_under_both_structures():
    for call in ("coupling umnn(mask=half, integrand=mlp([4], activation=relu))",
                 "autoregressive umnn(net=made([8]), integrand=mlp([4], activation=relu))"):
        a = flowdsl.analyze_source(f"flow f {{\n input x: vector[4]\n {call}\n}}\n", "s.flow")
        umnn = [d for d in a.diagnostics if d.message.startswith("umnn integrand activation relu is not smooth:")]
        assert len(umnn) == 1 and umnn[0].severity == "warning"
        assert umnn[0].pos.column == call.index("integrand") + 2  # at the argument
    flow = flowdsl.compile_source("flow f {\n input x: vector[4]\n coupling umnn(mask=half, embedding=2)\n}\n")
    node = flow.ir.layers[0]
    integrand = sum(p.numel() for p in flow.layers[0].transformer.parameters())
    assert integrand == node.layer.transformer.extra_params() > 0
    assert node.params == integrand + sum(p.numel() for p in flow.layers[0].net.parameters())
    assert np.array_equal(node.dependency.matrix(), np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1]], dtype=bool))

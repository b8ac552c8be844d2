"""Conditional flows: every family reads any condition, stays a bijection of x for every context, and the
property engine checks it.

- every flow family (couplings and autoregressive layers with each transformer, planar, radial, Sylvester,
  residual, FFJORD) under each kind of condition (label, vector, image, sequence, with levels, with an
  ``embed`` net): round trip and brute-force log-det (Jacobian in x) for drawn contexts, the Jacobian
  pattern unchanged by the context, the context really read (and not read with ``reads=false``), declared
  parameters = allocated ones;
- the MADE conditioner: the context columns reach every first hidden unit and open no path between inputs;
- planar / radial / Sylvester keep their invertibility constraint for every context, however large the
  hypernetwork's weights; residual flows bound Lip(g) in x only;
- an image coupling reads an image condition map of its H x W as channels (locally: a change at one pixel
  of the map moves only the outputs within the net's receptive field);
- the conditional base starts standard, reads the flattened condition and trains;
- ``flowdsl test`` passes on every spec of specs/conditional/*.flow, and training moves log_prob;
- the engine catches a layer that ignores a condition it declares read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.layers.distributions import NormalSpec
from flowdsl.layers.facts import ContextShape
from flowdsl.layers.made_masks import made_masks
from flowdsl.testing import PropertyFailure, check_bijection, check_structure, perturb_parameters
from flowdsl.testing.inputs import contexts
from flowdsl.testing.properties import check_context, check_training, random_context
from flowdsl.testing.runner import run_file
from flowdsl.testing.strategies import CONDITION_KINDS, specs

ROOT = Path(__file__).resolve().parent.parent
CONDITIONAL_SPECS = sorted((ROOT / "specs" / "conditional").glob("*.flow"))

CONDITIONS = {
    "label": "label[3]",
    "vector": "vector[2]",
    "image": "image[1, 2, 2]",
    "sequence": "sequence[3, 2]",
    "levels": "vector[2] levels 3",
    "embed": "sequence[5] embed mlp([8], out=2)",
}
TRANSFORMERS = ["additive", "affine", "rq_spline(bins=4)", "cubic_spline(bins=4)", "dsf(hidden=4)", "sos",
                "umnn"]


def _layers(t: str) -> list[str]:
    name, _, args = t.partition("(")
    extra = ", " + args[:-1] if args else ""
    return [f"coupling {name}(mask=half, net=mlp([8]){extra})", f"autoregressive {name}(net=made([8]){extra})",
            f"autoregressive {name}(net=made([8]), direction=inverse{extra})"]


FAMILIES = [layer for t in TRANSFORMERS for layer in _layers(t)] + [
    "planar", "radial", "sylvester(kind=orthogonal, rank=2)", "sylvester(kind=householder)",
    "sylvester(kind=triangular)", "residual(net=lipschitz_mlp([8], coeff=0.8), logdet=exact)",
    "continuous(net=mlp([8]), trace=exact)",
]


def _compile(src: str, seed: int = 0, scale: float = 0.1):
    model = flowdsl.compile_source(src, filename="t.flow").double()
    perturb_parameters(model, scale, seed=seed)  # zero-initialised nets and hypernetworks would ignore the context
    return model.eval()


def _flow(layer: str, condition: str, size: int = 3) -> str:
    return (f"flow f {{\n input x: vector[{size}]\n condition c: {condition}\n {layer}\n permute(reverse)\n"
            f" {layer}\n}}\n")


# ----------------------------------------------------------------------------- every family, every condition
@pytest.mark.parametrize("layer", FAMILIES)
def test_every_family_reads_a_vector_condition(float64, layer):
    model = _compile(_flow(layer, "vector[2]"))
    assert model.ir.params == sum(p.numel() for p in model.parameters())
    assert all(node.reads_condition for node in model.ir.layers if "permute" not in node.layer.name)
    examples = 2 if "continuous" in layer or "dsf" in layer else 4
    report = check_bijection(model, examples=examples)
    assert report["roundtrip"] < 1e-6 and report["logdet"] < 1e-5
    assert check_structure(model, examples=2)["layers"] == 3
    assert check_context(model, examples=2)["readers"] == 2


@pytest.mark.parametrize("condition", list(CONDITIONS))
@pytest.mark.parametrize("layer", ["coupling affine(mask=half, net=mlp([8]))",
                                   "autoregressive rq_spline(net=made([8]), bins=3)", "planar",
                                   "sylvester(kind=triangular)"])
def test_each_condition_type(float64, condition, layer):
    model = _compile(_flow(layer, CONDITIONS[condition]))
    assert model.ir.params == sum(p.numel() for p in model.parameters())
    check_bijection(model, examples=3)
    check_structure(model, examples=2)
    assert check_context(model, examples=2)["readers"] == 2
    c = random_context(model, 3, torch.Generator().manual_seed(0))
    x = model.sample(3, c)  # one sample per context row, and one context for all
    assert x.shape == (3, 3) and torch.isfinite(model.log_prob(x, c)).all()
    assert model.sample(5, c[0]).shape == (5, 3)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs("flow", max_layers=3, conditional=True, conditions=CONDITION_KINDS, max_size=8,
             names=["coupling affine", "coupling additive", "autoregressive affine", "planar", "radial", "sylvester",
                    "actnorm", "permute"]), st.integers(0, 2**16))
def test_drawn_conditional_specs(text, seed):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = _compile(text, seed=seed)
        assert model.ir.params == sum(p.numel() for p in model.parameters())
        check_bijection(model, examples=2)
        check_structure(model, examples=1)
        if any(node.reads_condition for node in model.ir.layers):
            assert check_context(model, examples=1)["readers"] >= 1
    finally:
        torch.set_default_dtype(old)


def test_reads_false_layers_ignore_the_context(float64):
    model = _compile("flow f {\n input x: vector[4]\n condition c: vector[3]\n coupling affine(mask=half)\n"
                     " permute(reverse)\n coupling affine(mask=half, reads=false)\n}\n")
    reads = [node.reads_condition for node in model.ir.layers]
    assert reads == [True, False, False]
    assert model.layers[2].net.body[0].in_features == 2  # built as if the model had no condition
    assert check_context(model, examples=3)["readers"] == 1


def test_the_engine_catches_a_layer_that_ignores_its_condition(float64):
    model = _compile(_flow("coupling affine(mask=half, net=mlp([8]))", "vector[2]"))
    with torch.no_grad():
        model.layers[0].net.body[0].weight[:, 1:] = 0.0  # the first coupling's net drops its condition columns
    with pytest.raises(PropertyFailure, match="did not change when the context changed"):
        check_context(model, examples=2)


def test_a_single_layer_with_its_encoded_condition(float64):
    model = _compile(_flow("coupling rq_spline(mask=half, net=mlp([8]), bins=3)", "image[1, 2, 2]"))
    layer = model.layers[0]
    report = check_bijection(layer, shape=(3,), condition=ContextShape("image", (1, 2, 2)), examples=4)
    assert report["roundtrip"] < 1e-8 and report["logdet"] < 1e-6
    report = check_bijection(layer, shape=(3,), context_features=4, examples=2)  # the one-hot protocol still works
    assert report["examples"] == 2


# ----------------------------------------------------------------------------- MADE: the context opens no path
@pytest.mark.parametrize("hidden", [(6,), (5, 7)])
def test_made_wires_the_context_to_every_first_hidden_unit_without_a_path_between_inputs(hidden):
    perm, k, f = [2, 0, 3, 1], 2, 3
    plain, cond = made_masks(perm, hidden, k, 0), made_masks(perm, hidden, k, f)
    first = np.asarray(cond[0], dtype=bool)
    assert first[:, 4:].all()  # every first hidden unit reads every context column
    assert (first[:, :4] == np.asarray(plain[0], dtype=bool)).all()  # and the input columns are unchanged
    for a, b in zip(plain[1:], cond[1:]):
        assert (np.asarray(a) == np.asarray(b)).all()
    reach = np.eye(4 + f, dtype=int)
    for m in cond:
        reach = (np.asarray(m, dtype=int) @ reach > 0).astype(int)
    order = np.argsort(perm)  # the generation step of each dimension
    for p in range(k):
        for i in range(4):
            reads = reach[p * 4 + i, :4].astype(bool)
            assert not reads[order >= order[i]].any()  # only earlier dimensions, never itself or later ones


def test_maf_jacobian_stays_triangular_for_every_context(float64):
    model = _compile(_flow("autoregressive affine(net=made([16, 16]))", "vector[3]", size=4), scale=0.5)
    assert check_structure(model, examples=6)["layers"] == 3


# ----------------------------------------------------------------------------- free-form layers, residual
@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16), st.floats(1.0, 50.0))
def test_free_form_constraints_hold_for_every_context(seed, scale):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = _compile("flow f {\n input x: vector[3]\n condition c: vector[2]\n planar\n radial\n"
                         " sylvester(kind=orthogonal, rank=2)\n}\n", seed=seed, scale=scale)
        c = torch.randn(16, 2, generator=torch.Generator().manual_seed(seed)) * scale
        planar, radial, sylvester = model.layers
        _, s = planar.u_hat(c)
        alpha, beta = radial.coefficients(c)
        r, rt = sylvester.triangles(c)
        diag = torch.diagonal(r, dim1=-2, dim2=-1) * torch.diagonal(rt, dim1=-2, dim2=-1)
        assert s.shape == (16,) and (s > -1).all()
        assert (alpha > 0).all() and (beta > -alpha).all()
        assert r.shape == (16, 2, 2) and (diag.abs() < 1).all()
        x = torch.randn(16, 3, generator=torch.Generator().manual_seed(seed + 1))
        z, ld = model(x, c)
        x_back, ld_back = model.inverse_and_logdet(z, c)
        assert torch.allclose(x_back, x, atol=1e-6) and torch.allclose(ld, -ld_back, atol=1e-6)
    finally:
        torch.set_default_dtype(old)


def test_free_form_layers_start_unconditional(float64):
    src = "flow f {\n input x: vector[3]\n condition c: vector[2]\n planar\n radial\n sylvester(kind=householder)\n}\n"
    model = flowdsl.compile_source(src).double()
    with torch.no_grad():
        for layer in model.layers:
            for name, p in layer.named_parameters():
                if not name.startswith("hyper"):
                    p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(4, 3)
    assert torch.equal(model(x, torch.randn(4, 2))[0], model(x, torch.randn(4, 2))[0])  # zero hypernetworks


def test_residual_bounds_lipschitz_in_x_only(float64):
    model = _compile("flow f {\n input x: vector[3]\n condition c: vector[2]\n"
                     " residual(net=lipschitz_mlp([8], coeff=0.9), logdet=exact)\n}\n", scale=0.5)
    first = model.layers[0].net.body[0]
    with torch.no_grad():
        first.weight[:, 3:] *= 100.0  # large condition weights: free, the bound is in x
    w = first.normalized_weight()
    assert torch.linalg.matrix_norm(w[:, :3], 2) <= 0.9 + 1e-9
    assert w[:, 3:].abs().max() > 10
    x, c = torch.randn(5, 3), torch.randn(5, 2)
    report = check_bijection(model, x, c)
    assert report["roundtrip"] < 1e-9 and report["logdet"] < 1e-9


# ----------------------------------------------------------------------------- image couplings: the map
def test_image_coupling_reads_the_condition_map_locally(float64):
    src = ("flow f {\n input x: image[1, 8, 8]\n condition m: image[1, 8, 8]\n"
           " coupling affine(mask=checkerboard, net=conv_net(hidden=8))\n}\n")
    model = _compile(src)
    layer = model.layers[0]
    assert layer.context_layout == "map" and model.ir.layers[0].meta["context_map"] == 1
    assert model.ir.params == sum(p.numel() for p in model.parameters())
    x, c = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    moved = c.clone()
    moved[:, 0, 0, 0] += 1.0  # the map changes at one corner pixel
    delta = (model(x, c)[0] - model(x, moved)[0]).abs()[:, 0]
    assert delta[:, :3, :3].max() > 0  # within the 3x3 -> 1x1 -> 3x3 receptive field of (0, 0)
    assert delta[:, 3:, :].max() == 0 and delta[:, :, 3:].max() == 0  # nowhere else: the map, not a vector
    report = check_bijection(model, x, c)
    assert report["roundtrip"] < 1e-10 and report["logdet"] < 1e-8
    assert check_structure(model, x, c)["layers"] == 1
    # the layer alone: check_bijection draws the map it reads (not the flattened vector)
    report = check_bijection(layer, shape=(1, 8, 8), condition=ContextShape("image", (1, 8, 8)), examples=2)
    assert report["logdet"] < 1e-8


def test_image_coupling_reads_another_map_flattened_with_a_note(float64):
    src = ("flow f {\n input x: image[1, 4, 4]\n condition m: image[1, 8, 8]\n"
           " coupling affine(mask=checkerboard, net=conv_net(hidden=8))\n}\n")
    analysis = flowdsl.analyze_source(src, "t.flow")
    notes = [d for d in analysis.diagnostics if d.severity == "note"]
    assert len(notes) == 1 and "reads it flattened, as 64 constant channels" in notes[0].message
    assert notes[0].pos.line == 4 and src.splitlines()[3][notes[0].pos.column - 1:].startswith("net=")
    model = _compile(src)
    assert model.layers[0].context_layout == "flat"
    assert model.ir.params == sum(p.numel() for p in model.parameters())
    assert check_context(model, examples=2)["readers"] == 1


# ----------------------------------------------------------------------------- the conditional base
def test_conditional_base_starts_standard_and_reads_the_condition(float64):
    src = ("flow f {\n input x: vector[3]\n condition c: sequence[2, 2]\n base normal(conditional=true)\n"
           " coupling affine(mask=half, reads=false)\n}\n")
    model = flowdsl.compile_source(src).double()
    assert model.base.conditional and model._base_reads
    x = torch.randn(4, 3)
    standard = -0.5 * (x * x).sum(1) - 1.5 * np.log(2 * np.pi)
    assert torch.allclose(model.log_prob(x, torch.randn(4, 2, 2)), standard)
    layers = sum(n.params for n in model.ir.layers)
    assert sum(p.numel() for p in model.parameters()) == model.ir.params == layers + NormalSpec(
        conditional=True).param_count((3,), model.ir.header.condition.encoded) == layers + 2 * 3 * (4 + 1)
    perturb_parameters(model.base, 0.5)
    c = torch.randn(4, 2, 2)
    assert not torch.allclose(model.log_prob(x, c), model.log_prob(x, c + 1))
    assert check_context(model, examples=2)["readers"] == 1
    assert model.sample(6, c[0]).shape == (6, 3)
    gain = check_training(model, steps=10)["training"]
    assert gain > 0


def test_logistic_base_conditional_and_learnable(float64):
    for base, extra in (("logistic(conditional=true)", 2 * 3 * 3), ("logistic(learnable=true)", 2 * 3)):
        src = (f"flow f {{\n input x: vector[3]\n condition c: vector[2]\n base {base}\n"
               f" coupling affine(mask=half)\n}}\n")
        model = flowdsl.compile_source(src).double()
        layers = sum(n.params for n in model.ir.layers)
        assert sum(p.numel() for p in model.parameters()) == model.ir.params == layers + extra
        assert torch.isfinite(model.log_prob(model.sample(4, torch.randn(4, 2)), torch.randn(4, 2))).all()


# ----------------------------------------------------------------------------- the specs, and flowdsl test
@pytest.mark.parametrize("path", CONDITIONAL_SPECS, ids=lambda p: p.name)
def test_conditional_specs_pass_every_property(path):
    rows = run_file(path, examples=3)
    assert rows and all(r.verdict == "pass" for r in rows), "\n".join(r.detail for r in rows if r.failed)
    assert {r.property for r in rows} >= {"bijection", "structure", "context", "training"}


def test_every_conditional_spec_reads_its_condition_everywhere_it_can():
    for path in CONDITIONAL_SPECS:
        for ir in flowdsl.analyze_file(str(path)).models.values():
            for node in ir.layers:
                opted_out = not node.reads
                unconditional = node.layer.name in ("actnorm", "batchnorm", "invconv1x1", "permute")
                assert node.reads_condition == (not opted_out and not unconditional), (path.name, node.key)


def test_contexts_strategy_feeds_every_condition(float64):
    from hypothesis import find

    for condition in CONDITIONS.values():
        model = _compile(_flow("planar", condition))
        c = find(contexts(model, batch=3), lambda c: True)
        assert tuple(c.shape) == (3, *model.context_shape)
        assert model(torch.randn(3, 3), c)[0].shape == (3, 3)


def test_check_training_fails_when_nothing_learns(float64):
    model = _compile(_flow("coupling affine(mask=half, net=mlp([8]))", "vector[2]"))
    with pytest.raises(PropertyFailure, match="did not raise the mean log_prob"):
        check_training(model, steps=3, lr=0.0)
    assert check_training(model, steps=5)["training"] > 0


def test_runner_rows_and_cli_on_a_conditional_spec(tmp_path, capsys):
    from flowdsl.cli.main import main

    plain = tmp_path / "plain.flow"
    plain.write_text("flow p {\n input x: vector[2]\n coupling affine(mask=half, net=mlp([8]))\n}\n")
    assert {r.property for r in run_file(plain, examples=2)} == {"params", "shapes", "bijection", "structure",
                                                                 "sampling"}  # no condition: no conditional rows
    spec = ROOT / "specs" / "conditional" / "planar.flow"
    assert main(["test", str(spec), "--examples", "2"]) == 0
    out = capsys.readouterr().out
    assert "context" in out and "training" in out and "FAIL" not in out

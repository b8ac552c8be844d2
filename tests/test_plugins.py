"""User-defined layers: the decorator, the declared contract the checker applies, loading by the user's choice."""

from __future__ import annotations

import textwrap
from typing import Literal

import numpy as np
import pytest
import torch
from torch import nn

import flowdsl
from flowdsl.cli.main import main
from flowdsl.layers.masks import HalfMask, Mask
from flowdsl.layers.nets import Net
from flowdsl.layers.registry import LAYERS
from flowdsl.plugins import PluginError, layer, load_entry_points, load_module, unregister
from flowdsl.runtime.base import Bijection
from flowdsl.runtime.nets import build_net
from flowdsl.testing import check_bijection, check_structure, perturb_parameters


@pytest.fixture
def registered():
    """Names registered by a test, removed afterwards so other tests see the built-in registry."""
    names: list[str] = []
    yield names
    for n in names:
        if n in LAYERS.members:
            unregister(n)


def _spec(body: str, shape="vector[4]") -> str:
    return "flow f {\n    input x: " + shape + "\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n}\n"


def _scale_layer(registered, name="t_scale"):
    @layer(name, dependency="elementwise")
    class Scale(Bijection):
        """y = x * exp(s), a learned scale per dimension."""

        def __init__(self, shape, init: float = 0.0, learn: bool = True):
            super().__init__()
            self.log_s = nn.Parameter(torch.full(shape, float(init)), requires_grad=learn)

        def forward(self, x, context=None):
            return x * self.log_s.exp(), self.log_s.sum().expand(x.shape[0])

        def inverse(self, y, context=None):
            return y * (-self.log_s).exp(), -self.log_s.sum().expand(y.shape[0])

    registered.append(name)
    return Scale


def test_decorated_torch_class_becomes_a_layer(registered, float64):
    _scale_layer(registered)
    spec = LAYERS.get("t_scale")
    assert list(spec.model_fields) == ["init", "learn"]
    assert spec.summary == "y = x * exp(s), a learned scale per dimension."
    flow = flowdsl.compile_source(_spec("t_scale(init=0.5)\nt_scale(learn=false)"))
    assert sum(p.numel() for p in flow.parameters()) == flow.ir.params == 8  # counted on the meta device
    report = check_bijection(flow, examples=5)
    assert report["logdet"] < 1e-10 and report["examples"] >= 5
    node = flow.ir.layers[0]
    assert node.dependency.kind == "elementwise" and node.logdet == "exact"


def test_arguments_are_typed_and_diagnosed_at_their_position(registered):
    @layer("t_typed", dependency="elementwise", params=0)
    class Typed(Bijection):
        def __init__(self, shape, k: int = 1, kind: Literal["a", "b"] = "a", flag: bool = False):
            super().__init__()

        def forward(self, x, context=None):
            return x, x.new_zeros(x.shape[0])

        def inverse(self, y, context=None):
            return y, y.new_zeros(y.shape[0])

    registered.append("t_typed")
    ok = flowdsl.analyze_source(_spec("t_typed(k=2, kind=b, flag=true)"), "t.flow")
    assert ok.ok
    layer_ = ok.models["f"].layers[0].layer
    assert (layer_.k, layer_.kind, layer_.flag) == (2, "b", True)
    cases = {
        "t_typed(k=2.5)": (3, 13, "argument 'k' of t_typed must be a whole number (got 2.5)"),
        "t_typed(kind=c)": (3, 13, "argument 'kind' of t_typed must be one of 'a' or 'b' (got \"c\")"),
        "t_typed(colour=1)": (3, 13, "t_typed has no argument 'colour'"),
    }
    for call, (line, col, message) in cases.items():
        [d] = [d for d in flowdsl.check_source(_spec(call), "t.flow") if d.severity == "error"]
        assert (d.pos.line, d.pos.column, d.message) == (line, col, message)


def test_declared_shape_rule_is_applied_by_the_checker(registered):
    def even_only(shape):
        if shape[0] % 2:
            raise ValueError(f"t_pairs needs an even number of dimensions, got {shape[0]}")
        return shape

    @layer("t_pairs", shape=even_only, dependency="dense", params=0)
    class Pairs(Bijection):
        def __init__(self, shape):
            super().__init__()

        def forward(self, x, context=None):
            return x.flip(1), x.new_zeros(x.shape[0])

        def inverse(self, y, context=None):
            return y.flip(1), y.new_zeros(y.shape[0])

    registered.append("t_pairs")
    [d] = flowdsl.check_source(_spec("t_pairs", "vector[3]"), "t.flow")
    assert (d.pos.line, d.pos.column, d.message) == (3, 5, "t_pairs needs an even number of dimensions, got 3")
    assert flowdsl.analyze_source(_spec("t_pairs", "vector[4]"), "t.flow").ok


def test_a_shape_rule_that_changes_the_size_is_refused(registered):
    @layer("t_grow", shape=lambda s: (s[0] + 1,), params=0)
    class Grow(Bijection):
        def __init__(self, shape):
            super().__init__()

    registered.append("t_grow")
    [d] = [d for d in flowdsl.check_source(_spec("t_grow"), "t.flow") if d.severity == "error"]
    assert d.message == "t_grow maps [4] to [5]: a bijection keeps the number of dimensions (4 -> 5)"


def _coupling(registered, name="coupling t_shift", reads_all=False):
    @layer(name, dependency="coupling")
    class ShiftCoupling(Bijection):
        """Additive coupling with a user-written conditioner."""

        def __init__(self, shape, context_features, mask: Mask = HalfMask(), net: Net = "mlp([8])"):
            super().__init__()
            kept = torch.as_tensor(mask.kept(shape)).reshape(-1)
            self.register_buffer("k", torch.nonzero(kept).flatten())
            self.register_buffer("t", torch.nonzero(~kept).flatten())
            width = shape[0] if reads_all else len(self.k)
            self.net = build_net(net, (width,), (len(self.t),), context_features)

        def _shift(self, x, context):
            return self.net(x if reads_all else x[:, self.k], context)

        def forward(self, x, context=None):
            return x.index_add(1, self.t, self._shift(x, context)), x.new_zeros(x.shape[0])

        def inverse(self, y, context=None):
            return y.index_add(1, self.t, -self._shift(y, context)), y.new_zeros(y.shape[0])

    registered.append(name)
    return ShiftCoupling


def test_coupling_contract_feeds_coverage_and_is_verified(registered, float64):
    _coupling(registered)
    one = flowdsl.analyze_source(_spec("coupling t_shift(mask=half, net=mlp([8]))"), "t.flow")
    assert [d.message for d in one.diagnostics] == [
        "no layer transforms dimensions 0, 1 (2 of 4): the flow leaves them as they are"]
    flow = flowdsl.compile_source(_spec("coupling t_shift(net=mlp([6]))\npermute(reverse)\ncoupling t_shift"))
    assert sum(p.numel() for p in flow.parameters()) == flow.ir.params
    perturb_parameters(flow, 0.3, seed=1)
    check_bijection(flow.eval(), examples=5)
    assert check_structure(flow, examples=3)["structure"] == 0.0


def test_a_layer_class_with_a_torch_runtime(registered, float64):
    from typing import ClassVar

    from flowdsl.layers.registry import Layer, LayerInfo
    from flowdsl.layers.structure import Dependency

    class Reverse(Bijection):
        def __init__(self, shape):
            super().__init__()

        def forward(self, x, context=None):
            return x.flip(1), x.new_zeros(x.shape[0])

        def inverse(self, y, context=None):
            return y.flip(1), y.new_zeros(y.shape[0])

    @layer("t_reverse", runtime=Reverse)
    class ReverseSpec(Layer):
        """Reverse the dimensions (a torch-free spec with its own rule)."""

        models: ClassVar[frozenset] = frozenset({"flow"})

        def infer(self, ctx):
            n = ctx.shape[0]
            return LayerInfo(ctx.shape, logdet="zero", dependency=Dependency.permutation(np.arange(n)[::-1]))

    registered.append("t_reverse")
    flow = flowdsl.compile_source(_spec("t_reverse"), filename="t.flow")
    assert flow(torch.arange(4.0)[None])[0].tolist() == [[3.0, 2.0, 1.0, 0.0]]
    assert check_structure(flow, examples=2)["structure"] == 0.0


def test_names_cannot_be_taken_twice(registered):
    with pytest.raises(PluginError, match="layer 'actnorm' is already registered by"):
        _scale_layer([], name="actnorm")
    _scale_layer(registered, "t_twice")
    _scale_layer(registered, "t_twice")  # the same class defined again (a module loaded twice) replaces itself


def test_bad_declarations_are_refused():
    with pytest.raises(PluginError, match="unknown dependency 'diagonal'"):
        layer("t_bad", dependency="diagonal")
    with pytest.raises(PluginError, match="needs forward and inverse"):
        layer("t_bad")(type("NoMethods", (nn.Module,), {}))

    class Untyped(Bijection):
        def __init__(self, shape, k):
            super().__init__()

    with pytest.raises(PluginError, match="argument 'k' of .*Untyped needs a type annotation"):
        layer("t_bad")(Untyped)
    assert "t_bad" not in LAYERS.members


PLUGIN = '''
import torch
from flowdsl.plugins import layer
from flowdsl.runtime.base import Bijection


@layer("t_negate", dependency="elementwise", logdet="zero")
class Negate(Bijection):
    def __init__(self, shape):
        super().__init__()

    def forward(self, x, context=None):
        return -x, x.new_zeros(x.shape[0])

    def inverse(self, y, context=None):
        return -y, y.new_zeros(y.shape[0])
'''


def test_cli_loads_plugins_only_when_asked(tmp_path, capsys, registered):
    registered.append("t_negate")
    plugin = tmp_path / "negate_plugin.py"
    plugin.write_text(PLUGIN)
    spec = tmp_path / "n.flow"
    spec.write_text(_spec("t_negate\nactnorm"))
    assert main(["check", str(spec)]) == 1
    assert "unknown layer 't_negate'" in capsys.readouterr().err
    assert main(["check", str(spec), "--plugin", str(plugin)]) == 0
    assert f"{spec}: flow f: ok (2 layers, 8 parameters)" in capsys.readouterr().out
    assert main(["compile", str(spec), "--plugin", str(plugin)]) == 0
    assert "t_negate" in capsys.readouterr().out
    assert main(["layers", "--plugin", str(plugin)]) == 0
    assert "  t_negate()" in capsys.readouterr().out


def test_plugin_load_errors_are_diagnostics(tmp_path, capsys):
    assert main(["check", "x.flow", "--plugin", "no_such_plugin_module"]) == 1
    assert ("no_such_plugin_module: error: cannot load plugin 'no_such_plugin_module': ModuleNotFoundError: "
            "No module named 'no_such_plugin_module'") in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match="cannot load plugin .*broken.py': RuntimeError: boom"):
        load_module(str(broken))
    with pytest.raises(PluginError, match="no such file"):
        load_module(str(tmp_path / "missing.py"))


def test_entry_points_are_loaded_once(monkeypatch, tmp_path, registered):
    import importlib.metadata as md
    import sys

    registered.append("t_negate")
    (tmp_path / "ep_negate.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = md.EntryPoints([md.EntryPoint("negate", "ep_negate", "flowdsl.layers")])
    monkeypatch.setattr(md, "entry_points", lambda group=None: eps if group == "flowdsl.layers" else md.EntryPoints([]))
    assert load_entry_points() == ["negate"]
    assert "t_negate" in LAYERS.members and "ep_negate" in sys.modules
    assert load_entry_points() == []  # already loaded
    monkeypatch.delitem(sys.modules, "ep_negate")

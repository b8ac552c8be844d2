"""Golden diagnostics of autoregressive specs: (line, column, severity, message) of each error, warning, note."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

import flowdsl
from flowdsl.layers.ar_basic import AR, ar_input
from flowdsl.layers.dependency_sets import read
from flowdsl.layers.registry import LAYERS, Layer, LayerInfo

ROOT = Path(__file__).resolve().parent.parent


def diagnostics(body: str, file: str = "t.ar"):
    text = "autoregressive m {\n" + body + "}\n"
    return [(d.pos.file, d.pos.line, d.pos.column, d.severity, d.message)
            for d in flowdsl.analyze_source(text, file).diagnostics]


def _causal(layer: str, position: str, n: int, what: str = "itself") -> str:
    return (f"{layer} breaks causality: the prediction of position {position} reads {what} "
            f"({n} of {n} positions read the current or a later position)")


GOLDEN = {
    "mask B first": (
        "    input x: image[1, 4, 4] levels 4\n    masked_conv(mask=B, kernel=3, channels=8)\n",
        [(3, 5, "error", _causal("masked_conv", "(0, 0, 0)", 16))]),
    "colour mask B first": (
        "    input x: image[3, 2, 2] levels 2\n    masked_conv(mask=B, kernel=3, channels=6)\n",
        [(3, 5, "error", _causal("masked_conv", "(0, 0, 0)", 12))]),
    "gated block without mask A first": (
        "    input x: image[1, 4, 4] levels 4\n    gated_block(kernel=3, channels=8)\n"
        "    gated_block(kernel=3, channels=8)\n",
        [(3, 5, "error", _causal("gated_block", "(0, 0, 0)", 16))]),
    "row lstm first": (
        "    input x: image[1, 4, 4] levels 4\n    row_lstm(hidden=8)\n",
        [(3, 5, "error", _causal("row_lstm", "(0, 0, 0)", 16))]),
    "glue first": (
        "    input x: vector[4] levels 2\n    conv1x1(8)\n    output bernoulli\n",
        [(3, 5, "error", _causal("conv1x1", "0", 4))]),
    "orders that disagree": (
        "    input x: vector[3] levels 2\n    made([4], order=reverse)\n    relu -> fvbn\n    output bernoulli\n",
        [(4, 13, "error", "fvbn breaks causality: the prediction of position 2 reads itself "
                          "(2 of 3 positions read the current or a later position)")]),
    "no layers": (
        "    input x: image[1, 2, 2] levels 4\n    output categorical\n",
        [(1, 1, "error", "the output breaks causality: the prediction of position (0, 0, 0) reads itself "
                         "(4 of 4 positions read the current or a later position)")]),
    "bernoulli on many levels": (
        "    input x: image[1, 4, 4] levels 17\n    masked_conv(mask=A, kernel=3, channels=8)\n    output bernoulli\n",
        [(1, 1, "error", "output bernoulli needs binary data (levels 2), but the input has levels 17")]),
    "continuous input": (
        "    input x: vector[4]\n    fvbn\n",
        [(3, 5, "error", "an autoregressive model needs a discrete input")]),
    "even kernel": (
        "    input x: image[1, 4, 4] levels 2\n    masked_conv(mask=A, kernel=4, channels=8)\n",
        [(3, 25, "error", "argument 'kernel' of masked_conv must be odd (got 4): a mask needs a centre tap")]),
    "colour groups": (
        "    input x: image[3, 4, 4] levels 2\n    masked_conv(mask=A, kernel=3, channels=8)\n",
        [(3, 35, "error", "channels (8) must be divisible by the 3 colour channels: each channel's prediction "
                          "gets its own group of features")]),
    "residual widths": (
        "    input x: image[1, 4, 4] levels 2\n    gated_block(mask=A, kernel=3, channels=8)\n"
        "    gated_block(kernel=3, channels=16)\n",
        [(4, 27, "error", "gated_block's residual connection needs 16 input features, but it gets 8")]),
    "vector layer on an image": (
        "    input x: image[1, 4, 4] levels 2\n    fvbn\n",
        [(3, 5, "error", "fvbn models vectors and sequences, but its input is over a 2-d grid [4, 4]")]),
    "image layer on a vector": (
        "    input x: vector[4] levels 2\n    masked_conv(mask=A, kernel=3, channels=8)\n",
        [(3, 5, "error", "masked_conv needs an image input, but this model's input is a vector")]),
    "blind spot": (
        "    input x: image[1, 6, 6] levels 2\n    masked_conv(mask=A, kernel=3, channels=8)\n"
        "    repeat 2 { relu -> masked_conv(mask=B, kernel=3, channels=8) }\n",
        [(1, 1, "note", "receptive field 4 x 7 pixels (rows r-3..r, columns c-3..c+3); a position reads up to 20 "
                        "earlier ones"),
         (4, 24, "warning", "blind spot: a position cannot see up to 3 earlier pixels inside its receptive field "
                            "(e.g. (r-1, c+2)); gated_block removes it")]),
    "narrow MADE": (
        "    input x: vector[8] levels 2\n    made([3], masks=2)\n    output bernoulli\n",
        [(1, 1, "note", "receptive field 7 positions; a position reads up to 7 earlier ones"),
         (3, 5, "warning", "blind spot: a position cannot see up to 3 earlier positions inside its receptive field "
                           "(e.g. i-1); hidden layers of at least 7 units remove it")]),
    "condition nobody reads": (
        "    input x: image[1, 4, 4] levels 2\n    condition y: label[3]\n"
        "    masked_conv(mask=A, kernel=3, channels=8, reads=false)\n",
        [(1, 1, "note", "receptive field 2 x 3 pixels (rows r-1..r, columns c-1..c+1); a position reads up to 4 "
                        "earlier ones"),
         (3, 5, "warning", "condition 'y' is declared but no layer reads it")]),
    "gated blocks read the condition, no blind spot": (
        "    input x: image[1, 4, 4] levels 2\n    condition y: label[3]\n"
        "    gated_block(mask=A, kernel=3, channels=8)\n"
        "    gated_block(kernel=3, channels=8)\n",
        [(1, 1, "note", "receptive field 4 x 5 pixels (rows r-3..r, columns c-2..c+2); a position reads up to 14 "
                        "earlier ones")]),
    "sequence": (
        "    input x: sequence[10] levels 4\n    nade(hidden=4)\n",
        [(1, 1, "note", "receptive field 9 samples; a position reads up to 9 earlier ones")]),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_diagnostics(case):
    body, expected = GOLDEN[case]
    assert diagnostics(body) == [("t.ar", *e) for e in expected]


def test_causality_errors_carry_a_hint():
    a = flowdsl.analyze_source("autoregressive m {\n input x: image[1, 3, 3] levels 2\n"
                               " masked_conv(mask=B, kernel=3, channels=4)\n}\n", "t.ar")
    (err,) = a.diagnostics
    assert err.hint == "mask B lets a pixel read itself: the first masked layer needs mask=A"
    with pytest.raises(flowdsl.FlowDSLError):
        flowdsl.compile_source("autoregressive m {\n input x: image[1, 3, 3] levels 2\n"
                               " masked_conv(mask=B, kernel=3, channels=4)\n}\n", filename="t.ar")


class _Opaque(Layer):
    """A layer that declares no dependency structure (registered only inside one test)."""

    name: ClassVar[str] = "opaque_test_layer"
    models: ClassVar[frozenset[str]] = AR

    def infer(self, ctx):
        f, grid = ar_input(ctx)
        return LayerInfo(out_shape=(f, *grid), logdet="n/a")


def test_a_layer_without_declared_dependencies_is_a_warning_not_silence():
    LAYERS.members[_Opaque.name] = _Opaque
    try:
        found = diagnostics("    input x: vector[4] levels 2\n    fvbn\n    opaque_test_layer\n")
    finally:
        del LAYERS.members[_Opaque.name]
    assert found == [("t.ar", 4, 5, "warning",
                      "causality not checked: layer 'opaque_test_layer' declares no dependency structure")]


class _PeekRight(_Opaque):
    """A first layer that reads the pixel to the right (registered only inside one test)."""

    name: ClassVar[str] = "peek_right_test_layer"

    def dependencies(self, maps, ctx):
        return maps.only(read(maps.main, (0, 1)))


def test_reading_a_later_position_is_an_error_naming_it():
    LAYERS.members[_PeekRight.name] = _PeekRight
    try:
        found = diagnostics("    input x: image[1, 2, 3] levels 2\n    peek_right_test_layer\n")
    finally:
        del LAYERS.members[_PeekRight.name]
    assert found == [("t.ar", 3, 5, "error", "peek_right_test_layer breaks causality: the prediction of position "
                      "(0, 0, 0) reads the later position (0, 0, 1) (4 of 6 positions read the current or a later "
                      "position)")]


def test_flowdsl_check_warns_about_pixelcnn_but_not_gated_pixelcnn():
    def check(name):
        return subprocess.run([sys.executable, "-m", "flowdsl", "check", f"specs/{name}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    plain, gated = check("pixelcnn.ar"), check("gated_pixelcnn.ar")
    assert plain.returncode == 0 and gated.returncode == 0
    assert "specs/pixelcnn.ar:5:24: warning: blind spot: a position cannot see up to 10 earlier pixels" in \
        plain.stdout + plain.stderr
    assert "blind spot" not in gated.stdout + gated.stderr

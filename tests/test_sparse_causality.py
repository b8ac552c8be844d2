"""The causality check on the compressed grid of translation-invariant models equals the dense check.

- generated stacks of masked convolutions, gated PixelCNN blocks, 1x1 layers, dilated causal 1-d
  convolutions, WaveNet and ByteNet blocks on grey and colour images and on sequences (mask B
  first and ``padding=same`` included, so causality errors are compared too): every diagnostic
  (severity, position, message, hint) of :func:`analyze_compressed` equals :func:`analyze`'s, and
  every real position's dependency set, relative to the position, equals that of the compressed
  position standing for it;
- a 512x512 PixelCNN and a WaveNet on ``sequence[1000000]`` are proved in seconds within a memory cap
  (:data:`PROVE_BEYOND_DENSE_BOUND`, on by default), and refused without it.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from flowdsl.analysis import causality
from flowdsl.analysis.translation import compressed, model_reach
from flowdsl.api import analyze_source
from flowdsl.language.limits import Limits
from flowdsl.layers.dependency_sets import unpack

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

mask = st.sampled_from(["A", "B"])
odd = st.sampled_from([1, 3, 5])
image_layer = st.one_of(
    st.builds(lambda m, k: f"masked_conv(mask={m}, kernel={k}, channels=6)", mask, odd),
    st.builds(lambda m, k: f"gated_block(mask={m}, kernel={k}, channels=6)", mask, st.sampled_from([3, 5])),
    st.just("relu"), st.just("conv1x1(6)"))
sequence_layer = st.one_of(
    st.builds(lambda k, d, p: f"causal_conv(kernel={k}, dilation={d}, channels=8, padding={p})",
              st.integers(1, 3), st.integers(1, 4), st.sampled_from(["causal", "causal", "same"])),
    st.builds(lambda k, d: f"gated_residual(kernel={k}, dilation={d}, residual=8, skip=8)",
              st.integers(1, 3), st.integers(1, 4)),
    st.builds(lambda k, d: f"bytenet_block(kernel={k}, dilation={d}, channels=8)", st.integers(1, 3),
              st.integers(1, 3)),
    st.just("relu"), st.just("conv1x1(8)"), st.just("mlp(hidden=8)"))


def model(input_type: str, layers, output: str = "categorical"):
    text = "autoregressive m {\n input x: " + input_type + "\n" + "".join(f" {line}\n" for line in layers)
    return analyze_source(text + f" output {output}\n}}\n", "m.ar").models["m"]


def facts(result) -> list:
    return [(d.severity, d.pos, d.message, d.hint) for d in result.diagnostics]


def relative_sets(result, layout) -> list:
    """Per position (index order): its channel and what it reads, as (channel, offset) pairs relative to it."""
    deps = unpack(result.final, layout.n)
    chan = np.argwhere(layout.index >= 0)[np.argsort(layout.index.reshape(-1))][:, 0]
    coords = layout.coords(np.arange(layout.n))
    return [(int(chan[p]), sorted((int(chan[q]), *map(int, coords[q] - coords[p])) for q in np.flatnonzero(deps[p])))
            for p in range(layout.n)]


def class_of(small, layout, p: int) -> int:
    """The compressed position standing for real position p."""
    c, *s = (int(v) for v in np.argwhere(layout.index == p)[0])
    out = []
    for v, b, d, g in zip(s, small.back, layout.grid, small.layout.grid):
        out.append(v if v < b else b if v <= d - g + b else v - (d - g))
    return int(small.layout.index[(c, *out)])


def compare(build, extra) -> str:
    probe = build(None)
    assume(probe.complete)
    reach = model_reach(probe, len(probe.input.shape) - (1 if len(probe.input.shape) == 3 else 0))
    assert reach is not None
    grid = tuple(b + a + 1 + e for b, a, e in zip(*reach, extra))
    ir = build(grid)
    assume(ir.complete)
    small = compressed(ir)
    assert small is not None and int(small.weights.sum()) == int(np.prod(ir.input.shape))
    fast, dense = causality.analyze_compressed(ir, Limits()), causality.analyze(ir, Limits())
    assert fast is not None and fast.layout.n < dense.layout.n
    assert facts(fast) == facts(dense) and facts(dense)
    assert causality.check_causality(ir, Limits()) == dense.diagnostics
    if dense.final is not None:  # proved causal: the class argument itself, position by position
        real, probe_sets = relative_sets(dense, dense.layout), relative_sets(fast, small.layout)
        assert [probe_sets[class_of(small, dense.layout, p)] for p in range(dense.layout.n)] == real
    event(" + ".join(sorted({d.severity for d in dense.diagnostics})))
    return facts(dense)[0][0]


@settings(SETTINGS, max_examples=70)
@given(channels=st.sampled_from([1, 3]), first=mask, k=odd, rest=st.lists(image_layer, max_size=4),
       extra=st.tuples(st.integers(0, 3), st.integers(1, 3)))
def test_images_compressed_equal_dense(channels, first, k, rest, extra):
    layers = [f"masked_conv(mask={first}, kernel={k}, channels=6)", *rest]
    shape = lambda grid: f"image[{channels}, {(grid or (12, 12))[0]}, {(grid or (12, 12))[1]}] levels 2"  # noqa: E731
    severity = compare(lambda grid: model(shape(grid), layers), extra)
    assert severity in ("error", "warning", "note")


@SETTINGS
@given(first=st.sampled_from(["embed(dim=8)", "causal_conv(kernel=2, channels=8)", "causal_conv(kernel=3, dilation=2, "
                              "channels=8)", "causal_conv(kernel=3, channels=8, padding=same)"]),
       rest=st.lists(sequence_layer, max_size=5), extra=st.tuples(st.integers(1, 6)))
def test_sequences_compressed_equal_dense(first, rest, extra):
    severity = compare(lambda grid: model(f"sequence[{(grid or (200,))[0]}] levels 3", [first, *rest]), extra)
    assert severity in ("error", "warning", "note")


def test_the_first_offending_position_is_mapped_back_to_the_real_grid():
    ir = model("image[3, 20, 30] levels 2", ["masked_conv(mask=B, kernel=3, channels=6)", "relu",
                                             "masked_conv(mask=B, kernel=3, channels=6)"])
    fast, dense = causality.analyze_compressed(ir, Limits()), causality.analyze(ir, Limits())
    assert fast is not None and fast.layout.grid == (3, 5)
    (error,) = fast.diagnostics
    assert error.message == dense.diagnostics[0].message and "(1800 of 1800 positions" in error.message


LARGE = {  # (input, layers): the 512x512 PixelCNN and the WaveNet of the measurements in docs/reliability.md
    "pixelcnn 512x512": ("image[1, 512, 512] levels 2",
                         ["masked_conv(mask=A, kernel=7, channels=8)",
                          "repeat 15 { relu -> masked_conv(mask=B, kernel=3, channels=8) }"]),
    "wavenet on sequence[1000000]": ("sequence[1000000] levels 4",
                                     ["causal_conv(kernel=2, channels=8)",
                                      "repeat 3 { for d in doubling(1, 512) "
                                      "{ gated_residual(kernel=2, dilation=d, residual=8, skip=8) } }"]),
}
NOTES = {"pixelcnn 512x512": "receptive field 19 x 37 pixels (rows r-18..r, columns c-18..c+18); a position reads "
                             "up to 564 earlier ones",
         "wavenet on sequence[1000000]": "receptive field 3070 samples (3 stacks of dilations 1..512, kernel 2); "
                                         "a position reads up to 3070 earlier ones"}


@pytest.mark.parametrize("name", list(LARGE))
def test_large_translation_invariant_models_are_proved_in_bounded_memory(name, monkeypatch):
    input_type, layers = LARGE[name]
    monkeypatch.setattr(causality, "PROVE_BEYOND_DENSE_BOUND", False)  # without the compressed grid: refused
    (refused,) = causality.check_causality(model(input_type, layers), Limits())
    assert refused.severity == "error" and "--max-analysis-bytes" in (refused.hint or "")
    monkeypatch.setattr(causality, "PROVE_BEYOND_DENSE_BOUND", True)  # the default
    ir = model(input_type, layers)
    tracemalloc.start()
    try:
        found = causality.check_causality(ir, Limits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, peak  # the dense sets would be 122,880 MiB and 4,649,163 MiB
    assert [d.severity for d in found if d.severity == "error"] == []
    assert NOTES[name] in [d.message for d in found]

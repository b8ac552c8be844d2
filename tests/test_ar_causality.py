"""Causality of autoregressive models, measured against the checker's exact static analysis.

- perturbation: changing the input at ``order[t]`` leaves the conditionals at ``order[0..t]`` unchanged;
- the static dependency sets of :mod:`flowdsl.analysis.causality` equal the measured ones (small images);
- the converse for models without a blind-spot warning: every earlier position inside the
  receptive field moves the conditional;
- the engine's operations, and its speed on a 64x64, 20-layer PixelCNN.
"""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import flowdsl
from flowdsl.analysis.causality import dependency_sets
from flowdsl.layers.dependency_sets import (
    DepMaps,
    accumulate,
    conv,
    group_allowed,
    layout_of,
    members,
    mix,
    pack,
    read,
    unpack,
)

MODELS = {
    "fvbn": "input x: vector[6] levels 3\n fvbn\n output categorical",
    "nade": "input x: vector[6] levels 3\n nade(hidden=5)\n output logistic_mixture(2)",
    "made": "input x: vector[6] levels 2\n made([10, 10], masks=3, order=agnostic)\n output bernoulli",
    "made_narrow": "input x: vector[6] levels 2\n made([3], order=random(seed=3))\n output bernoulli",
    "pixelcnn": "input x: image[1, 4, 5] levels 3\n masked_conv(mask=A, kernel=3, channels=6)\n"
                " relu -> masked_conv(mask=B, kernel=3, channels=6)\n"
                " relu -> masked_conv(mask=B, kernel=3, channels=6)\n output categorical",
    "pixelcnn_rgb": "input x: image[3, 3, 3] levels 2\n masked_conv(mask=A, kernel=3, channels=6)\n"
                    " relu -> masked_conv(mask=B, kernel=3, channels=6)\n relu -> conv1x1(6)\n output categorical",
    "gated": "input x: image[1, 4, 5] levels 3\n condition y: label[2]\n gated_block(mask=A, kernel=3, channels=6)\n"
             " gated_block(kernel=3, channels=6)\n relu -> conv1x1(6)\n output categorical",
    "gated_rgb": "input x: image[3, 3, 3] levels 2\n gated_block(mask=A, kernel=3, channels=6)\n"
                 " gated_block(kernel=3, channels=6)\n output logistic_mixture(2)",
    "row_lstm": "input x: image[1, 4, 5] levels 3\n masked_conv(mask=A, kernel=3, channels=6)\n"
                " row_lstm(hidden=6)\n row_lstm(hidden=6)\n output categorical",
    "diagonal_bilstm": "input x: image[1, 4, 5] levels 3\n masked_conv(mask=A, kernel=3, channels=6)\n"
                       " diagonal_bilstm(hidden=6)\n output categorical",
    "pixelrnn_rgb": "input x: image[3, 3, 3] levels 2\n masked_conv(mask=A, kernel=3, channels=6)\n"
                    " diagonal_bilstm(hidden=6)\n row_lstm(hidden=6)\n output categorical",
}


def source(name: str) -> str:
    return "autoregressive m {\n " + MODELS[name] + "\n}\n"


@cache
def model(name: str):
    """The compiled model in float64, parameters perturbed so that nothing is zero by accident."""
    torch.manual_seed(0)
    m = flowdsl.compile_source(source(name), filename="m.ar").double().eval()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        if "relu" in source(name) or "made" in source(name):  # keep ReLUs alive, so that every path shows
            for mod in m.modules():
                if isinstance(getattr(mod, "bias", None), torch.nn.Parameter) and mod is not m.head:
                    mod.bias.add_(2.0)
    return m


def context_for(m, batch: int):
    return None if m.context_shape is None else torch.ones(batch, dtype=torch.long)


def empirical(m, trials: int = 32, seed: int = 0) -> np.ndarray:
    """``bool [N, N]``: (p, q) when changing input q moved the conditional of p, at some random input."""
    gen = torch.Generator().manual_seed(seed)
    n, levels = m.size, m.levels
    seen = np.zeros((n, n), dtype=bool)
    rows = torch.arange(1, n + 1)
    with torch.no_grad():
        for _ in range(trials):
            flat = torch.randint(0, levels, (1, n), generator=gen).repeat(n + 1, 1)
            flat[rows, rows - 1] = (flat[rows, rows - 1] + torch.randint(1, levels, (n,), generator=gen)) % levels
            out = m.conditionals(flat.reshape(-1, *m.input_shape), context_for(m, n + 1))
            seen |= ((out[1:] - out[:1]).abs().amax(dim=-1) > 1e-12).T.numpy()
    return seen


def warnings(name: str) -> list[str]:
    return [d.message for d in flowdsl.analyze_source(source(name), "m.ar").diagnostics if d.severity == "warning"]


@given(name=st.sampled_from(sorted(MODELS)), seed=st.integers(0, 2**16), t=st.integers(0, 10_000),
       k=st.integers(0, 2))
def test_changing_a_position_never_moves_earlier_conditionals(name, seed, t, k):
    m = model(name)
    m.mask_index = k % m.configurations
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, m.levels, (1, *m.input_shape), generator=gen)
    order = m.order
    t = t % m.size
    pos = int(order[t])
    y = x.clone().reshape(1, -1)
    y[0, pos] = (y[0, pos] + 1 + int(torch.randint(0, m.levels - 1, (1,), generator=gen))) % m.levels
    y = y.reshape(x.shape)
    with torch.no_grad():
        a, b = m.conditionals(x, context_for(m, 1)), m.conditionals(y, context_for(m, 1))
    before = order[: t + 1]
    assert torch.equal(a[0, before], b[0, before])
    m.mask_index = 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_static_dependency_sets_equal_measured_ones(name):
    m = model(name)
    for k in range(m.configurations):
        m.mask_index = k
        static = dependency_sets(m.ir, k)
        measured = empirical(m)
        leaks = np.argwhere(measured & ~static)
        assert len(leaks) == 0, f"mask {k}: conditional {leaks[0][0]} reads {leaks[0][1]}, undeclared"
        assert np.array_equal(static, measured), f"mask {k}: {int((static & ~measured).sum())} declared, unseen"
        rank = np.argsort(m.order.numpy())
        assert not (static & (rank[None, :] >= rank[:, None])).any()  # strictly causal in the model's order
    m.mask_index = 0


def _box_earlier(m, static: np.ndarray) -> np.ndarray:
    """Per position: the earlier positions inside the bounding box (grid coordinates) of itself and what it reads."""
    shape = m.input_shape
    rank = np.argsort(m.order.numpy())
    if len(shape) == 1:  # vectors: boxes over the generation order
        coord = rank[:, None]
    else:  # images: over (row, column); the channels of a pixel share its coordinates
        coord = np.tile(np.indices(shape[1:]).reshape(2, -1).T, (shape[0], 1))
    out = np.zeros_like(static)
    for p in range(m.size):
        pts = np.vstack([coord[static[p]], coord[p][None]])
        inside = ((coord >= pts.min(axis=0)) & (coord <= pts.max(axis=0))).all(axis=1)
        out[p] = inside & (rank < rank[p])
    return out


@pytest.mark.parametrize("name", ["fvbn", "nade", "made", "gated", "gated_rgb"])
def test_no_blind_spot_means_every_earlier_position_in_the_field_moves_the_conditional(name):
    assert not any(w.startswith("blind spot") for w in warnings(name))
    m = model(name)
    static = dependency_sets(m.ir)
    measured = empirical(m)
    field = _box_earlier(m, static)
    missing = np.argwhere(field & ~measured)
    assert len(missing) == 0, f"position {missing[0][0]} never reacts to earlier position {missing[0][1]}"
    if len(m.input_shape) == 1:  # vector models see every earlier position
        rank = np.argsort(m.order.numpy())
        assert np.array_equal(measured, rank[None, :] < rank[:, None])


@pytest.mark.parametrize("name", ["pixelcnn", "row_lstm", "made_narrow"])
def test_blind_spot_warning_names_positions_that_really_never_move(name):
    (warning,) = [w for w in warnings(name) if w.startswith("blind spot")]
    m = model(name)
    field = _box_earlier(m, dependency_sets(m.ir))
    blind = field & ~empirical(m)
    count = int(warning.split("up to ")[1].split()[0])
    assert blind.any() and count >= 1


# ----------------------------------------------------------------------------- the engine itself
def test_read_shifts_with_zero_padding():
    lay = layout_of("image", (1, 3, 4))
    a = DepMaps.identity(lay).main
    above = read(a, (-1, 0))
    assert members(above[0, 0, 2], lay.n).size == 0  # nothing above row 0
    assert members(above[0, 2, 3], lay.n).tolist() == [7]  # (2, 3) reads (1, 3)
    assert members(read(a, (0, 5))[0, 1, 1], lay.n).size == 0


def test_conv_mixes_colour_groups_by_mask():
    lay = layout_of("image", (3, 1, 2))
    a = DepMaps.identity(lay).main
    strict = conv(a, [((0, 0), group_allowed(3, strict=True))], groups=3)
    assert [members(strict[g, 0, 1], lay.n).tolist() for g in range(3)] == [[], [1], [1, 3]]
    loose = mix(a, group_allowed(3, strict=False))
    assert members(loose[2, 0, 0], lay.n).tolist() == [0, 2, 4]


def test_accumulate_runs_both_ways_and_pack_round_trips():
    bits = np.eye(4, dtype=bool)[None]  # position i holds {i}
    packed = pack(bits)
    fwd, back = accumulate(packed, axis=0), accumulate(packed, axis=0, reverse=True)
    assert unpack(fwd, 4)[0, 2].tolist() == [True, True, True, False]
    assert unpack(back, 4)[0, 2].tolist() == [False, False, True, True]


def test_video_layout_puts_channels_inside_each_frame_pixel():
    lay = layout_of("video", (2, 3, 1, 2))
    assert lay.grid == (2, 1, 2) and lay.channels == 3
    assert lay.raster_order()[:4].tolist() == [0, 2, 4, 1]  # t=0,(0,0): R, G, B; then (0,1): R


def test_analysis_of_a_64x64_twenty_layer_pixelcnn_takes_seconds():
    src = ("autoregressive big {\n input x: image[1, 64, 64] levels 256\n masked_conv(mask=A, kernel=7, channels=32)\n"
           " repeat 19 { relu -> masked_conv(mask=B, kernel=3, channels=32) }\n}\n")
    start = time.perf_counter()
    diags = flowdsl.analyze_source(src, "big.ar").diagnostics
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"analysis took {elapsed:.1f}s"
    assert any(d.message.startswith("blind spot") for d in diags)
    assert any(d.message.startswith("receptive field 23 x 45 pixels") for d in diags)

"""Video Pixel Network: the acceptance spec, the generation order proved by the engine, exact dependencies.

- video_pixel.ar compiles, checks without warnings, evaluates and samples a few steps;
- the order is time -> row -> column -> channel: every conditional reads only earlier positions
  in that order, and frame t's encoder output reads exactly frames < t (static == measured);
- tiny grey and colour models are causal, complete and normalised; errors are positioned.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from conftest import spec_path

import flowdsl
from flowdsl.analysis.causality import analyze, dependency_sets
from flowdsl.runtime.ar_cache import fill, step_conditionals
from flowdsl.testing import check_autoregressive, perturb_parameters

SMALL = ("input x: video[3, 1, 3, 4] levels 3\n video_encoder(channels=4, blocks=1)\n"
         " pixel_decoder(channels=6, blocks=2)\n output categorical")


spec = spec_path  # shared helper in conftest


def source(body: str) -> str:
    return "autoregressive m {\n " + body + "\n}\n"


@cache
def small():
    m = flowdsl.compile_source(source(SMALL), filename="m.ar").double().eval()
    perturb_parameters(m, scale=0.3, seed=4)
    return m


def measured(m, trials: int = 4) -> np.ndarray:
    gen = torch.Generator().manual_seed(0)
    n = m.size
    seen = np.zeros((n, n), dtype=bool)
    with torch.no_grad():
        for _ in range(trials):
            flat = torch.randint(0, m.levels, (1, n), generator=gen).repeat(n + 1, 1)
            rows = torch.arange(1, n + 1)
            flat[rows, rows - 1] = (flat[rows, rows - 1] + 1) % m.levels
            p = m.conditionals(flat.reshape(n + 1, *m.input_shape))
            seen |= ((p[1:] - p[:1]).abs() > 1e-9).any(-1).numpy().T
    return seen


def test_acceptance_spec_checks_compiles_and_samples_a_few_steps():
    analysis = flowdsl.analyze_file(spec("video_pixel.ar"))
    assert analysis.ok and not [d for d in analysis.diagnostics if d.severity != "note"]
    note = next(d.message for d in analysis.diagnostics if d.message.startswith("receptive field"))
    assert note.startswith("receptive field 4 x 15 x 15 positions (frames t-3..t, rows r-7..r+7, columns c-7..c+7)")
    m = flowdsl.compile_file(spec("video_pixel.ar")).eval()
    assert m.ir.params == sum(p.numel() for p in m.parameters())
    x = torch.randint(0, 17, (2, *m.input_shape))
    with torch.no_grad():
        lp, cond = m.log_prob(x), m.conditionals(x)
    assert torch.isfinite(lp).all() and (lp < 0).all()
    steps = 70  # into the second frame
    assert (step_conditionals(m, x, steps=steps)[:, :steps] - cond[:, :steps]).abs().max() < 1e-4
    torch.manual_seed(0)
    s = fill(m, torch.zeros_like(x[:1]), torch.zeros_like(x[:1], dtype=torch.bool), None, steps=5)
    assert s.shape == (1, 4, 1, 8, 8) and s.max() < 17


def test_generation_order_is_time_row_column_channel():
    m = flowdsl.compile_source(source("input x: video[2, 3, 2, 2] levels 2\n video_encoder(channels=3, blocks=1)\n"
                                      " pixel_decoder(channels=6, blocks=2)\n output categorical"), filename="m.ar")
    t, c, h, w = m.input_shape
    expected = [((tt * c + cc) * h + r) * w + col for tt in range(t) for r in range(h) for col in range(w)
                for cc in range(c)]
    assert m.order.tolist() == expected
    deps = dependency_sets(m.ir)
    rank = np.empty(m.size, dtype=np.int64)
    rank[np.asarray(expected)] = np.arange(m.size)
    assert not (deps & (rank[None, :] >= rank[:, None])).any()
    # the green channel of a pixel reads its red one, and blue reads both
    pos = np.arange(m.size).reshape(t, c, h, w)
    assert deps[pos[1, 1, 1, 1], pos[1, 0, 1, 1]] and deps[pos[1, 2, 1, 1], pos[1, 1, 1, 1]]


def test_frame_t_reads_exactly_earlier_frames_and_its_causal_part():
    m = small()
    static = dependency_sets(m.ir)
    seen = measured(m)
    assert not (seen & ~static).any(), "a conditional reacts to a position the checker says it does not read"
    assert not (static & ~seen).any(), "a declared dependency never showed"
    t, _, h, w = m.input_shape
    frame = np.arange(m.size) // (h * w)
    assert not (static & (frame[None, :] > frame[:, None])).any()
    last = np.flatnonzero(frame == 2)[-1]
    assert static[last][frame < 2].all()  # the encoder reaches every pixel of the earlier frames here


def test_encoder_output_is_zero_at_frame_zero_and_causal_in_time():
    m = small()
    x = torch.randint(0, 3, (2, *m.input_shape))
    with torch.no_grad():
        e, extra = m.layers[0](m._encode(x), None, {})
        x2 = x.clone()
        x2[:, 1] = (x2[:, 1] + 1) % 3
        e2, _ = m.layers[0](m._encode(x2), None, {})
    assert (e[:, :, 0] == 0).all()
    assert torch.equal(e[:, :, :2], e2[:, :, :2]) and not torch.equal(e[:, :, 2], e2[:, :, 2])
    assert torch.equal(extra["frames"], m._encode(x))


@pytest.mark.parametrize("body", [
    "input x: video[2, 1, 2, 2] levels 2\n video_encoder(channels=3, blocks=1)\n pixel_decoder(channels=4, blocks=2)\n"
    " output categorical",
    "input x: video[2, 2, 1, 2] levels 2\n condition y: label[2]\n video_encoder(channels=2, blocks=1)\n"
    " pixel_decoder(channels=4, blocks=1)\n relu -> conv1x1(4)\n output logistic_mixture(2)",
], ids=["grey", "colour_conditional"])
def test_tiny_video_models_are_causal_complete_and_normalised(body, float64):
    m = flowdsl.compile_source(source(body), filename="m.ar").eval()
    perturb_parameters(m, scale=0.5, seed=5)
    report = check_autoregressive(m, examples=6, seed=0)
    assert report["causality"] == 0.0 and report["completeness"] == 0
    assert report["normalisation"] < 1e-9


def test_video_errors():
    def errs(body):
        return [(d.pos.line, d.pos.column, d.message) for d in flowdsl.analyze_source(source(body), "t.ar").diagnostics
                if d.severity == "error"]

    assert errs("input x: video[2, 1, 4, 4] levels 2\n pixel_decoder(channels=4)")[0][2].startswith(
        "pixel_decoder reads the frames that video_encoder passes on")
    assert errs("input x: image[1, 4, 4] levels 2\n video_encoder(channels=4)")[0][2] == (
        "video_encoder models videos, but this model's input is an image")
    assert errs("input x: video[2, 3, 4, 4] levels 2\n video_encoder(channels=4)\n pixel_decoder(channels=4)")[0] == (
        4, 16, "channels (4) must be divisible by the 3 colour channels: each channel's prediction gets its own "
               "group of features")
    assert errs("input x: video[2, 1, 4, 4] levels 2\n video_encoder(channels=4)\n"
                " pixel_decoder(channels=4, kernel=4)")[0][2].startswith(
        "argument 'kernel' of pixel_decoder must be odd")


def test_analysis_reports_no_blind_spot_for_gated_frames_but_a_short_encoder_reach_is_in_the_note():
    a = analyze(small().ir)
    assert not [d for d in a.diagnostics if d.severity == "warning"]

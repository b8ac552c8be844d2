"""Checkpoints written before the typed-IR redesign (commit b5008a4) still load and score the same.

``tests/data/checkpoints/`` holds tiny specs, their checkpoints as the old code saved them (after a
seeded perturbation of every parameter) and the log-probabilities the old code computed on fixed
inputs (``expected.json``: a flow's latent and log|det| at a fixed point, an autoregressive model's
log-probability). Loading recompiles each model from the checkpoint's own sources; the
scores must agree to float64 precision, which also pins every mask, order, permutation and seed.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import flowdsl

DATA = Path(__file__).parent / "data" / "checkpoints"
# the script that wrote the pinned outputs computes them here too (one definition of what is pinned)
_script = importlib.util.spec_from_file_location("make_checkpoints", DATA / "make_checkpoints.py")
_module = importlib.util.module_from_spec(_script)
_script.loader.exec_module(_module)
outputs = _module.outputs
EXPECTED = json.loads((DATA / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_old_checkpoint_loads_and_scores_the_same(name):
    model = flowdsl.load(DATA / f"{name}.pt").double().eval()
    case = EXPECTED[name]
    dtype = torch.long if model.levels else torch.float64
    x = torch.tensor(case["x"], dtype=dtype)
    got = outputs(model, x)
    want = torch.tensor(case["log_prob"], dtype=torch.float64)
    assert torch.allclose(got, want, rtol=0, atol=1e-5), (got - want).abs().max()  # weights load into float32
    assert sorted(EXPECTED) == ["tiny", "tiny_image", "tiny_made", "tiny_pixelcnn"]


LABEL13 = sorted((Path(__file__).parent / "data" / "checkpoints").glob("label13_*.pt"))


@pytest.mark.parametrize("path", LABEL13, ids=lambda p: p.stem)
def test_label_checkpoints_from_before_conditions_of_any_type_load_and_score_the_same(path):
    """Checkpoints written by the code before issue 13 (commit ae04977^) of label-conditional models whose
    layers now read the condition (causal_conv, fvbn, nade, made) or read it otherwise: the new context terms
    load as zeros, the map the old model computed, so the log-likelihoods are the old ones."""
    ref = torch.load(path.with_suffix(".ref"))
    model = flowdsl.load(path).eval()
    with torch.no_grad():
        lp = model.log_prob(ref["x"], torch.tensor([0, 1, 2]))
    torch.testing.assert_close(lp, ref["lp"], rtol=1e-5, atol=1e-4)

"""flowdsl.train: checkpoints, exact resumption, refused resumption, flows and autoregressive models, torchrun."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DIGITS_FLOW, MOONS_FLOW

import flowdsl
from flowdsl.errors import FlowDSLError

ROOT = Path(__file__).resolve().parent.parent



def write(tmp_path, name, text) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def quiet(**kw):
    return dict(progress=False, log=None, **kw)


def test_train_writes_a_checkpoint_with_everything_needed_to_resume(tmp_path):
    spec = write(tmp_path, "tiny.flow", DIGITS_FLOW)
    lines = []
    result = flowdsl.train(spec, "digits", steps=4, batch=16, eval_every=2, output=tmp_path / "c.pt",
                           progress=False, log=lines.append)
    assert result.step == 4 and [h["step"] for h in result.history] == [2, 4]
    assert lines[0].startswith("data digits") and lines[0].endswith(
        "; training on 1294 examples, validating on 144 (10% of train, fixed seed), testing on 359 (uint8 in memory)")
    assert lines[1].startswith("step 2/4: train ") and "nats, mean of 2 steps), validation " in lines[1]
    assert lines[-2].startswith("test: ") and f"weights of step {result.best_step}, best on validation" in lines[-2]
    ev = result.evaluation
    assert ev["examples"] == 359 and abs(ev["bits_per_dim"] - ev["nats"] / (64 * 0.6931471805599453)) < 1e-9
    assert result.test_nll == ev["nats"] and result.valid_nll == min(h["valid_nats"] for h in result.history)
    model, payload = flowdsl.checkpoint.load_checkpoint(tmp_path / "c.pt", return_payload=True)
    assert payload["step"] == 4 and payload["data"] == "digits" and payload["train"]["batch"] == 16
    assert set(payload) >= {"optimizer", "rng", "history", "spec", "state_dict", "checksum", "data_fingerprint"}
    best = flowdsl.checkpoint.load_checkpoint(tmp_path / "c.best.pt")
    for k, v in result.model.state_dict().items():  # the model returned holds the selected (best) weights
        assert torch.equal(v, best.state_dict()[k]), k
    assert bool(model.layers[1].initialized)  # actnorm was initialised from data
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave nothing behind


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    spec = write(tmp_path, "tiny.flow", DIGITS_FLOW)
    full = flowdsl.train(spec, "digits", steps=6, batch=16, eval_every=3, output=tmp_path / "full.pt", **quiet())
    flowdsl.train(spec, "digits", steps=3, batch=16, eval_every=3, output=tmp_path / "half.pt", **quiet())
    torch.manual_seed(12345)  # the global random state in between must not matter
    resumed = flowdsl.train(spec, "digits", steps=6, resume=tmp_path / "half.pt", output=tmp_path / "resumed.pt",
                            **quiet())
    assert resumed.step == 6
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.history == resumed.history and full.evaluation == resumed.evaluation
    pa = torch.load(tmp_path / "full.pt", weights_only=True)
    pb = torch.load(tmp_path / "resumed.pt", weights_only=True)
    for k, state in pa["optimizer"]["state"].items():
        assert all(torch.equal(state[s], pb["optimizer"]["state"][k][s]) for s in state)
    assert torch.equal(pa["rng"][0]["cpu"], pb["rng"][0]["cpu"])


def test_resume_refuses_a_changed_spec_but_not_a_moved_one(tmp_path):
    spec = write(tmp_path, "tiny.flow", DIGITS_FLOW)
    flowdsl.train(spec, "digits", steps=2, batch=16, output=tmp_path / "c.pt", **quiet())
    changed = write(tmp_path, "changed.flow", DIGITS_FLOW.replace("hidden=8))\n}", "hidden=12))\n}"))
    with pytest.raises(FlowDSLError, match="the spec changed since the checkpoint was written") as err:
        flowdsl.train(changed, "digits", steps=4, resume=tmp_path / "c.pt", **quiet())
    assert re.search(r"changed.flow \(tiny\) has spec hash [0-9a-f]{12}, the checkpoint \(tiny\) [0-9a-f]{12}$",
                     err.value.diagnostics[0].message)
    assert "resume with the spec the checkpoint was trained from" in err.value.diagnostics[0].hint
    (tmp_path / "elsewhere").mkdir()
    moved = write(tmp_path / "elsewhere", "copy.flow", DIGITS_FLOW)
    assert flowdsl.train(moved, "digits", steps=3, resume=tmp_path / "c.pt", **quiet()).step == 3
    from flowdsl.checkpoint import save_checkpoint

    save_checkpoint(flowdsl.compile_file(spec), tmp_path / "compiled.pt")
    with pytest.raises(FlowDSLError, match="holds no training state"):
        flowdsl.train(spec, "digits", steps=3, resume=tmp_path / "compiled.pt", **quiet())


def test_bad_settings_are_clear_errors(tmp_path):
    spec = write(tmp_path, "moons.flow", MOONS_FLOW)
    with pytest.raises(FlowDSLError, match=r"the batch \(64\) is larger than the training split of 'pts' \(8"):
        flowdsl.train(spec, _points(tmp_path, 10), steps=1, **quiet())
    with pytest.raises(FlowDSLError, match="data 'digits' is image"):
        flowdsl.train(spec, "digits", steps=1, **quiet())


def _points(tmp_path, n):
    import numpy as np

    path = tmp_path / "pts.npy"
    np.save(path, np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32))
    return str(path)


def test_conditional_flows_and_autoregressive_models_train(tmp_path):
    cond = write(tmp_path, "c.flow", "flow c {\n input x: image[1, 8, 8] levels 17\n condition y: label[10]\n"
                                     " logit\n coupling affine(mask=checkerboard(0), net=resnet(blocks=1, hidden=8))"
                                     "\n}\n")
    result = flowdsl.train(cond, "digits", steps=3, batch=16, **quiet())
    assert result.model.context_shape == () and torch.isfinite(torch.tensor(result.evaluation["nats"]))
    ar = write(tmp_path, "p.ar", "autoregressive p {\n input x: image[1, 8, 8] levels 2\n"
                                 " masked_conv(mask=A, kernel=3, channels=8)\n output categorical\n}\n")
    result = flowdsl.train(ar, "digits-binary", steps=8, batch=32, lr=3e-3, eval_every=1,
                           output=tmp_path / "p.pt", **quiet())
    before, after = result.history[0]["valid_nats"], result.history[-1]["valid_nats"]
    assert after < before  # it learns
    reloaded = flowdsl.load(tmp_path / "p.best.pt")  # the returned model holds the best weights
    x = torch.randint(0, 2, (4, 1, 8, 8))
    assert torch.allclose(reloaded.log_prob(x), result.model.cpu().log_prob(x))


def test_torchrun_two_processes_hold_identical_parameters(tmp_path):
    spec = write(tmp_path, "moons.flow", MOONS_FLOW)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "flowdsl", "train", str(spec), "--data", "moons", "--steps", "4", "--batch", "32", "--lr", "0.01",
           "--ema", "0.5", "--schedule", "cosine", "--eval-every", "1", "-o", str(tmp_path / "ddp.pt"), "-q"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    digests = dict(re.findall(r"rank (\d)/2: parameters sha256 ([0-9a-f]{16})", out))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], out
    assert out.count("saved ") == 1  # rank 0 alone writes and logs
    ddp = flowdsl.load(tmp_path / "ddp.best.pt")  # both hold the weights selected on validation
    payload = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert payload["world_size"] == 2 and len(payload["rng"]) == 2 and payload["step"] == 4
    # the averaged gradients of the two halves are the gradient of the whole batch: one process agrees
    single = flowdsl.train(spec, "moons", steps=4, batch=32, lr=0.01, ema=0.5, schedule="cosine", eval_every=1,
                           **quiet()).model
    for k, v in single.state_dict().items():
        assert torch.allclose(v, ddp.state_dict()[k], atol=1e-5), k
    # and the comparison is not between untouched weights: the zero-initialised last layers moved
    assert single.state_dict()["layers.0.net.body.2.weight"].abs().sum() > 0


def test_a_cpu_budget_stops_early_with_a_checkpoint_and_an_evaluation(tmp_path):
    spec = write(tmp_path, "moons.flow", MOONS_FLOW)
    lines = []
    result = flowdsl.train(spec, "moons", steps=100_000, batch=16, cpu_budget=0.5, output=tmp_path / "b.pt",
                           progress=False, log=lines.append)
    assert 0 < result.step < 100_000 and result.history[-1]["step"] == result.step
    assert f"stopped at step {result.step}: the CPU budget of 0.5 s is spent" in lines
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == result.step


def test_resuming_a_made_with_several_masks_picks_up_the_next_mask(tmp_path):
    spec = write(tmp_path, "made.ar", "autoregressive m {\n input x: vector[64] levels 2\n"
                                      " made([16], masks=3, order=random(seed=0))\n output bernoulli\n}\n")
    full = flowdsl.train(spec, "digits-binary", steps=5, batch=16, **quiet())
    flowdsl.train(spec, "digits-binary", steps=2, batch=16, output=tmp_path / "m.pt", **quiet())
    resumed = flowdsl.train(spec, "digits-binary", steps=5, batch=16, resume=tmp_path / "m.pt", **quiet())
    for k, v in full.model.state_dict().items():
        other = resumed.model.state_dict()[k]
        assert (v == other) if isinstance(v, dict) else torch.equal(v, other), k  # the mask counter is extra state

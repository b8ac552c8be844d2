"""The trainer fit for a real run: validation and early stopping, the best checkpoint, schedules, EMA, the
metrics file, the divergence guard, epochs, compact data, refused settings, and exact resumption with all of it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DIGITS_FLOW, MOONS_FLOW
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.checkpoint import load_checkpoint
from flowdsl.errors import FlowDSLError
from flowdsl.training.batches import carve_validation, compact, integer_dtype
from flowdsl.training.dataset import Dataset
from flowdsl.training.evaluation import evaluate
from flowdsl.training.schedules import LRSchedule, parse_schedule


def quiet(**kw):
    return dict(progress=False, log=None, **kw)


@pytest.fixture
def moons(tmp_path) -> Path:
    path = tmp_path / "moons.flow"
    path.write_text(MOONS_FLOW)
    return path


def drifting() -> Dataset:
    """Training data near the origin, validation far from it: every step makes validation worse."""
    rng = np.random.default_rng(0)
    near = (rng.normal(size=(256, 2)) * 0.1).astype(np.float32)
    far = (rng.normal(size=(64, 2)) + 4.0).astype(np.float32)
    return Dataset("drift", train=near, test=near[:32], valid=far)


def test_early_stopping_stops_and_the_best_checkpoint_is_kept(moons, tmp_path):
    lines = []
    result = flowdsl.train(moons, drifting(), steps=50, batch=32, lr=0.05, eval_every=1, patience=2,
                           output=tmp_path / "d.pt", progress=False, log=lines.append)
    assert result.stop_reason == "patience" and result.best_step == 1 and result.step == 3
    assert [h["best_step"] for h in result.history] == [1, 1, 1]
    assert result.valid_nll == result.history[0]["valid_nats"] < result.history[-1]["valid_nats"]
    assert any(line.startswith("stopped early at step 3: no improvement on validation for 2 evaluations")
               for line in lines)
    best, payload = load_checkpoint(tmp_path / "d.best.pt", return_payload=True)
    assert payload["step"] == 1 and payload["valid_nats"] == result.valid_nll and "optimizer" not in payload
    last = load_checkpoint(tmp_path / "d.pt", return_payload=True)[1]
    assert last["step"] == 3
    for k, v in best.state_dict().items():  # the returned model is the best one, and the test scored it
        assert torch.equal(v, result.model.state_dict()[k]), k
    key = "layers.0.net.body.2.weight"
    assert not torch.equal(best.state_dict()[key], last["state_dict"][key])
    test = torch.as_tensor(drifting().test)
    assert evaluate(best, test)["nats"] == result.test_nll
    with pytest.raises(FlowDSLError, match="the run stopped early at step 3"):  # nothing left to resume
        flowdsl.train(moons, drifting(), steps=50, resume=tmp_path / "d.pt", **quiet())


@settings(max_examples=60, deadline=None)
@given(lr=st.floats(1e-5, 1.0), warmup=st.integers(0, 20), steps=st.integers(21, 400), s=st.integers(0, 400),
       every=st.integers(1, 50), gamma=st.floats(0.05, 1.0), low=st.floats(0.0, 0.5))
def test_schedules_follow_their_formulas(lr, warmup, steps, s, every, gamma, low):
    warm = min(1.0, (s + 1) / warmup) if warmup else 1.0
    after = max(0, s - warmup)
    cosine = LRSchedule(parse_schedule(f"cosine:min={low}"), lr, warmup, steps).lr(s)
    p = min(1.0, after / (steps - warmup))
    assert math.isclose(cosine, lr * warm * (low + (1 - low) * (1 + math.cos(math.pi * p)) / 2), rel_tol=1e-12)
    step = LRSchedule(parse_schedule(f"step:every={every},gamma={gamma}"), lr, warmup, steps).lr(s)
    assert math.isclose(step, lr * warm * gamma ** (after // every), rel_tol=1e-12)
    assert math.isclose(LRSchedule(parse_schedule(None), lr, warmup, steps).lr(s), lr * warm, rel_tol=1e-12)


def test_plateau_lowers_the_rate_after_patience_evaluations_and_keeps_its_floor():
    plan = LRSchedule(parse_schedule("plateau:factor=0.5,patience=2,min=0.2"), 1.0, 0, 100)
    lowered = [plan.observe(v) for v in (5, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3)]
    assert lowered == [False, False, False, True, False, False, True, False, True, False, False]
    assert plan.lr(50) == 0.2  # 1 -> 0.5 -> 0.25 -> floor 0.2
    for bad in ("bogus", "cosine:every=3", "step:gamma=2", "plateau:patience=0.5", "step:every", "cosine:min=x"):
        with pytest.raises(FlowDSLError):
            parse_schedule(bad)


def test_the_trainer_applies_warm_up_and_the_schedule_to_every_step(moons, tmp_path):
    result = flowdsl.train(moons, "moons", steps=6, batch=16, lr=0.01, warmup=2, schedule="step:every=2,gamma=0.5",
                           eval_every=1, output=tmp_path / "s.pt", **quiet())
    assert [h["lr"] for h in result.history] == [0.005, 0.01, 0.01, 0.01, 0.005, 0.005]
    payload = torch.load(tmp_path / "s.pt", weights_only=True)
    assert payload["optimizer"]["param_groups"][0]["lr"] == 0.005
    plateau = flowdsl.train(moons, drifting(), steps=5, batch=32, lr=0.04, schedule="plateau:patience=1",
                            eval_every=1, **quiet())
    assert [h["lr"] for h in plateau.history] == [0.04, 0.04, 0.02, 0.01, 0.005]


def test_ema_weights_differ_from_the_raw_ones_and_are_what_is_evaluated(moons, tmp_path):
    ds = drifting()
    result = flowdsl.train(moons, ds, steps=8, batch=32, lr=0.02, ema=0.9, eval_every=4,
                           output=tmp_path / "e.pt", **quiet())
    model, payload = load_checkpoint(tmp_path / "e.pt", return_payload=True)
    key = "layers.0.net.body.2.weight"
    assert not torch.equal(payload["state_dict"][key], payload["raw_state_dict"][key])
    valid = torch.as_tensor(ds.valid)
    assert evaluate(model, valid)["nats"] == result.history[-1]["valid_nats"]  # the averaged weights were scored
    model.load_state_dict(payload["raw_state_dict"])
    assert evaluate(model, valid)["nats"] != result.history[-1]["valid_nats"]
    best = load_checkpoint(tmp_path / "e.best.pt")
    assert torch.equal(best.state_dict()[key], result.model.state_dict()[key])


def _run_pieces(spec, tmp_path, data, split_at, total, **kw):
    full = flowdsl.train(spec, data, steps=total, output=tmp_path / "full.pt", **quiet(**kw))
    flowdsl.train(spec, data, steps=split_at, output=tmp_path / "half.pt", **quiet(**kw))
    torch.manual_seed(4321)  # the global random state in between must not matter
    resumed = flowdsl.train(spec, data, steps=total, resume=tmp_path / "half.pt", output=tmp_path / "resumed.pt",
                            **quiet(metrics=tmp_path / "resumed.metrics.jsonl"))
    a = torch.load(tmp_path / "full.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    return full, resumed, a, b


def _same(a, b, where=""):
    if torch.is_tensor(a):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where


def test_resume_is_exact_with_schedule_warm_up_weight_decay_ema_clipping_and_patience(tmp_path):
    spec = tmp_path / "tiny.flow"
    spec.write_text(DIGITS_FLOW)
    full, resumed, a, b = _run_pieces(spec, tmp_path, "digits", 3, 6, batch=16, eval_every=1, lr=3e-3,
                                      schedule="cosine:min=0.1", warmup=2, weight_decay=0.01, ema=0.8, clip=5.0,
                                      patience=5)
    _same(full.model.state_dict(), resumed.model.state_dict(), "model")
    assert full.history == resumed.history and full.evaluation == resumed.evaluation
    for key in ("state_dict", "raw_state_dict", "best_state_dict", "optimizer", "rng", "schedule", "selection",
                "guard_best", "history", "checksum"):
        _same(a[key], b[key], key)
    lines = [json.loads(line) for line in (tmp_path / "resumed.metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["event"] == "eval"] == [4, 5, 6]


def test_l2_is_adams_coupled_penalty_and_resumes_exactly(moons, tmp_path):
    """``l2``: torch Adam's weight_decay (the penalty in the gradient, as the MADE reproductions train), not
    AdamW's decoupled decay; kept exactly by a resume; it shrinks the weights against the same run without."""
    full, resumed, a, b = _run_pieces(moons, tmp_path, "moons", 2, 4, batch=32, eval_every=1, l2=1e-2)
    _same(a["optimizer"], b["optimizer"], "optimizer")
    _same(full.model.state_dict(), resumed.model.state_dict(), "model")
    group = a["optimizer"]["param_groups"][0]
    assert group["weight_decay"] == 1e-2 and not group.get("decoupled_weight_decay", False)
    decayed = flowdsl.train(moons, "moons", steps=20, batch=32, l2=10.0, eval_every=20, **quiet())
    plain = flowdsl.train(moons, "moons", steps=20, batch=32, eval_every=20, **quiet())

    def norm(m):
        return sum(float(p.detach().pow(2).sum()) for p in m.parameters())

    assert norm(decayed.model) < norm(plain.model)


def test_resume_is_exact_across_a_plateau_reduction(moons, tmp_path):
    full, resumed, a, b = _run_pieces(moons, tmp_path, drifting(), 3, 6, batch=32, lr=0.03, eval_every=1,
                                      schedule="plateau:patience=1")
    assert a["schedule"]["factor"] < 1 and full.history == resumed.history
    for key in ("state_dict", "optimizer", "schedule", "selection"):
        _same(a[key], b[key], key)


def test_the_metrics_file_holds_one_line_per_event_and_a_resume_drops_what_came_after(moons, tmp_path):
    flowdsl.train(moons, "moons", steps=4, batch=16, eval_every=2, output=tmp_path / "m.pt", **quiet())
    records = [json.loads(line) for line in (tmp_path / "m.metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "eval", "eval", "stop", "test"]
    assert records[0]["settings"]["batch"] == 16 and records[1]["step"] == 2 and records[-1]["examples"] == 2000
    assert {"train_nats", "valid_nats", "lr", "epoch", "wall_s", "cpu_s"} <= set(records[1])
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["step"] = 2  # pretend the run was killed after its first evaluation
    torch.save({k: v for k, v in payload.items() if k != "checksum"}, tmp_path / "m.pt")
    flowdsl.train(moons, "moons", steps=6, resume=tmp_path / "m.pt", output=tmp_path / "m.pt", **quiet())
    records = [json.loads(line) for line in (tmp_path / "m.metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in records][:3] == [("start", 0), ("eval", 2), ("resume", 2)]
    assert flowdsl.train(moons, "moons", steps=2, batch=16, metrics=False, output=tmp_path / "n.pt",
                         **quiet()).step == 2
    assert not (tmp_path / "n.metrics.jsonl").exists()


def test_tensorboard_logs_when_it_can_and_says_so_when_it_cannot(moons, tmp_path):
    lines = []
    flowdsl.train(moons, "moons", steps=2, batch=16, tensorboard=tmp_path / "tb", progress=False, log=lines.append)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert any(line.startswith("TensorBoard logging is off: torch.utils.tensorboard cannot be imported")
                   for line in lines)
    else:
        assert any((tmp_path / "tb").iterdir())


def test_the_divergence_guard_stops_a_run_that_explodes(moons, tmp_path):
    with pytest.raises(FlowDSLError, match=r"training diverged: the loss (exploded to|became) .* at step \d+"):
        flowdsl.train(moons, "moons", steps=200, batch=64, lr=100.0, output=tmp_path / "x.pt", **quiet())
    assert not (tmp_path / "x.pt").exists()


def test_epochs_set_the_length_and_evaluate_once_an_epoch(moons):
    ds = drifting()  # 256 training examples: 8 batches of 32 an epoch
    result = flowdsl.train(moons, ds, epochs=2, batch=32, **quiet())
    assert result.step == 16 and [h["step"] for h in result.history] == [8, 16]


def test_data_is_held_compactly_and_the_validation_split_is_fixed():
    assert compact(np.ones((2, 3), np.int64), 2).dtype == torch.uint8
    assert integer_dtype(256) == torch.uint8 and integer_dtype(257) == torch.int16
    assert integer_dtype(2**15 + 1) == torch.int32
    ds = Dataset("x", train=np.arange(100).reshape(100, 1), test=np.zeros((5, 1)))
    carved, was_carved = carve_validation(ds)
    assert was_carved and len(carved.valid) == 10 and len(carved.train) == 90
    assert sorted(np.concatenate([carved.train, carved.valid])[:, 0]) == list(range(100))
    assert (carve_validation(ds)[0].valid == carved.valid).all()


@pytest.mark.parametrize("kw, message", [
    ({"lr": float("nan")}, "lr must be a positive number"), ({"lr": -1.0}, "lr must be a positive number"),
    ({"clip": -1.0}, "clip must be a positive number"), ({"steps": 0}, "steps must be a positive integer"),
    ({"seed": 2**70}, "seed must be an integer in 0..4294967295"), ({"ema": 1.5}, "ema must be a decay"),
    ({"threads": 0}, "threads must be a positive integer"), ({"epochs": 2}, "give steps or epochs, not both"),
    ({"schedule": "bogus"}, "unknown learning-rate schedule 'bogus'"), ({"warmup": -3}, "warmup must be"),
    ({"weight_decay": float("inf")}, "weight_decay must be"), ({"device": "nonsense"}, "unknown device 'nonsense'"),
    ({"cpu_budget": 0}, "cpu_budget must be"), ({"patience": 0}, "patience must be a positive integer"),
    ({"l2": -1e-4}, "l2 must be a non-negative number"),
    ({"l2": 1e-4, "weight_decay": 1e-2}, "two ways to do one thing"),
])
def test_bad_settings_are_refused_before_training(moons, kw, message):
    with pytest.raises(FlowDSLError, match=message):
        flowdsl.train(moons, "moons", **{"steps": 2, "batch": 16, **kw}, **quiet())


def test_resume_refuses_other_data_and_a_finished_run(moons, tmp_path):
    flowdsl.train(moons, "moons", steps=2, batch=16, output=tmp_path / "c.pt", **quiet())
    with pytest.raises(FlowDSLError, match=r"the checkpoint was trained on other data: 'moons', this run has "
                                           r"'circles' \(they differ in contents\)") as err:
        flowdsl.train(moons, "circles", steps=4, resume=tmp_path / "c.pt", **quiet())
    assert err.value.diagnostics[0].pos.file == str(tmp_path / "c.pt")
    with pytest.raises(FlowDSLError, match="the checkpoint is at step 2 already: there is nothing to train"):
        flowdsl.train(moons, "moons", steps=2, resume=tmp_path / "c.pt", **quiet())
    threads = torch.get_num_threads()
    assert flowdsl.train(moons, "moons", steps=3, threads=1, resume=tmp_path / "c.pt", **quiet()).step == 3
    assert torch.get_num_threads() == threads  # the run's thread count does not leak


def test_a_resumed_run_writing_elsewhere_gets_the_best_checkpoint_even_without_improving(moons, tmp_path):
    flowdsl.train(moons, drifting(), steps=1, batch=32, lr=0.05, output=tmp_path / "a.pt", **quiet())
    result = flowdsl.train(moons, drifting(), steps=3, eval_every=1, resume=tmp_path / "a.pt",
                           output=tmp_path / "b.pt", **quiet())
    assert result.best_step == 1 and [h["best_step"] for h in result.history] == [1, 1, 1]
    best, payload = load_checkpoint(tmp_path / "b.best.pt", return_payload=True)
    first = load_checkpoint(tmp_path / "a.best.pt")
    assert payload["step"] == 1 and all(torch.equal(v, first.state_dict()[k]) for k, v in best.state_dict().items())


def test_an_unwritable_metrics_file_is_one_error(moons, tmp_path):
    (tmp_path / "m.metrics.jsonl").mkdir()
    with pytest.raises(FlowDSLError, match="cannot write the metrics file") as err:
        flowdsl.train(moons, "moons", steps=2, batch=16, output=tmp_path / "m.pt", **quiet())
    assert err.value.diagnostics[0].pos.file == str(tmp_path / "m.metrics.jsonl")

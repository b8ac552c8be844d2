"""Resuming a run: the checkpoint must hold training state, come from the same spec and the same data.

Every piece of state a checkpoint gives back (weights, optimiser, random state, schedule,
averages, counters) is restored through :func:`restore`, so that a damaged or foreign piece is
one line naming the file, never a torch traceback.

Example:
    >>> spec = {"file": "a/m.flow", "model": "m", "sources": {"a/m.flow": "flow m {}"}}
    >>> moved = {"file": "b/m.flow", "model": "m", "sources": {"b/m.flow": "flow m {}"}}
    >>> spec_fingerprint(spec) == spec_fingerprint(moved)
    True
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath

from flowdsl.checkpoint import checkpoint_error, load_checkpoint, load_state

__all__ = ["spec_fingerprint", "open_resume", "check_same_data", "restore", "restore_training"]


def spec_fingerprint(spec: dict) -> str:
    """A hash of a model's spec sources that ignores where they lie and what the main file is called
    (used files are named relative to it)."""
    main = spec["file"].replace(os.sep, "/")
    root = posixpath.dirname(main) or "."

    def rel(name: str) -> str:
        name = name.replace(os.sep, "/")
        return "<main>" if name == main else posixpath.relpath(name, root)

    h = hashlib.sha256(spec["model"].encode() + b"\0")
    for name in sorted(spec["sources"], key=rel):
        h.update(rel(name).encode() + b"\0" + spec["sources"][name].encode() + b"\0")
    return h.hexdigest()


def open_resume(path, spec: dict, spec_path):
    """(model, payload) of the checkpoint to resume, refused when it holds no training state or another spec."""
    model, payload = load_checkpoint(path, return_payload=True)
    if "optimizer" not in payload or "step" not in payload:
        raise checkpoint_error(path, "the checkpoint holds no training state (was it written by `flowdsl compile -o`"
                                     " or is it a best checkpoint?)",
                               "train from scratch with -o, or resume the last checkpoint instead")
    if not isinstance(payload["step"], int) or payload["step"] < 0 or not isinstance(payload.get("history", []), list):
        raise checkpoint_error(path, "the checkpoint is damaged: its step or history is not what training writes")
    old = payload["spec"]
    if old["model"] != spec["model"] or spec_fingerprint(old) != spec_fingerprint(spec):
        raise checkpoint_error(path, f"the spec changed since the checkpoint was written: {spec_path} "
                                     f"({spec['model']}) has spec hash {spec_fingerprint(spec)[:12]}, the checkpoint "
                                     f"({old['model']}) {spec_fingerprint(old)[:12]}",
                               "resume with the spec the checkpoint was trained from, or train from scratch")
    return model, payload


def check_same_data(path, payload: dict, now: dict) -> None:
    """Refuse to resume on other data than the checkpoint was trained on (checkpoints without a fingerprint pass)."""
    then = payload.get("data_fingerprint")
    if not isinstance(then, dict):
        return
    differ = [k for k in ("shape", "levels", "train", "test", "sample_sha256") if then.get(k) != now.get(k)]
    if "context_sha256" in then and then.get("context_sha256") != now.get("context_sha256"):
        differ.append("context_sha256")  # checkpoints older than paired data hold no hash of the labels
    if differ:
        what = {"shape": "shape", "levels": "levels", "train": "training examples", "test": "test examples",
                "sample_sha256": "contents", "context_sha256": "the condition's values"}
        detail = ", ".join(f"{what[k]} {then.get(k)} -> {now.get(k)}" if k not in ("sample_sha256", "context_sha256")
                           else what[k] for k in differ)
        raise checkpoint_error(path, f"the checkpoint was trained on other data: '{then.get('name')}', this run "
                                     f"has '{now.get('name')}' (they differ in {detail})",
                               f"resume with --data {then.get('name')}, or train from scratch")


def restore(path, what: str, action) -> None:
    """Run ``action()`` (a ``load_state_dict`` ...), turning any failure into a one-line error about ``path``."""
    try:
        action()
    except Exception as err:  # torch raises ValueError, KeyError, TypeError, RuntimeError, IndexError ...
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise checkpoint_error(path, f"the checkpoint's {what} is damaged or does not fit this run: {detail}",
                               "train from scratch, or resume another copy") from None


def restore_training(path, payload: dict, *, optimizer, schedule, selection: dict, model, device, rank: int,
                     world: int, weight_decay: float):
    """Give the run back the checkpoint's optimiser, random state, schedule, early-stopping counters and
    trained (not averaged) weights; returns (the divergence guard's reference, the best weights or None)."""
    from flowdsl.training.distributed import set_rng_state

    restore(path, "optimizer state", lambda: optimizer.load_state_dict(payload["optimizer"]))
    for group in optimizer.param_groups:
        group["weight_decay"] = weight_decay
    if len(payload.get("rng", [])) == world:
        restore(path, "random state", lambda: set_rng_state(payload["rng"][rank], device))
    if "schedule" in payload:
        restore(path, "schedule state", lambda: schedule.load_state_dict(payload["schedule"]))
    if "selection" in payload:
        def take():
            got = payload["selection"]
            step = got["best_step"]
            if step is not None and not isinstance(step, int):
                raise TypeError(f"best_step {step!r}")
            selection.update(best=float(got["best"]), bad=int(got["bad"]), best_step=step)

        restore(path, "early-stopping state", take)
    guard_best = [math.inf]
    restore(path, "divergence-guard state", lambda: guard_best.__setitem__(0, float(payload.get("guard_best",
                                                                                                math.inf))))
    best = payload.get("best_state_dict")
    if best is not None and not isinstance(best, dict):
        raise checkpoint_error(path, "the checkpoint's best weights are damaged: not a state dict")
    if best is not None:
        load_state(model, best, path, "best state")  # checked now, so that the end of the run cannot fail
    if "raw_state_dict" in payload:
        load_state(model, payload["raw_state_dict"], path, "raw (not averaged) state")
    else:
        load_state(model, payload["state_dict"], path)
    model.to(device)
    return guard_best[0], best

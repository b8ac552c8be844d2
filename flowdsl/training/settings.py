"""The training settings: their defaults, their ranges, and how a resumed run merges them.

A resumed run takes the checkpoint's settings unless told otherwise; ``None`` (and, for
``warmup`` and ``weight_decay``, the default 0) means "not told". Every value is range-checked
here, so the API refuses what the command line's parser refuses (``lr=nan``, ``clip=-1``,
``steps=0``, a seed outside 0 .. 2**32 - 1) with one FlowDSLError.

Example:
    >>> merge_settings({"train": {"lr": 0.01}}, {"steps": 5, "lr": None})["lr"]
    0.01
    >>> merge_settings({}, {"clip": -1.0})
    Traceback (most recent call last):
    flowdsl.errors.FlowDSLError: train: error: clip must be a positive number, got -1.0
"""

from __future__ import annotations

import math

from flowdsl.errors import Diagnostic, FlowDSLError, Pos
from flowdsl.training.schedules import parse_schedule

__all__ = ["DEFAULTS", "merge_settings", "check_settings", "settings_error"]

#: defaults of the training settings (a resumed run takes the checkpoint's unless told otherwise)
DEFAULTS = {"steps": 1000, "batch": 64, "lr": 1e-3, "seed": 0, "clip": None, "eval_every": None, "epochs": None,
            "patience": None, "schedule": None, "warmup": 0, "weight_decay": 0.0, "ema": None, "l2": 0.0}
#: settings whose default value given explicitly does not override a checkpoint's
_DEFAULT_IS_UNSET = {"warmup": 0, "weight_decay": 0.0, "l2": 0.0}


def settings_error(message: str, hint: str | None = None) -> FlowDSLError:
    return FlowDSLError([Diagnostic(Pos("train"), "error", message, hint)])


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(name, v):
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        raise settings_error(f"{name} must be a positive integer, got {v!r}")


def check_settings(cfg: dict, extra: dict | None = None) -> None:
    """Raise a FlowDSLError naming the first setting out of range."""
    for name in ("steps", "batch"):
        _positive_int(name, cfg[name])
    for name in ("eval_every", "epochs", "patience"):
        if cfg[name] is not None:
            _positive_int(name, cfg[name])
    for name, value in (extra or {}).items():  # threads, eval_size: positive integers when given
        if value is not None:
            _positive_int(name, value)
    if not (_number(cfg["lr"]) and math.isfinite(cfg["lr"]) and cfg["lr"] > 0):
        raise settings_error(f"lr must be a positive number, got {cfg['lr']!r}")
    if cfg["clip"] is not None and not (_number(cfg["clip"]) and math.isfinite(cfg["clip"]) and cfg["clip"] > 0):
        raise settings_error(f"clip must be a positive number, got {cfg['clip']!r}")
    seed = cfg["seed"]
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= 2**32 - 1):
        raise settings_error(f"seed must be an integer in 0..{2**32 - 1}, got {seed!r}")
    if not (isinstance(cfg["warmup"], int) and not isinstance(cfg["warmup"], bool) and cfg["warmup"] >= 0):
        raise settings_error(f"warmup must be a non-negative integer, got {cfg['warmup']!r}")
    for name in ("weight_decay", "l2"):
        wd = cfg[name]
        if not (_number(wd) and math.isfinite(wd) and wd >= 0):
            raise settings_error(f"{name} must be a non-negative number, got {wd!r}")
    if cfg["weight_decay"] > 0 and cfg["l2"] > 0:
        raise settings_error("weight_decay (decoupled, AdamW) and l2 (a penalty in the gradient, Adam's "
                             "weight_decay) are two ways to do one thing: give one of them")
    ema = cfg["ema"]
    if ema is not None and not (_number(ema) and 0 < ema < 1):
        raise settings_error(f"ema must be a decay between 0 and 1 (such as 0.999), got {ema!r}")
    parse_schedule(cfg["schedule"])


def merge_settings(payload: dict, given: dict, extra: dict | None = None) -> dict:
    """The defaults, overridden by a checkpoint's settings, overridden by what was given; checked."""
    cfg = dict(DEFAULTS)
    cfg.update(payload.get("train", {}) if isinstance(payload.get("train"), dict) else {})
    cfg.update({k: v for k, v in given.items()
                if v is not None and not (k in _DEFAULT_IS_UNSET and v == _DEFAULT_IS_UNSET[k] and payload)})
    check_settings(cfg, extra)
    return cfg

"""Checkpoints: the spec's source (every file it uses), its hash, the model name, the state and its checksum.

A checkpoint is self-contained: :func:`load_checkpoint` recompiles the model from the stored
sources (never from the disk), so it works anywhere the checkpoint is copied. Writes are
atomic (a temporary file, flushed to disk, renamed into place; temporary files a killed save left
behind are removed by the next save of the same path). Loading uses ``weights_only=True``: a
checkpoint never runs code. Every tensor and value of the payload is covered by a SHA-256
checksum (``checksum``) that loading verifies, so corrupted bytes are an error, never NaN
scores; checkpoints written before the checksum existed load unverified. Whatever is wrong
with a file (truncated, random bytes, a pickle, missing entries, state of the wrong shape) is
one :class:`~flowdsl.errors.FlowDSLError` naming it.

Example:
    >>> import tempfile, os, torch, flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n actnorm\\n}\\n", filename="f.flow")
    >>> path = os.path.join(tempfile.mkdtemp(), "f.pt")
    >>> save_checkpoint(flow, path)
    >>> flowdsl.load(path).input_shape
    (2,)
    >>> _ = open(path, "r+b").truncate(100)
    >>> flowdsl.load(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    flowdsl.errors.FlowDSLError: ...f.pt: error: cannot read the checkpoint: the file is truncated or not a...
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path

import torch

from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_save", "state_checksum", "checkpoint_error", "FORMAT"]

FORMAT = "flowdsl-checkpoint/1"


def checkpoint_error(path, message: str, hint: str | None = None) -> FlowDSLError:
    """A one-line error about the checkpoint file ``path``."""
    return FlowDSLError([Diagnostic(Pos(str(path)), "error", message, hint)])


def _feed(h, value) -> None:
    """Hash ``value`` (nested dicts, lists, tensors, plain values) in a deterministic order."""
    if torch.is_tensor(value):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(b"D%d" % len(value))
        for k in sorted(value, key=repr):
            h.update(repr(k).encode() + b"=")
            _feed(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(b"L%d" % len(value))
        for v in value:
            _feed(h, v)
    else:
        h.update(repr(value).encode() + b";")


def state_checksum(payload: dict) -> str:
    """``sha256:...`` of every entry of a checkpoint payload except the checksum itself.

    >>> state_checksum({"a": torch.zeros(2)}) == state_checksum({"a": torch.zeros(2)})
    True
    >>> state_checksum({"a": torch.zeros(2)}) == state_checksum({"a": torch.ones(2)})
    False
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "checksum"})
    return "sha256:" + h.hexdigest()


def _remove_stale(path: Path) -> None:
    """Remove the temporary files an interrupted save of ``path`` left behind (``NAME????????.tmp``)."""
    stale = re.compile(re.escape(path.name) + r"[A-Za-z0-9_]{8}\.tmp")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        if stale.fullmatch(name):
            try:
                os.unlink(path.parent / name)
            except OSError:
                pass


def atomic_save(obj, path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder, synced and renamed into place."""
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as err:
        raise checkpoint_error(path, f"cannot write the checkpoint: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise checkpoint_error(path, f"cannot write the checkpoint: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(model, path, **extra) -> None:
    """Save a compiled model with its spec sources and a checksum (``extra`` entries are stored alongside)."""
    spec = getattr(model, "spec", None) or {}
    if "sources" not in spec:
        raise ValueError("only models compiled by flowdsl can be saved (no spec attached)")
    payload = {"format": FORMAT, "spec": dict(spec), "state_dict": model.state_dict(), **extra}
    payload["checksum"] = state_checksum(payload)
    atomic_save(payload, path)


def _read(path, map_location) -> dict:
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise checkpoint_error(path, f"cannot read the checkpoint: the file {what}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" in str(err).lower():
            raise checkpoint_error(path, "not a flowdsl checkpoint: the file holds Python objects other than "
                                         "tensors and plain values, which are never loaded (a checkpoint never "
                                         "runs code)") from None
        raise checkpoint_error(path, "cannot read the checkpoint: the file is truncated or not a checkpoint") from None
    except MemoryError:
        raise checkpoint_error(path, "cannot read the checkpoint: it does not fit in memory") from None
    except Exception:  # torch.load raises RuntimeError, EOFError, ValueError, ... on damaged zip archives
        raise checkpoint_error(path, "cannot read the checkpoint: the file is truncated or not a checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise checkpoint_error(path, "not a flowdsl checkpoint")
    return payload


def _check_layout(path, payload: dict) -> dict:
    """The payload's spec, after checking that the entries a model is rebuilt from exist and have their types."""
    spec = payload.get("spec")
    if not isinstance(spec, dict):
        raise checkpoint_error(path, "the checkpoint is damaged: it has no 'spec' entry")
    for key in ("file", "model", "hash", "sources"):
        if key not in spec:
            raise checkpoint_error(path, f"the checkpoint is damaged: its spec has no '{key}' entry")
    sources = spec["sources"]
    if not (isinstance(sources, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items())
            and isinstance(spec["file"], str) and spec["file"] in sources and isinstance(spec["model"], str)):
        raise checkpoint_error(path, "the checkpoint is damaged: its spec sources are not text files by name")
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise checkpoint_error(path, "the checkpoint is damaged: it has no 'state_dict' entry")
    if "checksum" in payload and payload["checksum"] != state_checksum(payload):
        raise checkpoint_error(path, "the checkpoint is corrupted: its contents do not match its checksum",
                               "the file was damaged after it was written; use another copy or train again")
    return spec


def load_state(model, state, path, what: str = "state") -> None:
    """``model.load_state_dict(state)``, or a one-line error naming ``path`` when it does not fit."""
    try:
        model.load_state_dict(state)
    except Exception as err:  # RuntimeError (shapes, keys), TypeError/AttributeError (not tensors)
        detail = " ".join(str(err).split())
        if len(detail) > 300:
            detail = detail[:297] + "..."
        raise checkpoint_error(path, f"the checkpoint's {what} does not fit model '{model.name}': {detail}") from None


def load_checkpoint(path, map_location=None, return_payload: bool = False):
    """Recompile the model from the checkpoint's sources, verify the checksum and restore the state."""
    from flowdsl.analysis.analyze import analyze_unit
    from flowdsl.language.loader import load_source

    payload = _read(path, map_location)
    spec = _check_layout(path, payload)
    sources = spec["sources"]
    unit = load_source(sources[spec["file"]], spec["file"], files=sources)
    if unit.source_hash != spec["hash"]:
        raise checkpoint_error(path, "the checkpoint's sources do not match its hash")
    analysis = analyze_unit(unit)
    if not analysis.ok:
        raise analysis.error()
    if spec["model"] not in analysis.models:
        raise checkpoint_error(path, f"the checkpoint is damaged: its sources define no model '{spec['model']}'")
    from flowdsl.runtime.compiler import compile_model

    model = compile_model(analysis.model(spec["model"]), unit)
    load_state(model, payload["state_dict"], path)
    if map_location is not None:
        model.to(map_location)
    return (model, payload) if return_payload else model

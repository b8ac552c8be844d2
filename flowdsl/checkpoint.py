"""Checkpoints: the spec's source (every file it uses), its hash, the model name and the state.

A checkpoint is self-contained: :func:`load_checkpoint` recompiles the model from the stored
sources (never from the disk), so it works anywhere the checkpoint is copied. Writes are
atomic (a temporary file renamed into place). Loading uses ``weights_only=True``: a
checkpoint never runs code.

Example:
    >>> import tempfile, os, torch, flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n actnorm\\n}\\n", filename="f.flow")
    >>> path = os.path.join(tempfile.mkdtemp(), "f.pt")
    >>> save_checkpoint(flow, path)
    >>> flowdsl.load(path).input_shape
    (2,)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = "flowdsl-checkpoint/1"


def atomic_save(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(model, path, **extra) -> None:
    """Save a compiled model with its spec sources (``extra`` entries are stored alongside)."""
    spec = getattr(model, "spec", None) or {}
    if "sources" not in spec:
        raise ValueError("only models compiled by flowdsl can be saved (no spec attached)")
    payload = {"format": FORMAT, "spec": dict(spec), "state_dict": model.state_dict(), **extra}
    atomic_save(payload, path)


def load_checkpoint(path, map_location=None, return_payload: bool = False):
    """Recompile the model from the checkpoint's sources and restore its state."""
    from flowdsl.analysis.analyze import analyze_unit
    from flowdsl.language.loader import load_source

    try:
        payload = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise FlowDSLError([Diagnostic(Pos(str(path)), "error", f"cannot read the checkpoint: {err}")]) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FlowDSLError([Diagnostic(Pos(str(path)), "error", "not a flowdsl checkpoint")])
    spec = payload["spec"]
    sources = spec["sources"]
    unit = load_source(sources[spec["file"]], spec["file"], files=sources)
    if unit.source_hash != spec["hash"]:
        raise FlowDSLError([Diagnostic(Pos(str(path)), "error", "the checkpoint's sources do not match its hash")])
    analysis = analyze_unit(unit)
    if not analysis.ok:
        raise analysis.error()
    from flowdsl.runtime.compiler import compile_model

    model = compile_model(analysis.model(spec["model"]), unit)
    model.load_state_dict(payload["state_dict"])
    if map_location is not None:
        model.to(map_location)
    return (model, payload) if return_payload else model

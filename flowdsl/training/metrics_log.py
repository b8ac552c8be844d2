"""The metrics of a run: JSON lines next to the checkpoint, and TensorBoard when it is installed.

Each line of ``model.metrics.jsonl`` (beside ``model.pt``) is one event: ``start`` (the data and
the settings), ``eval`` (step, epoch, learning rate, the running-mean training loss and the
validation NLL, in nats and bits/dim, the best step so far), ``stop`` (why the run ended) and
``test`` (the test split, scored once at the end, with the weights that were selected). A resumed
run drops the lines after the step it resumes from, so the file describes one run. With a
TensorBoard folder, the same scalars are written there when ``torch.utils.tensorboard`` can be
imported (``pip install tensorboard``); otherwise the run says so once and goes on.

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.metrics.jsonl")
    >>> log = MetricsLog(path)
    >>> log.write("eval", step=2, valid_nats=1.5)
    >>> log.close()
    >>> json.loads(open(path).read())["valid_nats"]
    1.5
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["MetricsLog", "metrics_path", "best_path"]


def best_path(output) -> Path:
    """Where the best checkpoint of ``output`` goes: ``model.pt`` -> ``model.best.pt``."""
    p = Path(output)
    return p.with_name(p.stem + ".best" + p.suffix) if p.suffix else p.with_name(p.name + ".best")


def metrics_path(output) -> Path:
    """Where the metrics of ``output`` go: ``model.pt`` -> ``model.metrics.jsonl``."""
    p = Path(output)
    return p.with_name((p.stem if p.suffix else p.name) + ".metrics.jsonl")


def _plain(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLog:
    """Appends events to a JSON-lines file (None: no file) and scalars to TensorBoard (None: none)."""

    def __init__(self, path=None, tensorboard=None, resume_step: int | None = None, say=None):
        self.path = Path(path) if path is not None else None
        self.start = time.perf_counter()
        self._file = None
        self._board = None
        if self.path is not None:
            kept = []
            if resume_step is not None and self.path.exists():
                for line in self.path.read_text(errors="replace").splitlines() if self.path.is_file() else []:
                    try:
                        step = json.loads(line).get("step", 0)
                    except (ValueError, AttributeError):
                        continue
                    if isinstance(step, int) and step <= resume_step:
                        kept.append(line)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "w", encoding="utf-8")
                self._file.write("".join(line + "\n" for line in kept))
            except OSError as err:
                raise FlowDSLError([Diagnostic(Pos(str(self.path)), "error",
                                               f"cannot write the metrics file: {err.strerror or err}",
                                               "pass --metrics PATH, or --no-metrics")]) from None
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if say is not None:
                    say("TensorBoard logging is off: torch.utils.tensorboard cannot be imported "
                        "(pip install tensorboard)")
            else:
                self._board = SummaryWriter(str(tensorboard), purge_step=resume_step)

    def write(self, event: str, **values) -> None:
        record = {"event": event, **{k: _plain(v) for k, v in values.items()},
                  "wall_s": round(time.perf_counter() - self.start, 3), "cpu_s": round(time.process_time(), 3)}
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        if self._board is not None and "step" in values:
            for k, v in values.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._board.add_scalar(f"{event}/{k}", v, values["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._board is not None:
            self._board.close()
            self._board = None

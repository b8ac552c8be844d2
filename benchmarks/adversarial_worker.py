"""The child process of the adversarial benchmark: runs a batch of cases under limits and classifies each.

Run as ``python -m benchmarks.adversarial_worker CASES.pkl RESULTS.jsonl START TIMEOUT``: it limits
its own address space (4 GB, ``resource.setrlimit``) and torch to one thread, builds the fixtures
(small compiled checkpoints), then runs cases ``START..`` in order. Before each case it writes
``{"start": i}`` to RESULTS, after it ``{"i": i, "outcome": ..., ...}``: the parent
(:mod:`benchmarks.adversarial`) sees which case a dead or stuck child was running. A case runs
in-process (``flowdsl.cli.main.main(argv)`` with captured output, or an API call), with a SIGALRM
per-case timeout.

Outcomes (the definitions of docs/reliability.md):

- ``ok``: succeeded, and its oracle (if any) holds;
- ``refused``: a clean refusal: exit status 1 or 2 with a ``file:line:col: error:`` diagnostic or one
  ``...: error: ...`` line; an API call raised :class:`flowdsl.errors.FlowDSLError`;
- ``traceback``: an exception escaped ``main()`` or the API raised anything else, or output has a traceback;
- ``hang``: past the per-case timeout; ``oom``: MemoryError, an allocator failure, or the child died;
- ``internal``: exit status 70 or an ``internal error`` diagnostic;
- ``wrong``: a silent wrong result: success where a refusal is due, an oracle failed (non-finite or
  misshapen numbers, a leaked secret), a failure without a message, or a refusal of valid input.

Example:
    >>> classify_cli(1, "", "s.flow:2:5: error: unknown layer 'x'", "any")
    ('refused', "s.flow:2:5: error: unknown layer 'x'")
    >>> classify_cli(0, "ok", "", "refuse")[0]
    'wrong'
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["classify_cli", "main"]

MEMORY_LIMIT = 4_000_000_000
_CLEAN = re.compile(r"^\S.*?: (error|warning): \S", re.M)
_OOM = re.compile(r"out of memory|can't allocate memory|MemoryError|Cannot allocate memory|DefaultCPUAllocator")


class CaseTimeout(BaseException):
    """Raised by SIGALRM in the case that ran past its time."""


def classify_cli(rc, out: str, err: str, expect: str, oracle_problem: str = "") -> tuple[str, str]:
    """``(outcome, detail)`` of a CLI run from its exit status and output."""
    text = out + "\n" + err
    if "Traceback (most recent call last)" in text:
        return "traceback", _tail(err)
    if _OOM.search(text):
        return "oom", _tail(err)
    if rc == 70 or "internal error" in text:
        return "internal", _tail(err)
    if rc == 0:
        if expect == "refuse":
            return "wrong", "exit 0 where a refusal is due: " + _tail(out)
        if oracle_problem:
            return "wrong", oracle_problem
        return "ok", ""
    if not _CLEAN.search(err):
        return "wrong", f"exit {rc} without an error message: {_tail(err)}"
    if expect == "ok":
        return "wrong", "refused valid input: " + _tail(err)
    return "refused", _tail(err, 160)


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


def _alarm(signum, frame):
    raise CaseTimeout()


def _limit() -> None:
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ValueError, OSError):  # pragma: no cover - a platform without the limit
        pass


def _materialise(case, fixtures: dict[str, str], folder: Path) -> dict[str, str]:
    """Write the case's files into ``folder``; return the placeholders (``{ck}``, ``{dir}``, ...)."""
    from benchmarks.adversarial_files import make_file

    names = dict(fixtures, dir=str(folder))
    for rel, content in case.files.items():
        path = folder / rel
        if content is None:  # a folder
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            make_file(content, names, path)
    return names


def _run_cli(case, names) -> tuple[str, str, float]:
    from flowdsl.cli.main import main

    argv = [a.format(**names) for a in case.argv]
    out, err = io.StringIO(), io.StringIO()
    rc = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as stop:
            rc = stop.code if isinstance(stop.code, int) else 2
        except MemoryError as boom:
            return "oom", f"MemoryError escaped main(): {boom}", 0.0
        except CaseTimeout:
            raise
        except Exception as boom:  # escaped main(): a user would see a traceback
            return "traceback", f"{type(boom).__name__}: {_tail(str(boom))}", 0.0
    problem = ""
    if rc == 0 and case.oracle:
        from benchmarks.adversarial_files import cli_oracle

        problem = cli_oracle(case.oracle, out.getvalue(), err.getvalue(), names)
    outcome, detail = classify_cli(rc, out.getvalue(), err.getvalue(), case.expect, problem)
    return outcome, detail, 0.0


def _run_api(case, names) -> tuple[str, str, float]:
    from benchmarks.adversarial_api import run_api

    return run_api(case, names)


def run_case(case, fixtures, root: Path) -> dict:
    folder = Path(tempfile.mkdtemp(dir=root))
    cwd = os.getcwd()
    t0 = time.perf_counter()
    try:
        os.chdir(folder)
        names = _materialise(case, fixtures, folder)
        outcome, detail, _ = _run_cli(case, names) if case.action == "cli" else _run_api(case, names)
    except CaseTimeout:
        outcome, detail = "hang", "past the per-case timeout"
    except MemoryError:
        outcome, detail = "oom", "MemoryError"
    finally:
        os.chdir(cwd)
        shutil.rmtree(folder, ignore_errors=True)
    return {"outcome": outcome, "detail": detail, "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    cases_file, results_file, start, timeout = (argv or sys.argv[1:])[:4]
    _limit()
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="adv-hyp-"))
    import torch

    torch.set_num_threads(1)
    from benchmarks.adversarial_files import build_fixtures

    with open(cases_file, "rb") as f:
        cases = pickle.load(f)  # written by our own parent process
    root = Path(tempfile.mkdtemp(prefix="adv-"))
    fixtures = build_fixtures(root / "fixtures")
    signal.signal(signal.SIGALRM, _alarm)
    with open(results_file, "a", buffering=1) as log:
        for i in range(int(start), len(cases)):
            log.write(json.dumps({"start": i}) + "\n")
            signal.alarm(int(float(timeout)))
            try:
                result = run_case(cases[i], fixtures, root)
            finally:
                signal.alarm(0)
            log.write(json.dumps({"i": i, **result}) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

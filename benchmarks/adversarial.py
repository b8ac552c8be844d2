"""The adversarial benchmark: thousands of hostile inputs, each run under limits and classified.

``python -m benchmarks.adversarial [--quick] [--doc] [--family F]... [--jobs N] [--timeout S]``
generates the cases of every family (:mod:`benchmarks.adversarial_cases`, ``_files``, ``_api``),
runs them in worker processes (:mod:`benchmarks.adversarial_worker`: 4 GB address space, one
thread, a per-case timeout, many cases per process; a worker that dies or hangs is replaced and
the case it was running is recorded as ``oom`` or ``hang``), and prints the counts per family and
the slowest input. ``--quick`` runs a bounded subset (CI: ``tests/test_adversarial_benchmark.py``);
``--doc`` writes the table into docs/reliability.md.

Example:
    >>> sorted(FAMILIES)[:3]
    ['api', 'api-ar', 'api-limits']
    >>> BAD
    ('traceback', 'hang', 'oom', 'internal', 'wrong')
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["FAMILIES", "OUTCOMES", "BAD", "generate", "run_cases", "summarise", "table", "main"]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
OUTCOMES = ("ok", "refused", "traceback", "hang", "oom", "internal", "wrong")
BAD = OUTCOMES[2:]
BEGIN, END = "<!-- adversarial:begin -->", "<!-- adversarial:end -->"


def _spec(command):
    def gen(n, quick):
        from benchmarks.adversarial_cases import spec_cases

        return spec_cases(command, n, seed=1 if quick else 0)
    return gen


def _simple(name):
    def gen(n, quick):
        import benchmarks.adversarial_api as api
        import benchmarks.adversarial_cases as cases
        import benchmarks.adversarial_files as files

        fn = {"use": cases.use_cases, "size": cases.size_cases, "cli": files.cli_cases,
              "checkpoint": files.checkpoint_cases, "data": files.data_cases, "api": api.api_cases}[name]
        everything = fn(100_000) if name != "size" else fn(n if not quick else 40)
        return everything
    return gen


#: family -> (generator, inputs in a full run, in a quick run, what it covers)
FAMILIES = {
    "spec-check": (_spec("check"), 2800, 40, "generated specs (mutations, random registry calls, valid), `check`"),
    "spec-compile": (_spec("compile"), 700, 10, "generated specs, `compile`"),
    "use-graph": (_simple("use"), 300, 20, "`use` graphs: chains, diamonds, spellings, cycles, non-spec targets"),
    "size": (_simple("size"), 120, 8, "size bombs: inputs, causality, levels, widths, files, texture PNGs"),
    "cli-args": (_simple("cli"), 400, 40, "command-line arguments of every command"),
    "checkpoint": (_simple("checkpoint"), 400, 20, "damaged checkpoints under sample/eval/train/complete"),
    "data-file": (_simple("data"), 200, 20, "the user's .npy/.npz files and PNG folders"),
    "api": (None, 0, 40, "API functions and compiled flows: wrong kinds, values, shapes, dtypes"),
    "api-ar": (None, 0, 15, "compiled autoregressive models: inputs, sample counts, mask_index"),
    "api-limits": (None, 0, 5, "flowdsl.Limits values"),
}


def _pick(cases: list, n: int) -> list:
    """``n`` cases spread evenly over ``cases`` (all of them when there are fewer)."""
    if len(cases) <= n:
        return cases
    step = len(cases) / n
    return [cases[int(k * step)] for k in range(n)]


def generate(families=None, quick: bool = False) -> list:
    """The cases of ``families`` (default: all), full or quick."""
    families = list(families or FAMILIES)
    out = []
    api_wanted = [f for f in families if f.startswith("api")]
    for name in families:
        gen, full, small, _ = FAMILIES[name]
        if gen is None:
            continue
        n = small if quick else full
        out += _pick(gen(n, quick), n)
    if api_wanted:
        from benchmarks.adversarial_api import api_cases

        every = api_cases(100_000)
        for name in api_wanted:
            mine = [c for c in every if c.family == name]
            out += _pick(mine, FAMILIES[name][2]) if quick else mine
    return out


def _run_chunk(cases: list, timeout: float, log_dir: Path, tag: str) -> list[dict]:
    """Run ``cases`` in worker processes (a new one after a death or a hang); one result per case."""
    cases_file = log_dir / f"{tag}.pkl"
    with open(cases_file, "wb") as f:
        pickle.dump(cases, f)
    results: dict[int, dict] = {}
    start = 0
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    while start < len(cases):
        results_file = log_dir / f"{tag}-{start}.jsonl"
        err_file = log_dir / f"{tag}-{start}.err"
        with open(err_file, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "benchmarks.adversarial_worker", str(cases_file),
                                     str(results_file), str(start), str(timeout)], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        current, since, seen, pending = None, time.monotonic(), 0, b""
        while True:
            rc = proc.poll()
            if results_file.exists():
                with open(results_file, "rb") as f:
                    f.seek(seen)
                    chunk = f.read()
                seen += len(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    rec = json.loads(line)
                    if "start" in rec:
                        current, since = rec["start"], time.monotonic()
                    else:
                        results[rec["i"]] = rec
            if rc is not None:
                break
            if current is not None and current not in results and time.monotonic() - since > timeout + 20:
                os.killpg(proc.pid, signal.SIGKILL)  # stuck where SIGALRM cannot reach
                proc.wait()
                results[current] = {"i": current, "outcome": "hang", "detail": "killed past the timeout",
                                    "seconds": time.monotonic() - since}
                break
            time.sleep(0.05)
        if current is None:  # the worker died before its first case: the set-up failed
            tail = err_file.read_text(errors="replace")[-400:]
            for i in range(start, len(cases)):
                results[i] = {"i": i, "outcome": "traceback", "detail": f"worker set-up failed: {tail}", "seconds": 0}
            break
        if current not in results:  # died during a case
            tail = " ".join(err_file.read_text(errors="replace").split())[-300:]
            oom = proc.returncode in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT) or "MemoryError" in tail \
                or "alloc" in tail
            results[current] = {"i": current, "outcome": "oom" if oom else "traceback",
                                "detail": f"worker died (status {proc.returncode}): {tail}",
                                "seconds": time.monotonic() - since}
        start = max(results) + 1 if results else start + 1
    return [results.get(i, {"i": i, "outcome": "hang", "detail": "never ran", "seconds": 0})
            for i in range(len(cases))]


def run_cases(cases: list, timeout: float = 60, jobs: int = 1) -> list[dict]:
    """Results (outcome, detail, seconds, family, name) of ``cases``, in order."""
    chunks = max(1, min(jobs, len(cases)))
    size = -(-len(cases) // chunks)
    with tempfile.TemporaryDirectory(prefix="adversarial-") as tmp:
        with ThreadPoolExecutor(chunks) as pool:
            parts = list(pool.map(lambda k: _run_chunk(cases[k * size:(k + 1) * size], timeout, Path(tmp), f"c{k}"),
                                  range(chunks)))
    results = [r for part in parts for r in part]
    for case, r in zip(cases, results):
        r["family"], r["name"] = case.family, case.name
    return results


def summarise(results: list[dict]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        row = counts.setdefault(r["family"], dict.fromkeys(OUTCOMES, 0))
        row[r["outcome"]] += 1
    return counts


def table(results: list[dict]) -> str:
    """The Markdown table: one row per family, then the total, and the slowest input."""
    counts = summarise(results)
    head = "| family | inputs | " + " | ".join(OUTCOMES) + " |\n|" + " --- |" * (len(OUTCOMES) + 2)
    rows = [head]
    total = dict.fromkeys(OUTCOMES, 0)
    for family in [f for f in FAMILIES if f in counts]:
        row = counts[family]
        for k in OUTCOMES:
            total[k] += row[k]
        rows.append(f"| {family} | {sum(row.values()):,} | " + " | ".join(f"{row[k]:,}" for k in OUTCOMES) + " |")
    rows.append(f"| **all** | {sum(total.values()):,} | " + " | ".join(f"{total[k]:,}" for k in OUTCOMES) + " |")
    slow = max(results, key=lambda r: r.get("seconds", 0))
    rows.append(f"\nSlowest input: {slow['family']}: {slow['name']} ({slow.get('seconds', 0):.1f} s, "
                f"{slow['outcome']}).")
    return "\n".join(rows)


def bad_examples(results: list[dict], per_family: int = 5) -> str:
    lines, seen = [], {}
    for r in results:
        if r["outcome"] in BAD and seen.get(r["family"], 0) < per_family:
            seen[r["family"]] = seen.get(r["family"], 0) + 1
            lines.append(f"  {r['family']}: {r['outcome']}: {r['name']}: {r['detail'][:300]}")
    return "\n".join(lines)


def _write_doc(text: str, command: str, seconds: float) -> None:
    machine = f"{platform.machine()}, {os.cpu_count()} CPU(s) seen, Python {platform.python_version()}"
    block = (f"{BEGIN}\nCommand: `{command}` ({seconds / 60:.1f} min on {machine}; a 2-core shared CPU, "
             f"4 GB address space and one thread per worker, {time.strftime('%Y-%m-%d')}).\n\n{text}\n{END}")
    doc = DOC.read_text() if DOC.exists() else ""
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc += "\n" + block + "\n"
    DOC.write_text(doc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.adversarial", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a bounded subset of every family (CI)")
    p.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only this family (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes at once (default 1)")
    p.add_argument("--timeout", type=float, default=60, help="seconds per input (default 60)")
    p.add_argument("--doc", action="store_true", help="write the table into docs/reliability.md")
    p.add_argument("--json", help="write every result to this JSON file")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cases = generate(args.family, args.quick)
    print(f"{len(cases):,} inputs generated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    results = run_cases(cases, args.timeout, args.jobs)
    seconds = time.perf_counter() - t0
    text = table(results)
    print(text)
    bad = bad_examples(results)
    if bad:
        print("\nBad outcomes (first of each family):\n" + bad)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.doc:
        _write_doc(text, "python -m benchmarks.adversarial " + " ".join(argv if argv is not None else sys.argv[1:]),
                   seconds)
    return 1 if any(r["outcome"] in BAD for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

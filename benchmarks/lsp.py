"""The language server on large files: time from an edit to its diagnostics, over the real stdio server.

``python benchmarks/lsp.py [--repeat N] [--layers N]`` starts ``python -m flowdsl.editor`` as a
subprocess (JSON-RPC over stdio, as an editor does), opens generated files of ``--layers`` layers
(default 10,000) and measures, as the median of ``--repeat`` runs (default 3): didOpen ->
publishDiagnostics, a one-line didChange -> publishDiagnostics (including the debounce), an
error at the last layer, and the latency of hover and completion on the big file (while a check
runs, and after). The figures in
docs/editors.md come from this script.

Example:
    >>> text = big_spec("planar", 3)
    >>> text.count("planar"), text.splitlines()[1]
    (3, '    input x: vector[4]')
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowdsl.editor.server import DEBOUNCE_S  # noqa: E402
from flowdsl.editor.stdio_client import LspClient  # noqa: E402

__all__ = ["big_spec", "measure", "main"]

KINDS = {
    "planar": ("vector[4]", ["planar"]),
    "mixed": ("vector[16]", ["actnorm", "coupling affine(mask=half, net=mlp(hidden=[32]))", "permute(reverse)",
                             "coupling rq_spline(mask=half)", "batchnorm"]),
}


def big_spec(kind: str, layers: int) -> str:
    """A flow of ``layers`` layers, one per line."""
    shape, cycle = KINDS.get(kind, ("vector[4]", [kind]))
    body = "".join(f"    {cycle[i % len(cycle)]}\n" for i in range(layers))
    return f"flow big {{\n    input x: {shape}\n{body}}}\n"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(client: LspClient, folder: Path, kind: str, layers: int, run: int) -> dict[str, float]:
    text = big_spec(kind, layers)
    path = folder / f"{kind}_{run}.flow"
    path.write_text(text)
    uri = path.resolve().as_uri()
    out: dict[str, float] = {}
    start = time.perf_counter()
    client.open(uri, text)
    diags = client.diagnostics(uri, 1, timeout=600)
    out["open -> diagnostics"] = time.perf_counter() - start
    assert not [d for d in diags if d["severity"] == 1], diags[:3]
    edited = text.replace("    input x:", "    # edited\n    input x:", 1)
    start = time.perf_counter()
    client.change(uri, edited, 2)
    client.diagnostics(uri, 2, timeout=600)
    out["edit -> diagnostics"] = time.perf_counter() - start
    broken = edited[: edited.rindex("    ")] + "    nosuchlayer\n}\n"
    start = time.perf_counter()
    client.change(uri, broken, 3)
    diags = client.diagnostics(uri, 3, timeout=600)
    out["error at the last layer -> diagnostics"] = time.perf_counter() - start
    assert any("nosuchlayer" in d["message"] for d in diags)
    line = layers // 2 + 3
    at = {"textDocument": {"uri": uri}, "position": {"line": line, "character": 6}}
    client.change(uri, edited, 4)
    time.sleep(DEBOUNCE_S + 0.25)  # the check of version 4 is running now
    out["hover during a check"] = _timed(lambda: client.request("textDocument/hover", at))
    out["completion during a check"] = _timed(lambda: client.request("textDocument/completion", at))
    client.diagnostics(uri, 4, timeout=600)
    out["hover"] = _timed(lambda: client.request("textDocument/hover", at))
    out["completion"] = _timed(lambda: client.request("textDocument/completion", at))
    client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--layers", type=int, default=10_000)
    args = ap.parse_args(argv)
    client = LspClient()
    started = _timed(client.initialize)
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            for run in range(args.repeat):
                for name, seconds in measure(client, Path(tmp), kind, args.layers, run).items():
                    rows.setdefault(kind, {}).setdefault(name, []).append(seconds)
    client.close()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {load} (1, 5, 15 min) at the end; debounce {DEBOUNCE_S} s; "
          f"server start + initialize {started:.2f} s")
    print(f"{args.layers:,}-layer files, median of {args.repeat} runs (seconds)\n")
    names = list(next(iter(rows.values())))
    print("| file | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for kind, measured in rows.items():
        desc = f"{kind} ({' / '.join(c.split('(')[0] for c in KINDS[kind][1])})"
        print(f"| {desc} | " + " | ".join(f"{statistics.median(measured[n]):.2f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

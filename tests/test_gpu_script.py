"""The GPU check's CPU dry run: ``benchmarks/gpu.sh --quick --cpu`` passes every step, so device time goes on the GPU.

- the dry run (one torch thread, no CUDA) says it uses no CUDA, runs every step of the device run
  but the install, passes each, and its CUDA tests ran on the CPU (none failed, none skipped for
  want of a device);
- the script's arguments: ``--help``, an unknown argument (exit 2), ``--only``;
- the paper-size training specs pass the checker (their 28x28 sizes, without training them).

The dry run takes about 35 s of CPU time (``slow``: ``-m 'not slow'`` leaves it out).

Example (what the dry run reads back):
    >>> summary_rows("| step | status | seconds |\\n| --- | --- | ---: |\\n| env | pass | 1.0 |\\n")
    {'env': 'pass'}
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
DEVICE_STEPS = ["install", "env", "compile-all", "tests", "bench-f32", "bench-bf16", "compile-f32", "compile-bf16",
                "cached-sampling", "train"]


def summary_rows(text: str) -> dict[str, str]:
    """``{step: status}`` from the summary table (the header, the rule and the total left out)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("step", "---", "total"):
            rows[cells[0]] = cells[1]
    return rows


def _run(args, out: Path, timeout: float = 300):
    env = dict(os.environ, OUT=str(out), OMP_NUM_THREADS="1", FLOWDSL_CACHE=str(out / "cache"),
               PYTHON=sys.executable)
    env.pop("FLOWDSL_TEST_DEVICE", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_cpu_dry_run_passes_every_step(tmp_path):
    result = _run(["--quick", "--cpu"], tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "--cpu: no CUDA is used" in result.stdout
    rows = summary_rows(summary)
    assert list(rows) == DEVICE_STEPS[1:], rows  # all but the install, in the device run's order
    assert set(rows.values()) == {"pass"}, rows
    assert "| total | all passed |" in summary
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert int(suite.get("tests")) >= 30 and int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0
    log = (tmp_path / "gpu.log").read_text()
    assert "no CUDA device" not in log.split("=== tests", 1)[1].split("=== bench-f32", 1)[0]  # ran, not skipped
    results = (tmp_path / "results.md").read_text()
    for table in ("| pairing | library |", "| model | train compiled/eager |", "# Cached vs naive sampling",
                  "## Paper-size training runs"):
        assert table in results, table


def test_help_and_bad_arguments(tmp_path):
    assert "prepare" in _run(["--help"], tmp_path, timeout=30).stdout
    bad = _run(["--fast"], tmp_path, timeout=30)
    assert bad.returncode == 2 and "unknown argument --fast" in bad.stderr


def test_only_runs_the_named_steps(tmp_path):
    result = _run(["--cpu", "--only", "compile-all"], tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout[-2000:]
    assert summary_rows((tmp_path / "summary.md").read_text()) == {"compile-all": "pass"}


def test_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_paper_size_specs_pass_the_checker():
    sys.path.insert(0, str(ROOT))
    import flowdsl
    from benchmarks.gpu_check import gated_spec, realnvp_spec

    for text, name in ((gated_spec(28, 2), "gated.ar"), (realnvp_spec(28, 256), "realnvp.flow")):
        analysis = flowdsl.analyze_source(text, filename=name)
        assert analysis.ok, [d.message for d in analysis.diagnostics if d.severity == "error"]
        assert analysis.model().params > 500_000

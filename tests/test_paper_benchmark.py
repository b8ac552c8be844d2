"""specs/paper/ checks and compiles; ``benchmarks/paper.py --quick`` trains every row a few steps and
writes its table; the known entropies of the 2-D densities are right (exact area, numerical integral)."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import flowdsl
from flowdsl.api import analyze_file

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import paper  # noqa: E402

SPECS = sorted((ROOT / "specs" / "paper").glob("*.*"))


def test_every_row_has_its_spec_and_every_spec_a_row():
    named = {r.spec for r in paper.ROWS} | {f"{flow}.flow" for flow, _ in paper.TOYS}
    assert named == {p.name for p in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_paper_spec_checks_and_compiles(path):
    analysis = analyze_file(path)
    assert analysis.ok, [d.message for d in analysis.diagnostics if d.severity == "error"]
    model = flowdsl.compile_file(path)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert "Open choices" in path.read_text()  # every spec says which open hyperparameters it chose


def test_known_entropies():
    assert paper.entropy("checkerboard") == (math.log(32), 0.0)
    h, se = paper.entropy("8gaussians", n=100_000)
    # the same integral on a grid: -sum p log p dA over [-5, 5]^2
    g = np.linspace(-5, 5, 801)
    xx, yy = np.meshgrid(g, g)
    angles = np.arange(8) * math.pi / 4
    centres = np.stack([np.cos(angles), np.sin(angles)], 1) * 4 / 1.414
    sd = 0.5 / 1.414
    d2 = (xx[..., None] - centres[:, 0]) ** 2 + (yy[..., None] - centres[:, 1]) ** 2
    p = np.exp(-d2 / (2 * sd * sd)).sum(-1) / (8 * 2 * math.pi * sd * sd)
    da = (g[1] - g[0]) ** 2
    exact = float(-(p * np.log(np.maximum(p, 1e-300))).sum() * da)
    assert abs((p.sum() * da) - 1) < 1e-6
    assert abs(h - exact) < 4 * se, (h, se, exact)


def test_quick_run_trains_every_row_and_writes_the_table(tmp_path):
    md = tmp_path / "results.md"
    md.write_text("# Results\n\nbefore\n")
    with pytest.warns(UserWarning):  # CI has no MNIST wheel: the subset stands in, with a warning
        assert paper.main(["--quick", "--out", str(tmp_path / "runs"), "--write", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("# Results\n\nbefore\n") and paper.BEGIN in text
    for row in paper.ROWS:
        assert f"| {row.name} |" in text
    assert text.count("needs a GPU") == sum(r.gpu for r in paper.ROWS)
    assert "maf_2d on checkerboard" in text and "KL +" in text

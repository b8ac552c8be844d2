"""`flowdsl test` and `pytest --flowdsl`: every property of every model, a table, exit 1 on a failure."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from flowdsl.cli.main import main
from flowdsl.plugins import unregister

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "user_layer"

BROKEN = '''
import torch
from flowdsl.plugins import layer
from flowdsl.runtime.base import Bijection


@layer("t_cli_drop", dependency="elementwise")
class DropsATerm(Bijection):
    """y = 2 x, but the log-det forgets the last dimension."""

    def __init__(self, shape):
        super().__init__()

    def forward(self, x, context=None):
        return 2 * x, torch.full((x.shape[0],), (x.shape[1] - 1) * 0.6931471805599453, dtype=x.dtype)

    def inverse(self, y, context=None):
        return y / 2, torch.full((y.shape[0],), -(y.shape[1] - 1) * 0.6931471805599453, dtype=y.dtype)
'''


@pytest.fixture
def broken(tmp_path):
    plugin = tmp_path / "broken_layers.py"
    plugin.write_text(BROKEN)
    spec = tmp_path / "broken.flow"
    spec.write_text("flow broken {\n    input x: vector[3]\n    t_cli_drop\n    actnorm\n}\n")
    yield plugin, spec
    from flowdsl.layers.registry import LAYERS

    if "t_cli_drop" in LAYERS.members:
        unregister("t_cli_drop")


def test_bundled_specs_pass(capsys):
    specs = [str(ROOT / "specs" / name) for name in ("nice.flow", "realnvp_2d.flow", "fvbn.ar")
             if (ROOT / "specs" / name).exists()]
    assert main(["test", *specs, "--examples", "3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["spec", "model", "property", "verdict", "worst", "error", "examples",
                                           "configuration"]
    assert any(line.split()[:4] == ["nice.flow", "nice", "bijection", "pass"] for line in out.splitlines())
    assert " FAIL " not in out and "15 passed or skipped, 0 failed" in out


def test_a_broken_layer_fails_with_a_report(broken, capsys):
    plugin, spec = broken
    assert main(["test", str(spec), "--plugin", str(plugin), "--examples", "10"]) == 1
    out = capsys.readouterr().out
    rows = {line.split()[2]: line.split()[3] for line in out.splitlines()[2:7]}
    assert rows == {"params": "pass", "shapes": "pass", "bijection": "FAIL", "structure": "pass", "sampling": "pass"}
    assert "bijection fails for CompiledFlow 'broken'" in out
    assert "the log-det differs from the brute-force log|det J|" in out and "minimal failing example:" in out


def test_errors_and_bad_options(tmp_path, capsys):
    bad = tmp_path / "bad.flow"
    bad.write_text("flow bad {\n    input x: vector[2]\n    cuopling\n}\n")
    assert main(["test", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "bad.flow  -      check     ERROR" in out and "bad.flow:3:5: error: unknown layer 'cuopling'" in out
    assert main(["test", str(bad), "--property", "speed"]) == 2
    assert "unknown property speed" in capsys.readouterr().err


def test_documented_user_layer_example_end_to_end(capsys):
    spec, plugin = str(EXAMPLE / "sas.flow"), str(EXAMPLE / "my_layers.py")
    try:
        assert main(["check", spec, "--plugin", plugin]) == 0
        assert "flow sas: ok (5 layers, 248 parameters)" in capsys.readouterr().out
        assert main(["compile", spec, "--plugin", plugin]) == 0
        assert "248 parameters declared, 248 allocated" in capsys.readouterr().out
        assert main(["test", spec, "--plugin", plugin, "--examples", "5"]) == 0
        assert "5 passed or skipped, 0 failed" in capsys.readouterr().out
    finally:
        for name in ("sinh_arcsinh", "coupling shift_scale"):
            unregister(name)


def _pytest(args, cwd):
    installed = any(ep.value == "flowdsl.testing.pytest_plugin" for ep in entry_points(group="pytest11"))
    extra = [] if installed else ["-p", "flowdsl.testing.pytest_plugin"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(cwd), *extra, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_pytest_plugin_collects_specs(tmp_path, broken):
    plugin, spec = broken
    good = tmp_path / "good.flow"
    good.write_text("flow good {\n    input x: vector[2]\n    coupling affine(mask=half, net=mlp([4]))\n}\n")
    run = _pytest(["--flowdsl", "--flowdsl-examples", "4", "--flowdsl-plugin", str(plugin), "--collect-only",
                   str(good), str(spec)], tmp_path)
    assert "good.flow::good::bijection" in run.stdout and "broken.flow::broken::structure" in run.stdout, run.stdout
    run = _pytest(["--flowdsl", "--flowdsl-examples", "4", "--flowdsl-plugin", str(plugin), str(good), str(spec)],
                  tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 9 passed" in run.stdout
    assert "FAILED broken.flow::broken::bijection" in run.stdout and "minimal failing example:" in run.stdout
    run = _pytest([str(good)], tmp_path)  # without --flowdsl, specs are not collected
    assert run.returncode in (4, 5) and "passed" not in run.stdout

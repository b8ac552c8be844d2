"""The command line, end to end: exit codes, rendered diagnostics, reports, checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import flowdsl
from flowdsl.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def run(*args):
    return subprocess.run([sys.executable, "-m", "flowdsl", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_check_clean_spec_exits_zero(capsys):
    assert main(["check", str(SPECS / "nice.flow")]) == 0
    out = capsys.readouterr().out
    assert "flow nice: ok (5 layers, 9,496 parameters)" in out and "0 errors, 0 warnings" in out


def test_check_bad_spec_renders_and_exits_one(tmp_path):
    bad = tmp_path / "bad.flow"
    bad.write_text("flow f {\n  input x: vector[8]\n  coupling affine(mask=checkerboard(0), net=mlp([64]))\n}\n")
    res = run("check", bad)
    assert res.returncode == 1
    assert f"{bad}:3:19: error: checkerboard mask needs an image input, but this layer sees vector[8]" in res.stderr
    assert "    coupling affine(mask=checkerboard(0), net=mlp([64]))\n                      ^" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_file_and_syntax_error_never_trace(tmp_path):
    res = run("check", tmp_path / "nope.flow")
    assert res.returncode == 1 and "nope.flow: error: no such file" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "syntax.flow"
    bad.write_text("flow f {\n  coupling affine(mask=half\n}\n")
    for cmd in ("parse", "check", "compile"):
        res = run(cmd, bad)
        assert res.returncode == 1 and "missing ')'" in res.stderr and "Traceback" not in res.stderr


def test_parse_summarises(capsys):
    assert main(["parse", str(SPECS / "glow.flow")]) == 0
    out = capsys.readouterr().out
    assert "block glow_step(width): 3 statements" in out and "flow glow:" in out


def test_compile_report_and_checkpoint(tmp_path, capsys):
    out_path = tmp_path / "realnvp.pt"
    assert main(["compile", str(SPECS / "realnvp.flow"), "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "flow realnvp" in out and "input x: image[1, 8, 8] levels 17" in out
    assert "split" in out and "factors [2, 4, 4] out to the base" in out
    assert "total: 10 layers, 268,694 parameters declared, 268,694 allocated" in out
    assert "shapes: inferred shapes match the runtime (9 layers)" in out
    model = flowdsl.load(out_path)
    assert model.input_shape == (1, 8, 8) and model.levels == 17
    assert torch.isfinite(model.log_prob(torch.randint(0, 17, (2, 1, 8, 8)))).all()


def test_compile_multi_model_file_needs_model_for_output(tmp_path):
    spec = tmp_path / "two.flow"
    spec.write_text("flow a {\n input x: vector[2]\n coupling additive\n}\n"
                    "flow b {\n input x: vector[2]\n actnorm\n}\n")
    res = run("compile", spec, "-o", tmp_path / "x.pt")
    assert res.returncode == 1 and "pick one with --model" in res.stderr
    res = run("compile", spec, "--model", "b", "-o", tmp_path / "b.pt")
    assert res.returncode == 0, res.stderr
    assert flowdsl.load(tmp_path / "b.pt").name == "b"


def test_layers_lists_the_registry(capsys):
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in ("coupling affine(mask, net, clamp)", "squeeze(factor)", "actnorm", "mlp(hidden, activation)"):
        assert name in out


def test_limits_from_the_command_line(capsys):
    assert main(["check", str(SPECS / "glow.flow"), "--max-params", "1000"]) == 1
    assert "parameters (limit 1,000)" in capsys.readouterr().err


def test_layer_reference_is_current(capsys):
    """docs/layers.md is generated from the registry; regenerate it with `flowdsl layers --markdown`."""
    assert main(["layers", "--markdown"]) == 0
    assert capsys.readouterr().out == (ROOT / "docs" / "layers.md").read_text()

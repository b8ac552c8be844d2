"""The command line never shows a traceback: bad arguments, files and surprises are one line each."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest

from flowdsl.cli.main import INTERNAL_ERROR, main

AR = ("autoregressive a {\n input x: image[1, 4, 4] levels 4\n masked_conv(mask=A, kernel=3, channels=8)\n"
      " output categorical\n}\n")
FLOW = "flow f {\n input x: vector[4] levels 4\n coupling affine(mask=half, net=mlp([8]))\n}\n"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    out = {}
    for name, text in (("ar", AR), ("flow", FLOW)):
        spec = root / (name + (".ar" if name == "ar" else ".flow"))
        spec.write_text(text)
        assert main(["compile", str(spec), "-o", str(root / f"{name}.pt")]) == 0
        out[name], out[name + "_spec"] = str(root / f"{name}.pt"), str(spec)
    return out


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.parametrize("argv,what", [
    (["sample", "{flow}", "-n", "0"], "argument -n"),
    (["sample", "{flow}", "-n", "-3"], "argument -n"),
    (["sample", "{flow}", "--seed", str(2**70)], "argument --seed"),
    (["sample", "{flow}", "--device", "nonsense"], "argument --device"),
    (["sample", "{flow}", "--label", "-1"], "argument --label"),
    (["sample", "{flow}", "--rate", "0"], "argument --rate"),
    (["complete", "{ar}", "--input", "x.npy", "--mask", "top", "-n", "0"], "argument -n"),
    (["interpolate", "{flow}", "--steps", "0"], "argument --steps"),
    (["interpolate", "{flow}", "--index", "-1", "0"], "argument --index"),
    (["check", "{flow_spec}", "--max-layers", "0"], "argument --max-layers"),
    (["compile", "{flow_spec}", "--max-params", "-5"], "argument --max-params"),
    (["test", "{flow_spec}", "--examples", "0"], "argument --examples"),
])
def test_out_of_range_arguments_are_refused_by_the_parser(capsys, checkpoints, argv, what):
    argv = [a.format(**checkpoints) for a in argv]
    if argv[0] in ("sample", "complete", "interpolate") and "-o" not in argv:
        argv += ["-o", "out.npy"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and what in err and "error:" in err


def test_output_in_a_missing_folder_is_refused(capsys, checkpoints, tmp_path):
    code, _, err = run(capsys, "sample", checkpoints["flow"], "-o", tmp_path / "no" / "such" / "x.npy")
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "compile", checkpoints["flow_spec"], "-o", tmp_path)
    assert code == 2 and "is a folder" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none_is_refused(capsys, checkpoints):
    code, _, err = run(capsys, "sample", checkpoints["flow"], "--device", "cuda", "-o", "x.npy")
    assert code == 2 and "CUDA is not available" in err


def test_the_backstop_is_one_line_and_exit_70(capsys, monkeypatch, checkpoints):
    import flowdsl.cli.main as cli

    def boom(args):
        raise RuntimeError("surprise\nsecond line")

    monkeypatch.setattr(cli, "cmd_layers", boom)
    code, _, err = run(capsys, "layers")
    assert code == INTERNAL_ERROR
    assert err.strip() == "flowdsl: internal error: RuntimeError: surprise second line (please report this)"


def test_an_os_error_is_one_line_naming_the_file(capsys, monkeypatch):
    import flowdsl.cli.main as cli

    def denied(args):
        raise PermissionError(13, "Permission denied", "/some/file.npy")

    monkeypatch.setattr(cli, "cmd_layers", denied)
    code, _, err = run(capsys, "layers")
    assert code == 1 and err.strip() == "/some/file.npy: error: Permission denied"


def _forged_png(path, w, h):
    from PIL import Image

    Image.fromarray(np.zeros((2, 2), np.uint8)).save(path)
    b = bytearray(path.read_bytes())
    b[16:24] = struct.pack(">II", w, h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("kind", ["corrupt_npy", "text_npy", "object_npy", "nan_npy", "out_of_range_npy",
                                  "garbage_png", "huge_png", "wrong_size_png"])
def test_bad_input_files_of_complete_are_one_line(capsys, checkpoints, tmp_path, kind):
    path = tmp_path / ("in.png" if kind.endswith("png") else "in.npy")
    if kind == "corrupt_npy":
        np.save(path, np.zeros((1, 4, 4)))
        path.write_bytes(path.read_bytes()[:90])
    elif kind == "text_npy":
        path.write_text("1 2 3\n")
    elif kind == "object_npy":
        np.save(path, np.array([None, 1], dtype=object), allow_pickle=True)
    elif kind == "nan_npy":
        np.save(path, np.full((1, 4, 4), np.nan))
    elif kind == "out_of_range_npy":
        np.save(path, np.full((1, 4, 4), 9))
    elif kind == "garbage_png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    elif kind == "huge_png":
        _forged_png(path, 2**31 - 1, 2**31 - 1)
    else:
        _forged_png(path, 2, 2)
    code, _, err = run(capsys, "complete", checkpoints["ar"], "--input", path, "--mask", "top", "-o",
                       tmp_path / "o.npy")
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith(f"{path}: error: ") and len(lines) <= 2  # the error, maybe a hint


def test_flowdsl_test_writes_no_hypothesis_folder_here(capsys, tmp_path, monkeypatch):
    spec = tmp_path / "p.flow"
    spec.write_text("flow p {\n input x: vector[3]\n permute(reverse)\n}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWDSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    code, out, _ = run(capsys, "test", spec, "--examples", "2", "--property", "bijection")
    assert code == 0 and "bijection" in out
    assert not (tmp_path / ".hypothesis").exists()
    assert os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] == str(tmp_path / "cache" / "hypothesis")


def test_allow_outside_lifts_the_use_confinement(capsys, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "w.flow").write_text("let w = 4\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("")
    spec = project / "m.flow"
    spec.write_text('use "../lib/w.flow"\nflow f {\n input x: vector[2]\n coupling affine(mask=half, '
                    'net=mlp([w]))\n}\n')
    code, _, err = run(capsys, "check", spec)
    assert code == 1 and "outside the project root" in err
    code, out, _ = run(capsys, "check", "--allow-outside", spec)
    assert code == 0 and "0 errors" in out

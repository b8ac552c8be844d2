"""Damaged checkpoints are one-line errors naming the file, never tracebacks or silent NaN: truncated, random
bytes, pickles, missing entries, wrong shapes, flipped tensor bytes (the checksum), bad optimiser or random state;
stale temporary files of a killed save are cleaned; checkpoints without a checksum still load."""

from __future__ import annotations

import pickle
import zipfile
from argparse import Namespace
from pathlib import Path

import pytest
import torch

import flowdsl
from flowdsl.checkpoint import atomic_save, load_checkpoint, save_checkpoint, state_checksum
from flowdsl.cli.main import main
from flowdsl.errors import FlowDSLError

MOONS_FLOW = "flow moons {\n input x: vector[2]\n coupling affine(mask=[1, 0], net=mlp([8]))\n}\n"
WEIGHT = "layers.0.net.body.0.weight"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("integrity")
    spec = root / "moons.flow"
    spec.write_text(MOONS_FLOW)
    flowdsl.train(spec, "moons", steps=2, batch=16, output=root / "good.pt", progress=False, log=None)
    return spec, root / "good.pt"


def payload_of(path) -> dict:
    return torch.load(path, weights_only=True)


def resaved(path, payload, checksum: bool = True) -> Path:
    """``payload`` saved to ``path`` with a fresh checksum (a consistent file whose content is wrong) or none."""
    payload = {k: v for k, v in payload.items() if k != "checksum"}
    if checksum:
        payload["checksum"] = state_checksum(payload)
    torch.save(payload, path)
    return path


def flip_a_tensor_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    off = info.header_offset
    start = off + 30 + int.from_bytes(data[off + 26:off + 28], "little") + int.from_bytes(data[off + 28:off + 30],
                                                                                         "little")
    data[start + info.file_size // 2] ^= 0x10
    dst.write_bytes(data)
    return dst


def damaged(kind: str, good: Path, tmp: Path) -> tuple[Path, str]:
    """A damaged copy of ``good`` and the message it must give."""
    path = tmp / f"{kind}.pt"
    p = payload_of(good)
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return path, "cannot read the checkpoint: the file is truncated or not a checkpoint"
    if kind == "random":
        path.write_bytes(bytes(range(256)) * 40)
        return path, "cannot read the checkpoint: the file is truncated or not a checkpoint"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"format": "flowdsl-checkpoint/1"}))
        return path, "cannot read the checkpoint"
    if kind == "objects":
        torch.save({"format": "flowdsl-checkpoint/1", "spec": Namespace(a=1)}, path)
        return path, "not a flowdsl checkpoint: the file holds Python objects other than tensors"
    if kind == "foreign":
        torch.save([1, 2, 3], path)
        return path, "not a flowdsl checkpoint"
    if kind == "no-spec":
        del p["spec"]
        return resaved(path, p), "the checkpoint is damaged: it has no 'spec' entry"
    if kind == "no-sources":
        p["spec"] = {k: v for k, v in p["spec"].items() if k != "sources"}
        return resaved(path, p), "the checkpoint is damaged: its spec has no 'sources' entry"
    if kind == "no-state":
        del p["state_dict"]
        return resaved(path, p, checksum=False), "the checkpoint is damaged: it has no 'state_dict' entry"
    if kind == "wrong-shape":
        p["state_dict"][WEIGHT] = torch.zeros(3, 3)
        return resaved(path, p), "the checkpoint's state does not fit model 'moons': "
    if kind == "missing-tensor":
        del p["state_dict"][WEIGHT]
        return resaved(path, p, checksum=False), "the checkpoint's state does not fit model 'moons': "
    if kind == "edited-tensor":
        p["state_dict"][WEIGHT] = p["state_dict"][WEIGHT] + 1.0
        torch.save(p, path)  # the old checksum stays: the content no longer matches it
        return path, "the checkpoint is corrupted: its contents do not match its checksum"
    if kind == "flipped-byte":
        return flip_a_tensor_byte(good, path), "the checkpoint is corrupted: its contents do not match its checksum"
    raise AssertionError(kind)


KINDS = ["truncated", "random", "pickle", "objects", "foreign", "no-spec", "no-sources", "no-state", "wrong-shape",
         "missing-tensor", "edited-tensor", "flipped-byte"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_checkpoint_is_one_error_naming_the_file(kind, trained, tmp_path, capsys):
    path, message = damaged(kind, trained[1], tmp_path)
    with pytest.raises(FlowDSLError) as err:
        flowdsl.load(path)
    d = err.value.diagnostics[0]
    assert d.pos.file == str(path) and d.message.startswith(message), d.message
    assert main(["eval", str(path)]) == 1
    out = capsys.readouterr().err
    assert out.startswith(f"{path}: error: ") and "Traceback" not in out


@pytest.mark.parametrize("entry, value, message", [
    ("optimizer", {"state": {}, "param_groups": []}, "the checkpoint's optimizer state is damaged"),
    ("rng", [{"cpu": torch.zeros(3, dtype=torch.uint8)}], "the checkpoint's random state is damaged"),
    ("schedule", {"factor": "x"}, "the checkpoint's schedule state is damaged"),
    ("step", "three", "the checkpoint is damaged: its step or history is not what training writes"),
    ("guard_best", "x", "the checkpoint's divergence-guard state is damaged"),
    ("selection", {"best": 1.0, "bad": 0, "best_step": "one"}, "the checkpoint's early-stopping state is damaged"),
    ("best_state_dict", [1, 2], "the checkpoint's best weights are damaged"),
    ("best_state_dict", {WEIGHT: torch.zeros(1)}, "the checkpoint's best state does not fit model 'moons'"),
    ("raw_state_dict", {"nothing": torch.zeros(1)}, r"the checkpoint's raw \(not averaged\) state does not fit"),
])
def test_resuming_damaged_training_state_is_one_error(entry, value, message, trained, tmp_path):
    spec, good = trained
    p = payload_of(good)
    p[entry] = value
    path = resaved(tmp_path / "bad.pt", p)
    with pytest.raises(FlowDSLError, match=message) as err:
        flowdsl.train(spec, "moons", steps=4, resume=path, progress=False, log=None)
    assert err.value.diagnostics[0].pos.file == str(path)


def test_checkpoints_without_a_checksum_still_load(trained, tmp_path):
    p = payload_of(trained[1])
    assert p["checksum"] == state_checksum(p)
    old = resaved(tmp_path / "old.pt", p, checksum=False)
    assert torch.equal(flowdsl.load(old).state_dict()[WEIGHT], p["state_dict"][WEIGHT])


def test_a_save_removes_the_temporary_files_a_killed_save_left(trained, tmp_path):
    model = flowdsl.load(trained[1])
    stale, other = tmp_path / "c.ptab_cd3f9.tmp", tmp_path / "d.ptab_cd3f9.tmp"
    stale.write_bytes(b"partial")
    other.write_bytes(b"another file's")
    save_checkpoint(model, tmp_path / "c.pt")
    assert not stale.exists() and other.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "c.pt", "d.ptab_cd3f9.tmp"]


def test_missing_files_folders_and_unwritable_targets_are_one_line(trained, tmp_path):
    with pytest.raises(FlowDSLError, match="cannot read the checkpoint: the file does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(FlowDSLError, match="cannot read the checkpoint: the file is a directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(FlowDSLError, match="cannot write the checkpoint") as err:
        atomic_save({"a": 1}, tmp_path)
    assert err.value.diagnostics[0].pos.file == str(tmp_path)
    spec = trained[0]
    with pytest.raises(FlowDSLError, match="cannot write the checkpoint: the path is a directory"):
        flowdsl.train(spec, "moons", steps=2, batch=16, output=tmp_path, progress=False, log=None)

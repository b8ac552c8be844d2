"""`flowdsl train` and `flowdsl eval` refuse bad arguments in the parser and bad devices in one line; a diverging
run exits nonzero; `--resume` on other data is refused; nothing exits 0 without doing what it was asked."""

from __future__ import annotations

import pytest

from flowdsl.cli.main import main

MOONS_FLOW = "flow moons {\n input x: vector[2]\n coupling affine(mask=[1, 0], net=mlp([8]))\n}\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusals")
    spec = root / "moons.flow"
    spec.write_text(MOONS_FLOW)
    assert main(["train", str(spec), "--data", "moons", "--steps", "2", "--batch", "16", "-q",
                 "-o", str(root / "m.pt")]) == 0
    return spec, root / "m.pt"


TRAIN_ARGS = [
    (["--lr", "nan"], "--lr: must be a finite number"), (["--lr", "-1"], "--lr: must be a positive number"),
    (["--clip", "-1"], "--clip: must be a positive number"), (["--seed", str(2**70)], "--seed: must be a seed"),
    (["--steps", "0"], "--steps: must be an integer in 1..1000000000"),
    (["--steps", str(2**70)], "--steps: must be an integer in 1..1000000000"),
    (["--threads", "0"], "--threads: must be a positive"),
    (["--batch", "-5"], "--batch: must be a positive integer"),
    (["--epochs", "0"], "--epochs: must be an integer in 1.."),
    (["--ema", "1"], "--ema: must be a decay between 0 and 1"), (["--warmup", "-1"], "--warmup: must be a non-neg"),
    (["--weight-decay", "inf"], "--weight-decay: must be a finite number"),
    (["--schedule", "linear"], "--schedule: unknown learning-rate schedule 'linear'"),
    (["--patience", "0"], "--patience: must be a positive integer"),
    (["--eval-every", "0"], "--eval-every: must be a positive integer"),
    (["--cpu-budget", "-2"], "--cpu-budget: must be a positive number"),
    (["--steps", "3", "--epochs", "2"], "argument --epochs: not allowed with argument --steps"),
]


@pytest.mark.parametrize("extra, message", TRAIN_ARGS)
def test_train_arguments_are_range_checked_by_the_parser(made, extra, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(made[0]), "--data", "moons", "-o", str(tmp_path / "x.pt"), *extra])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("extra, message", [
    (["--batch", "0"], "--batch: must be a positive integer"), (["--batch", "-5"], "--batch: must be a positive"),
    (["--seed", "-1"], "--seed: must be a seed"), (["--threads", "0"], "--threads: must be a positive integer"),
])
def test_eval_arguments_are_range_checked_by_the_parser(made, extra, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(made[1]), *extra])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("name, message", [("nonsense", "must be a device such as cpu, cuda or cuda:0"),
                                           ("cuda:99", "cuda")])
def test_an_unavailable_device_is_refused_by_the_parser(made, command, name, message, capsys, tmp_path):
    spec, ckpt = made
    argv = (["train", str(spec), "--data", "moons", "--steps", "2", "-o", str(tmp_path / "d.pt")] if command == "train"
            else ["eval", str(ckpt)])
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--device", name])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --device: " in err and message in err.lower() and "Traceback" not in err
    assert not (tmp_path / "d.pt").exists()


def test_an_unavailable_device_is_one_error_in_the_api(made, tmp_path):
    import flowdsl
    from flowdsl.errors import FlowDSLError

    for name, message in (("nonsense", "unknown device 'nonsense'"), ("cuda:99", "device 'cuda:99': ")):
        with pytest.raises(FlowDSLError, match=message):
            flowdsl.train(made[0], "moons", steps=2, device=name, output=tmp_path / "d.pt", progress=False, log=None)
    assert not (tmp_path / "d.pt").exists()


def test_divergence_other_data_and_nothing_to_do_exit_nonzero(made, capsys, tmp_path):
    spec, ckpt = made
    assert main(["train", str(spec), "--data", "moons", "--steps", "100", "--lr", "100", "-q",
                 "-o", str(tmp_path / "big.pt")]) == 1
    assert "train: error: training diverged: the loss " in capsys.readouterr().err
    assert main(["train", str(spec), "--data", "circles", "--steps", "4", "--resume", str(ckpt), "-q",
                 "-o", str(tmp_path / "c.pt")]) == 1
    assert f"{ckpt}: error: the checkpoint was trained on other data: 'moons'" in capsys.readouterr().err
    assert main(["train", str(spec), "--data", "moons", "--steps", "2", "--resume", str(ckpt), "-q",
                 "-o", str(tmp_path / "same.pt")]) == 1
    assert "there is nothing to train up to step 2" in capsys.readouterr().err
    assert not any(tmp_path.glob("*.pt"))

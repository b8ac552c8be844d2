"""The train / eval / sample / complete / interpolate / graph commands end to end, on tiny budgets."""

from __future__ import annotations

import math
import re
import wave
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from flowdsl.cli.draw import write_output
from flowdsl.cli.main import main
from flowdsl.cli.plotting import PLOT_SIZE, grid_size

FLOW = """flow tiny {
    input x: image[1, 8, 8] levels 17
    condition y: label[10]
    logit(alpha=0.05)
    actnorm
    coupling affine(mask=checkerboard(0), net=resnet(blocks=1, hidden=8))
    coupling affine(mask=checkerboard(1), net=resnet(blocks=1, hidden=8))
}
"""
AR = """autoregressive pix {
    input x: image[1, 8, 8] levels 2
    masked_conv(mask=A, kernel=3, channels=8)
    relu -> masked_conv(mask=B, kernel=3, channels=8)
    output categorical
}
"""
TOY = "flow toy {\n  input x: vector[2]\n  coupling affine(mask=[1, 0], net=mlp([8]))\n  batchnorm\n}\n"
WAVE = "autoregressive wav {\n  input x: sequence[32] levels 16\n  made([16])\n  output categorical\n}\n"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Checkpoints of a conditional flow on digits, a PixelCNN on binary digits, a 2-D flow and a sequence model."""
    root = tmp_path_factory.mktemp("cli")
    made = {}
    for name, text, data in (("flow", FLOW, "digits"), ("ar", AR, "digits-binary"), ("toy", TOY, "moons"),
                             ("wave", WAVE, "waveform")):
        spec = root / f"{name}.{'ar' if text.startswith('auto') else 'flow'}"
        spec.write_text(text)
        assert main(["train", str(spec), "--data", data, "--steps", "3", "--batch", "16", "-q",
                     "-o", str(root / f"{name}.pt")]) == 0
        made[name] = root / f"{name}.pt"
    made["root"] = root
    return made


def test_train_and_eval_print_nats_and_bits_per_dim(trained, capsys, tmp_path):
    spec = trained["root"] / "flow.flow"
    code, out, _ = run(capsys, "train", spec, "--data", "digits", "--steps", "2", "--batch", "8", "--eval-every",
                       "1", "-q", "-o", tmp_path / "t.pt")
    train_out = out
    assert code == 0 and "step 1/2: train " in out and f"saved {tmp_path / 't.pt'} (step 2) and " in out
    assert re.search(r"tiny: step 2, test \d+\.\d{4} bits/dim \(\d+\.\d\d nats, 359 examples\) with the weights "
                     r"of step [12] \(validation \d+\.\d\d nats\)", out)
    assert (tmp_path / "t.best.pt").exists() and (tmp_path / "t.metrics.jsonl").exists()
    code, out, _ = run(capsys, "eval", tmp_path / "t.pt")
    m = re.search(r"tiny, step 2 on digits \(test split, 359 examples\): (\d+\.\d+) nats, (\d+\.\d+) bits/dim", out)
    assert code == 0 and m, out
    assert abs(float(m[1]) / (64 * math.log(2)) - float(m[2])) < 1e-3
    code, out, _ = run(capsys, "eval", tmp_path / "t.pt", "--split", "train")
    assert code == 0 and "train split, 1438 examples" in out
    best = float(re.search(r"\(validation (\d+\.\d\d) nats\)", train_out)[1])
    code, out, _ = run(capsys, "eval", tmp_path / "t.best.pt", "--split", "valid")  # the examples the trainer held out
    m = re.search(r"tiny, step \d on digits \(valid split, 144 examples\): (\d+\.\d+) nats", out)
    assert code == 0 and m and abs(float(m[1]) - best) <= 0.005, out


def test_sample_writes_grids_arrays_scatter_plots_and_sound(trained, capsys, tmp_path):
    code, out, _ = run(capsys, "sample", trained["flow"], "-n", "20", "-o", tmp_path / "s.png")
    assert code == 0 and "20 image(s)" in out
    with Image.open(tmp_path / "s.png") as im:  # conditional: one column per class
        assert im.size == grid_size(20, 8, 8, cols=10) == (342, 70)
    assert run(capsys, "sample", trained["flow"], "-n", "5", "--label", "3", "-o", tmp_path / "s.npy")[0] == 0
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (5, 1, 8, 8) and x.dtype.kind == "i" and 0 <= x.min() and x.max() <= 16
    code, out, _ = run(capsys, "sample", trained["toy"], "-n", "200", "-o", tmp_path / "toy.png")
    assert code == 0 and "with the density" in out
    with Image.open(tmp_path / "toy.png") as im:
        assert im.size == PLOT_SIZE
    assert run(capsys, "sample", trained["wave"], "-n", "3", "--rate", "8000", "-o", tmp_path / "w.wav")[0] == 0
    with wave.open(str(tmp_path / "w.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() == 3 * 32 + 2 * 2000  # three sounds, a quarter second apart
    assert run(capsys, "sample", trained["wave"], "-n", "3", "-o", tmp_path / "w.png")[0] == 0
    with Image.open(tmp_path / "w.png") as im:
        assert im.size == PLOT_SIZE
    code, _, err = run(capsys, "sample", trained["flow"], "-o", tmp_path / "s.wav")
    assert code == 1 and "a WAV file needs a sequence model, but the input is image[1, 8, 8]" in err


def test_complete_fills_the_hidden_part_and_keeps_the_rest(trained, capsys, tmp_path):
    code, out, _ = run(capsys, "complete", trained["ar"], "--input", "digits-binary:3", "--mask", "bottom", "-n", "3",
                       "-o", tmp_path / "c.png")
    assert code == 0 and "(original, occluded, 3 completion(s))" in out
    with Image.open(tmp_path / "c.png") as im:
        assert im.size == grid_size(5, 8, 8, cols=5) == (172, 36)
        assert tuple(np.asarray(im.convert("RGB"))[2 + 30, 2 + 34 + 2]) == (150, 30, 30)  # occluded: dark red
    Image.fromarray((np.arange(64).reshape(8, 8) % 2 * 255).astype(np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, 5:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert run(capsys, "complete", trained["ar"], "--input", tmp_path / "in.png", "--mask", tmp_path / "mask.png",
               "-n", "4", "-o", tmp_path / "c.npy")[0] == 0
    done = np.load(tmp_path / "c.npy")
    original = np.arange(64).reshape(8, 8) % 2
    assert done.shape == (4, 1, 8, 8) and (done[:, 0, :, :5] == original[:, :5]).all()
    assert set(np.unique(done)) <= {0, 1}
    code, _, err = run(capsys, "complete", trained["flow"], "--input", "digits:0", "--mask", "top",
                       "-o", tmp_path / "x.png")
    assert (code == 1 and "complete needs an autoregressive model; 'tiny' is a flow" in err
            and "Traceback" not in err)
    code, _, err = run(capsys, "complete", trained["ar"], "--input", "digits-binary:0", "--mask", "middle",
                       "-o", "x.png")
    assert code == 1 and "--mask must be one of top, bottom, left, right or a PNG file" in err
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "big.png")
    code, _, err = run(capsys, "complete", trained["ar"], "--input", tmp_path / "big.png", "--mask", "top",
                       "-o", "x.png")
    assert code == 1 and "the image is 28x28 with 1 channel(s), but the input of 'pix' is image[1, 8, 8]" in err


def test_interpolate_decodes_the_line_between_two_latents(trained, capsys, tmp_path):
    code, out, _ = run(capsys, "interpolate", trained["flow"], "--index", "2", "7", "--steps", "5",
                       "-o", tmp_path / "i.png")
    assert code == 0 and "test examples 2 -> 7" in out
    with Image.open(tmp_path / "i.png") as im:
        assert im.size == grid_size(5, 8, 8, cols=5)
    assert run(capsys, "interpolate", trained["flow"], "--index", "2", "7", "--steps", "5",
               "-o", tmp_path / "i.npy")[0] == 0
    strip = np.load(tmp_path / "i.npy")
    from flowdsl.training.data import load_data

    test = load_data("digits").test
    assert strip.shape == (5, 1, 8, 8) and (strip[0] == test[2]).all() and (strip[-1] == test[7]).all()
    assert run(capsys, "interpolate", trained["toy"], "-o", tmp_path / "toy.png")[0] == 0
    code, _, err = run(capsys, "interpolate", trained["ar"], "-o", tmp_path / "x.png")
    assert code == 1 and "interpolate needs a flow's latent space; 'pix' is an autoregressive model" in err


def test_bad_data_and_changed_specs_are_clear_errors(trained, capsys, tmp_path):
    code, _, err = run(capsys, "train", trained["root"] / "flow.flow", "--data", "moons", "--steps", "1",
                       "-o", tmp_path / "x.pt")
    assert code == 1 and "Traceback" not in err
    assert "flow.flow:2:5: error: data 'moons' is vector[2], but the input x of flow 'tiny' is image[1, 8, 8] " \
           "levels 17" in err
    changed = tmp_path / "flow.flow"
    changed.write_text(FLOW.replace("hidden=8))\n}", "hidden=9))\n}"))
    code, _, err = run(capsys, "train", changed, "--data", "digits", "--steps", "5", "--resume", trained["flow"],
                       "-o", tmp_path / "y.pt")
    assert code == 1 and "the spec changed since the checkpoint was written" in err
    assert not (tmp_path / "y.pt").exists()
    code, _, err = run(capsys, "eval", trained["ar"], "--data", "digits")
    assert code == 1 and "use --data digits-binary" in err


def test_graph_writes_dot_svg_and_png(trained, capsys, tmp_path):
    spec = trained["root"] / "flow.flow"
    code, out, _ = run(capsys, "graph", spec)
    assert code == 0 and out.startswith('digraph "tiny" {')
    assert ('coupling affine(mask=checkerboard(0), net=resnet(blocks=1, hidden=8))'
            '\\n[1, 8, 8] -> [1, 8, 8]\\nline 6') in out
    assert run(capsys, "graph", spec, "-o", tmp_path / "g.dot")[0] == 0
    assert (tmp_path / "g.dot").read_text() == out
    code, out, _ = run(capsys, "graph", spec, "--engine", "matplotlib", "-o", tmp_path / "g.svg")
    assert code == 0 and "(matplotlib, 6 nodes)" in out
    root = ET.parse(tmp_path / "g.svg").getroot()
    assert root.tag.endswith("svg")
    assert run(capsys, "graph", "specs/realnvp.flow", "--engine", "matplotlib", "-o", tmp_path / "g.png")[0] == 0
    with Image.open(tmp_path / "g.png") as im:
        assert im.size[1] > im.size[0] > 300  # a tall drawing: one row per node
    code, _, err = run(capsys, "graph", spec, "-o", tmp_path / "g.jpg")
    assert code == 1 and "use .dot, .svg or .png" in err


def test_video_samples_become_one_row_of_frames_each(tmp_path):
    video = SimpleNamespace(name="v", input_shape=(3, 1, 4, 4), levels=4, ir=SimpleNamespace(
        header=SimpleNamespace(input=SimpleNamespace(type_name="video"))))
    x = np.random.default_rng(0).integers(0, 4, (2, 3, 1, 4, 4))
    assert write_output(video, x, tmp_path / "v.png").startswith("2 video(s) of 3 frames")
    with Image.open(tmp_path / "v.png") as im:
        assert im.size == grid_size(6, 4, 4, cols=3) == (3 * (32 + 2) + 2, 2 * (32 + 2) + 2)


def test_graph_engines_and_block_locations(monkeypatch, tmp_path):
    from flowdsl.api import analyze_file
    from flowdsl.cli.graph import draw, node_labels

    ir = analyze_file("specs/glow_conditional.flow").model()
    labels = node_labels(ir)
    assert labels["input"].startswith("input x: image[1, 8, 8] levels 17\ncondition y: label[10]\nline 4")
    assert labels[2] == "actnorm\n[4, 4, 4] -> [4, 4, 4]\nglow_step.flow:3 (glow_step at line 9) · 8 params"
    monkeypatch.setattr("flowdsl.cli.graph.shutil.which", lambda name: None)  # no Graphviz
    assert draw(ir, tmp_path / "g.png") == "matplotlib"
    with pytest.raises(ValueError, match="Graphviz's `dot` program is not installed"):
        draw(ir, tmp_path / "g.svg", engine="graphviz")


def test_the_new_commands_keep_check_and_graph_torch_free(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from flowdsl.cli.main import main; main(['check', 'specs/nice.flow']); "
            f"main(['graph', 'specs/nice.flow', '-o', {str(tmp_path / 'n.dot')!r}]); print(sorted(m for m in "
            "('torch', 'matplotlib', 'sklearn') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0 and res.stdout.strip().endswith("[]"), res.stdout + res.stderr
    assert (tmp_path / "n.dot").read_text().startswith('digraph "nice"')


def test_a_sampler_without_parameters_or_likelihood_is_refused_clearly(capsys, tmp_path):
    np.save(tmp_path / "tex.npy", np.random.default_rng(0).integers(0, 256, (20, 1, 32, 32)))
    code, _, err = run(capsys, "train", "specs/texture.ar", "--data", tmp_path / "tex.npy", "-o", tmp_path / "t.pt")
    assert code == 1 and "autoregressive 'texture' has no trainable parameters: there is nothing to train" in err
    assert "Traceback" not in err
    assert run(capsys, "compile", "specs/texture.ar", "-o", tmp_path / "t.pt")[0] == 0
    code, _, err = run(capsys, "eval", tmp_path / "t.pt", "--data", tmp_path / "tex.npy")
    assert code == 1 and "defines no likelihood" in err

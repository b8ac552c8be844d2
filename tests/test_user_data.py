"""The user's data files: every bad file is one error naming it; good ones keep their values."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from flowdsl.errors import FlowDSLError
from flowdsl.training.user_data import MAX_PIXELS, from_npy, from_npz, from_pngs, read_png

BAD_ARRAYS = {
    "0-d": (np.array(3.0), "single number"),
    "empty": (np.zeros((0, 4)), "empty"),
    "one example": (np.zeros((1, 4)), "at least 2"),
    "structured": (np.zeros(4, "f4,i4"), "structured"),
    "complex": (np.ones((4, 2), complex), "complex"),
    "text": (np.array(["a", "b"]), "not numbers"),
    "nan": (np.array([[1.0, np.nan], [np.inf, 2.0]]), "2 non-finite"),
}


@pytest.mark.parametrize("kind", list(BAD_ARRAYS))
def test_bad_npy_arrays_are_refused_naming_the_file(tmp_path, kind):
    array, message = BAD_ARRAYS[kind]
    path = tmp_path / "d.npy"
    np.save(path, array)
    with pytest.raises(FlowDSLError, match=message) as info:
        from_npy(path)
    assert str(info.value).startswith(f"{path}: error: ")


@pytest.mark.parametrize("content", [b"", b"hello\n", b"\x93NUMPY\x01\x00", b"\x80\x04K\x01."])
def test_files_that_are_not_npy_arrays_are_refused(tmp_path, content):
    path = tmp_path / "d.npy"
    path.write_bytes(content)
    with pytest.raises(FlowDSLError) as info:
        from_npy(path)
    assert str(info.value).startswith(f"{path}: error: ") and "\n" not in str(info.value)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(FlowDSLError, match="Python objects"):
        from_npy(path)


def test_a_truncated_npy_is_refused(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.arange(100).reshape(50, 2))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(FlowDSLError, match="cannot read the .npy file"):
        from_npy(path)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=5),
                  elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_float_arrays_load_finite_or_are_refused_with_the_count(tmp_path_factory, x):
    path = tmp_path_factory.mktemp("h") / "x.npy"
    np.save(path, x)
    bad = int((~np.isfinite(x)).sum())
    if bad:
        with pytest.raises(FlowDSLError, match=f"{bad} non-finite"):
            from_npy(path)
    else:
        ds = from_npy(path)
        assert len(ds.train) + len(ds.test) == len(x)
        assert np.isfinite(ds.train.astype(np.float64)).all()


def test_huge_whole_floats_are_not_cast_to_garbage_integers(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.array([[1e30, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    ds = from_npy(path)
    assert ds.levels is None and np.concatenate([ds.train, ds.test]).max() == pytest.approx(1e30)


@pytest.mark.parametrize("labels,message", [
    (np.arange(3), "one label per example"), (-np.arange(5), ">= 0"), (np.arange(5) * 0.5, "whole numbers"),
    (np.where(np.arange(5) == 2, np.nan, 1.0), "non-finite"),
])
def test_bad_labels_are_refused(tmp_path, labels, message):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 2)), y=labels)
    with pytest.raises(FlowDSLError, match=message):
        from_npz(path, "d")


def test_a_corrupt_npz_is_one_line(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(FlowDSLError, match="cannot read the .npz archive") as info:
        from_npz(path, "d")
    assert str(info.value).startswith(f"{path}: error: ")


def _forge(path, w, h):
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(path)
    b = bytearray(path.read_bytes())
    b[16:24] = struct.pack(">II", w, h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("w,h", [(2**31 - 1, 2**31 - 1), (5000, 5000), (MAX_PIXELS + 1, 1)])
def test_png_size_is_checked_from_the_header_before_decoding(tmp_path, w, h):
    path = tmp_path / "big.png"
    _forge(path, w, h)
    with pytest.raises(FlowDSLError, match="limit of") as info:
        read_png(path)
    assert str(info.value).startswith(f"{path}: error: ")


def test_corrupt_pngs_are_one_line(tmp_path):
    path = tmp_path / "bad.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FlowDSLError, match="cannot read the image"):
        read_png(path)


def test_16_bit_grey_pngs_keep_their_65536_levels(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((4, 4), 60000 - 1000 * i, np.uint16)).save(tmp_path / label / f"{i}.png")
    ds = from_pngs(tmp_path)
    assert ds.levels == 65536 and ds.exact_levels
    assert np.concatenate([ds.train, ds.test]).max() == 60000  # not clipped to 255
    a, levels = read_png(tmp_path / "a" / "0.png")
    assert levels == 65536 and a.shape == (1, 4, 4) and a.max() == 60000


def test_a_folder_mixing_8_and_16_bit_pngs_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(FlowDSLError, match="mix 8-bit and 16-bit"):
        from_pngs(tmp_path)

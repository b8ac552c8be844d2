"""Reading spec files safely: regular files only, bounded reads, the project root that confines ``use``.

A spec file is read with :func:`read_spec`: it must be a regular file (never a directory, FIFO,
device or socket: those are refused from their ``lstat`` before anything opens them), it is
opened without following a link that appeared since it was resolved, and at most
:data:`MAX_READ_BYTES` + 1 bytes are read (a file larger than that is refused from its size, so an
8 GB file costs nothing). Problems are :class:`SpecFileError`\\ s whose message never quotes the
file's content.

``use`` may load only ``.flow`` and ``.ar`` files (:data:`SPEC_SUFFIXES`) inside the *project
root* (:func:`project_root`): the nearest folder, from the main spec's folder upwards, that holds
a project marker (:data:`PROJECT_MARKERS`: ``.git``, ``pyproject.toml`` or ``flowdsl.toml``), else
the main spec's own folder.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "flowdsl.toml").write_text("")
    >>> (folder / "lib").mkdir()
    >>> _ = (folder / "lib" / "a.flow").write_text("let w = 4\\n")
    >>> project_root(folder / "lib" / "a.flow") == folder.resolve()
    True
    >>> read_spec(str(folder / "lib" / "a.flow"))
    'let w = 4\\n'
    >>> try:
    ...     read_spec(str(folder / "lib"))
    ... except SpecFileError as err:
    ...     print(err.message)
    not a regular file (a directory)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from flowdsl.language.syntax import MAX_SOURCE_BYTES

__all__ = ["SpecFileError", "read_spec", "project_root", "is_spec_name", "path_problem", "SPEC_SUFFIXES",
           "PROJECT_MARKERS", "MAX_READ_BYTES", "MAX_NAME_BYTES", "MAX_PATH_BYTES"]

SPEC_SUFFIXES = (".flow", ".ar")
PROJECT_MARKERS = (".git", "pyproject.toml", "flowdsl.toml")
#: a spec has at most MAX_SOURCE_BYTES characters, of at most 4 UTF-8 bytes each
MAX_READ_BYTES = 4 * MAX_SOURCE_BYTES
MAX_NAME_BYTES = 255  # one file or folder name (what file systems allow)
MAX_PATH_BYTES = 4096  # a whole path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a link"))


class SpecFileError(Exception):
    """A spec file that cannot be read; ``missing`` when it does not exist."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.message = message
        self.missing = missing


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a plain file")


def is_spec_name(path: str) -> bool:
    """Whether a path names a spec file (``.flow`` or ``.ar``)."""
    return path.endswith(SPEC_SUFFIXES) and os.path.basename(path) not in SPEC_SUFFIXES


def path_problem(path: str) -> str | None:
    """What is wrong with a path as text (too long, a control character), before any file system access."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "the path contains a control character"
    encoded = path.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PATH_BYTES:
        return f"the path is too long ({len(encoded):,} bytes; limit {MAX_PATH_BYTES})"
    longest = max((part for part in encoded.split(b"/")), key=len, default=b"")
    if len(longest) > MAX_NAME_BYTES:
        return f"a name in the path is too long ({len(longest):,} bytes; limit {MAX_NAME_BYTES})"
    return None


def project_root(spec: str | Path) -> Path:
    """The folder ``use`` stays in: the nearest ancestor of the spec's folder holding a project marker, else the
    spec's folder (resolved)."""
    folder = Path(os.path.realpath(os.path.dirname(os.path.abspath(spec))))
    for candidate in (folder, *folder.parents):
        if any(os.path.lexists(candidate / marker) for marker in PROJECT_MARKERS):
            return candidate
    return folder


def read_spec(path: str, follow: bool = True) -> str | bytes:
    """The text of a regular file (bytes when it is not UTF-8); SpecFileError if it is not one or is too large.

    ``follow=False`` reads an already resolved path: a link found there (put in since) is refused.
    """
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise SpecFileError("no such file", missing=True) from None
    except OSError as err:
        raise SpecFileError(f"cannot read the file: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SpecFileError(f"not a regular file ({_kind(info.st_mode)})")
    if info.st_size > MAX_READ_BYTES:
        raise SpecFileError(f"the file is too large ({info.st_size:,} bytes; limit {MAX_SOURCE_BYTES:,} characters)")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise SpecFileError(f"cannot read the file: {err.strerror}", missing=isinstance(err, FileNotFoundError)) \
            from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # replaced between the stat and the open
            raise SpecFileError(f"not a regular file ({_kind(opened.st_mode)})")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_READ_BYTES + 1)
    except OSError as err:
        raise SpecFileError(f"cannot read the file: {err.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_READ_BYTES:  # it grew after the stat
        raise SpecFileError(f"the file is too large (more than {MAX_READ_BYTES:,} bytes; "
                            f"limit {MAX_SOURCE_BYTES:,} characters)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data

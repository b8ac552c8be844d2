"""The sbibm observations and reference posteriors, read out of the ``sbibm`` wheel (never installed).

The sbibm 1.1.0 wheel (PyPI, ~18 MB) ships, for each task and each observation ``k`` in 1..10,
``sbibm/tasks/<task>/files/num_observation_<k>/`` with ``observation.csv`` (a header and one row,
``dim_x`` numbers), ``true_parameters.csv`` (the same for the parameters) and
``reference_posterior_samples.csv.bz2`` (a header and 10,000 rows). This module reads them with
zipfile, bz2 and csv: sbibm itself (and its pyro, ...) is never imported or installed. Get the wheel
with ``pip download --no-deps sbibm==1.1.0 -d <cache>/wheels`` (``<cache>`` as for MNIST:
``$FLOWDSL_CACHE``, else ``$XDG_CACHE_HOME/flowdsl``, else ``~/.cache/flowdsl``); the reader finds it
at ``$FLOWDSL_SBIBM_WHEEL`` (a path to the ``.whl``) or in ``<cache>/wheels/``.

Example (a wheel made here with the real layout):
    >>> import io, zipfile, bz2, tempfile, os
    >>> d = tempfile.mkdtemp(); path = os.path.join(d, "sbibm-1.1.0-py2.py3-none-any.whl")
    >>> base = "sbibm/tasks/two_moons/files/num_observation_1/"
    >>> with zipfile.ZipFile(path, "w") as z:
    ...     z.writestr(base + "observation.csv", "data_1,data_2\\n0.1,-0.2\\n")
    ...     z.writestr(base + "true_parameters.csv", "parameter_1,parameter_2\\n0.5,0.5\\n")
    ...     z.writestr(base + "reference_posterior_samples.csv.bz2",
    ...                bz2.compress(b"parameter_1,parameter_2\\n0.5,0.4\\n-0.5,0.6\\n"))
    >>> ref = load_reference("two_moons", 1, wheel=path)
    >>> ref.observation.tolist(), ref.samples.shape, ref.true_parameters.tolist()
    ([0.1, -0.2], (2, 2), [0.5, 0.5])
"""

from __future__ import annotations

import bz2
import csv
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowdsl.errors import FlowDSLError
from flowdsl.training.dataset import data_error
from flowdsl.training.mnist import cache_dir

__all__ = ["WHEEL", "PIP_REQUIREMENT", "fetch_hint", "Reference", "find_wheel", "load_reference", "load_all",
           "wheel_dir"]

WHEEL = "sbibm-1.1.0-py2.py3-none-any.whl"
PIP_REQUIREMENT = "sbibm==1.1.0"
NUM_OBSERVATIONS = 10


def wheel_dir() -> Path:
    return cache_dir() / "wheels"


def fetch_hint() -> str:
    """How to get the wheel (the cache folder as it is now)."""
    return (f"run `pip download --no-deps {PIP_REQUIREMENT} -d {wheel_dir()}` (downloads the 18 MB wheel, "
            "installs nothing) or set FLOWDSL_SBIBM_WHEEL to the .whl")


@dataclass(frozen=True)
class Reference:
    """One observation of an sbibm task: ``observation [dim_x]``, ``samples [N, dim_theta]``, truth."""

    task: str
    num_observation: int
    observation: np.ndarray
    samples: np.ndarray
    true_parameters: np.ndarray


def find_wheel() -> Path:
    """The sbibm wheel to read; a FlowDSLError (one line and a hint) when there is none."""
    given = os.environ.get("FLOWDSL_SBIBM_WHEEL")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise data_error(f"FLOWDSL_SBIBM_WHEEL={given}: no such file", fetch_hint())
        return path
    found = sorted(wheel_dir().glob("sbibm-*.whl")) if wheel_dir().is_dir() else []
    if found:
        return found[-1]
    raise data_error(f"the sbibm reference posteriors need the {WHEEL} wheel, which is not in {wheel_dir()}",
                     fetch_hint())


def _parse_csv(text: str, where: str) -> np.ndarray:
    """A header row then rows of numbers, as float64 ``[rows, columns]``."""
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        raise data_error(f"{where}: expected a header and at least one row of numbers")
    width = len(rows[0])
    try:
        data = np.array([[float(v) for v in row] for row in rows[1:] if row], dtype=np.float64)
    except ValueError as err:
        raise data_error(f"{where}: not a table of numbers ({err})") from None
    if data.ndim != 2 or data.shape[1] != width:
        raise data_error(f"{where}: rows of {data.shape[1:] or 'ragged'} numbers under a header of {width}")
    return data


def load_reference(task: str, num_observation: int, wheel: str | os.PathLike | None = None) -> Reference:
    """Observation ``num_observation`` (1..10) of sbibm's ``task``, read from the wheel."""
    if not 1 <= int(num_observation) <= NUM_OBSERVATIONS:
        raise data_error(f"sbibm observation {num_observation} does not exist: 1..{NUM_OBSERVATIONS}")
    path = Path(wheel) if wheel is not None else find_wheel()
    base = f"sbibm/tasks/{task}/files/num_observation_{int(num_observation)}/"
    try:
        with zipfile.ZipFile(path) as z:
            def read(member: str) -> str:
                try:
                    raw = z.read(base + member)
                except KeyError:
                    raise data_error(f"{path}: the wheel has no {base + member}", fetch_hint()) from None
                if member.endswith(".bz2"):
                    raw = bz2.decompress(raw)
                return raw.decode("ascii")
            obs = _parse_csv(read("observation.csv"), f"{path.name}:{base}observation.csv")
            truth = _parse_csv(read("true_parameters.csv"), f"{path.name}:{base}true_parameters.csv")
            samples = _parse_csv(read("reference_posterior_samples.csv.bz2"),
                                 f"{path.name}:{base}reference_posterior_samples.csv.bz2")
    except FlowDSLError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, UnicodeDecodeError) as err:
        raise data_error(f"{path}: cannot read the sbibm wheel: {err}", fetch_hint()) from None
    if samples.shape[1] != truth.shape[1]:
        raise data_error(f"{path.name}:{base}: {samples.shape[1]}-d reference samples for "
                         f"{truth.shape[1]} true parameters")
    return Reference(task, int(num_observation), obs[0], samples, truth[0])


def load_all(task: str, wheel: str | os.PathLike | None = None) -> list[Reference]:
    """The 10 observations of ``task`` (1..10), in order."""
    path = Path(wheel) if wheel is not None else find_wheel()
    return [load_reference(task, k, path) for k in range(1, NUM_OBSERVATIONS + 1)]

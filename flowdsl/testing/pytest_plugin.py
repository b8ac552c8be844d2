"""pytest plugin: ``pytest --flowdsl specs/`` collects every model and property of every spec as a test.

Installed with flowdsl (the ``pytest11`` entry point), inactive unless ``--flowdsl`` is given.
Each ``*.flow`` / ``*.ar`` file becomes a collector; each (model, property) of
:data:`flowdsl.testing.runner.PROPERTIES` a test item named ``MODEL::PROPERTY``. A spec that
does not check is one failing item (``check``) showing the diagnostics.

Options: ``--flowdsl-examples N`` (examples per property, default 20), ``--flowdsl-seed S``,
``--flowdsl-plugin MODULE`` (user-defined layers; installed ``flowdsl.layers`` entry points are
loaded too). Without the entry point installed: ``pytest -p flowdsl.testing.pytest_plugin --flowdsl ...``.

Trust: pytest still collects the folder as usual, so ``pytest --flowdsl DIR`` imports (runs) DIR's
``conftest.py`` files and ``test_*.py`` modules; specs themselves never run code. To test the specs of
a folder you do not trust, run ``pytest --noconftest -o python_files= -p no:cacheprovider --flowdsl DIR``
(no conftest, no Python test modules, no ``.pytest_cache``), or ``flowdsl test DIR/*.flow``, which
imports nothing from DIR. Other pytest plugins write their usual folders into the directory pytest runs
in (Hypothesis ``.hypothesis/``: set ``HYPOTHESIS_STORAGE_DIRECTORY`` to move it; pytest-benchmark
``.benchmarks/``: ``-p no:benchmark``).

Example:
    >>> item_name("glow", "bijection")
    'glow::bijection'
"""

from __future__ import annotations

import pytest

__all__ = ["pytest_addoption", "pytest_configure", "pytest_collect_file", "SpecFile", "SpecItem", "item_name"]

SUFFIXES = (".flow", ".ar")


def item_name(model: str, prop: str) -> str:
    return f"{model}::{prop}"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("flowdsl", "flowdsl spec properties")
    group.addoption("--flowdsl", action="store_true", default=False,
                    help="collect *.flow and *.ar specs and property-test every model")
    group.addoption("--flowdsl-examples", type=int, default=20, help="examples per property (default 20)")
    group.addoption("--flowdsl-seed", type=int, default=None, help="another reproducible stream of examples")
    group.addoption("--flowdsl-plugin", action="append", default=[], metavar="MODULE",
                    help="load user-defined layers from this module or .py file (repeatable)")


def pytest_configure(config) -> None:
    if not config.getoption("flowdsl", default=False):
        return
    from flowdsl.errors import FlowDSLError
    from flowdsl.plugins import load_plugins

    try:
        load_plugins(config.getoption("flowdsl_plugin") or ())
    except FlowDSLError as err:
        raise pytest.UsageError(str(err)) from None


def pytest_collect_file(file_path, parent):
    if file_path.suffix in SUFFIXES and parent.config.getoption("flowdsl", default=False):
        return SpecFile.from_parent(parent, path=file_path)
    return None


class SpecFailure(Exception):
    """A property failed: the runner's report is the whole message."""


class SpecFile(pytest.File):
    """One spec file: its models' properties."""

    def collect(self):
        from flowdsl.errors import FlowDSLError
        from flowdsl.testing.runner import CONDITIONAL, PROPERTIES, subjects

        try:
            subs = subjects(self.path, self.config.getoption("flowdsl_seed") or 0)
        except FlowDSLError as err:
            yield SpecItem.from_parent(self, name="check", subject=None, prop="check", error=err.render())
            return
        for sub in subs:
            for prop, _ in PROPERTIES[sub.kind]:
                if prop in CONDITIONAL and not sub.conditional:
                    continue  # context, training: for models with a condition only (flowdsl test lists none)
                yield SpecItem.from_parent(self, name=item_name(sub.name, prop), subject=sub, prop=prop)


class SpecItem(pytest.Item):
    """One property of one model."""

    def __init__(self, *, subject, prop: str, error: str | None = None, **kw):
        super().__init__(**kw)
        self.subject = subject
        self.prop = prop
        self.error = error

    def runtest(self) -> None:
        if self.error is not None:
            raise SpecFailure(self.error)
        import torch

        from flowdsl.testing.runner import run_property

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            row = run_property(self.subject, self.prop, self.config.getoption("flowdsl_examples"),
                               self.config.getoption("flowdsl_seed"))
        finally:
            torch.set_num_threads(threads)
        if row.failed:
            raise SpecFailure(row.detail or f"{self.prop}: {row.verdict}")
        if row.verdict == "skip":
            pytest.skip(row.detail)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, SpecFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        model = self.subject.name if self.subject is not None else "-"
        return self.path, None, f"{self.path.name}: {model}: {self.prop}"

"""``use`` loads only ``.flow``/``.ar`` regular files inside the project root, each once, never quoting others.

Reproducers of issue 18 (findings 1, 2 and the ``use`` part of 7) and a generated family of ``use`` graphs:
folders of files that ``use`` each other under random spellings (``./``, ``x/../``, ``../d/``) must load
in bounded time, each real file once, with a cycle reported exactly when the resolved graph has one.
"""

from __future__ import annotations

import os
import time

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdsl.language.loader import MAX_USE_DEPTH, load_file, load_source
from flowdsl.language.spec_files import MAX_READ_BYTES, project_root

FLOW = "flow f {\n  input x: vector[2]\n  actnorm\n}\n"
SECRET = "root:x:0:0:SECRET-CONTENT\n"


def messages(unit):
    return [d.message for d in unit.diagnostics if d.severity == "error"]


@pytest.fixture
def project(tmp_path):
    """A project (marked by flowdsl.toml) inside a folder that also holds files outside it."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "flowdsl.toml").write_text("")
    (tmp_path / "outside.flow").write_text("let w = 3\n")
    (tmp_path / ".env").write_text(SECRET)
    return root


def main_using(root, *paths, name="main.flow"):
    text = "".join(f'use "{p}"\n' for p in paths) + FLOW
    (root / name).write_text(text)
    return load_file(root / name)


@pytest.mark.parametrize("path", ["/etc/passwd", "../.env", "/proc/self/environ", "/dev/zero", "../missing.txt",
                                  "secret.txt", "folder.flow/", ".flow"])
def test_a_non_spec_file_is_refused_without_reading_it(project, path):
    (project / "secret.txt").write_text(SECRET)
    (project / "folder.flow").mkdir()
    unit = main_using(project, path)
    (msg,) = messages(unit)
    assert msg == f"'use' loads only .flow and .ar spec files, not '{path}'"
    assert "SECRET" not in "".join(d.render(None, unit.sources) for d in unit.diagnostics)


def test_outside_the_root_is_refused_alike_whether_or_not_the_file_exists(project):
    unit = main_using(project, "../outside.flow", "../absent.flow")
    assert messages(unit) == [f"'use' of a file outside the project root {project}: '../outside.flow'",
                              f"'use' of a file outside the project root {project}: '../absent.flow'"]
    assert "allow_outside=True" in unit.diagnostics[0].hint and "--allow-outside" in unit.diagnostics[0].hint


def test_allow_outside_and_root_open_the_confinement(project):
    (project / "main.flow").write_text('use "../outside.flow"\n' + FLOW)
    assert messages(load_file(project / "main.flow", allow_outside=True)) == []
    assert load_file(project / "main.flow", root=project.parent).constants == {"w": 3}


def test_the_root_is_the_nearest_marked_folder_else_the_spec_folder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert project_root(tmp_path / "a" / "b" / "m.flow") == (tmp_path / "a" / "b").resolve()
    (tmp_path / "a" / "pyproject.toml").write_text("")
    assert project_root(tmp_path / "a" / "b" / "m.flow") == (tmp_path / "a").resolve()


def test_links_are_followed_and_judged_by_their_target(project):
    os.symlink(project.parent / "outside.flow", project / "out.flow")
    (project / "notes.txt").write_text(SECRET)
    os.symlink(project / "notes.txt", project / "notes.flow")
    (project / "real.flow").write_text("let w = 5\n")
    os.symlink(project / "real.flow", project / "alias.flow")
    unit = main_using(project, "out.flow", "notes.flow", "alias.flow", "real.flow")
    assert messages(unit) == [f"'use' of a file outside the project root {project}: 'out.flow'",
                              "'notes.flow' is a link to a file that is not a .flow or .ar spec"]
    assert unit.constants == {"w": 5}  # one file under two names: loaded once
    assert "SECRET" not in "".join(d.render(None, unit.sources) for d in unit.diagnostics)


def test_fifos_and_folders_named_like_specs_are_refused_without_opening(project):
    os.mkfifo(project / "pipe.flow")  # opening it for reading would block forever
    (project / "dir.flow").mkdir()
    start = time.monotonic()
    unit = main_using(project, "pipe.flow", "dir.flow")
    assert time.monotonic() - start < 5
    assert messages(unit) == ["cannot use 'pipe.flow': not a regular file (a FIFO)",
                              "cannot use 'dir.flow': not a regular file (a directory)"]
    assert messages(load_file(project / "pipe.flow")) == ["not a regular file (a FIFO)"]


def test_a_huge_file_is_refused_from_its_size(project):
    with open(project / "big.flow", "wb") as handle:
        handle.truncate(8 * 2**30)  # 8 GiB, sparse: reading it whole would take the machine
    start = time.monotonic()
    unit = main_using(project, "big.flow")
    (msg,) = messages(unit)
    assert msg == "cannot use 'big.flow': the file is too large (8,589,934,592 bytes; limit 1,000,000 characters)"
    assert messages(load_file(project / "big.flow")) == [msg.removeprefix("cannot use 'big.flow': ")]
    assert time.monotonic() - start < 5 and MAX_READ_BYTES < 2**23


@pytest.mark.parametrize("path", ["a" * 256 + ".flow", "d/" * 2100 + "a.flow", "a\x1bb.flow"])
def test_a_path_too_long_or_with_control_characters_is_a_positioned_error(project, path):
    unit = load_source(f'use "{path}"\n' + FLOW, str(project / "m.flow"))
    (diag,) = [d for d in unit.diagnostics if d.severity == "error"]
    assert (diag.pos.line, diag.pos.column) == (1, 1) and diag.message.startswith("cannot use this file: ")


def test_two_spellings_of_one_file_load_it_once(project):
    (project / "x").mkdir()
    (project / "b.flow").write_text("let w = 4\n")
    unit = main_using(project, "b.flow", "x/../b.flow", "./b.flow")
    assert messages(unit) == [] and unit.constants == {"w": 4}


def test_a_cycle_through_parent_folders_is_reported_as_the_cycle(project):
    for name, nxt in (("a", "b"), ("b", "c"), ("c", "a")):
        (project / name).mkdir()
        (project / name / f"{name}.flow").write_text(f'use "../{nxt}/{nxt}.flow"\n')
    unit = main_using(project, "a/a.flow")
    assert messages(unit) == ["use cycle: a.flow -> b.flow -> c.flow -> a.flow"]


def test_files_that_use_each_other_through_two_folders_load_in_linear_time(project):
    for folder in ("d", "e"):
        (project / folder).mkdir()
        (project / folder / "a.flow").write_text('use "../d/a.flow"\nuse "../e/a.flow"\n')
    start = time.monotonic()
    unit = main_using(project, "d/a.flow")
    assert time.monotonic() - start < 5
    assert len(unit.programs) == 3
    assert set(messages(unit)) == {"use cycle: a.flow -> a.flow", "use cycle: a.flow -> a.flow -> a.flow"}


def test_a_long_chain_is_still_limited_in_depth(project):
    for i in range(MAX_USE_DEPTH + 2):
        (project / f"f{i}.flow").write_text(f'use "f{i + 1}.flow"\n' if i <= MAX_USE_DEPTH else "let w = 1\n")
    unit = main_using(project, "f0.flow")
    assert messages(unit) == [f"'use' nested more than {MAX_USE_DEPTH} files deep"]


FOLDERS = ("d", "e", "d/x")


@st.composite
def use_graphs(draw):
    """Files in three folders, each using some of the others, every ``use`` spelt one of several ways."""
    files = [(folder, f"f{i}") for i in range(draw(st.integers(2, 5))) for folder in (draw(st.sampled_from(FOLDERS)),)]
    files = list(dict.fromkeys(files))
    edges = draw(st.lists(st.tuples(st.integers(0, len(files) - 1), st.integers(0, len(files) - 1)), max_size=12))
    spellings = draw(st.lists(st.integers(0, 2), min_size=len(edges), max_size=len(edges)))
    return files, edges, spellings


def _spell(source: str, target: str, how: int) -> str:
    rel = os.path.relpath(target, source)
    return [rel, "./" + rel, f"../{os.path.basename(source)}/{rel}"][how]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(graph=use_graphs())
def test_generated_use_graphs_load_each_file_once_and_find_exactly_the_cycles(tmp_path_factory, graph):
    files, edges, spellings = graph
    root = tmp_path_factory.mktemp("uses")
    (root / "flowdsl.toml").write_text("")
    uses: dict[int, list[str]] = {i: [] for i in range(len(files))}
    resolved = nx.DiGraph()
    resolved.add_nodes_from(range(len(files)))
    for (a, b), how in zip(edges, spellings):
        uses[a].append(_spell(files[a][0], files[b][0], how) + f"/{files[b][1]}.flow")
        resolved.add_edge(a, b)
    for i, (folder, name) in enumerate(files):
        (root / folder).mkdir(parents=True, exist_ok=True)
        body = "".join(f'use "{u}"\n' for u in uses[i]) + f"let c{i} = {i}\n"
        (root / folder / f"{name}.flow").write_text(body + (FLOW if i == 0 else ""))
    start = time.monotonic()
    unit = load_file(root / files[0][0] / f"{files[0][1]}.flow")
    assert time.monotonic() - start < 10
    reachable = nx.descendants(resolved, 0) | {0}
    assert len(unit.programs) == len(reachable)  # each real file once, however spelt
    assert set(unit.constants) == {f"c{i}" for i in reachable}
    cyclic = not nx.is_directed_acyclic_graph(resolved.subgraph(reachable))
    errors = messages(unit)
    assert all(m.startswith("use cycle: ") for m in errors) and bool(errors) == cyclic


def test_the_number_of_files_and_their_total_size_are_bounded(project, monkeypatch):
    import flowdsl.language.loader as loader

    for i in range(loader.MAX_USE_FILES + 5):
        (project / f"l{i}.flow").write_text(f"let c{i} = {i}\n")
    unit = main_using(project, *(f"l{i}.flow" for i in range(loader.MAX_USE_FILES + 5)))
    assert messages(unit) == [f"the spec uses more than {loader.MAX_USE_FILES} files"] * 6
    monkeypatch.setattr(loader, "MAX_UNIT_CHARACTERS", 100)
    unit = main_using(project, *(f"l{i}.flow" for i in range(20)))
    assert messages(unit)[0] == "the spec and the files it uses exceed 100 characters"

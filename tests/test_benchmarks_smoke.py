"""Smoke test of the benchmark code (``python -m benchmarks.run --quick``): seconds, no peers needed.

The flowdsl half always runs and is checked for real (parameter counts equal the checker's
analytic count, timings finite and positive, samples of the right shape, the tables render);
the peer half runs only for the peer libraries that are installed (the ``bench`` extra).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is not installed: run from the repo

from benchmarks import cases, peers  # noqa: E402
from benchmarks.compile_time import causality_time, deep_spec, stage_times  # noqa: E402
from benchmarks.harness import Impl, measure, param_count  # noqa: E402
from benchmarks.run import main, render_cases, run_cases  # noqa: E402
from flowdsl.runtime.input_checks import InputError, value_checks  # noqa: E402

HAVE = {lib: importlib.util.find_spec(module) is not None
        for lib, module in (("zuko", "zuko"), ("nflows", "nflows"), ("normflows", "normflows"), ("pyro", "pyro"),
                                   ("FrEIA", "FrEIA"))}


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def flowdsl_rows():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # a module fixture runs before the autouse one: one thread here too
    try:
        return run_cases(None, quick=True, peers=False, log=lambda line: None)
    finally:
        torch.set_num_threads(old)


def test_flowdsl_half_every_pairing(flowdsl_rows):
    assert [r["case"].key for r in flowdsl_rows] == [c.key for c in cases.CASES]
    for row in flowdsl_rows:
        (impl,) = row["impls"]
        assert impl.library == "flowdsl"
        assert row["params"]["flowdsl"] == impl.extra["declared"] > 0, row["case"].key
        for op in ("train", "log_prob", "sample"):
            t = row["timings"]["flowdsl"][op]
            assert math.isfinite(t) and t > 0, (row["case"].key, op, t)
        with torch.no_grad():
            x = impl.sample(3)
        assert tuple(x.shape) == (3, *row["case"].shape)
        assert torch.isfinite(impl.log_prob(x)).all()


def test_tables_render(flowdsl_rows):
    info = {"cpu": "cpu", "cores": 2, "threads": 1, "torch": torch.__version__, "python": "3",
            "device": "cpu", "zuko": "-", "nflows": "-", "normflows": "-"}
    text = render_cases(flowdsl_rows, info, "0", "0", "python -m benchmarks.run --quick")
    for row in flowdsl_rows:
        assert f"| {row['case'].key} | flowdsl | {row['params']['flowdsl']:,} |" in text


def test_missing_peer_is_reported_not_fatal(monkeypatch):
    def absent():
        raise ImportError("no such library")

    case = cases.CASES[0]
    monkeypatch.setattr(cases, "CASES", [cases.Case(case.key, case.title, case.spec, case.shape, 8, (absent,))])
    import benchmarks.run as run

    monkeypatch.setattr(run, "CASES", cases.CASES)
    (row,) = run.run_cases(None, quick=True, log=lambda line: None)
    assert row["missing"] == ["absent"] and [i.library for i in row["impls"]] == ["flowdsl"]


def test_harness_alternates_and_reports_missing_ops():
    calls = []
    a = Impl("a", torch.nn.Linear(2, 1), lambda x: calls.append("a") or x.sum(1))
    b = Impl("b", torch.nn.Linear(2, 1), lambda x: calls.append("b") or x.sum(1))
    res = measure([a, b], torch.zeros(4, 2), 4, repeats=3, block_s=1e-4, ops=("log_prob", "sample"), warmup=1)
    assert res["a"]["sample"] is None and res["b"]["sample"] is None
    assert res["a"]["log_prob"] > 0 and res["b"]["log_prob"] > 0
    assert calls[:2] == ["a", "a"] and "b" in calls  # warm-up and calibration of a, then b, then the rounds


def test_cli_quick_flowdsl_only(capsys):
    assert main(["--quick", "--only", "planar", "--no-peers"]) == 0
    out = capsys.readouterr().out
    assert "planar" in out and "528 params" in out


def test_front_end_timings():
    small, large = stage_times(deep_spec(5), "d.flow"), stage_times(deep_spec(50), "d.flow", build=False)
    assert (small["layers"], large["layers"]) == (10, 100)
    assert all(v > 0 for k, v in small.items() if k != "layers")
    total, causal = causality_time(8, layers=3)
    assert 0 < causal <= total + 1e-3


PEER_CASES = [("maf", "zuko"), ("maf", "nflows"), ("nsf_coupling", "zuko"), ("nsf_coupling", "nflows"),
              ("nsf_ar", "zuko"), ("nsf_ar", "nflows"), ("realnvp", "normflows"), ("glow", "normflows"),
              ("planar", "normflows"), ("maf", "pyro"), ("nsf_ar", "pyro"), ("nsf_coupling", "pyro"),
              ("planar", "pyro"), ("realnvp", "FrEIA"), ("radial", "pyro"), ("sylvester", "pyro"), ("naf", "pyro")]


@pytest.mark.parametrize("key,lib", PEER_CASES)
def test_peer_half_same_parameter_count(key, lib):
    if not HAVE[lib]:
        pytest.skip(f"{lib} is not installed (pip install -e .[bench]): peer half only")
    case = next(c for c in cases.CASES if c.key == key)
    builder = next(b for b in case.peers if b.__name__.startswith(lib.lower()))
    torch.manual_seed(0)
    peer = cases.build_peer(builder)
    ours = cases.flowdsl_impl(case)
    assert param_count(peer.module) == param_count(ours.module) == ours.extra["declared"]
    x = torch.randn(4, *case.shape)
    res = measure([ours, peer], x, 4, repeats=1, block_s=1e-4, ops=("log_prob",), warmup=1)
    assert res[lib]["log_prob"] > 0 and torch.isfinite(peer.log_prob(x.clone())).all()


def test_peer_masks_match_the_spec():
    """The coupling spec keeps the even features first, as zuko's and nflows' masks (peers.checkered) do."""
    text = cases.CASES[2].path.read_text()
    assert "for m in [even, odd, even, odd, even]" in text
    assert peers.checkered(0)[:4].tolist() == [True, False, True, False]


def test_residual_log_prob_without_grad_accepts_an_input_that_requires_grad():
    """Found by the benchmark: normflows flags its input ``requires_grad`` in place; a flowdsl residual
    flow then evaluated under no_grad on that tensor must still work (and agree with a fresh input)."""
    import flowdsl

    flow = flowdsl.compile_file(cases.SPECS / "resflow.flow").eval()
    x = torch.randn(5, 16, dtype=torch.float32)
    with torch.no_grad(), flowdsl.exact_logdet():
        expected = flow.log_prob(x)
        flagged = flow.log_prob(x.clone().requires_grad_(True))
    assert torch.allclose(flagged, expected, atol=1e-5)


class _HostReads:
    """Records every op that copies a tensor value to the host (``.item()``, ``bool(t)``): a GPU sync."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        hits = self.hits = []
        scalar = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func in scalar:
                    hits.append(func)
                return func(*args, **(kwargs or {}))

        self.mode = Mode()


@pytest.mark.parametrize("key", ["maf", "nsf_ar", "nsf_coupling", "realnvp", "glow", "planar", "radial", "sylvester",
                                 "naf"])
def test_no_host_sync_in_the_forward_pass(key):
    """What ``--device cuda`` needs: log_prob (training and evaluation) never reads a device value on
    the host. (The residual flow does, by design: adaptive power iterations and roulette lengths.) The
    input value checks are the one read, and they are off, as in the benchmarks; with them on, the
    reads are exactly theirs (next test)."""
    impl = cases.flowdsl_impl(next(c for c in cases.CASES if c.key == key))
    x = torch.randn(4, *impl.module.input_shape)
    for training in (True, False):
        impl.module.train(training)
        impl.log_prob(x)  # first call: data-dependent initialisation (actnorm) may read the device once
        reads = _HostReads()
        with value_checks(False), reads.mode:
            impl.log_prob(x)
        assert reads.hits == [], (key, training, reads.hits)


def test_input_value_checks_are_the_only_host_reads_and_can_be_switched_off():
    impl = cases.flowdsl_impl(next(c for c in cases.CASES if c.key == "maf"))
    x = torch.randn(4, *impl.module.input_shape)
    impl.log_prob(x)
    on, off = _HostReads(), _HostReads()
    with value_checks(True), on.mode:
        impl.log_prob(x)
    with value_checks(False), off.mode:
        impl.log_prob(x)
    assert on.hits and off.hits == []  # one bool read: is_nonzero + _local_scalar_dense
    with value_checks(True), pytest.raises(InputError, match="non-finite"):
        impl.log_prob(torch.full_like(x, float("nan")))


def test_compiled_pairings_time_compiled_peers_and_name_the_ones_that_fail():
    """``--compile``'s like-for-like table (traced with the eager backend: no code generation): every peer
    compiled is timed against compiled flowdsl; a peer that does not compile is named with its error."""
    from benchmarks.compiled import compiled_pairings

    case = next(c for c in cases.CASES if c.key == "maf")
    torch.manual_seed(0)
    ours = cases.flowdsl_impl(case)
    twin = Impl("twin", ours.module, ours.log_prob, ours.sample)  # the same model as an eager "peer"

    def refuse(x):
        raise RuntimeError("cannot trace this")

    broken = Impl("broken", torch.nn.Linear(1, 1), refuse, None)
    x = torch.randn(8, *case.shape)
    with value_checks(False):
        out = compiled_pairings([ours, twin, broken], x, 8, repeats=1, block_s=1e-4, backend="eager",
                                ops=("log_prob", "sample"))
    assert set(out) == {"twin", "broken", "wall"}
    ratios = out["twin"]["ratio"]
    assert all(math.isfinite(ratios[op]) and ratios[op] > 0 for op in ("log_prob", "sample"))
    assert "cannot trace this" in out["broken"]["errors"]["log_prob"] and not out["broken"]["ratio"]
    rows = run_cases(["maf"], quick=True, peers=False)
    rows[0]["compiled_pairs"] = out
    table = render_cases(rows, {"cpu": "x", "cores": 1, "threads": 1, "device": "cpu", "torch": "t", "python": "p",
                                "zuko": "-", "nflows": "-", "normflows": "-"}, "0", "0", "cmd")
    assert "| maf | broken | " in table and "Compiled against compiled" in table

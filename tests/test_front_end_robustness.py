"""No input may crash, hang or over-allocate: the front end answers every input with diagnostics.

Fuzzed inputs (mutations of the bundled specs, registry-driven random models, grammar-generated
text, raw bytes) go through the checker and, when accepted and small, the compiler and a forward
pass; anything but :class:`flowdsl.FlowDSLError` escaping is a failure, and so is an input that
takes longer than :data:`HANG_SECONDS`. Pathological inputs each get one precise diagnostic
(golden: line, column, message). ``FLOWDSL_FUZZ_SCALE`` multiplies the number of examples.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import signal
import tracemalloc
from contextlib import contextmanager

import pytest
from fuzz_inputs import SOURCES, known_crash, mutated_specs, random_specs, vocabulary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.cli.main import main

SCALE = float(os.environ.get("FLOWDSL_FUZZ_SCALE", "1"))
HANG_SECONDS = 30  # per input, on a loaded machine; typical inputs take milliseconds
LIMITS = flowdsl.Limits(max_layers=2_000, max_params=5_000_000)
COMPILE_PARAMS, COMPILE_SIZE = 200_000, 1024  # accepted specs at most this big are compiled and run
FUZZ = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


def n(examples: int) -> int:
    return max(1, int(examples * SCALE))


class Hang(BaseException):
    """An input took too long (BaseException: no ``except Exception`` in the code under test swallows it)."""


@contextmanager
def watchdog(seconds: float = HANG_SECONDS):
    def alarm(signum, frame):
        raise Hang(f"the input took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _lines(text) -> int:
    return (text.count(b"\n") if isinstance(text, bytes) else text.count("\n")) + 1


def check_input(text, name: str, compile_: bool = True, limits: flowdsl.Limits = LIMITS):
    """Analyse (and, if accepted and small, compile and run) one input; only FlowDSLError may escape."""
    if known_crash(text):
        return None
    with watchdog():
        try:
            analysis = flowdsl.analyze_source(text, name, limits)
        except flowdsl.FlowDSLError as err:
            assert err.diagnostics and all(d.severity == "error" for d in err.errors)
            return None
        for d in analysis.diagnostics:
            assert d.severity in ("error", "warning", "note") and d.message
            assert not d.message.startswith("internal error"), d.render(text if isinstance(text, str) else None)
            if d.pos.file == name:
                assert 0 <= d.pos.line <= _lines(text) + 1 and d.pos.column >= 0, d
            d.render(analysis.sources.get(d.pos.file))
        if analysis.ok and compile_:
            for ir in analysis.models.values():
                _compile_and_run(analysis, ir)
    return analysis


_COMPILED: set = set()


def _structure(ir):
    h = ir.header
    layers = tuple((node.layer.describe(), node.in_shape) for node in ir.layers)
    return (h.kind, h.input.shape, h.input.levels, h.condition, str(h.base), str(h.output), layers)


def _compile_and_run(analysis, ir) -> None:
    import torch

    from flowdsl.runtime.compiler import compile_model

    size = math.prod(ir.header.input.shape)
    if ir.params > COMPILE_PARAMS or size > COMPILE_SIZE:
        return
    key = _structure(ir)
    if key in _COMPILED:  # the same model as an earlier input (a mutated comment, a renamed constant, ...)
        return
    _COMPILED.add(key)
    try:
        model = compile_model(ir, analysis.unit)
    except flowdsl.FlowDSLError as err:  # a layer without a runtime yet
        assert "no runtime yet" in str(err) or "cannot be compiled yet" in str(err), str(err)
        return
    allocated = sum(p.numel() for p in model.parameters())
    assert allocated == ir.params <= LIMITS.max_params, (allocated, ir.params)
    model.eval()
    levels = getattr(model, "levels", None)
    cond = getattr(model, "condition", None)
    ctx = None
    if cond is not None:  # a context of the declared shape: whole numbers for labels and levels, reals otherwise
        ctx = torch.zeros(2, *cond.shape, dtype=torch.long if cond.levels is not None else torch.float32)
    with torch.no_grad():
        if ir.header.kind == "flow":
            x = torch.rand(2, *model.input_shape) * (levels or 1)
            z, ld = model(x, ctx)
            assert z.shape == x.shape and ld.shape == (2,)
        else:
            x = torch.randint(0, levels, (2, *model.input_shape))
            assert model.log_prob(x, ctx).shape == (2,)


# ----------------------------------------------------------------------------- fuzzing
@settings(max_examples=n(900), **FUZZ)
@given(mutated_specs())
def test_mutated_bundled_specs(case):
    check_input(*case)


@settings(max_examples=n(400), **FUZZ)
@given(random_specs())
def test_registry_driven_random_models(case):
    check_input(*case)


@settings(max_examples=n(1000), **FUZZ)
@given(st.binary(max_size=300), st.sampled_from(["r.flow", "r.ar"]))
def test_random_bytes(data, name):
    check_input(data, name)


@settings(max_examples=n(500), **FUZZ)
@given(st.lists(st.sampled_from(vocabulary()), max_size=40), st.sampled_from(["w.flow", "w.ar"]))
def test_random_word_soup(words, name):
    check_input(" ".join(words), name)


@functools.cache
def _grammar_strategy(kind: str):
    from hypothesis.extra.lark import from_lark

    from flowdsl.language.parser import get_parser

    names = st.sampled_from([w for w in vocabulary() if w.isidentifier()])
    return from_lark(get_parser(kind), explicit={"common__NAME": names})


@settings(max_examples=n(80), **FUZZ)
@given(st.data())
def test_grammar_generated_text(data):
    kind = data.draw(st.sampled_from(["flow", "ar"]))
    text = data.draw(_grammar_strategy(kind))
    check_input(text, f"g.{kind}")


@settings(max_examples=n(80), **FUZZ)
@given(st.data())
def test_generated_specs_with_extreme_arguments(data):
    """Specs drawn from the registry with valid but extreme arguments (range bounds): the checker copes."""
    from flowdsl.testing import specs

    kind = data.draw(st.sampled_from(["flow", "autoregressive"]))
    text = data.draw(specs(kind, max_layers=3, extreme=True, small=kind == "autoregressive", runnable=False,
                           limits=LIMITS, exclude=known_crash))
    check_input(text, "x.flow" if kind == "flow" else "x.ar")


def test_known_crashes_are_still_recognised():
    """Each known crash is a real input; the list shrinks as owners fix them (see KNOWN_CRASHES)."""
    assert known_crash("autoregressive m {\n input x: vector[2] levels 2\n made(hidden=[4000000000])\n}\n")
    assert known_crash("flow m {\n input x: vector[2]\n autoregressive affine(net=made([1e9]))\n}\n")
    assert known_crash("autoregressive m {\n input x: video[2, 2, 2, 2] levels 2\n video_encoder\n}\n")
    assert known_crash("flow m {\n input x: vector[18] levels 130\n continuous(rtol=5e-324, atol=8.3e-306)\n}\n")
    assert not known_crash("autoregressive m {\n input x: vector[4] levels 2\n made([256, 256])\n}\n")


def test_check_command_never_shows_a_traceback(tmp_path, capsys):
    """`flowdsl check` on a sample of mutated specs: exit status 0 or 1, diagnostics, no traceback."""
    import random

    rng = random.Random(7)
    for i in range(n(30)):
        data, name = SOURCES[rng.randrange(len(SOURCES))]
        cut = rng.randrange(len(data))
        path = tmp_path / f"c{i}_{name}"
        path.write_bytes(data[:cut] + data[cut + rng.randrange(1, 20):])
        with watchdog():
            status = main(["check", str(path), "--max-layers", "2000"])
        out = capsys.readouterr()
        assert status in (0, 1) and "Traceback" not in out.err + out.out
        assert f"{path}: " in out.out or f"{path}:" in out.err


def test_memory_stays_bounded():
    """The whole fuzz run must not have grown the process beyond a generous bound (kilobytes on Linux)."""
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4_000_000


# ----------------------------------------------------------------------------- pathological inputs (golden)
FLOW = "flow f {\n    input x: vector[2]\n"
EMPTY = (1, 1, "warning", "the file is empty: it defines no model, block or constant")
DEEP = "the spec is nested more than 200 levels deep"
PATHOLOGICAL = {
    "empty file": ("", [EMPTY]),
    "only comments and blank lines": ("# nothing\n\n   \n", [EMPTY]),
    "deeply nested blocks": (FLOW + "    repeat 2 {\n" * 300 + "    }\n" * 300 + "}\n", [(101, 12, "error", DEEP)]),
    "deeply nested lists": ("let a = " + "[" * 2000 + "1" + "]" * 2000 + "\n", [(1, 207, "error", DEEP)]),
    "deeply nested calls": (FLOW + "    coupling affine(net=" + "mlp(" * 300 + ")" * 300 + ")\n}\n",
                            [(3, 412, "error", DEEP)]),
    "a long chain of minus signs": ("let a = " + "-" * 5000 + "1\n", [(1, 207, "error", DEEP)]),
    "a long sum": ("let a = " + "1 + " * 3000 + "1\n", [(1, 9, "error", DEEP)]),
    "a huge repeat": (FLOW + "    repeat 1000000000 { actnorm }\n}\n",
                      [(3, 12, "error", "repeat 1000000000 exceeds the layer limit (10000)")]),
    "nested repeats": (FLOW + "    repeat 50 { repeat 50 { repeat 50 { actnorm } } }\n}\n",
                       [(3, 41, "error", "the model has more than 100 layers (the layer limit)")]),
    "too many layers": (FLOW + "    actnorm\n" * 101 + "}\n",
                        [(103, 5, "error", "the model has more than 100 layers (the layer limit)")]),
    "a huge float": ("let a = 1e999\n", [(1, 9, "error", "number 1e999 is out of range")]),
    "a huge whole number": ("let a = " + "9" * 400 + "\n", [(1, 9, "error", "number 9999999999999999... (400 "
                                                             "characters) is too large (limit 9007199254740992)")]),
    "more digits than Python converts": ("let a = " + "9" * 5000 + "\n", [(1, 9, "error", "number 9999999999999999... "
                                         "(5000 characters) is too large (limit 9007199254740992)")]),
    "a huge power": ("let a = 10 ** 10 ** 10\n", [(1, 9, "error", "number too large (10 ** 10000000000)")]),
    "a power that underflows": ("let a = 10 ** -400\n", [(1, 9, "error", "number too small (10 ** -400 underflows "
                                                                      "to 0; the smallest is about 5e-324)")]),
    "a small power": ("let a = 10 ** -300\nlet b = 2 ** -1074\n", []),
    "a parity given as true": ("flow f {\n    input x: image[2, 4, 4]\n    coupling additive(mask=checkerboard(true))"
                               "\n    coupling additive(mask=channel(false))\n}\n",
                               [(3, 41, "error", "argument 'parity' of checkerboard must be 0 or 1 (got true)"),
                                (4, 36, "error", "argument 'parity' of channel must be 0 or 1 (got false)")]),
    "seeds beyond 2**32": ("flow f {\n    input x: vector[4]\n    autoregressive affine(net=made([8], "
                           "order=random(seed=2**40)))\n    permute(random(seed=2**40))\n}\n", []),
    "a made net's order for the part it sees": (FLOW.replace("[2]", "[4]") + "    coupling affine(mask=half, "
                                                "net=made([8], order=[1, 3, 0, 2]))\n}\n",
                                                [(3, 32, "error", "order [1, 3, 0, 2] is not a permutation of "
                                                                  "0..1")]),
    "a huge range": ("let a = 0..99999999999\n", [(1, 9, "error", "range too long (limit 100000)")]),
    "a huge input": ("flow f {\n    input x: vector[999999999999]\n}\n",
                     [(2, 5, "error", "the input has 999999999999 elements (limit 50000000)")]),
    "a huge net": (FLOW + "    coupling affine(net=mlp([100000, 100000]))\n}\n",
                   [(1, 1, "error", "model 'f' would have 10,000,500,002 parameters (limit 200,000,000)"),
                    (1, 1, "warning", "no layer transforms dimensions 0 (1 of 2): the flow leaves them as they are")]),
    "a very long line": (FLOW + "    " + "a" * 100_000 + "\n}\n",
                         [(3, 5, "error", "name 'aaaaaaaaaaaaaaaa...' is 100,000 characters long (limit 256)")]),
    "a very long comment": ("# " + "x" * 200_000 + "\n" + FLOW + "    actnorm\n}\n", []),
    "a file too large": ("#" * 1_100_000,
                         [(1, 1, "error", "the file is too large (1100000 characters; limit 1000000)")]),
    "bytes that are not UTF-8": (b"flow f {\n input x: vector[2]\n \xff\xfe actnorm\n}\n",
                                 [(3, 2, "error", "the file is not UTF-8 text (byte 30)")]),
    "a NUL character": ("flow f {\n input x: vector[2]\x00\n}\n",
                        [(2, 20, "error", "the file contains a NUL character")]),
    "a byte-order mark": ("\ufeff" + FLOW + "    actnorm\n}\n", []),
    "a recursive block": ("block b(x) { b(x) }\n" + FLOW + "    b(1)\n    actnorm\n}\n",
                          [(1, 1, "error", "block 'b' is recursive: b -> b")]),
    "a use of itself": ('use "p.flow"\n' + FLOW + "    actnorm\n}\n", [(1, 1, "error", "use cycle: p.flow -> p.flow")]),
}


SMALL_LIMITS = flowdsl.Limits(max_layers=100)  # the layer limit's code path, without expanding 10,000 layers


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_input_gets_a_precise_diagnostic(name):
    text, expected = PATHOLOGICAL[name]
    limits = SMALL_LIMITS if "layers" in name or "repeats" in name else flowdsl.Limits()
    tracemalloc.start()
    try:
        analysis = check_input(text, "p.flow", compile_=False, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300 * 2**20, f"{name}: the front end allocated {peak / 2**20:.0f} MiB"
    if analysis is None:  # a FlowDSLError from the parser: the same diagnostics
        try:
            flowdsl.analyze_source(text, "p.flow")
        except flowdsl.FlowDSLError as err:
            diags = err.diagnostics
    else:
        diags = analysis.diagnostics
    assert [(d.pos.line, d.pos.column, d.severity, d.message) for d in diags] == expected


def test_too_many_tokens():
    """A 300 KB list is refused at its 100,001st token, well within the watchdog (no tracemalloc: it is slow)."""
    text = FLOW + "    coupling affine(mask=[" + ", ".join(["1"] * 50_001) + "])\n}\n"
    with watchdog():
        diags = flowdsl.check_source(text, "p.flow")
    assert [(d.pos.line, d.pos.column, d.message) for d in diags] == [
        (3, 150000, "the spec has more than 100,000 tokens (words, numbers and symbols)")]


def test_use_cycle_and_missing_file_on_disk(tmp_path, capsys):
    (tmp_path / "a.flow").write_text('use "b.flow"\nflow a {\n    input x: vector[2]\n    actnorm\n}\n')
    (tmp_path / "b.flow").write_text('use "a.flow"\nblock step() { actnorm }\n')
    (tmp_path / "m.flow").write_text('use "lib/missing.flow"\nflow m {\n    input x: vector[2]\n    actnorm\n}\n')
    got = [(d.pos.file, d.pos.line, d.pos.column, d.message) for d in flowdsl.check_file(tmp_path / "a.flow")]
    assert got == [(str(tmp_path / "b.flow"), 1, 1, "use cycle: a.flow -> b.flow -> a.flow")]
    got = [(d.pos.file, d.pos.line, d.pos.column, d.message) for d in flowdsl.check_file(tmp_path / "m.flow")]
    assert got == [(str(tmp_path / "m.flow"), 1, 1,
                    f"cannot find 'lib/missing.flow' (looked for {tmp_path / 'lib' / 'missing.flow'})")]
    assert main(["check", str(tmp_path / "m.flow")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'm.flow'}:1:1: error: cannot find 'lib/missing.flow'" in err and "Traceback" not in err


def test_accepted_bundled_specs_compile_and_run():
    for data, name in SOURCES:
        check_input(data, name)


UNSAFE = [chr(c) for c in (*range(0, 9), *range(11, 32), 127, *range(0x80, 0xA0), 0x61C, 0x200E, 0x200F,
                           *range(0x202A, 0x202F), *range(0x2066, 0x206A)) if c != 13]


@settings(max_examples=n(60), **FUZZ)
@given(st.lists(st.tuples(st.integers(0, 120), st.sampled_from(UNSAFE)), min_size=1, max_size=6))
def test_control_and_bidi_characters_of_a_spec_are_never_echoed_raw(insertions):
    """ESC, BEL, C1 controls and bidi overrides inserted anywhere: the rendered diagnostics show them escaped."""
    text = FLOW + "    coupling additive(mask=half)\n    actnorm\n}\n"
    for at, char in sorted(insertions, reverse=True):
        text = text[:at] + char + text[at:]
    try:
        rendered = flowdsl.FlowDSLError(flowdsl.analyze_source(text, "c\x1b.flow").diagnostics,
                                        {"c\x1b.flow": text}).render()
    except flowdsl.FlowDSLError as err:
        rendered = err.render()
    assert not any(char in rendered for char in UNSAFE), repr(rendered)


def test_one_seed_range_everywhere_a_made_model_takes_what_permute_takes():
    """Any whole seed >= 0, used mod 2**32: 2**40 seeds a made model's order and degrees like 0 (it was an internal
    error there while permute accepted it)."""
    def made(seed):
        text = (f"autoregressive m {{\n  input x: vector[5] levels 2\n  made([8], order=random(seed={seed}), "
                f"masks=2)\n}}\n")
        analysis = flowdsl.analyze_source(text, "m.ar")
        assert analysis.ok, [d.message for d in analysis.diagnostics]
        return analysis.model().layers[0].causal.orders

    assert made("2 ** 40") == made(0) and made(1) != made(0)

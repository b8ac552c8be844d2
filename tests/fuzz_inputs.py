"""Fuzz inputs for the front end: mutations of the bundled specs, registry-driven random calls, raw bytes.

Used by ``tests/test_front_end_robustness.py`` and ``tests/test_testing_toolkit.py`` (which also share
:data:`KNOWN_CRASHES`, the reported crashes in other modules left out until fixed). Every strategy yields
``(bytes or str, filename)`` inputs; nothing here knows a layer by name: layer and argument names come from the
registry.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import strategies as st

import flowdsl  # noqa: F401  (registers the built-in layers)
from flowdsl.language.values import describe
from flowdsl.layers.registry import BASES, LAYERS, NETS, OUTPUTS

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted(p for p in list((ROOT / "specs").rglob("*.flow")) + list((ROOT / "specs").rglob("*.ar")))


def _small(path: Path) -> bytes:
    """The spec with its models' inputs shrunk (same layers), so that a mutant costs milliseconds to check."""
    from flowdsl.testing.tiny import shrink_source

    text = path.read_text()
    try:
        for model in flowdsl.model_names(path):
            tiny = shrink_source(text, str(path), model, max_size=256, min_size=16)
            text = tiny.text if tiny is not None else text
    except flowdsl.FlowDSLError:
        pass
    return text.encode()


SOURCES = [(_small(p), p.name) for p in CORPUS]

_TOKEN = re.compile(rb'\s+|#[^\n]*|"[^"\n]*"|[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|->|\.\.|\*\*|.',
                    re.S)
KEYWORDS = ["flow", "autoregressive", "use", "let", "block", "repeat", "for", "in", "input", "condition", "base",
            "output", "levels", "vector", "image", "sequence", "video", "label", "true", "false", "doubling"]
PUNCTUATION = ["(", ")", "[", "]", "{", "}", ",", "=", ":", "->", "..", ";", "\n", "-", "+", "*", "/", "**", "#",
               '"', "\\\n", "\t", "\r"]
NUMBERS = ["0", "1", "2", "-1", "0.5", "1e9", "1e308", "1e999", "9" * 30, "2 ** 60", "1e-320", "0.0", "3"]


def _names() -> list[str]:
    names = set(LAYERS.names()) | set(NETS.names()) | set(BASES.names()) | set(OUTPUTS.names())
    for family in (LAYERS, NETS, BASES, OUTPUTS):
        for cls in family.members.values():
            names.update(cls.model_fields)
    return sorted(names)


def vocabulary() -> list[str]:
    """Words the language and the registry know, punctuation, and awkward numbers."""
    return KEYWORDS + PUNCTUATION + NUMBERS + _names()


def tokens(data: bytes) -> list[bytes]:
    return _TOKEN.findall(data)


@st.composite
def mutated_specs(draw, max_mutations: int = 4):
    """A bundled spec with 1..max_mutations byte flips, token deletions, duplications, swaps or insertions."""
    data, name = draw(st.sampled_from(SOURCES))
    words = [w.encode() for w in vocabulary()]
    for _ in range(draw(st.integers(1, max_mutations))):
        op = draw(st.sampled_from(["flip", "delete", "duplicate", "swap", "insert", "line"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1:]
            continue
        if op == "line":
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            what = draw(st.sampled_from(["delete", "duplicate", "repeat"]))
            if what == "delete":
                del lines[i]
            else:
                lines[i:i + 1] = [lines[i]] * (2 if what == "duplicate" else draw(st.integers(3, 40)))
            data = b"\n".join(lines)
            continue
        toks = tokens(data)
        if not toks:
            data = draw(st.sampled_from(words))
            continue
        i = draw(st.integers(0, len(toks) - 1))
        j = min(len(toks), i + draw(st.integers(1, 6)))
        if op == "delete":
            toks = toks[:i] + toks[j:]
        elif op == "duplicate":
            toks = toks[:j] + toks[i:j] * draw(st.integers(1, 3)) + toks[j:]
        elif op == "swap":
            k = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[k] = toks[k], toks[i]
        else:
            toks.insert(i, draw(st.sampled_from(words)))
        data = b"".join(toks)
    return data, name


# ----------------------------------------------------------------------------- registry-driven random calls
_WILD = st.recursive(
    st.one_of(st.integers(-(2**70), 2**70).map(str), st.sampled_from(NUMBERS), st.booleans().map(describe),
              st.sampled_from(['"x"', '""', '"texture.png"', '"../../etc/passwd"']),
              st.sampled_from(_names() + KEYWORDS[:4])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5).map(lambda v: "[" + ", ".join(v) + "]"),
        st.tuples(st.sampled_from(_names()), st.lists(inner, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**", ".."]), inner).map(lambda t: " ".join(t)),
    ),
    max_leaves=4,
)


@st.composite
def random_calls(draw, kind: str):
    """A registered layer (sometimes misspelt) with arguments of its schema (sometimes unknown), any values."""
    names = [n for n in LAYERS.names() if kind in LAYERS.get(n).models] or LAYERS.names()
    name = draw(st.sampled_from(names))
    if draw(st.integers(0, 9)) == 0:
        name = name[:-1] or name + "x"
    cls = LAYERS.get(name)
    fields = list(cls.model_fields) if cls is not None else []
    args = []
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(fields + ["bogus"])) if fields and draw(st.booleans()) else None
        value = draw(_WILD)
        args.append(f"{key}={value}" if key else value)
    return name + (f"({', '.join(args)})" if args or draw(st.booleans()) else "")


@st.composite
def random_specs(draw):
    """A whole model of random calls: the grammar's structure, the registry's words, wild values."""
    kind = draw(st.sampled_from(["flow", "autoregressive"]))
    if draw(st.integers(0, 4)):  # mostly a valid input, so that the layers get checked
        t, dims = draw(st.sampled_from([("vector", ["4"]), ("vector", ["n"]), ("sequence", ["6"]),
                                        ("image", ["1", "4", "4"]), ("image", ["3", "2", "2"]),
                                        ("video", ["2", "1", "2", "2"])]))
        levels = " levels 4" if kind == "autoregressive" or draw(st.booleans()) else ""
    else:
        t = draw(st.sampled_from(["vector", "image", "sequence", "video", "label", "tensor"]))
        dims = draw(st.lists(st.sampled_from(["1", "2", "3", "4", "0", "-1", "8", "1e3", "2.5", "n"]), max_size=4))
        levels = draw(st.sampled_from(["", " levels 2", " levels 256", " levels 1", " levels 0", " levels 2**30"]))
    lines = [f"input x: {t}[{', '.join(dims)}]{levels}"]
    if draw(st.booleans()):
        lines.append(f"condition y: label[{draw(st.sampled_from(['1', '2', '10', '0']))}]")
    if kind == "autoregressive" and draw(st.booleans()):
        lines.append(f"output {draw(st.sampled_from(OUTPUTS.names() + ['normal']))}")
    elif draw(st.integers(0, 3)) == 0:
        lines.append(f"base {draw(st.sampled_from(BASES.names() + ['categorical']))}")
    body = []
    for _ in range(draw(st.integers(0, 4))):
        form = draw(st.sampled_from(["call", "chain", "repeat", "for"]))
        call = draw(random_calls(kind))
        if form == "chain":
            call += " -> " + draw(random_calls(kind))
        elif form == "repeat":
            call = f"repeat {draw(st.sampled_from(['2', '0', '3', '-1', '1e9', 'n']))} {{ {call} }}"
        elif form == "for":
            call = f"for d in {draw(st.sampled_from(['[1, 2]', '1..3', 'doubling(1, 8)', '4']))} {{ {call} }}"
        body.append(call)
    lets = "let n = 2\n" if draw(st.booleans()) else ""
    text = lets + f"{kind} m {{\n" + "\n".join("    " + ln for ln in lines + body) + "\n}\n"
    return text, "m.flow" if kind == "flow" else "m.ar"


# ----------------------------------------------------------------------------- known crashes
#: inputs that crash someone else's module, left out until fixed (each reported with its file and input)
KNOWN_CRASHES = [
    # flowdsl/made.py hidden_degrees and flowdsl/layers/ar_basic.py _made_cached allocate an array as wide as a
    # MADE hidden layer before the parameter limit is checked: made([3000000000]) -> MemoryError (or the OOM killer).
    ("a MADE net with a huge hidden layer", re.compile(r"made\([^)]*(\d{7,}|\d(\.\d+)?e\+?\d{2,}|\de[6-9])")),
    # flowdsl/causality.py:188 mix() on flowdsl/layers/ar_video.py video_encoder as the last layer of a video with
    # 2 or more channels: IndexError ('video_encoder' then 'output categorical' on video[2, 2, 2, 2] levels 2).
    ("video_encoder as the last layer", re.compile(r"video_encoder(?![\s\S]*pixel_decoder)")),
    # flowdsl/runtime/continuous.py: FFJORD with tolerances the schema allows but float arithmetic cannot meet,
    # continuous(rtol=5e-324, atol=8e-306) on vector[18] levels 130: torchdiffeq's AssertionError 'underflow in dt'.
    ("an ODE solver with tolerances below 1e-13",
     re.compile(r"continuous\([^)]*(rtol|atol)=\d(\.\d+)?e-(1[3-9]|[2-9]\d|\d{3})")),
]


def known_crash(text) -> str | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return next((why for why, pattern in KNOWN_CRASHES if pattern.search(text)), None)

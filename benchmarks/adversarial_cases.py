"""Cases of the adversarial benchmark: what a hostile user hands flowdsl, family by family.

A :class:`Case` is plain data (picklable): a CLI command line (``argv``, with ``{placeholders}``
for the fixtures and the case folder) or an API call, the files to create first, what is due
(``expect``: ``"refuse"``, ``"ok"`` or ``"any"``) and an oracle checked on success. This module
generates the spec families (Hypothesis draws from ``tests/fuzz_inputs.py`` and
:mod:`flowdsl.testing.strategies`), ``use`` graphs and size bombs;
:mod:`benchmarks.adversarial_files` the CLI arguments, checkpoints and data files;
:mod:`benchmarks.adversarial_api` the API calls.

Example:
    >>> c = Case("cli-args", "sample -n 0", "cli", argv=("sample", "{flow_ck}", "-n", "0", "-o", "x.npy"),
    ...          expect="refuse")
    >>> c.family, c.expect
    ('cli-args', 'refuse')
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "draw", "spec_cases", "use_cases", "size_cases", "SECRET"]

ROOT = Path(__file__).resolve().parent.parent
#: a marker written into files a spec must never read out (a leak is a silent wrong result)
SECRET = "SECRET-7f3a9c-DO-NOT-PRINT"


@dataclass
class Case:
    family: str
    name: str
    action: str  # "cli" | "api"
    argv: tuple = ()
    files: dict = field(default_factory=dict)  # relative path -> bytes, None (a folder) or a recipe tuple
    expect: str = "any"  # "refuse" | "ok" | "any"
    oracle: str | None = None
    api: tuple = ()  # (operation, arguments) for action "api"


def draw(strategy, n: int, seed: int = 0) -> list:
    """``n`` (or fewer, if Hypothesis runs dry) deterministic draws of ``strategy``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list = []

    @hseed(seed)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(x):
        out.append(x)

    collect()
    return out[:n]


def _fuzz():
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import fuzz_inputs

    return fuzz_inputs


def _as_bytes(text) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")


def spec_cases(command: str, n: int, seed: int) -> list[Case]:
    """``n`` generated specs (mutated bundled specs, random registry calls, valid generated specs) run
    through ``check`` or ``compile``."""
    from hypothesis import strategies as st

    from flowdsl.testing.strategies import specs

    fuzz = _fuzz()
    family = f"spec-{command}"
    mutated = draw(fuzz.mutated_specs(), n // 2, seed)
    wild = draw(fuzz.random_specs(), n * 2 // 5, seed + 1)
    kinds = st.sampled_from(["flow", "autoregressive"]).flatmap(lambda k: specs(k).map(lambda t: (t, k)))
    valid = [(t, "m.flow" if k == "flow" else "m.ar") for t, k in draw(kinds, max(1, n - len(mutated) - len(wild)),
                                                                          seed + 2)]
    cases = []
    for text, name in mutated + wild + valid:
        suffix = ".ar" if str(name).endswith(".ar") else ".flow"
        cases.append(Case(family, f"{command} of a generated spec ({name})", "cli",
                          argv=(command, "spec" + suffix), files={"spec" + suffix: _as_bytes(text)}))
    return cases[:n]


_LIB = b"let w = 2\n"
_MAIN = 'flow f {{\n  input x: vector[2]\n  coupling affine(mask=half, net=mlp([w]))\n}}\n'


def _main(uses: list[str]) -> bytes:
    return ("".join(f'use "{u}"\n' for u in uses) + _MAIN.format()).encode()


def use_cases(n: int) -> list[Case]:
    """``use`` graphs: chains, diamonds that grow exponentially, two spellings of a file, cycles through
    ``../``, and non-spec targets (secrets, devices, FIFOs, folders, links, long names, outside the root)."""
    cases: list[Case] = []
    marker = {"pyproject.toml": b"[project]\nname='p'\n"}

    def add(name, files, uses, expect="any", own_w=False):
        files = dict(marker, **files, **{"main.flow": (b"let w = 2\n" if own_w else b"") + _main(uses)})
        cases.append(Case("use-graph", name, "cli", argv=("check", "main.flow"), files=files, expect=expect,
                          oracle="no_secret"))

    for depth in (1, 2, 5, 16, 31, 32, 33, 40, 64):
        files = {f"d{k}/s.flow": f'use "../d{k + 1}/s.flow"\n'.encode() for k in range(depth)}
        files[f"d{depth}/s.flow"] = _LIB
        add(f"a chain of {depth} files through ../", files, ["d0/s.flow"])
    for width in (2, 3, 6, 12, 20, 30):
        files = {}
        for level in range(width):
            for side in "de":
                files[f"{side}{level}/a.flow"] = (f'use "../d{level + 1}/a.flow"\nuse "../e{level + 1}/a.flow"\n'
                                                  .encode())
        files[f"d{width}/a.flow"] = files[f"e{width}/a.flow"] = _LIB
        add(f"a diamond of {width} levels (2^{width} paths)", files, ["d0/a.flow", "e0/a.flow"])
    for spelling in ("x/../b.flow", "./b.flow", "x/./../b.flow", "x/../x/../b.flow", "b.flow"):
        add(f"one file under two spellings (b.flow, {spelling})", {"b.flow": _LIB, "x": None}, ["b.flow", spelling])
    for length in (1, 2, 3, 5, 8):
        files = {f"c{k}/s.flow": f'use "../c{(k + 1) % length}/s.flow"\n'.encode() for k in range(length)}
        add(f"a cycle of {length} files through ../", files, ["c0/s.flow"])
    secret = (f"{SECRET}\nAWS_SECRET_ACCESS_KEY={SECRET}\n").encode()
    targets = [
        ("/etc/passwd", {}), ("/etc/shadow", {}), ("/proc/self/environ", {}), ("/proc/self/cmdline", {}),
        ("/dev/zero", {}), ("/dev/urandom", {}), ("/dev/null", {}), ("/", {}), (".", {}), ("..", {}),
        (".env", {".env": secret}), ("secret.txt", {"secret.txt": secret}), ("../outside/x.flow", {}),
        ("sub/.env", {"sub/.env": secret}), ("folder.flow", {"folder.flow": None}),
        ("fifo.flow", {"fifo.flow": ("fifo",)}), ("link.flow", {"link.flow": ("symlink", ".env"), ".env": secret}),
        ("dangling.flow", {"dangling.flow": ("symlink", "nowhere.flow")}),
        ("x" * 300 + ".flow", {}), ("x" * 255 + ".flow", {}), ("a/" * 200 + "b.flow", {}), ("", {}),
        ("secret.flow", {"secret.flow": secret}), ("bin.flow", {"bin.flow": b"\x00\xff" * 100}),
        ("big.flow", {"big.flow": ("sparse", 8 * 2**30)}), ("nul\x00.flow", {}), ("main.flow", {}),
        ("~/.bashrc", {}), ("$HOME/.bashrc", {}), ("C:\\\\Windows\\\\win.ini", {}), ("/tmp", {}),
    ]
    for target, files in targets:
        add(f"use of {target[:40]!r}", files, [target])
    for k in range(max(0, n - len(cases))):  # generated graphs: random edges among a few folders
        import random

        rng = random.Random(k)
        nodes = rng.randint(2, 7)
        files = {}
        for i in range(nodes):  # mostly a DAG (edges to later files); a back edge (a cycle) now and then
            later = list(range(i + 1, nodes))
            targets_i = rng.sample(later, rng.randint(0, min(3, len(later)))) if later else []
            if rng.random() < 0.1:
                targets_i.append(rng.randrange(i + 1))
            spell = ["../n{j}/s.flow", "../n{j}/./s.flow", "../n{j}/../n{j}/s.flow", "../../p/n{j}/s.flow"]
            files[f"n{i}/s.flow"] = ("".join(f'use "{rng.choice(spell).format(j=j)}"\n' for j in targets_i)
                                     + f"let v{i} = {i}\n").encode()
        add(f"a random use graph of {nodes} files (seed {k})", files, ["n0/s.flow"], own_w=True)
    return cases[:n]


def size_cases(n: int) -> list[Case]:
    """Size bombs: huge inputs within the element limit, dense causality checks, huge levels and widths,
    big spec files, texture PNG bombs, unbounded shape passes."""
    cases: list[Case] = []

    def add(name, text, command="check", files=None, suffix=".flow"):
        f = {"spec" + suffix: text.encode()}
        f.update(files or {})
        cases.append(Case("size", name, "cli", argv=(command, "spec" + suffix), files=f))

    for n_in in (10**6, 20_000_000, 50_000_000, 10**8, 2**31, 10**12):
        add(f"made on vector[{n_in}]", f"flow f {{\n input x: vector[{n_in}]\n coupling affine(mask=half, "
                                        f"net=made([16]))\n}}\n")
        add(f"permute(reverse) on vector[{n_in}]", f"flow f {{\n input x: vector[{n_in}]\n permute(reverse)\n}}\n")
    for side in (64, 128, 256, 1024):
        add(f"pixelcnn on image[1, {side}, {side}]", f"autoregressive m {{\n input x: image[1, {side}, {side}] "
                                                     f"levels 2\n masked_conv(mask=A, kernel=7, channels=8)\n"
                                                     f" relu -> masked_conv(mask=B, kernel=3, channels=8)\n"
                                                     f" output categorical\n}}\n",
            suffix=".ar")
    for length in (10**4, 10**5, 10**6, 10**9):
        add(f"fvbn on sequence[{length}]", f"autoregressive m {{\n input x: sequence[{length}] levels 2\n fvbn\n"
                                           f" output bernoulli\n}}\n", suffix=".ar")
    for levels in (256, 65536, 2**24, 2**31):
        add(f"made with levels {levels}", f"autoregressive m {{\n input x: vector[16] levels {levels}\n made([64])\n"
                                          f" output categorical\n}}\n", suffix=".ar")
    for width in (10**5, 10**6, 10**9, 10**12):
        add(f"made hidden width {width}", f"autoregressive m {{\n input x: vector[16] levels 2\n made([{width}])\n"
                                          f" output bernoulli\n}}\n", suffix=".ar")
    for side in (512, 4096, 16384):
        add(f"realnvp compile on image[1, {side}, {side}]",
            f"flow f {{\n input x: image[1, {side}, {side}] levels 256\n coupling affine(mask=checkerboard(0))\n}}\n",
            command="compile")
    for size in (2 * 2**20, 64 * 2**20, 8 * 2**30):
        cases.append(Case("size", f"a spec file of {size} bytes", "cli", argv=("check", "spec.flow"),
                          files={"spec.flow": ("sparse", size)}))
    for w, h in ((2**16, 2**16), (2**31 - 1, 2**31 - 1), (100_000, 1), (20_000, 20_000)):
        cases.append(Case("size", f"texture PNG header {w}x{h}", "cli", argv=("check", "spec.ar"),
                          files={"spec.ar": ("texture_spec",), "texture.png": ("forged_png", w, h)}))
    for k in range(max(0, n - len(cases))):
        import random

        rng = random.Random(k)
        dims = rng.choice([[rng.choice([2**20, 3 * 10**6, 10**7, 5 * 10**7])], [3, rng.choice([512, 2048, 8192])] * 1])
        kind = "vector" if len(dims) == 1 else "image"
        shape = dims if kind == "vector" else [dims[0], dims[1], dims[1]]
        layer = rng.choice(["permute(reverse)", "actnorm", "coupling affine(mask=half)", "permute(random(seed=1))"])
        add(f"{layer} on {kind}{shape}", f"flow f {{\n input x: {kind}[{', '.join(map(str, shape))}]\n {layer}\n}}\n",
            command=rng.choice(["check", "compile"]))
    return cases[:n]

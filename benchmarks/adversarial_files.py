"""Files and command lines of the adversarial benchmark: fixtures, recipes, CLI arguments, checkpoints, data files.

:func:`build_fixtures` compiles a few small models into checkpoints (once per worker); a case's
files are bytes or *recipes* (``("fifo",)``, ``("ckpt", fixture, how, arg)``, ``("npy", kind)``,
...) that :func:`make_file` writes in the case's folder. :func:`cli_cases`, :func:`checkpoint_cases`
and :func:`data_cases` generate the command-line families.

Example:
    >>> len(cli_cases(40)), {c.family for c in checkpoint_cases(10)}
    (40, {'checkpoint'})
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from benchmarks.adversarial_cases import SECRET, Case

__all__ = ["build_fixtures", "make_file", "cli_oracle", "cli_cases", "checkpoint_cases", "data_cases"]

SPECS = {
    "flow": "flow f {\n input x: vector[4] levels 4\n coupling affine(mask=half, net=mlp([8]))\n permute(reverse)\n"
            " coupling affine(mask=half, net=mlp([8]))\n}\n",
    "toy": "flow t {\n input x: vector[2]\n coupling affine(mask=half, net=mlp([8]))\n permute(reverse)\n"
           " coupling affine(mask=half, net=mlp([8]))\n}\n",
    "cond": "flow c {\n input x: vector[4] levels 4\n condition y: label[3]\n coupling affine(mask=half, "
            "net=mlp([8]))\n}\n",
    "ar": "autoregressive a {\n input x: image[1, 4, 4] levels 4\n masked_conv(mask=A, kernel=3, channels=8)\n"
          " relu -> masked_conv(mask=B, kernel=1, channels=8)\n output categorical\n}\n",
}
SUFFIX = {"flow": ".flow", "toy": ".flow", "cond": ".flow", "ar": ".ar"}


def build_fixtures(folder: Path) -> dict[str, str]:
    """Specs, checkpoints (``{flow_ck}``, ``{ar_ck}``, ...) and good data files for the cases."""
    from flowdsl.api import compile_source
    from flowdsl.checkpoint import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for key, text in SPECS.items():
        spec = folder / f"{key}{SUFFIX[key]}"
        spec.write_text(text)
        model = compile_source(text, filename=str(spec))
        save_checkpoint(model, folder / f"{key}.pt")
        names[f"{key}_spec"], names[f"{key}_ck"] = str(spec), str(folder / f"{key}.pt")
    rng = np.random.default_rng(0)
    data = {"flow_data": rng.integers(0, 4, (60, 4)), "toy_data": rng.normal(size=(80, 2)).astype(np.float32),
            "ar_data": rng.integers(0, 4, (40, 1, 4, 4))}
    for key, x in data.items():
        np.save(folder / f"{key}.npy", x)
        names[key] = str(folder / f"{key}.npy")
    np.savez(folder / "cond_data.npz", x=rng.integers(0, 4, (60, 4)), y=rng.integers(0, 3, 60))
    names["cond_data"] = str(folder / "cond_data.npz")
    from flowdsl.cli.main import main

    for key, n in (("flow_ck", 3), ("ar_ck", 2)):  # the clean checkpoints' samples: damage must not change them
        ref = folder / f"ref_{key}.npy"
        main(["sample", names[key], "-n", str(n), "-o", str(ref)])
        names[f"ref_{key}"] = str(ref)
    png = folder / "ar_input.png"
    _png(png, rng.integers(0, 256, (4, 4)).astype(np.uint8))
    names["ar_png"] = str(png)
    names["fixtures"] = str(folder)
    return names


def _png(path, array) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def _forged_png(w: int, h: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(buf, format="PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", w, h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def _checkpoint(fixture: str, how: str, arg, fixtures) -> bytes | None:
    import io

    import torch

    data = Path(fixtures[fixture]).read_bytes()
    if how == "truncate":
        return data[:int(len(data) * arg)]
    if how == "flip":
        i = int(arg * (len(data) - 1))
        return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]
    if how == "random":
        return np.random.default_rng(arg).integers(0, 256, arg, dtype=np.uint8).tobytes()
    if how == "text":
        return b"not a checkpoint\n" * arg
    payload = torch.load(io.BytesIO(data), weights_only=True)
    if how == "drop":
        payload.pop(arg, None)
    elif how == "set":
        key, value = arg
        payload[key] = value
    elif how == "state":
        state = payload.get("state", {})
        keys = sorted(k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point())
        if keys:
            k = keys[arg[1] % len(keys)]
            v = state[k]
            state[k] = {"nan": v * float("nan"), "inf": v + float("inf"), "shape": torch.zeros(*v.shape, 3),
                        "big": v * 1e30, "dtype": v.to(torch.float64), "int": v.long()}[arg[0]]
    elif how == "pickle":
        import pickle

        return pickle.dumps({"state": _Boom(f"{fixtures['dir']}/EXECUTED")}) if arg == "exec" else \
            pickle.dumps({"a": 1})
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


class _Boom:
    """A pickle that runs a command when unpickled (a loader must never unpickle it)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _npy(kind: str, arg=None) -> bytes:
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    good = rng.integers(0, 4, (60, 4))
    arrays = {
        "zero_d": np.array(3), "empty": np.zeros((0, 4)), "one": good[:1], "struct": np.zeros(5, "f4,i4"),
        "complex": good + 1j, "text": np.array(["a", "b"]), "nan": np.where(good == 0, np.nan, good),
        "inf": np.where(good == 0, np.inf, good), "bool": good > 1, "negative": good - 2, "float_levels": good + 0.5,
        "huge_values": good * 1e30, "int8": good.astype(np.int8), "big_levels": good * 10**12,
        "wrong_shape": rng.integers(0, 4, (60, 5)), "f16": good.astype(np.float16), "u64": good.astype(np.uint64),
        "fortran": np.asfortranarray(good), "rank3": rng.integers(0, 4, (60, 2, 2)),
        "continuous": rng.normal(size=(60, 4)), "good": good, "one_nan": np.where(np.arange(240).reshape(60, 4) == 7,
                                                                                  np.nan, good),
    }
    if kind == "object":
        np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        return buf.getvalue()
    if kind == "header_lies":
        np.save(buf, good)
        return buf.getvalue().replace(b"(60, 4)", b"(99999999999, 4)")
    np.save(buf, arrays[kind])
    data = buf.getvalue()
    return data[:arg] if kind == "good" and arg is not None else data


def _npz(kind: str) -> bytes:
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 4, (60, 4)), rng.integers(0, 3, 60)
    variants = {"labels_short": dict(x=x, y=y[:10]), "labels_negative": dict(x=x, y=y - 5),
                "labels_float": dict(x=x, y=y + 0.5), "labels_2d": dict(x=x, y=np.stack([y, y], 1)),
                "labels_nan": dict(x=x, y=np.where(y == 0, np.nan, y)), "no_x": dict(q=x),
                "train_test_mismatch": dict(train=x, test=x[:, :2]), "only_train_labels": dict(train=x, test=x,
                                                                                                 y_train=y),
                "labels_too_many_classes": dict(x=x, y=y * 100), "good": dict(x=x, y=y), "empty_x": dict(x=x[:0])}
    if kind == "corrupt":
        return b"PK\x03\x04" + bytes(200)
    np.savez(buf, **variants[kind])
    return buf.getvalue()


def make_file(recipe, fixtures, path: Path) -> None:
    """Create ``path`` from a recipe tuple."""
    what = recipe[0]
    if what == "fifo":
        os.mkfifo(path)
    elif what == "symlink":
        os.symlink(recipe[1], path)
    elif what == "sparse":
        with open(path, "wb") as f:
            f.write(b"flow f {\n input x: vector[2]\n}\n# ")
            f.truncate(recipe[1])
    elif what == "texture_spec":
        path.write_text("autoregressive t {\n input x: image[1, 32, 32] levels 256\n"
                        " nonparametric(window=7, source=\"texture.png\")\n}\n")
    elif what == "forged_png":
        path.write_bytes(_forged_png(recipe[1], recipe[2]))
    elif what == "ckpt":
        data = _checkpoint(recipe[1], recipe[2], recipe[3], fixtures | {"dir": str(path.parent)})
        path.write_bytes(data or b"")
    elif what == "npy":
        path.write_bytes(_npy(*recipe[1:]))
    elif what == "npz":
        path.write_bytes(_npz(recipe[1]))
    elif what == "png":
        _png_recipe(path, recipe[1])
    elif what == "secret":
        path.write_text(SECRET + "\n")
    else:  # pragma: no cover - a typo in a generator
        raise ValueError(f"unknown recipe {recipe!r}")


def _png_recipe(path: Path, kind: str) -> None:
    rng = np.random.default_rng(3)
    if kind == "grey16":
        _png(path, (rng.integers(0, 65536, (4, 4))).astype(np.uint16))
    elif kind == "rgb":
        _png(path, rng.integers(0, 256, (4, 4, 3)).astype(np.uint8))
    elif kind == "big":
        _png(path, np.zeros((64, 64), np.uint8))
    elif kind == "truncated":
        _png(path, rng.integers(0, 256, (32, 32)).astype(np.uint8))
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    elif kind == "huge_header":
        path.write_bytes(_forged_png(2**31 - 1, 2**31 - 1))
    elif kind == "bomb_header":
        path.write_bytes(_forged_png(50_000, 50_000))
    else:
        _png(path, rng.integers(0, 256, (4, 4)).astype(np.uint8))


def cli_oracle(name: str, out: str, err: str, names: dict) -> str:
    """'' when the successful run's result is right, else what is wrong."""
    folder = Path(names["dir"])
    text = out + err
    if name == "no_secret":
        if SECRET in text or "root:x:0:0" in text:
            return "the output quotes a file it must not read"
        return ""
    if (folder / "EXECUTED").exists():
        return "a checkpoint ran code"
    if name == "finite" or name.startswith("same_as_clean"):
        if "nan" in text.lower().split() or " nan " in text.lower() or "inf " in text.lower():
            return "a non-finite number in the output: " + " ".join(text.split())[-200:]
        for npy in folder.glob("*.npy"):
            a = np.load(npy)
            if a.dtype.kind in "fc" and not np.isfinite(a).all():
                return f"non-finite values written to {npy.name}"
    if name.startswith("same_as_clean:"):
        outs = sorted(folder.glob("out*.npy"))
        ref = names.get("ref_" + name.partition(":")[2])
        if outs and ref is not None and not np.array_equal(np.load(outs[0]), np.load(ref)):
            return "a corrupted checkpoint gave other samples than the clean one, without a word"
    return ""


def cli_cases(n: int) -> list[Case]:
    """Command lines with bad (and a few good) arguments for every command."""
    bad_ints = ["0", "-3", "abc", "1.5", "", "nan", "1e9", str(2**70), "-0", "0x10"]
    bad_floats = ["nan", "inf", "-1", "0", "abc", "1e400", "-inf"]
    cases = []

    def add(name, argv, expect="refuse", oracle="finite"):
        cases.append(Case("cli-args", name, "cli", argv=tuple(argv), expect=expect, oracle=oracle))

    out = ("-o", "out.npy")
    for v in bad_ints:
        add(f"sample -n {v}", ["sample", "{flow_ck}", "-n", v, *out], "any")
        add(f"complete -n {v}", ["complete", "{ar_ck}", "--input", "{ar_png}", "--mask", "top", "-n", v, *out], "any")
        add(f"interpolate --steps {v}", ["interpolate", "{toy_ck}", "--data", "{toy_data}", "--steps", v, *out],
            "any")
        add(f"sample --seed {v}", ["sample", "{flow_ck}", "--seed", v, *out], "any")
        add(f"sample --label {v}", ["sample", "{cond_ck}", "--label", v, *out], "any")
        add(f"sample --rate {v}", ["sample", "{flow_ck}", "--rate", v, *out], "any")
        add(f"check --max-layers {v}", ["check", "{flow_spec}", "--max-layers", v], "any")
        add(f"compile --max-params {v}", ["compile", "{flow_spec}", "--max-params", v], "any")
        add(f"eval --batch {v}", ["eval", "{flow_ck}", "--data", "{flow_data}", "--batch", v], "any")
        add(f"train --steps {v}", ["train", "{toy_spec}", "--data", "{toy_data}", "--steps", v, "-q", "-o", "t.pt"],
            "any")
        add(f"train --batch {v}", ["train", "{toy_spec}", "--data", "{toy_data}", "--steps", "1", "--batch", v, "-q",
                                   "-o", "t.pt"], "any")
        add(f"interpolate --index {v} 0", ["interpolate", "{toy_ck}", "--data", "{toy_data}", "--index", v, "0", *out],
            "any")
        add(f"test --examples {v}", ["test", "{flow_spec}", "--examples", v, "--property", "params"], "any")
    for v in bad_floats:
        add(f"train --lr {v}", ["train", "{toy_spec}", "--data", "{toy_data}", "--steps", "1", "--lr", v, "-q", "-o",
                                "t.pt"], "any")
        add(f"train --clip {v}", ["train", "{toy_spec}", "--data", "{toy_data}", "--steps", "1", "--clip", v, "-q",
                                  "-o", "t.pt"], "any")
    for dev in ("cuda", "cuda:7", "nonsense", "mps", "cpu:0", "", "meta", "cpu"):
        add(f"sample --device {dev!r}", ["sample", "{flow_ck}", "--device", dev, *out], "any")
        add(f"compile --device {dev!r}", ["compile", "{flow_spec}", "--device", dev], "any")
    for o in ("missing/x.npy", ".", "x.jpg", "x", "/proc/x.npy", "x.wav", "x.png", "/dev/null/x.npy"):
        add(f"sample -o {o}", ["sample", "{flow_ck}", "-o", o], "any")
        add(f"compile -o {o}", ["compile", "{flow_spec}", "-o", o], "any")
        add(f"graph -o {o}", ["graph", "{flow_spec}", "-o", o], "any")
    for spec in ("{flow_ck}", "{flow_data}", "missing.flow", ".", "/dev/null", "{ar_png}"):
        for cmd in ("parse", "check", "compile", "graph"):
            add(f"{cmd} {spec}", [cmd, spec], "refuse", None)
        if spec != "{flow_ck}":
            add(f"sample {spec}", ["sample", spec, *out], "refuse", None)
    for inp in ("{flow_data}", "digits:99999999", "digits:-1", "moons:0", "{ar_png}:0", "nope", "x.npy", "{ar_data}",
                "{toy_data}", "{ar_ck}", ":", "digits:", "{fixtures}"):
        add(f"complete --input {inp}", ["complete", "{ar_ck}", "--input", inp, "--mask", "top", *out], "any")
    for mask in ("middle", "{ar_png}", "{flow_data}", "", "{ar_ck}"):
        add(f"complete --mask {mask!r}", ["complete", "{ar_ck}", "--input", "{ar_data}", "--mask", mask, *out], "any")
    for cmd, ck in itertools.product(("sample", "complete", "interpolate", "eval"), ("{flow_ck}", "{ar_ck}",
                                                                                    "{cond_ck}", "{toy_ck}")):
        argv = {"sample": ["sample", ck, *out], "eval": ["eval", ck, "--data", "{flow_data}"],
                "complete": ["complete", ck, "--input", "{ar_data}", "--mask", "top", *out],
                "interpolate": ["interpolate", ck, "--data", "{toy_data}", *out]}[cmd]
        add(f"{cmd} on {ck}", argv, "any")
    for good in (["sample", "{flow_ck}", "-n", "3", *out], ["sample", "{ar_ck}", "-n", "2", *out],
                 ["check", "{flow_spec}", "--max-layers", "10"], ["sample", "{cond_ck}", "--label", "2", *out],
                 ["sample", "{toy_ck}", "-n", "5", "-o", "out.png"]):
        add("valid: " + " ".join(good[:2] + good[2:4]), good, "ok")
    return cases[:n]


def checkpoint_cases(n: int) -> list[Case]:
    """Damaged checkpoints (truncated, flipped bytes, random, pickles, missing keys, bad state) under each command."""
    recipes = []
    for fx in ("flow_ck", "ar_ck"):
        recipes += [(fx, "truncate", f) for f in (0.0, 0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999)]
        recipes += [(fx, "flip", f) for f in np.linspace(0.02, 0.98, 25).round(4).tolist()]
        recipes += [(fx, "random", k) for k in (1, 100, 5000)] + [(fx, "text", 3)]
        recipes += [(fx, "pickle", "exec"), (fx, "pickle", "dict")]
        recipes += [(fx, "drop", k) for k in ("state", "spec", "format", "checksum", "sources", "model", "hash",
                                              "sha256", "step", "optimizer", "rng")]
        recipes += [(fx, "set", (k, v)) for k, v in (("state", {}), ("state", 3), ("spec", None), ("format", "x/9"),
                                                     ("checksum", "0" * 64), ("sources", {"a.flow": "junk"}))]
        recipes += [(fx, "state", (how, k)) for how in ("nan", "inf", "shape", "big", "dtype", "int") for k in (0, 1)]
    commands = {
        "flow_ck": [("sample", ["sample", "ck.pt", "-n", "3", "-o", "out.npy"]),
                    ("eval", ["eval", "ck.pt", "--data", "{flow_data}"]),
                    ("train --resume", ["train", "{flow_spec}", "--data", "{flow_data}", "--resume", "ck.pt", "--steps",
                                        "2", "-q", "-o", "t.pt"])],
        "ar_ck": [("sample", ["sample", "ck.pt", "-n", "2", "-o", "out.npy"]),
                  ("complete", ["complete", "ck.pt", "--input", "{ar_data}", "--mask", "top", "-o", "out.npy"])],
    }
    cases = []
    for recipe in recipes:
        for label, argv in commands[recipe[0]]:
            oracle = f"same_as_clean:{recipe[0]}" if label == "sample" else "finite"
            cases.append(Case("checkpoint", f"{label} on {recipe[0]} {recipe[1]} {recipe[2]!r}"[:120], "cli",
                              argv=tuple(argv), files={"ck.pt": ("ckpt", *recipe)}, oracle=oracle,
                              expect="refuse" if recipe[1] in ("truncate", "random", "text", "pickle") else "any"))
    return cases[:n]


def data_cases(n: int) -> list[Case]:
    """The user's data files (npy, npz, PNG folders) under train, eval and complete."""
    npy = ["zero_d", "empty", "one", "struct", "complex", "text", "nan", "inf", "bool", "negative", "float_levels",
           "huge_values", "int8", "big_levels", "wrong_shape", "f16", "u64", "fortran", "rank3", "continuous",
           "object", "header_lies", "one_nan"]
    files = [("d.npy", ("npy", k), "refuse" if k in ("zero_d", "empty", "one", "struct", "complex", "text", "nan",
                                                     "inf", "object", "header_lies", "one_nan") else "any")
             for k in npy]
    files += [("d.npy", ("npy", "good", cut), "refuse") for cut in (0, 10, 60, 100, 200)]
    files += [("d.npz", ("npz", k), "any") for k in ("labels_short", "labels_negative", "labels_float", "labels_2d",
                                                     "labels_nan", "no_x", "train_test_mismatch", "only_train_labels",
                                                     "labels_too_many_classes", "corrupt", "empty_x", "good")]
    pngs = ["grey16", "rgb", "truncated", "garbage", "huge_header", "bomb_header", "big"]
    cases = []
    for rel, recipe, expect in files:
        name = recipe[1] + (f"[:{recipe[2]}]" if len(recipe) > 2 else "")
        spec = "{cond_spec}" if rel.endswith(".npz") else "{flow_spec}"
        ck = "{cond_ck}" if rel.endswith(".npz") else "{flow_ck}"
        cases.append(Case("data-file", f"train on {name}{rel[-4:]}", "cli", expect=expect, oracle="finite",
                          argv=("train", spec, "--data", rel, "--steps", "2", "-q", "-o", "t.pt"),
                          files={rel: recipe}))
        cases.append(Case("data-file", f"eval on {name}{rel[-4:]}", "cli", expect=expect, oracle="finite",
                          argv=("eval", ck, "--data", rel), files={rel: recipe}))
        if rel.endswith(".npy"):
            cases.append(Case("data-file", f"complete --input {name}.npy", "cli", expect="any", oracle="finite",
                              argv=("complete", "{ar_ck}", "--input", rel, "--mask", "top", "-o", "out.npy"),
                              files={rel: recipe}))
    for kind in pngs:
        folder = {f"pngs/a/{i}.png": ("png", kind) for i in range(3)} | {f"pngs/b/{i}.png": ("png", "ok")
                                                                         for i in range(3)}
        cases.append(Case("data-file", f"train on a PNG folder with {kind} images", "cli", oracle="finite",
                          argv=("train", "{ar_spec}", "--data", "pngs", "--steps", "1", "-q", "-o", "t.pt"),
                          files=folder))
        cases.append(Case("data-file", f"complete --input {kind}.png", "cli", oracle="finite",
                          argv=("complete", "{ar_ck}", "--input", "in.png", "--mask", "top", "-o", "out.npy"),
                          files={"in.png": ("png", kind)}))
        cases.append(Case("data-file", f"complete --mask {kind}.png", "cli", oracle="finite",
                          argv=("complete", "{ar_ck}", "--input", "{ar_data}", "--mask", "m.png", "-o", "out.npy"),
                          files={"m.png": ("png", kind)}))
    return cases[:n]

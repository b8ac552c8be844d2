"""``flowdsl explain``: every bundled spec draws, what is drawn is the engine's sets, bad arguments are one line,
and the HTML page loads every picture in a real headless browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdsl.analysis import receptive
from flowdsl.analysis.causality import analyze, dependency_sets
from flowdsl.api import analyze_file, analyze_source
from flowdsl.cli.main import main
from flowdsl.explain import attention, flows, kernels, made, reads
from flowdsl.explain.model_pictures import default_position, model_pictures
from flowdsl.explain.page import page
from flowdsl.explain.pictures import untile
from flowdsl.explain.render import figure, save
from flowdsl.layers import made_masks
from flowdsl.layers.ar_attention import head_masks
from flowdsl.layers.ar_conv import masked_taps

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.flow")) + sorted((ROOT / "specs").glob("*.ar"))


@cache
def _analysis(name: str):
    return analyze_file(ROOT / "specs" / name)


def _model(name: str, model: str | None = None):
    return _analysis(name).model(model)


# ----------------------------------------------------------------------------- every spec draws
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_bundled_spec_has_pictures(spec):
    analysis = _analysis(spec.name)
    assert analysis.ok
    for ir in analysis.models.values():
        found = model_pictures(ir)
        names = [p.name for p in found]
        want = {"reads", "layers"} if ir.kind == "autoregressive" else {"jacobian-structure"}
        assert want <= set(names)
        for picture in found:
            assert picture.caption and picture.panels
            for panel in picture.panels:
                assert panel.network is not None or (panel.image is not None and panel.image.ndim == 2
                                                     and panel.image.size > 0)
                if panel.image is not None and panel.colours:
                    assert panel.image.max() < len(panel.colours)


@pytest.mark.parametrize("spec,suffix", [("pixelcnn.ar", ".png"), ("realnvp.flow", ".svg"), ("made.ar", ".png")])
def test_a_few_specs_render(spec, suffix, tmp_path):
    out = tmp_path / f"pictures{suffix}"
    assert main(["explain", str(ROOT / "specs" / spec), "-o", str(out), "--dpi", "30"]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:2000]


# ----------------------------------------------------------------------------- pictures = the engine's sets
@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["pixelcnn.ar", "gated_pixelcnn.ar", "pixelcnn_rgb.ar", "video_pixel.ar", "made.ar"]),
       st.integers(0, 10**6))
def test_the_cells_drawn_read_are_the_positions_the_checker_proved_read(spec, seed):
    ir = _model(spec)
    result = analyze(ir)
    p = seed % result.layout.n
    picture = reads.reads_picture(ir, p)
    drawn = figure(picture, dpi=20).axes[0].images[0].get_array()
    panel = picture.rows[0][0]
    assert np.array_equal(np.ma.filled(drawn, -1), panel.image)  # what imshow got is the panel's array
    want = reads.grid_image(dependency_sets(ir)[p], result.layout)
    got = np.isin(panel.image, (1,))
    gap = panel.image < 0
    assert np.array_equal(got[~gap], want[~gap].astype(bool))
    assert picture.facts["read"] == int(dependency_sets(ir)[p].sum())


@pytest.mark.parametrize("spec", ["pixelcnn.ar", "pixelcnn_rgb.ar", "gated_pixelcnn.ar"])
def test_the_worst_blind_spot_drawn_is_the_checkers(spec):
    ir = _model(spec)
    result = analyze(ir)
    worst = receptive.blind_spots(result.final, result.layout, reads.ranks(result))
    rank = reads.ranks(result)
    counts = []
    for p in range(result.layout.n):
        blind = reads.blind_set(result.final, result.layout, rank, p)
        assert not (blind & dependency_sets(ir)[p]).any() and (rank[blind] < rank[p]).all()
        counts.append(len(np.unique(result.layout.coords(np.flatnonzero(blind)), axis=0)))  # pixels, as the checker
    assert max(counts) == worst[0]
    assert (default_position(ir) == worst[1]) if worst[0] else True
    assert (worst[0] > 0) == (spec != "gated_pixelcnn.ar")


def test_wavenet_stack_ends_at_the_receptive_field_the_checker_reports():
    ir = _model("wavenet.ar")
    picture = reads.layers_picture(ir, ir.input.shape[0] - 1)
    note = next(d.message for d in analyze(ir).diagnostics if d.severity == "note")
    assert f"receptive field {picture.facts['read']} samples" in note
    top = picture.rows[0][0].image[-1]  # the top row (drawn bottom-up): what the last layer's output reads
    assert int((top == 1).sum()) == picture.facts["read"]


def test_masked_kernels_are_the_taps_the_rule_propagates():
    ir = _model("pixelcnn_rgb.ar")
    for (label, mask), panel in zip(kernels.conv_masks(ir), kernels.masks_picture(ir).panels):
        g, k = mask.shape[0], mask.shape[-1]
        assert np.array_equal(kernels.unblock(panel.image, g), mask)
        want = np.zeros_like(mask)
        for (dy, dx), allowed in masked_taps((k, k), (k // 2, k // 2), label.split()[1].rstrip(","), g):
            want[:, :, dy + k // 2, dx + k // 2] = True if allowed is None else allowed
        assert np.array_equal(mask, want)
    a = kernels.conv_masks(_model("pixelcnn.ar"))[0][1][0, 0]
    assert int(a.sum()) == 7 * 7 // 2  # mask A: every tap before the centre in raster order


@pytest.mark.parametrize("model", ["sparse_strided", "sparse_fixed"])
def test_attention_heads_and_reach(model):
    ir = _model("sparse_transformer.ar", model)
    node = next(n for n in ir.layers if n.key == "attention")
    n = node.meta["length"]
    heads = attention.head_patterns(node.layer, n)
    assert np.array_equal(np.stack([h for _, h in heads]), head_masks(node.layer.pattern, node.layer.heads, n))
    picture = attention.attention_picture(ir)
    assert all(np.array_equal(p.image.astype(bool), h) for p, (_, h) in zip(picture.panels, heads))
    reach = attention.reach_picture(ir)
    assert reach.facts[2] == 1.0 and reach.facts[1] < 0.5  # two factorized steps reach every earlier position
    assert not any("reachability" in d.message for d in analyze(ir).diagnostics)


def test_made_product_is_the_connectivity_and_the_units_follow_the_masks():
    text = ("autoregressive m {\n input x: vector[5] levels 2\n made([3], order=random(seed=1))\n"
            " output bernoulli\n}\n")
    ir = analyze_source(text, "m.ar").models["m"]
    picture = made.made_picture(ir)
    net, product = picture.rows[0][0].network, picture.rows[0][1].image
    masks, conn, order, _, _ = made.made_masks_of(ir, ir.layers[0])
    assert all(np.array_equal(a, b) for a, b in zip(net.masks, masks))
    assert np.array_equal(product.astype(bool), conn[np.ix_(order, order)])
    assert not np.triu(product).any()  # strictly lower triangular in the generation order
    assert picture.facts["lost"] == sum(len(v) for v in made_masks.lost_dependencies(conn, order).values())
    assert picture.facts["lost"] > 0  # 3 hidden units cannot carry every earlier dimension of 5
    maf = made.made_picture(_model("maf.flow"))
    assert maf is not None and maf.facts["lost"] == 0


def test_flow_pictures_follow_the_declared_dependencies():
    ir = _model("realnvp.flow")
    couplings = [n for n in ir.layers if n.dependency is not None and n.dependency.kind == "coupling"]
    for node, panel in zip(couplings, flows.mask_picture(ir).panels):
        kept = node.dependency.data.reshape(node.in_shape)
        assert np.array_equal(untile(panel.image, node.in_shape[0]), kept.astype(int))
    block = flows.structure_picture(ir).panels[1]
    kept = int(couplings[0].dependency.data.sum())
    assert block.title.startswith("block-triangular") and not block.image[:kept, kept:].any()
    parts = flows.factored_parts(ir)
    assert [int((parts == k).sum()) for k in (1, 0)] == [int(np.prod(s)) for _, s in ir.latents] + [32]
    sylvester = flows.structure_picture(_model("sylvester.flow"))
    assert sylvester.facts["kinds"] == ["identity + low rank", "triangular"]
    nice = flows.whole_jacobian(_model("nice.flow"))
    composed = np.eye(8, dtype=bool)
    for node in _model("nice.flow").layers:
        composed = (node.dependency.matrix().astype(int) @ composed.astype(int)) > 0
    assert np.array_equal(nice, composed)


# ----------------------------------------------------------------------------- bad arguments: one line
@pytest.mark.parametrize("argv,says", [
    (["specs/pixelcnn.ar", "--position", "8,0"], "outside the input image[1, 8, 8]"),
    (["specs/pixelcnn.ar", "--position", "x"], "must be an index"),
    (["specs/pixelcnn.ar", "--position", "1,2,3,4"], "has 4 coordinates"),
    (["specs/realnvp.flow", "--position", "0"], "applies to autoregressive models"),
    (["specs/pixelcnn.ar", "--model", "nope"], "no model named 'nope'"),
    (["specs/pixelcnn.ar", "-o", "out.pdf"], "use .png, .svg or .html"),
    (["specs/pixelcnn.ar", "-o", "no/such/folder/x.png"], "does not exist"),
    (["specs/sparse_transformer.ar", "-o", "x.png"], "several models"),
    (["specs/none.ar"], "no such file"),
    (["specs/pixelcnn.ar", "--compare", "specs/wavenet.ar"], "two autoregressive image models"),
])
def test_bad_arguments_are_one_line_errors(argv, says, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["explain", *argv]) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and err.count("error:") == 1


def test_listing_and_compare(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["explain", "specs/pixelcnn.ar", "--compare", "specs/gated_pixelcnn.ar", "--picture", "compare"]) == 0
    out = capsys.readouterr().out
    assert "pixelcnn vs gated_pixelcnn" in out and "gated_pixelcnn 0" in out


def test_explain_imports_no_torch(tmp_path):
    code = ("import sys; from flowdsl.cli.main import main; "
            f"rc = main(['explain', 'specs/pixelcnn.ar', '-o', {str(tmp_path / 'x.html')!r}, '--dpi', '20']); "
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


# ----------------------------------------------------------------------------- the HTML page
@pytest.fixture(scope="module")
def html_page(tmp_path_factory) -> tuple[Path, int]:
    """A page of both Sparse Transformer models and how many pictures it holds."""
    analysis = analyze_file(ROOT / "specs" / "sparse_transformer.ar")
    pictures = {name: model_pictures(ir, only=("attention", "reads")) for name, ir in analysis.models.items()}
    path = tmp_path_factory.mktemp("page") / "explain.html"
    path.write_text(page(analysis, pictures, dpi=30))
    return path, sum(len(v) for v in pictures.values()) + len(pictures)  # + one IR graph a model


def test_html_page_is_self_contained(html_page):
    from PIL import Image

    path, expected = html_page
    text = path.read_text()
    sources = re.findall(r'<img class="picture" alt="[^"]*" src="([^"]+)"', text)
    assert len(sources) == expected and f'data-expected="{expected}"' in text
    assert "http://" not in text and "https://" not in text
    for src in sources:
        mime, data = re.match(r"data:([^;]+);base64,(.*)", src).groups()
        raw = base64.b64decode(data)
        if mime == "image/png":
            assert Image.open(io.BytesIO(raw)).size[0] > 0
        else:
            assert mime == "image/svg+xml" and b"<svg" in raw[:2000]


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no headless browser (apt-get install chromium)")
def test_html_page_loads_every_picture_in_a_headless_browser(html_page, tmp_path):
    path, expected = html_page
    start = time.perf_counter()
    dom = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                          "--no-first-run", "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    seconds = time.perf_counter() - start
    status = re.search(r'<div id="status"([^>]*)>([^<]*)</div>', dom)
    assert status, dom[-2000:]
    attrs = dict(re.findall(r'data-(\w+)="(\d+)"', status.group(1)))
    assert attrs == {"expected": str(expected), "loaded": str(expected), "errors": "0"}, (status.group(0), seconds)
    assert f"pictures loaded: {expected} of {expected}" in status.group(2)
    assert dom.count('class="picture"') == expected


def test_render_combined_file_holds_every_picture(tmp_path):
    ir = _model("gated_pixelcnn.ar")
    found = model_pictures(ir)
    out = tmp_path / "all.svg"
    save(found, out, dpi=20)
    text = out.read_text()
    assert all(p.title.split(": ")[1] in text for p in found)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["groups", "autoregressive", "coupling", "dense", "elementwise", "permutation"]),
       st.integers(2, 12), st.integers(0, 2**31))
def test_whole_jacobian_steps_are_the_boolean_matrix_product(kind, n, seed):
    from flowdsl.layers.structure import Dependency

    rng = np.random.default_rng(seed)
    dep = {"groups": lambda: Dependency.groups(rng.integers(0, 3, n)),
           "autoregressive": lambda: Dependency.autoregressive(rng.integers(0, n, n)),
           "coupling": lambda: Dependency.coupling(np.arange(n) < n // 2),
           "dense": lambda: Dependency.dense(n), "elementwise": lambda: Dependency.elementwise(n),
           "permutation": lambda: Dependency.permutation(rng.permutation(n))}[kind]()
    reach = rng.random((n, n + 3)) < 0.3
    assert np.array_equal(flows._then(dep, reach), (dep.matrix().astype(int) @ reach.astype(int)) > 0)


def test_gated_block_stacks_are_its_rule_on_the_input():
    ir = _model("gated_pixelcnn.ar")
    p, sets = kernels.stack_sets(ir)
    layout = analyze(ir).layout
    r, c = layout.coords(np.array([p]))[0]
    rows, cols = layout.coords(np.flatnonzero(sets["vertical"])).T
    k = ir.layers[0].layer.kernel
    assert rows.min() == r - k // 2 and rows.max() == r and cols.min() == max(0, c - k // 2)  # sees its own row
    out = sets["output"]
    assert not out[p] and np.array_equal(out, dependency_sets(ir)[p] & out)  # causal, inside the final set
    first = reads.layer_sets(ir, p)[0][1]
    assert np.array_equal(out, first)  # the engine's record after the first layer


_CONDITIONS = {  # declaration -> (what the layers read, one-hot?)
    "label[3]": ("vector[3]", True),
    "vector[5]": ("vector[5]", False),
    "vector[5] levels 3": ("vector[15]", True),
    "image[1, 4, 4] levels 2": ("image[2, 4, 4]", True),
    "sequence[6, 2]": ("sequence[2, 6]", False),
    "image[1, 4, 4] embed mlp([8], out=3)": ("vector[3]", False),
}


@pytest.mark.parametrize("declared", sorted(_CONDITIONS))
def test_reports_graphs_and_compile_describe_every_condition(declared, tmp_path, capsys, monkeypatch):
    """The explain report and ``flowdsl compile`` name the declaration and what the layers read, the graph's input
    node the declaration; compile's smoke run passes a valid context of that condition."""
    from flowdsl.cli.graph import node_labels
    from flowdsl.explain.report import model_report

    encoded, one_hot = _CONDITIONS[declared]
    text = f"flow f {{\n  input x: vector[4]\n  condition c: {declared}\n  coupling affine\n  actnorm\n}}\n"
    a = analyze_source(text, "c.flow")
    ir = a.models["f"]
    cond = ir.header.condition
    assert cond.encoded.describe() == encoded
    (line,) = [h for h in model_report(a, ir).header if h.startswith("condition")]
    assert line.startswith(f"condition c: {cond.describe()} -> {encoded}") and line.endswith("read by 1 of 2 layers")
    assert ("one-hot" in line) == one_hot and ("embed" in line) == (cond.embed is not None)
    assert f"\ncondition c: {cond.describe()}\n" in node_labels(ir)["input"]
    path = tmp_path / "c.flow"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["compile", "c.flow"]) == 0
    out = capsys.readouterr().out
    assert f"  condition c: {cond.describe()} -> {encoded}" in out
    assert "shapes: inferred shapes match the runtime (2 layers)" in out


def test_the_made_of_a_conditional_flow_takes_the_encoded_features():
    """A MADE that reads the condition gets its encoded features (one-hot, embed) on every hidden unit."""
    text = ("flow f {\n  input x: vector[4]\n  condition c: vector[3] levels 2\n  autoregressive affine(reads={})\n"
            "}\n")
    for says, context in (("true", 6), ("false", 0)):
        ir = analyze_source(text.replace("{}", says), "m.flow").models["f"]
        masks, conn, order, _, _ = made.made_masks_of(ir, ir.layers[0])
        assert masks[0].shape[1] == 4 + context
        assert masks[0][:, 4:].all()  # the context reaches every hidden unit of the first layer
        assert not np.triu(conn[np.ix_(order, order)]).any()  # and no path between inputs

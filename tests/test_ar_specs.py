"""The autoregressive acceptance specs through the public API, and declared parameter counts == module numel."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import flowdsl

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "acceptance"
NAMES = ["fvbn", "nade", "made", "pixelcnn", "pixelcnn_rgb", "gated_pixelcnn", "pixelrnn"]


def spec_path(name: str) -> Path:
    shared = SHARED / f"{name}.ar"
    return shared if shared.is_file() else ROOT / "specs" / f"{name}.ar"


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_acceptance_spec_compiles_and_honours_the_api(name):
    path = spec_path(name)
    assert flowdsl.analyze_file(path).ok
    for model_name in flowdsl.model_names(path):
        m = flowdsl.compile_file(path, model=model_name).eval()
        assert m.ir.params == numel(m), "declared parameter count differs from the modules'"
        n = m.size
        assert isinstance(m.input_shape, tuple) and isinstance(m.levels, int)
        assert m.order.dtype == torch.long and sorted(m.order.tolist()) == list(range(n))
        labels = torch.tensor([0, 3]) if m.context_shape == () else None
        assert m.context_shape in (None, ())
        x = torch.randint(0, m.levels, (2, *m.input_shape))
        with torch.no_grad():
            params, lp = m.conditionals(x, labels), m.log_prob(x, labels)
        assert params.shape[:2] == (2, n) and params.shape[2] == m.dist.params_per_position
        assert lp.shape == (2,) and torch.isfinite(lp).all() and (lp < 0).all()
        if len(m.input_shape) == 1:  # images: sampling is tested on tiny models (test_ar_likelihood)
            torch.manual_seed(0)
            s = m.sample(1, None if labels is None else labels[:1])
            assert s.shape == (1, *m.input_shape) and 0 <= s.min() and s.max() < m.levels


@pytest.mark.parametrize("name", NAMES)
def test_specs_folder_holds_unchanged_copies(name):
    shared = SHARED / f"{name}.ar"
    if not shared.is_file():
        pytest.skip("the shared acceptance folder is not beside this checkout")
    assert (ROOT / "specs" / f"{name}.ar").read_text() == shared.read_text()


VARIANTS = [
    "input x: vector[5] levels 3\n condition y: label[2]\n fvbn\n output logistic_mixture(2)",
    "input x: sequence[6] levels 4\n nade(hidden=7)\n relu -> conv1x1(5)\n output categorical",
    "input x: vector[6] levels 2\n made([9, 7, 5], masks=2, order=agnostic(seed=3))\n output bernoulli",
    "input x: image[3, 4, 4] levels 5\n condition y: label[4]\n gated_block(mask=A, kernel=5, channels=6)\n"
    " gated_block(kernel=3, channels=6)\n conv1x1(9)\n output logistic_mixture(3)",
    "input x: image[3, 3, 4] levels 2\n masked_conv(mask=A, kernel=3, channels=6)\n row_lstm(hidden=9)\n"
    " diagonal_bilstm(hidden=3)\n output categorical",
    "input x: image[1, 3, 3] levels 4\n masked_conv(mask=A, kernel=5, channels=4)\n gated_block(kernel=3, channels=4)\n"
    " relu -> masked_conv(mask=B, kernel=1, channels=8)\n output categorical",
]


@pytest.mark.parametrize("body", VARIANTS, ids=range(len(VARIANTS)))
def test_declared_parameter_counts_equal_module_numel(body):
    m = flowdsl.compile_source("autoregressive m {\n " + body + "\n}\n", filename="m.ar")
    assert m.ir.params == numel(m)
    assert len(m.ir.layers) == len(m.layers)
    for node, layer in zip(m.ir.layers, m.layers):
        assert node.params == numel(layer), node.layer.name
    assert m.ir.sink.params == (numel(m.head) if m.head is not None else 0)
    x = torch.randint(0, m.levels, (2, *m.input_shape))
    ctx = torch.tensor([0, 1]) if m.context_shape == () else None
    assert m.log_prob(x, ctx).shape == (2,)

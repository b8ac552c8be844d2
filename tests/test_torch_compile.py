"""torch.compile as a mode (flowdsl.runtime.torch_compile): one graph per family, no recompile for a new
batch size, the same numbers as eager.

- graph breaks: ``torch._dynamo.explain`` on ``log_prob`` of a representative small model of every
  family (flows and autoregressive models, with and without conditions) finds one graph and no break;
  the three adaptive families (residual, Sylvester, FFJORD) break only where they iterate to a
  tolerance, and NADE only around its blocked density pass, which runs eager on purpose (the reasons'
  files are pinned, so a new break elsewhere fails). The full bundled set:
  ``python -m benchmarks.compiled --ar`` (docs/benchmarks.md);
- dynamic batches: after the first call (batch 11), batch sizes 2..9 run without a recompile;
- equality: the compiled paths (aot_eager: forward and backward traced) give eager's log-probs, samples
  and gradients; one inductor run checks the generated code too.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch._dynamo as dynamo

import flowdsl
from flowdsl.input_errors import InputTypeError
from flowdsl.runtime.torch_compile import use_torch_compile

sys.path.insert(0, str(Path(__file__).parents[1]))
from benchmarks.compiled import explain  # noqa: E402

FLOWS = {
    "realnvp": "input x: vector[4]\n repeat 2 { coupling affine(mask=half, net=mlp([8])) -> permute(reverse) }",
    "maf": "input x: vector[4]\n autoregressive affine(net=made([8]))\n permute(reverse)\n"
           " autoregressive affine(net=made([8]))",
    "nsf": "input x: vector[4]\n coupling rq_spline(mask=half, bins=4, net=mlp([8]))",
    "naf": "input x: vector[3]\n autoregressive dsf(hidden=4, net=made([8]))",
    "umnn": "input x: vector[3]\n autoregressive umnn(net=made([8]))",
    "glow": "input x: image[2, 4, 4]\n actnorm\n invconv1x1\n coupling affine(mask=channel, net=conv_net(8))",
    "planar": "input x: vector[3]\n planar\n radial",
    "conditional_realnvp": "input x: vector[4]\n condition y: vector[3]\n coupling affine(mask=half, net=mlp([8]))",
    "conditional_label_maf": "input x: vector[3]\n condition y: label[4]\n autoregressive affine(net=made([8]))",
    "conditional_base": "input x: vector[2]\n condition y: label[3]\n base normal(conditional=true)\n"
                        " coupling affine(mask=half, net=mlp([8]))",
}
AR = {
    "fvbn": "input x: vector[6] levels 2\n fvbn\n output bernoulli",
    "made": "input x: vector[6] levels 3\n made([8], masks=1)\n output categorical",
    "made_masks": "input x: vector[6] levels 2\n made([8], masks=3)\n output bernoulli",
    "pixelcnn": "input x: image[1, 4, 4] levels 3\n masked_conv(mask=A, kernel=3, channels=4)\n relu\n"
                " masked_conv(mask=B, kernel=3, channels=4)\n output categorical",
    "gated_pixelcnn": "input x: image[1, 4, 4] levels 2\n condition y: label[2]\n"
                      " gated_block(mask=A, kernel=3, channels=4)\n gated_block(kernel=3, channels=4)\n"
                      " output categorical",
    "wavenet": "input x: sequence[8] levels 4\n condition y: vector[3]\n causal_conv(kernel=2, channels=4)\n"
               " gated_residual(kernel=2, dilation=2, residual=4, skip=4)\n output categorical",
    "bytenet": "input x: sequence[8] levels 5\n embed(dim=4)\n bytenet_block(kernel=3, dilation=2, channels=4)\n"
               " output categorical",
    "attention": "input x: sequence[8] levels 3\n embed(dim=8)\n attention(heads=2, dim=8, pattern=strided(stride=3))\n"
                 " output categorical",
    "row_lstm": "input x: image[1, 3, 3] levels 2\n masked_conv(mask=A, kernel=3, channels=4)\n row_lstm(hidden=4)\n"
                " output categorical",
    "video": "input x: video[2, 1, 3, 3] levels 2\n video_encoder(channels=3, blocks=1)\n"
             " pixel_decoder(channels=4, blocks=1)\n output categorical",
}
#: the families that break on purpose: where they may break (files of the reasons)
ADAPTIVE = {
    # NADE's blocked density pass runs eager (torch.compiler.disable): compiled it unrolls (runtime/ar_basic.py)
    "nade": ("autoregressive", "input x: vector[6] levels 2\n nade(hidden=5)\n output bernoulli", {"ar_basic.py"}),
    "residual": ("flow", "input x: vector[3]\n residual(net=lipschitz_mlp([8]))", {"residual.py"}),
    "sylvester": ("flow", "input x: vector[3]\n sylvester(rank=2)", {"freeform.py"}),
}


def _model(kind: str, body: str):
    suffix = "ar" if kind == "autoregressive" else "flow"
    return flowdsl.compile_source(f"{kind} m {{\n {body}\n}}\n", filename=f"m.{suffix}").double()


def _example(m, batch: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    if m.levels:
        x = torch.randint(0, m.levels, (batch, *m.input_shape), generator=gen)
    else:
        x = torch.randn((batch, *m.input_shape), generator=gen, dtype=torch.float64)
    ctx = None
    if m.context_shape is not None:
        lv = m.condition.levels
        ctx = torch.randint(0, lv, (batch, *m.context_shape), generator=gen) if lv else \
            torch.randn((batch, *m.context_shape), generator=gen, dtype=torch.float64)
    return x, ctx


def _explain(m, x, ctx) -> dict:
    """``benchmarks.compiled.explain``: graphs, breaks and the breaks' (reason, "file:line")."""
    return explain(m, x, ctx)


CASES = [("flow", n, b) for n, b in FLOWS.items()] + [("autoregressive", n, b) for n, b in AR.items()]


@pytest.mark.parametrize("kind,name,body", CASES, ids=[c[1] for c in CASES])
def test_one_graph_no_break(kind, name, body):
    m = _model(kind, body)
    out = _explain(m, *_example(m))
    assert (out["graphs"], out["breaks"]) == (1, 0), out["reasons"]


@pytest.mark.parametrize("name", sorted(ADAPTIVE))
def test_adaptive_families_break_only_where_they_iterate(name):
    kind, body, files = ADAPTIVE[name]
    m = _model(kind, body)
    out = _explain(m, *_example(m))
    where = {w.split(":")[0] for _, w in out["reasons"] if w}
    assert out["breaks"] > 0 and where <= files, where


@pytest.mark.parametrize("kind,name,body", [("flow", "maf", FLOWS["maf"]), ("flow", "glow", FLOWS["glow"]),
                                            ("autoregressive", "wavenet", AR["wavenet"]),
                                            ("autoregressive", "made_masks", AR["made_masks"])],
                         ids=["maf", "glow", "wavenet", "made_masks"])
def test_new_batch_sizes_do_not_recompile(kind, name, body):
    m = use_torch_compile(_model(kind, body), backend="eager")
    m.eval()
    dynamo.reset()
    with torch.no_grad():
        # the first batch size differs from the model's other sizes: dynamo gives equal sizes one symbol
        # ("duck sizing"), and a batch of 2 on 2 channels would be specialised with them (one recompile later)
        m.log_prob(*_example(m, batch=11))
        with dynamo.config.patch(error_on_recompile=True):
            for b in range(2, 10):
                assert m.log_prob(*_example(m, batch=b, seed=b)).shape == (b,)


@pytest.mark.parametrize("kind,name,body", [("flow", "realnvp", FLOWS["realnvp"]),
                                            ("flow", "conditional_base", FLOWS["conditional_base"]),
                                            ("autoregressive", "nade", ADAPTIVE["nade"][1]),
                                            ("autoregressive", "gated_pixelcnn", AR["gated_pixelcnn"])],
                         ids=["realnvp", "conditional_base", "nade", "gated_pixelcnn"])
def test_compiled_paths_equal_eager(kind, name, body):
    eager = _model(kind, body)
    compiled = use_torch_compile(copy.deepcopy(eager), backend="aot_eager")
    x, ctx = _example(eager, batch=5)
    torch.manual_seed(0)
    want = eager.log_prob(x, ctx)
    want.sum().backward()
    torch.manual_seed(0)
    got = compiled.log_prob(x, ctx)
    got.sum().backward()
    assert torch.allclose(got, want, atol=1e-10)
    grads = 0
    for (n, a), b in zip(eager.named_parameters(), compiled.parameters()):
        # a parameter the pass does not reach has no gradient eagerly; aot_autograd may give it zeros
        ga, gb = (torch.zeros_like(a) if p.grad is None else p.grad for p in (a, b))
        assert torch.allclose(ga, gb, atol=1e-10), n
        grads += int(ga.abs().sum() > 0)
    assert grads > 0
    torch.manual_seed(1)
    s_eager = eager.sample(3, None if ctx is None else ctx[:3])
    torch.manual_seed(1)
    s_comp = compiled.sample(3, None if ctx is None else ctx[:3])
    assert torch.allclose(s_eager.double(), s_comp.double(), atol=1e-10)


def test_inductor_generates_the_same_log_prob():
    eager = _model("flow", FLOWS["maf"]).float()
    compiled = flowdsl.compile_source("flow m {\n " + FLOWS["maf"] + "\n}\n", torch_compile=True)
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(6, 4)
    with torch.no_grad():
        assert torch.allclose(compiled.log_prob(x), eager.log_prob(x), atol=1e-5)
    assert compiled.torch_compiled == "default"


def test_a_deep_copy_runs_its_own_weights():
    m = use_torch_compile(_model("flow", FLOWS["realnvp"]), backend="eager")
    twin = copy.deepcopy(m)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.5)
    x, _ = _example(m)
    assert not torch.allclose(m.log_prob(x), twin.log_prob(x))
    assert twin._forward.__self__ is twin


def test_bad_modes_are_refused_with_the_argument_named():
    with pytest.raises(InputTypeError, match="torch_compile must be"):
        flowdsl.compile_source("flow m {\n " + FLOWS["planar"] + "\n}\n", torch_compile="fast")
    with pytest.raises(InputTypeError, match="torch_compile must be"):
        flowdsl.compile_source("flow m {\n " + FLOWS["planar"] + "\n}\n", torch_compile=[1])


def test_train_compile_uses_the_models_mode(monkeypatch, tmp_path):
    """``flowdsl train --compile`` / ``train(compile=True)`` compiles the model's tensor paths (traced with the
    eager backend here: CI's time) and trains as eager does."""
    real, seen = torch.compile, []

    def tracing_only(fn, **kw):
        seen.append(getattr(fn, "__name__", ""))
        return real(fn, **{**kw, "backend": "eager"})

    monkeypatch.setattr(torch, "compile", tracing_only)
    spec = tmp_path / "m.flow"
    spec.write_text("flow m {\n " + FLOWS["realnvp"].replace("vector[4]", "vector[2]") + "\n}\n")
    runs = {}
    for compiled in (False, True):
        runs[compiled] = flowdsl.train(spec, "moons", steps=3, batch=16, seed=0, compile=compiled,
                                       output=tmp_path / f"{compiled}.pt", progress=False, log=None)
    assert seen == ["_forward", "_inverse"]
    a, b = (flowdsl.load(tmp_path / f"{c}.pt").state_dict() for c in (False, True))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)

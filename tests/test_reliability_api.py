"""The API refuses bad input with one documented error type and never returns a silently wrong number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.errors import FlowDSLError
from flowdsl.input_errors import InputError, InputTypeError

DISCRETE = "flow f {\n input x: vector[4] levels 256\n coupling affine(mask=half, net=mlp([8]))\n}\n"
CONTINUOUS = "flow g {\n input x: vector[2]\n coupling affine(mask=half, net=mlp([8]))\n}\n"
CONDITIONAL = "flow c {\n input x: vector[2]\n condition y: label[3]\n coupling affine(mask=half)\n}\n"
IMAGES = "flow r {\n input x: image[1, 4, 4] levels 256\n coupling affine(mask=checkerboard(0))\n}\n"


@pytest.fixture(scope="module")
def flows():
    return {name: flowdsl.compile_source(text).eval() for name, text in
            (("discrete", DISCRETE), ("continuous", CONTINUOUS), ("conditional", CONDITIONAL), ("images", IMAGES))}


@pytest.mark.parametrize("value", [-1, 256, 17.5, 0.5, float("nan"), float("inf"), 1e30])
def test_discrete_flows_refuse_values_outside_their_levels(flows, value):
    x = torch.full((2, 4), value)
    with pytest.raises(InputError, match=r"whole numbers in 0\.\.255|non-finite"):
        flows["discrete"].log_prob(x)


def test_the_realnvp_style_image_flow_refuses_17_with_levels_256_only_when_outside(flows):
    assert torch.isfinite(flows["images"].log_prob(torch.full((1, 1, 4, 4), 17))).all()
    with pytest.raises(InputError):
        flows["images"].log_prob(torch.full((1, 1, 4, 4), 300))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-3, 260), min_size=4, max_size=4))
def test_discrete_log_prob_is_finite_or_refused(flows, values):
    x = torch.tensor([values])
    if all(0 <= v < 256 for v in values):
        assert torch.isfinite(flows["discrete"].log_prob(x)).all()
    else:
        with pytest.raises(InputError):
            flows["discrete"].log_prob(x)


def test_complex_input_is_refused_as_a_type_error(flows):
    for model in (flows["discrete"], flows["continuous"]):
        with pytest.raises(InputTypeError, match="complex"):
            model.log_prob(torch.zeros(2, *model.input_shape, dtype=torch.complex64))
        with pytest.raises(TypeError):
            model(torch.zeros(2, *model.input_shape, dtype=torch.complex64))


def test_empty_batches_and_sample_zero_give_empty_results(flows):
    for model in flows.values():
        ctx = torch.zeros(0, dtype=torch.long) if model.classes else None
        x = model.sample(0, ctx)
        assert tuple(x.shape) == (0, *model.input_shape)
        assert tuple(model.log_prob(x, ctx).shape) == (0,)
        z, logdet = model(x.float(), ctx)
        assert tuple(z.shape) == (0, *model.input_shape) and tuple(logdet.shape) == (0,)


@pytest.mark.parametrize("n", [-1, 1.5, None, True, "3", torch.tensor(2.0)])
def test_bad_sample_counts_are_refused(flows, n):
    with pytest.raises((InputError, InputTypeError)) as info:
        flows["continuous"].sample(n)
    assert isinstance(info.value, FlowDSLError) and "number of samples" in str(info.value)


def test_sample_counts_of_integer_types_are_accepted(flows):
    for n in (np.int64(3), torch.tensor(3), 3):
        assert tuple(flows["continuous"].sample(n).shape) == (3, 2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.int64])
def test_other_dtypes_are_cast_to_the_models(flows, dtype):
    model = flows["continuous"]
    x = torch.tensor([[0.25, -0.5], [1.0, 2.0]])
    want = model.log_prob(x)
    got = model.log_prob(x.to(dtype))
    assert got.dtype == torch.float32
    tol = 0.1 if dtype in (torch.float16, torch.bfloat16) else 1e-5
    if dtype == torch.int64:
        want = model.log_prob(x.to(dtype).float())
    assert torch.allclose(got, want, atol=tol)


def test_non_finite_continuous_input_is_refused_with_the_count(flows):
    x = torch.tensor([[float("nan"), 0.0], [float("inf"), float("-inf")]])
    with pytest.raises(InputError, match=r"3 non-finite value"):
        flows["continuous"].log_prob(x)


@pytest.mark.parametrize("context", [5, -1, 1.5, "a", [0, 1]])
def test_bad_contexts_are_input_errors(flows, context):
    with pytest.raises(InputError):
        flows["conditional"].log_prob(torch.zeros(3, 2), context)


@pytest.mark.parametrize("call", [
    lambda: flowdsl.compile_source(None),
    lambda: flowdsl.compile_source(123),
    lambda: flowdsl.compile_source(CONTINUOUS, model=5),
    lambda: flowdsl.compile_source(CONTINUOUS, limits=5),
    lambda: flowdsl.analyze_source(CONTINUOUS, filename=3),
    lambda: flowdsl.compile_file(None),
    lambda: flowdsl.model_names(4.5),
    lambda: flowdsl.load(None),
])
def test_api_arguments_of_the_wrong_kind_are_input_type_errors(call):
    with pytest.raises(InputTypeError) as info:
        call()
    assert isinstance(info.value, TypeError) and isinstance(info.value, FlowDSLError)
    assert str(info.value).count("\n") == 0


def test_file_names_may_be_paths(tmp_path):
    model = flowdsl.compile_source(CONTINUOUS, filename=Path("g.flow"))
    assert model.input_shape == (2,)
    spec = tmp_path / "g.flow"
    spec.write_text(CONTINUOUS)
    assert flowdsl.model_names(spec) == ["g"] and flowdsl.compile_file(spec).input_shape == (2,)


def test_input_errors_pickle_for_worker_processes():
    import pickle

    err = pickle.loads(pickle.dumps(InputError("bad", "flow 'f'")))
    assert isinstance(err, InputError) and str(err) == "flow 'f': error: bad"


def test_input_checks_do_not_break_vmap(flows):
    model = flows["continuous"]
    z = torch.func.vmap(lambda x: model(x[None])[0])(torch.randn(3, 2))
    assert tuple(z.shape) == (3, 1, 2) and torch.isfinite(z).all()

"""Property testing for specs, layers and models: strategies, checks and a runner.

- :mod:`~flowdsl.testing.jacobian`: brute-force Jacobians, log-dets and sparsity patterns;
- :mod:`~flowdsl.testing.inputs` and :mod:`~flowdsl.testing.strategies`: Hypothesis strategies for inputs,
  layer arguments and whole specs, drawn from the registry (every registered layer, built-in or user-defined);
- :mod:`~flowdsl.testing.properties`: :func:`check_bijection`, :func:`check_structure`, and for conditional
  models :func:`check_context` (the condition is read where declared, not elsewhere) and :func:`check_training`;
  :mod:`~flowdsl.testing.autoregressive`: :func:`check_autoregressive`; each raises :class:`PropertyFailure`
  (an AssertionError) with the minimal failing example Hypothesis found and a readable report;
- :mod:`~flowdsl.testing.search`: the Hypothesis search and :class:`PropertyFailure` behind every check;
- :mod:`~flowdsl.testing.tiny`: the same model on a smaller input, for brute force;
- :mod:`~flowdsl.testing.runner`: every property on every model of a spec file (``flowdsl test``).

See ``docs/testing.md``.

Example:
    >>> import torch, flowdsl
    >>> torch.set_default_dtype(torch.float64)
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[4]\\n coupling affine(mask=half)\\n}\\n")
    >>> _ = perturb_parameters(flow, scale=0.3, seed=0)
    >>> report = check_bijection(flow, torch.randn(3, 4))
    >>> report["roundtrip"] < 1e-10 and report["logdet"] < 1e-8
    True
    >>> check_bijection(flow, examples=5)["examples"]
    5
    >>> torch.set_default_dtype(torch.float32)
"""

from __future__ import annotations

from flowdsl.testing.autoregressive import check_autoregressive
from flowdsl.testing.jacobian import (
    brute_force_logdet,
    check_sparsity,
    jacobian_pattern,
    per_example_jacobian,
    perturb_parameters,
)
from flowdsl.testing.properties import check_bijection, check_context, check_structure, check_training
from flowdsl.testing.search import PropertyFailure
from flowdsl.testing.strategies import arguments, call_text, inputs, labels, layer_calls, one_hot, specs, values_for

__all__ = [
    "perturb_parameters", "per_example_jacobian", "brute_force_logdet", "check_bijection", "check_sparsity",
    "jacobian_pattern", "check_structure", "check_context", "check_training", "check_autoregressive", "PropertyFailure",
    "inputs", "labels", "one_hot", "values_for", "arguments", "call_text", "layer_calls", "specs",
]

"""Sizes computed before a rule builds anything: parameters, analysis memory and activations against the limits.

A layer rule that builds a structure whose size grows with the shapes (MADE masks, a connectivity
matrix, a dense dependency set) first computes that size from the shapes and calls one of these;
over a limit, it raises a :class:`~flowdsl.errors.SpecError` naming the limit and the flag that
raises it, and nothing is allocated.

Example:
    >>> from flowdsl.language.limits import Limits
    >>> made_analysis_bytes([4, 8, 8], n=4)   # masks, the float32 products and the [n, n] connectivity
    768
    >>> try:
    ...     refuse_bytes("the made masks", 3 * 2**30, Limits())
    ... except Exception as err:
    ...     print(err.message); print(err.hint)
    the made masks would need 3,072 MiB to analyse (limit 1,024 MiB)
    raise the limit with --max-analysis-bytes if this is intended
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from flowdsl.errors import SpecError
from flowdsl.language.limits import Limits
from flowdsl.layers.nets import Net
from flowdsl.layers.registry import Spec

__all__ = ["refuse_params", "refuse_bytes", "refuse_activation", "made_analysis_bytes", "linear_params",
           "layer_activation_size"]

#: bytes the networkx graph of a MADE's dependencies costs per edge (for its sequential-pass count)
GRAPH_EDGE_BYTES = 200


def _mib(n: int) -> str:
    return f"{-(-n // 2**20):,} MiB"


def linear_params(sizes: Sequence[int]) -> int:
    """Weights and biases of a chain of dense layers of these widths."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def refuse_params(what: str, params: int, limits: Limits, arg: str | None = None) -> None:
    """SpecError when ``params`` exceeds the parameter limit (computed from the shapes, before building)."""
    if params > limits.max_params:
        raise SpecError(f"{what} would have {params:,} parameters (limit {limits.max_params:,})", arg=arg,
                        hint=f"raise the limit with {limits.flag('max_params')} if this is intended")


def refuse_bytes(what: str, needed: int, limits: Limits, arg: str | None = None) -> None:
    """SpecError when an analysis would allocate more than ``max_analysis_bytes``."""
    if needed > limits.max_analysis_bytes:
        raise SpecError(f"{what} would need {_mib(needed)} to analyse (limit {_mib(limits.max_analysis_bytes)})",
                        arg=arg, hint=f"raise the limit with {limits.flag('max_analysis_bytes')} if this is intended")


def refuse_activation(what: str, elements: int, limits: Limits, arg: str | None = None) -> None:
    """SpecError when one example's activation tensor would exceed ``max_activation_size`` elements."""
    if elements > limits.max_activation_size:
        raise SpecError(f"{what} would make activations of {elements:,} elements per example (limit "
                        f"{limits.max_activation_size:,})", arg=arg,
                        hint=f"raise the limit with {limits.flag('max_activation_size')} if this is intended")


def made_analysis_bytes(sizes: Sequence[int], n: int, sets: int = 1, graph: bool = False) -> int:
    """Bytes the checker needs to analyse a MADE of layer widths ``sizes`` on ``n`` dimensions, ``sets`` mask sets:
    the boolean masks, their float32 products and the ``[n, n]`` connectivity (and its graph, where ``graph``)."""
    pairs = [a * b for a, b in zip(sizes, sizes[1:])]
    reach = [b * sizes[0] for b in sizes[1:]]  # elements of the product after each layer
    # float32 products layer by layer: the previous product, this mask as float32, the new product (and its bools)
    steps = [4 * pairs[0]] + [4 * reach[i - 1] + 4 * pairs[i] + 5 * reach[i] for i in range(1, len(pairs))]
    per_set = sum(pairs) + max(steps, default=0) + 8 * n * n
    return sets * per_set + (GRAPH_EDGE_BYTES * n * (n - 1) // 2 if graph else 0)


def _nets(spec: Spec, depth: int = 2):
    """The conditioner nets among a spec's fields (and its sub-specs' fields, e.g. a transformer's)."""
    for name in type(spec).model_fields:
        value = getattr(spec, name, None)
        if isinstance(value, Net):
            yield value
        elif isinstance(value, Spec) and depth > 1:
            yield from _nets(value, depth - 1)


def layer_activation_size(layer: Spec, in_shape: Sequence[int], out_shape: Sequence[int], context: int = 0) -> int:
    """An upper bound on the elements of the widest tensor one example makes in a layer: its input, its output and
    the activations of its nets (computed as if a net saw the whole input: a coupling's net sees a part of it)."""
    size_in, size_out = prod(in_shape), prod(out_shape)
    nets = [net.activation_size(tuple(in_shape), tuple(in_shape), context) for net in _nets(layer)]
    return max([size_in, size_out, *nets])

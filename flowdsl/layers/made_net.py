"""The ``made`` conditioner net and generation orders (natural, reverse, random(seed=N), a list).

``made([h1, h2, ...], order=natural, activation=relu)`` is an MLP whose weights are masked
so that the parameters of dimension ``i`` read only the dimensions before ``i`` in the
order (Germain et al. 2015). Its orders are :mod:`flowdsl.layers.orders`, its masks come from
:mod:`flowdsl.layers.made_masks`; the autoregressive layers call :func:`made_structure` to prove causality and
:func:`narrow_findings` to warn when a hidden layer is too narrow to carry every dependency.

Example:
    >>> from flowdsl.language.values import Symbol
    >>> from flowdsl.layers.registry import NETS
    >>> net = NETS.bind(Symbol("made", args=((8, 8),), kwargs=(("order", Symbol("reverse")),)))
    >>> net.hidden, net.order.describe(), net.param_count((3,), (6,))
    ((8, 8), 'reverse', 158)
    >>> s = made_structure(net, None, 3, params_per_dim=2)
    >>> s.perm.tolist(), s.passes
    ([2, 1, 0], 3)
"""

from __future__ import annotations

from math import prod
from typing import ClassVar

from flowdsl.errors import SpecError
from flowdsl.language.limits import Limits
from flowdsl.layers import made_masks as made
from flowdsl.layers.budgets import linear_params, made_analysis_bytes, refuse_bytes, refuse_params
from flowdsl.layers.nets import Activation, Hidden, Net, _linear, _shape
from flowdsl.layers.orders import NET_ORDERS, ExplicitOrder, Natural, NetOrderField, Order, RandomOrder, Reverse
from flowdsl.layers.registry import Finding

__all__ = ["AR_ORDERS", "ArOrder", "Natural", "Reverse", "RandomOrder", "ExplicitOrder", "OrderField", "MADESpec",
           "made_structure", "narrow_findings", "effective_order"]

#: the orders ``made([...], order=...)`` accepts (one family with ``permute`` and the MADE model)
AR_ORDERS = NET_ORDERS
ArOrder = Order
OrderField = NetOrderField


class MADESpec(Net):
    """``made([h1, ...], order=natural, activation=relu)``: masked autoencoder conditioner (Germain et al. 2015).

    Maps ``D`` features to ``k * D`` parameters (``k`` per dimension, parameter-major) so that
    the parameters of dimension ``i`` depend only on the dimensions before ``i`` in ``order``.
    A condition enters the first layer unmasked and, through a direct linear term, every output (the
    first dimension's too). The parameter count is that of the dense weights (masked entries
    included, as stored).
    """

    name: ClassVar[str] = "made"
    positional: ClassVar[tuple[str, ...]] = ("hidden",)
    runtime: ClassVar[str] = "flowdsl.runtime.made:build_made"
    ranks: ClassVar[tuple[int, ...]] = (1,)
    hidden: Hidden = (64, 64)
    order: OrderField | None = None
    activation: Activation = "relu"

    def validate_io(self, in_shape, out_shape) -> None:
        super().validate_io(in_shape, out_shape)
        if len(out_shape) != 1 or out_shape[0] % in_shape[0]:
            raise SpecError(f"net made maps D features to a multiple of D parameters, but here it would map "
                            f"{_shape(in_shape)} to {_shape(out_shape)}", arg="net")
        if self.order is not None:  # checked where the net's input size is known, as the module will be built
            try:
                self.order.permutation(in_shape[0])
            except SpecError as err:  # the message made_structure gives (of the inputs the net sees)
                raise SpecError(err.message, arg="net") from None

    def param_count(self, in_shape, out_shape, context=0):
        """Dense weights and biases, plus the condition's direct term to every output (no bias)."""
        sizes = [prod(in_shape) + context, *self.hidden, prod(out_shape)]
        return sum(_linear(a, b) for a, b in zip(sizes, sizes[1:])) + context * prod(out_shape)


def effective_order(net: MADESpec, order: ArOrder | None) -> ArOrder:
    """The layer's ``order=`` if given, else the net's, else natural; both given and different: error."""
    if order is not None and net.order is not None and order.key() != net.order.key():
        raise SpecError(f"order given twice: the layer says {order.describe()}, its made net says "
                        f"{net.order.describe()}", arg="order", hint="give the order in one place")
    return order or net.order or Natural()


def made_structure(net: MADESpec, order: ArOrder | None, n: int, params_per_dim: int = 1,
                   context: int = 0, limits: Limits | None = None) -> made.MadeStructure:
    """Analyse the MADE of an autoregressive layer on ``n`` dims; SpecError unless it is causal.

    The proof: the boolean product of the layer masks must be strictly triangular in the
    declared order (no output reads its own dimension or a later one). Its parameters and the
    memory of the proof are computed first and refused over ``limits``.
    """
    limits = limits or Limits()
    sizes = [n + context, *net.hidden, params_per_dim * n]
    refuse_params("the made net", linear_params(sizes), limits, arg="net")
    refuse_bytes("the made net's masks and connectivity", made_analysis_bytes(sizes, n, graph=True), limits,
                 arg="net")
    chosen = effective_order(net, order)
    try:
        perm = chosen.permutation(n)
    except SpecError as err:  # an order written inside made(...) is reported at the net argument
        raise SpecError(err.message, arg="order" if order is not None else "net") from None
    s = made.analyze(perm, net.hidden, params_per_dim, context)
    if s.violations:
        i, j = s.violations[0]
        raise SpecError(f"made masks are not autoregressive in the declared order: the parameters of dim {i} "
                        f"read dim {j} ({len(s.violations)} such pairs)", arg="net")
    return s


def _dims(dims) -> str:
    dims = list(dims)
    return ("dim " if len(dims) == 1 else "dims ") + ", ".join(map(str, dims))


def narrow_findings(net: MADESpec, s: made.MadeStructure) -> list[Finding]:
    """A warning when hidden layers are too narrow to carry every dependency, naming who loses what."""
    if s.complete:
        return []
    n = len(s.perm)
    narrow = [(k + 1, w) for k, w in enumerate(net.hidden) if w < n - 1]
    where = ", ".join(f"hidden layer {k} has {w} unit{'s' if w != 1 else ''}" for k, w in narrow)
    shown = list(s.lost.items())
    losses = "; ".join(f"dim {i} misses {_dims(js)}" for i, js in shown[:6]) + ("; ..." if len(shown) > 6 else "")
    return [Finding("warning", f"made hidden layer too narrow: {where}, fewer than the {n - 1} needed to carry "
                               f"every dependency of {n} inputs; conditionals that lose inputs: {losses}", arg="net")]

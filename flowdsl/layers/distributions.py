"""Base densities of flows (``base ...``) and output distributions of autoregressive models (``output ...``).

A base may be conditional, ``base normal(conditional=true)``: its mean and log-scale are a linear
map of the model's encoded condition (flattened), zero-initialised so that it starts as the
standard base. The compiler then builds it with the encoded condition's shape
(:class:`~flowdsl.layers.facts.ContextShape`); :meth:`Base.param_count` counts the map when it is
given that shape.

Example:
    >>> from flowdsl.layers.registry import BASES
    >>> from flowdsl.layers.facts import ContextShape
    >>> BASES.bind("normal").learnable
    False
    >>> base = NormalSpec(conditional=True)
    >>> base.param_count((2,)), base.param_count((2,), ContextShape("vector", (3,)))  # 2 * 2 * (3 + 1)
    (0, 16)
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from flowdsl.layers.registry import PositiveInt, Spec

__all__ = ["NormalSpec", "LogisticSpec", "CategoricalSpec", "BernoulliSpec", "LogisticMixtureSpec"]


class Base(Spec):
    runtime: ClassVar[str] = ""

    def param_count(self, shape: tuple[int, ...], context=None) -> int:
        """Learned parameters of the base over a latent of ``shape``; ``context``: the model's encoded
        condition (a ContextShape, or None), which a conditional base maps to its mean and log-scale."""
        size = 1
        for s in shape:
            size *= s
        if getattr(self, "conditional", False) and context is not None:
            return 2 * size * (context.features + 1)  # a linear map (weights and bias) onto mean and log-scale
        return 2 * size if getattr(self, "learnable", False) else 0


class NormalSpec(Base):
    """``normal``, ``normal(learnable=true)`` (a learned mean and log-scale per dimension) or
    ``normal(conditional=true)`` (mean and log-scale a linear map of the condition)."""

    name: ClassVar[str] = "normal"
    runtime: ClassVar[str] = "flowdsl.runtime.distributions:Normal.build"
    learnable: bool = False
    conditional: bool = False


class LogisticSpec(Base):
    """``logistic``: the standard logistic density (NICE); ``logistic(conditional=true)``: its location
    and log-scale a linear map of the condition."""

    name: ClassVar[str] = "logistic"
    runtime: ClassVar[str] = "flowdsl.runtime.distributions:Logistic.build"
    learnable: bool = False
    conditional: bool = False


class Output(Spec):
    #: parameters per position, as a function of the input's levels
    def params_per_position(self, levels: int | None) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class CategoricalSpec(Output):
    """``output categorical``: a softmax over the levels of each position."""

    name: ClassVar[str] = "categorical"

    def params_per_position(self, levels):
        return levels or 1


class BernoulliSpec(Output):
    """``output bernoulli``: one logit per position (levels 2)."""

    name: ClassVar[str] = "bernoulli"

    def params_per_position(self, levels):
        return 1


class LogisticMixtureSpec(Output):
    """``output logistic_mixture(K)``: a discretized mixture of K logistics per position (PixelCNN++)."""

    name: ClassVar[str] = "logistic_mixture"
    components: Annotated[PositiveInt, Field(le=100)] = 5

    def params_per_position(self, levels):
        return 3 * self.components

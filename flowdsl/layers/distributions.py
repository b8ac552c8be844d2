"""Base densities of flows (``base ...``) and output distributions of autoregressive models (``output ...``).

Example:
    >>> from flowdsl.layers.registry import BASES
    >>> BASES.bind("normal").learnable
    False
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from flowdsl.layers.registry import PositiveInt, Spec

__all__ = ["NormalSpec", "LogisticSpec", "CategoricalSpec", "BernoulliSpec", "LogisticMixtureSpec"]


class Base(Spec):
    runtime: ClassVar[str] = ""

    def param_count(self, shape: tuple[int, ...]) -> int:
        """Learned parameters of the base over a latent of ``shape``."""
        size = 1
        for s in shape:
            size *= s
        return 2 * size if getattr(self, "learnable", False) else 0


class NormalSpec(Base):
    """``normal`` or ``normal(learnable=true)`` (a learned mean and log-scale per dimension)."""

    name: ClassVar[str] = "normal"
    runtime: ClassVar[str] = "flowdsl.runtime.distributions:Normal.build"
    learnable: bool = False


class LogisticSpec(Base):
    """``logistic``: the standard logistic density (NICE)."""

    name: ClassVar[str] = "logistic"
    runtime: ClassVar[str] = "flowdsl.runtime.distributions:Logistic.build"
    learnable: bool = False


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

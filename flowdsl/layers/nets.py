"""Conditioner networks (``net=`` arguments): mlp, resnet, conv_net.

A net maps the conditioning part of a layer's input (plus the one-hot condition, if
any) to the transform's parameters. Its spec knows its parameter count for given
input/output shapes, so resource limits are checked before anything is allocated.
Shapes are per example: ``(F,)`` for features or ``(C, H, W)`` for images; an image
net keeps H and W and maps C input channels to C' output channels.

Example:
    >>> MLP(hidden=(64, 64)).param_count((4,), (8,), context=0)
    5000
"""

from __future__ import annotations

from math import prod
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import BeforeValidator, Field

from flowdsl.errors import SpecError
from flowdsl.layers.registry import NETS, PositiveInt, Spec, Word

__all__ = ["Net", "NetField", "MLP", "ResNet", "ConvNet", "ACTIVATIONS", "Activation"]

ActivationName = Literal["relu", "tanh", "elu", "leaky_relu", "gelu", "silu", "softplus", "sigmoid"]
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
#: an ``activation=`` field: one of :data:`ACTIVATIONS`, written as a bare word
Activation = Annotated[ActivationName, Word]


class Net(Spec):
    """Base of conditioner nets. ``runtime`` builds the torch module: ``build(spec, in_shape, out_shape, context)``."""

    runtime: ClassVar[str] = ""
    #: input ranks the net accepts (1: features, 3: images)
    ranks: ClassVar[tuple[int, ...]] = (1, 3)
    #: whether the net flattens an image to a vector (an mlp); a convolutional net keeps H x W
    flattens: ClassVar[bool] = False

    def validate_io(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        if len(in_shape) not in self.ranks:
            kinds = {1: "vector", 3: "image"}
            wanted = " or ".join(kinds[r] for r in self.ranks)
            raise SpecError(f"net {self.name} needs {wanted} input, but its input here is {_shape(in_shape)}",
                            arg="net")

    def param_count(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], context: int = 0) -> int:
        raise NotImplementedError  # pragma: no cover

    def activation_size(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], context: int = 0) -> int:
        """Elements of the widest activation one example makes in the net (input, hidden layers, output): on images
        a convolutional net keeps H x W for every channel count, on vectors it is the widest layer."""
        hidden = getattr(self, "hidden", ())
        widths = tuple(hidden) if isinstance(hidden, tuple) else (int(hidden),)
        if len(in_shape) == 3 and len(out_shape) == 3:
            return prod(in_shape[1:]) * max(in_shape[0] + context, out_shape[0], *widths)
        return max(prod(in_shape) + context, prod(out_shape), *widths)


#: a ``net=`` field: any member of :data:`~flowdsl.layers.registry.NETS` (a Symbol is bound on validation)
NetField = Annotated[Net, BeforeValidator(NETS.coerce)]


def _shape(shape) -> str:
    return {1: "vector", 3: "image"}.get(len(shape), "tensor") + "[" + ", ".join(map(str, shape)) + "]"


def _linear(a: int, b: int) -> int:
    return (a + 1) * b


def _conv(a: int, b: int, k: int) -> int:
    return a * b * k * k + b


Hidden = tuple[PositiveInt, ...]


class MLP(Net):
    """``mlp([h1, h2, ...], activation=relu)``: a fully connected net (image inputs are flattened)."""

    name: ClassVar[str] = "mlp"
    runtime: ClassVar[str] = "flowdsl.runtime.nets:build_mlp"
    flattens: ClassVar[bool] = True
    hidden: Hidden = (64, 64)
    activation: Activation = "relu"

    def param_count(self, in_shape, out_shape, context=0):
        sizes = [prod(in_shape) + context, *self.hidden, prod(out_shape)]
        return sum(_linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def activation_size(self, in_shape, out_shape, context=0):
        return max(prod(in_shape) + context, prod(out_shape), *self.hidden)  # images are flattened


class ResNet(Net):
    """``resnet(blocks=2, hidden=64)``: residual blocks; 3x3 convolutions on images, linear layers on vectors."""

    name: ClassVar[str] = "resnet"
    positional: ClassVar[tuple[str, ...]] = ("blocks", "hidden")
    runtime: ClassVar[str] = "flowdsl.runtime.nets:build_resnet"
    blocks: Annotated[int, Field(ge=0, le=64)] = 2
    hidden: PositiveInt = 64
    activation: Activation = "relu"

    def param_count(self, in_shape, out_shape, context=0):
        h = self.hidden
        if len(in_shape) == 3:
            return _conv(in_shape[0] + context, h, 3) + self.blocks * 2 * _conv(h, h, 3) + _conv(h, out_shape[0], 3)
        return _linear(in_shape[0] + context, h) + self.blocks * 2 * _linear(h, h) + _linear(h, out_shape[0])


class ConvNet(Net):
    """``conv_net(hidden=512)``: Glow's coupling net, conv 3x3 -> conv 1x1 -> conv 3x3 (images only)."""

    name: ClassVar[str] = "conv_net"
    positional: ClassVar[tuple[str, ...]] = ("hidden",)
    runtime: ClassVar[str] = "flowdsl.runtime.nets:build_conv_net"
    ranks: ClassVar[tuple[int, ...]] = (3,)
    hidden: PositiveInt = 512
    activation: Activation = "relu"

    def param_count(self, in_shape, out_shape, context=0):
        h = self.hidden
        return _conv(in_shape[0] + context, h, 3) + _conv(h, h, 1) + _conv(h, out_shape[0], 3)

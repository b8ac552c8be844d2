"""Nets over sequences: ``seq_conv``, a stack of non-causal dilated residual 1-d convolutions.

A net over sequences reads features ``(C, L)`` (channels first, as the sequence layers hold them)
and keeps the length: ``(C, L) -> (F, L)``. It is the source encoder of an encoder-decoder
(ByteNet's: ``condition src: sequence[L] levels V embed seq_conv(channels=64, out=64)``), whose
output the decoder's layers read at each position. It reads the whole source, both directions:
the condition is not the model's input, so that is allowed.

Example:
    >>> net = SeqConv(channels=8, dilations=(1, 2), kernel=3)
    >>> net.param_count((4, 16), (5, 16))   # 1x1 in, two 3-tap convs, 1x1 out
    485
    >>> net.validate_io((4,), (5,))
    Traceback (most recent call last):
    ...
    flowdsl.errors.SpecError: net seq_conv needs sequence input (C, L), but its input here is vector[4]
"""

from __future__ import annotations

from math import prod
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field

from flowdsl.errors import SpecError
from flowdsl.layers.nets import Activation, Net
from flowdsl.layers.registry import PositiveInt

__all__ = ["SeqConv"]

def _some(dilations: tuple[int, ...]) -> tuple[int, ...]:
    if not dilations:
        raise ValueError("must list at least one dilation (one residual block each)")
    return dilations


Dilations = Annotated[tuple[Annotated[PositiveInt, Field(le=1 << 16)], ...], AfterValidator(_some)]


def _odd(kernel: int) -> int:
    if kernel % 2 == 0:
        raise ValueError(f"must be odd (got {kernel}): a centred convolution keeps the length")
    return kernel


OddKernel = Annotated[PositiveInt, Field(le=63), AfterValidator(_odd)]


def _shape(shape) -> str:
    return {1: "vector", 2: "sequence", 3: "image"}.get(len(shape), "tensor") + "[" + ", ".join(map(str, shape)) + "]"


class SeqConv(Net):
    """``seq_conv(channels=64, dilations=[1, 2, 4, 8, 16], kernel=3, activation=relu)``: a non-causal source encoder.

    A 1x1 convolution to ``channels``, one residual block per dilation d (h + conv_k,d(act(h)),
    centred: it reads d * (k - 1) / 2 steps both ways), then act and a 1x1 convolution to the output
    features. The length is kept (zero padding at the ends).
    """

    name: ClassVar[str] = "seq_conv"
    runtime: ClassVar[str] = "flowdsl.runtime.seq_nets:build_seq_conv"
    ranks: ClassVar[tuple[int, ...]] = (2,)
    flattens: ClassVar[bool] = False
    channels: PositiveInt = 64
    dilations: Dilations = (1, 2, 4, 8, 16)
    kernel: OddKernel = 3
    activation: Activation = "relu"

    def validate_io(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        if len(in_shape) != 2:
            raise SpecError(f"net {self.name} needs sequence input (C, L), but its input here is {_shape(in_shape)}",
                            arg="net", hint="seq_conv encodes a sequence condition: condition c: sequence[L] "
                                            "embed seq_conv(out=F)")
        if tuple(out_shape[1:]) != tuple(in_shape[1:]):
            raise SpecError(f"net {self.name} keeps the length: it maps {_shape(in_shape)} to "
                            f"[F, {in_shape[1]}], not {_shape(out_shape)}", arg="net")

    def param_count(self, in_shape, out_shape, context=0):
        c, h, k = in_shape[0] + context, self.channels, self.kernel
        return (c * h + h) + len(self.dilations) * (h * h * k + h) + (h * out_shape[0] + out_shape[0])

    def activation_size(self, in_shape, out_shape, context=0):
        return prod(in_shape[1:]) * max(in_shape[0] + context, self.channels, out_shape[0])

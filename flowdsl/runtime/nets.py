"""Conditioner networks built from net specs (``mlp``, ``resnet``, ``conv_net``).

Every builder is called as ``build(spec, in_shape, out_shape, context)`` and returns a module
``net(x, context=None) -> params`` mapping ``[B, *in_shape]`` to ``[B, *out_shape]``. The
last layer starts at zero, so a fresh coupling is the identity (Glow's initialisation).
The condition (the encoded condition flattened, ``[B, F]``) is concatenated to the input (as
constant channels for images); a condition map ``[B, C, H, W]`` of the image's ``H x W`` is
concatenated as C channels (``context`` is then C). Parameter counts equal the spec's ``param_count`` (tested).

Example:
    >>> import torch
    >>> from flowdsl.layers.nets import MLP
    >>> net = build_net(MLP(hidden=(16,)), (3,), (4,), context=0)
    >>> net(torch.zeros(2, 3)).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

from importlib import import_module
from math import prod

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.optimize import optimizations_enabled

__all__ = ["build_net", "activation", "direct_activation", "build_mlp", "build_resnet", "build_conv_net", "resolve"]


def resolve(path: str):
    """Import ``"module:attr"`` (``attr`` may be dotted: ``"mod:Class.build"``)."""
    module, _, attr = path.partition(":")
    obj = import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def build_net(spec, in_shape, out_shape, context: int = 0) -> nn.Module:
    """Build the module a net spec describes (dispatching on the spec's ``runtime``)."""
    return resolve(type(spec).runtime)(spec, tuple(in_shape), tuple(out_shape), context)


def activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU,
        "silu": nn.SiLU, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid,
    }[name]()


def _with_context(x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    if context is None:
        return x
    if x.dim() == 2 or context.dim() == x.dim():  # a vector, or a map of the input's H x W: as channels
        return torch.cat([x, context.to(x.dtype)], dim=1)
    c = context.to(x.dtype).flatten(1)[:, :, None, None].expand(-1, -1, *x.shape[2:])
    return torch.cat([x, c], dim=1)


def _zero(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


# activations whose module call is one torch function with the module's default arguments
_DIRECT = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh, nn.Sigmoid: torch.sigmoid, nn.SiLU: F.silu}


def direct_activation(module: nn.Module):
    """The torch function an activation module's call amounts to (:data:`_DIRECT`), or None."""
    return None if getattr(module, "inplace", False) else _DIRECT.get(type(module))


def _direct_plan(body: nn.Module):
    """``((linear, activation or None), ...)`` when ``body`` is a Sequential of plain ``nn.Linear`` layers and
    activations of :data:`_DIRECT`, each linear followed by at most one activation; None otherwise."""
    if not isinstance(body, nn.Sequential):
        return None
    plan: list[list] = []
    for module in body:
        if type(module) is nn.Linear:
            plan.append([module, None])
        elif direct_activation(module) is not None and plan and plan[-1][1] is None:
            plan[-1][1] = direct_activation(module)
        else:
            return None
    return tuple((linear, act) for linear, act in plan) or None


class FeatureNet(nn.Module):
    """Flatten, optional condition, a body, reshape to the output shape.

    With ``direct_calls`` on (a runtime switch of :mod:`flowdsl.runtime.optimize`) a body of plain linear
    layers and activations runs as direct ``F.linear`` and activation calls, one module call instead of
    one per layer: the same values. Hooks registered on the inner layers then do not run (build with
    ``FLOWDSL_NO_OPTIMIZE=1`` to call every module).
    """

    def __init__(self, body: nn.Module, out_shape):
        super().__init__()
        self.body = body
        self.out_shape = tuple(out_shape)
        self.direct_calls = optimizations_enabled()
        #: the body's layers in order (plain attribute, not a submodule: the parameters stay under ``body``)
        self._plan = _direct_plan(body)

    def forward(self, x, context=None):
        b = x.shape[0]
        h = _with_context(x if x.dim() == 2 else x.reshape(b, -1), context)
        if self._plan is None or not self.direct_calls:
            h = self.body(h)
        else:
            for linear, act in self._plan:
                h = F.linear(h, linear.weight, linear.bias)
                if act is not None:
                    h = act(h)
        return h if len(self.out_shape) == 1 else h.reshape(b, *self.out_shape)


def build_mlp(spec, in_shape, out_shape, context=0):
    sizes = [prod(in_shape) + context, *spec.hidden, prod(out_shape)]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(spec.activation))
    _zero(layers[-1])
    return FeatureNet(nn.Sequential(*layers), out_shape)


class _Residual(nn.Module):
    def __init__(self, make, act):
        super().__init__()
        self.a, self.b = make(), make()
        self.act1, self.act2 = activation(act), activation(act)

    def forward(self, h):
        return h + self.b(self.act2(self.a(self.act1(h))))


class ImageNet(nn.Module):
    """Condition as channels, a convolutional body."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x, context=None):
        return self.body(_with_context(x, context))


def build_resnet(spec, in_shape, out_shape, context=0):
    h = spec.hidden
    if len(in_shape) == 3:
        layers = [nn.Conv2d(in_shape[0] + context, h, 3, padding=1)]
        layers += [_Residual(lambda: nn.Conv2d(h, h, 3, padding=1), spec.activation) for _ in range(spec.blocks)]
        layers += [activation(spec.activation), _zero(nn.Conv2d(h, out_shape[0], 3, padding=1))]
        return ImageNet(nn.Sequential(*layers))
    layers = [nn.Linear(in_shape[0] + context, h)]
    layers += [_Residual(lambda: nn.Linear(h, h), spec.activation) for _ in range(spec.blocks)]
    layers += [activation(spec.activation), _zero(nn.Linear(h, out_shape[0]))]
    return FeatureNet(nn.Sequential(*layers), out_shape)


def build_conv_net(spec, in_shape, out_shape, context=0):
    h = spec.hidden
    return ImageNet(nn.Sequential(
        nn.Conv2d(in_shape[0] + context, h, 3, padding=1), activation(spec.activation),
        nn.Conv2d(h, h, 1), activation(spec.activation),
        _zero(nn.Conv2d(h, out_shape[0], 3, padding=1)),
    ))

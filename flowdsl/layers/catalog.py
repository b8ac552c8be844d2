"""The catalog: every built-in member of the central families, declared in one place.

:data:`flowdsl.layers.registry.LAYERS` (and NETS, BASES, OUTPUTS) name a tuple here and register
its members on first use; importing this module registers nothing. A new layer family is one
module in this folder, its torch module(s) in :mod:`flowdsl.runtime`, and its classes listed
below (see docs/adding_a_layer.md).

Example:
    >>> from flowdsl.layers.registry import LAYERS
    >>> "coupling affine" in LAYERS.names() and LAYERS.get("coupling affine") in LAYER_SPECS
    True
"""

from __future__ import annotations

from flowdsl.layers import (
    ar_attention,
    ar_basic,
    ar_conv,
    ar_rnn,
    ar_sequence,
    ar_texture,
    ar_video,
    autoregressive_flows,
    continuous,
    coupling,
    distributions,
    elementwise,
    freeform,
    made_net,
    nets,
    residual,
    structural,
)

__all__ = ["LAYER_SPECS", "NET_SPECS", "BASE_SPECS", "OUTPUT_SPECS"]

#: ``LAYERS``: every layer of flows and autoregressive models
LAYER_SPECS = (
    structural.Permute,
    structural.InvConv1x1,
    structural.Squeeze,
    structural.Split,
    elementwise.ActNorm,
    elementwise.BatchNorm,
    elementwise.Logit,
    elementwise.Dequantize,
    *coupling.COUPLING_LAYERS,
    *autoregressive_flows.AUTOREGRESSIVE_FLOW_LAYERS,
    freeform.Planar,
    freeform.Radial,
    freeform.Sylvester,
    residual.Residual,
    continuous.Continuous,
    ar_basic.FVBN,
    ar_basic.NADE,
    ar_basic.MadeModel,
    ar_basic.ReLU,
    ar_basic.Conv1x1,
    ar_conv.MaskedConv,
    ar_conv.GatedBlock,
    ar_rnn.RowLSTM,
    ar_rnn.DiagonalBiLSTM,
    ar_sequence.Embed,
    ar_sequence.CausalConv,
    ar_sequence.GatedResidual,
    ar_sequence.ByteNetBlock,
    ar_attention.Attention,
    ar_attention.PositionMLP,
    ar_video.VideoEncoder,
    ar_video.PixelDecoder,
    ar_texture.NonParametric,
)
#: ``NETS``: conditioner and dynamics networks
NET_SPECS = (
    residual.LipschitzMLP,
    nets.MLP,
    nets.ResNet,
    nets.ConvNet,
    made_net.MADE,
)
#: ``BASES``: base densities of flows
BASE_SPECS = (
    distributions.Normal,
    distributions.Logistic,
)
#: ``OUTPUTS``: output distributions of autoregressive models
OUTPUT_SPECS = (
    distributions.Categorical,
    distributions.Bernoulli,
    distributions.LogisticMixture,
)

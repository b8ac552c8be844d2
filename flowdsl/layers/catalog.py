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
    seq_nets,
    structural,
)

__all__ = ["LAYER_SPECS", "NET_SPECS", "BASE_SPECS", "OUTPUT_SPECS"]

#: ``LAYERS``: every layer of flows and autoregressive models
LAYER_SPECS = (
    structural.PermuteSpec,
    structural.InvConv1x1Spec,
    structural.SqueezeSpec,
    structural.SplitSpec,
    elementwise.ActNormSpec,
    elementwise.BatchNormSpec,
    elementwise.LogitSpec,
    elementwise.DequantizeSpec,
    *coupling.COUPLING_LAYERS,
    *autoregressive_flows.AUTOREGRESSIVE_FLOW_LAYERS,
    freeform.PlanarSpec,
    freeform.RadialSpec,
    freeform.SylvesterSpec,
    residual.ResidualSpec,
    continuous.ContinuousSpec,
    ar_basic.FVBNSpec,
    ar_basic.NADESpec,
    ar_basic.MadeModel,
    ar_basic.ReLUSpec,
    ar_basic.Conv1x1,
    ar_conv.MaskedConv,
    ar_conv.GatedBlockSpec,
    ar_rnn.RowLSTMSpec,
    ar_rnn.DiagonalBiLSTMSpec,
    ar_sequence.EmbedSpec,
    ar_sequence.CausalConv,
    ar_sequence.GatedResidualSpec,
    ar_sequence.ByteNetBlockSpec,
    ar_attention.AttentionSpec,
    ar_attention.PositionMLPSpec,
    ar_video.VideoEncoderSpec,
    ar_video.PixelDecoderSpec,
    ar_texture.NonParametricSpec,
)
#: ``NETS``: conditioner and dynamics networks
NET_SPECS = (
    residual.LipschitzMLP,
    nets.MLP,
    nets.ResNet,
    nets.ConvNet,
    made_net.MADESpec,
    seq_nets.SeqConv,
)
#: ``BASES``: base densities of flows
BASE_SPECS = (
    distributions.NormalSpec,
    distributions.LogisticSpec,
)
#: ``OUTPUTS``: output distributions of autoregressive models
OUTPUT_SPECS = (
    distributions.CategoricalSpec,
    distributions.BernoulliSpec,
    distributions.LogisticMixtureSpec,
)

"""The catalog: every built-in layer family, imported in one place when a registry family is first used.

:data:`flowdsl.layers.registry.LAYERS` (and NETS, BASES, OUTPUTS) load this module on first use;
nothing else imports the layer modules for their side effects.

Example:
    >>> from flowdsl.layers.registry import LAYERS
    >>> "coupling affine" in LAYERS.names()
    True
"""

from flowdsl.layers import (  # noqa: F401  (each module registers its members)
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
    masks,
    nets,
    residual,
    splines,
    structural,
)

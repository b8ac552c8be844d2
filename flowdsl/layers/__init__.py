"""Every built-in layer family; importing this package registers them all.

A new layer family is one module here (its specs and rules, no torch) plus one module
in ``flowdsl/runtime`` (its torch code), and one import line below.
"""

from flowdsl.layers import coupling  # noqa: F401
from flowdsl.layers import distributions
from flowdsl.layers import elementwise
from flowdsl.layers import masks
from flowdsl.layers import nets
from flowdsl.layers import structural
from flowdsl.layers import continuous  # noqa: F401  (planar, radial, sylvester; residual flows; FFJORD)
from flowdsl.layers import freeform
from flowdsl.layers import residual
from flowdsl.layers import autoregressive_flows  # noqa: F401  (made net; MAF/IAF/NAF/UMNN/SOS; spline flows)
from flowdsl.layers import made_net
from flowdsl.layers import splines
from flowdsl.layers import ar_basic  # noqa: F401  (autoregressive: fvbn, nade, made, relu, conv1x1; PixelCNN; PixelRNN)
from flowdsl.layers import ar_conv
from flowdsl.layers import ar_rnn
from flowdsl.layers import ar_sequence  # noqa: F401  (WaveNet, ByteNet: embed, causal_conv, gated_residual, bytenet_block)
from flowdsl.layers import ar_attention  # noqa: F401  (Transformer / Sparse Transformer: attention, mlp)
from flowdsl.layers import ar_video  # noqa: F401  (Video Pixel Network: video_encoder, pixel_decoder)
from flowdsl.layers import ar_texture  # noqa: F401  (Efros-Leung texture synthesis: nonparametric)

"""Every built-in layer family; importing this package registers them all.

A new layer family is one module here (its specs and rules, no torch) plus one module
in ``flowdsl/runtime`` (its torch code), and one import line below.
"""

from . import coupling, distributions, elementwise, masks, nets, structural  # noqa: F401
from . import continuous, freeform, residual  # noqa: F401  (planar, radial, sylvester; residual flows; FFJORD)
from . import autoregressive_flows, made_net, splines  # noqa: F401  (made net; MAF/IAF/NAF/UMNN/SOS; spline flows)
from . import ar_basic, ar_conv, ar_rnn  # noqa: F401  (autoregressive: fvbn, nade, made, relu, conv1x1; PixelCNN; PixelRNN)
from . import ar_sequence  # noqa: F401  (WaveNet, ByteNet: embed, causal_conv, gated_residual, bytenet_block)
from . import ar_attention  # noqa: F401  (Transformer / Sparse Transformer: attention, mlp)
from . import ar_video  # noqa: F401  (Video Pixel Network: video_encoder, pixel_decoder)
from . import ar_texture  # noqa: F401  (Efros-Leung texture synthesis: nonparametric)

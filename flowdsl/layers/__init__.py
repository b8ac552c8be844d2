"""Every built-in layer family; importing this package registers them all.

A new layer family is one module here (its specs and rules, no torch) plus one module
in ``flowdsl/runtime`` (its torch code), and one import line below.
"""

from . import coupling, distributions, elementwise, masks, nets, structural  # noqa: F401
from . import freeform, residual  # noqa: F401  (planar, radial, sylvester; residual flows; continuous)

"""User-defined layers: one decorated class, loaded by the user's explicit choice.

:mod:`.decorator` turns the class into a registered layer; :mod:`.loading` imports plugins. May
import the layers and the runtime base (torch); nothing in the pipeline imports it unless a user
asks for plugins.

A spec never names Python code. Code is loaded because the user asked for it: ``--plugin
MODULE`` (a module name or a ``.py`` file) on the command line, :func:`load_plugins` in
Python, or a package installed with an entry point in the ``flowdsl.layers`` group::

    [project.entry-points."flowdsl.layers"]
    my_layers = "my_package.layers"

**The simple way**: decorate a torch bijection (``forward``/``inverse`` returning
``(value, logdet[B])``). Its arguments are the typed keyword parameters of ``__init__``;
``shape`` (the input shape), ``context_features`` and ``node`` are filled in by the compiler.
A ``ValueError`` raised by ``__init__`` becomes a diagnostic at the layer's call.
The decorator declares the contract the checker applies and :mod:`flowdsl.testing` verifies:

- ``shape``: ``"same"`` or ``f(in_shape, **args) -> out_shape`` (raise ValueError to refuse a shape);
- ``dependency``: ``"elementwise"``, ``"coupling"`` (kept positions from the ``mask`` argument or
  ``kept(shape, **args)``), ``"autoregressive"`` (natural order), ``"dense"``, ``None`` (undeclared),
  or ``f(shape, **args) -> Dependency | bool matrix``;
- ``logdet``: ``"exact"`` (default), ``"zero"``, ``"estimated, unbiased"``, ...;
- ``params``: an int, ``f(shape, **args) -> int``, or None: counted by building the module on
  PyTorch's meta device (nothing allocated), or on the CPU when its ``__init__`` needs real data.

**The full way**: decorate a torch-free :class:`~flowdsl.layers.registry.Layer` subclass (your own
``infer``), pairing it with its torch class or builder through ``runtime=``.

Example:
    >>> import torch
    >>> from flowdsl.runtime.base import Bijection
    >>> @layer("doc_shift", dependency="elementwise", logdet="zero")
    ... class Shift(Bijection):
    ...     def __init__(self, shape, by: float = 1.0):
    ...         super().__init__()
    ...         self.by = by
    ...     def forward(self, x, context=None):
    ...         return x + self.by, x.new_zeros(x.shape[0])
    ...     def inverse(self, y, context=None):
    ...         return y - self.by, y.new_zeros(y.shape[0])
    >>> import flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n doc_shift(by=2)\\n}\\n")
    >>> flow(torch.zeros(1, 2))[0].tolist()
    [[2.0, 2.0]]
    >>> print(flowdsl.check_source("flow f {\\n input x: vector[2]\\n doc_shift(by=true)\\n}\\n")[0].message)
    argument 'by' of doc_shift must be a number (got true)
"""

from flowdsl.plugins.decorator import RUNTIMES, PluginError, PluginLayer, layer, unregister
from flowdsl.plugins.loading import ENTRY_POINT_GROUP, load_entry_points, load_module, load_plugins

__all__ = ["layer", "unregister", "load_plugins", "load_module", "load_entry_points", "PluginError",
           "ENTRY_POINT_GROUP", "RUNTIMES", "PluginLayer"]

"""The one documented error type for bad user input to the API and to compiled models (torch-free).

:class:`InputError` is a :class:`~flowdsl.errors.FlowDSLError` (the CLI renders it as one line,
``where: error: what``) and a :class:`ValueError`; :class:`InputTypeError` (an argument of the wrong
kind: ``sample(1.5)``, ``compile_source(None)``) is also a :class:`TypeError`. The checks
themselves live in :mod:`flowdsl.runtime.input_checks` (tensors) and :mod:`flowdsl.api` (arguments).

Example:
    >>> err = InputError("the number of samples must be >= 0, got -1", "flow 'f'")
    >>> print(err), isinstance(err, ValueError)
    flow 'f': error: the number of samples must be >= 0, got -1
    (None, True)
"""

from __future__ import annotations

from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["InputError", "InputTypeError"]


class InputError(FlowDSLError, ValueError):
    """A bad argument or input to a compiled model or an API function (one line: ``where: error: what``)."""

    def __init__(self, message: str, where: str = "<input>"):
        super().__init__([Diagnostic(Pos(where), "error", message)])

    def __reduce__(self):  # picklable, for worker processes
        return (type(self), (self.diagnostics[0].message, self.diagnostics[0].pos.file))


class InputTypeError(InputError, TypeError):
    """An argument of the wrong kind (a float sample count, None for a spec, a string for a tensor)."""

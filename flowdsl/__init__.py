"""flowdsl: a declarative language and compiler for normalizing flows and autoregressive models.

The front end (parse, check) imports no torch; compiling does.

Example:
    >>> import flowdsl
    >>> flowdsl.model_names_source("flow f {\\n  input x: vector[2]\\n}\\n")
    ['f']
"""

from flowdsl.api import (
    Analysis,
    Limits,
    analyze_file,
    analyze_source,
    check_file,
    check_source,
    compile_file,
    compile_source,
    load,
    model_names,
    model_names_source,
)
from flowdsl.errors import Diagnostic, FlowDSLError, Pos
from flowdsl.input_errors import InputError, InputTypeError

__all__ = [
    "Analysis", "Diagnostic", "FlowDSLError", "InputError", "InputTypeError", "Limits", "Pos", "analyze_file",
    "analyze_source", "check_file", "check_source", "compile_file", "compile_source", "exact_logdet", "load",
    "model_names", "model_names_source", "train", "layer",
]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "layer":
        from flowdsl.plugins import layer

        return layer
    if name == "exact_logdet":
        from flowdsl.runtime.estimators import exact_logdet

        return exact_logdet
    if name == "train":
        from flowdsl.training.trainer import train

        return train
    raise AttributeError(name)

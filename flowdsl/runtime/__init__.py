"""The runtime: torch modules of every layer family, the compiled models, and the compiler.

:mod:`.compiler` turns a checked IR into modules with each layer's ``runtime`` builder and the
model kind's compiler; :mod:`.base` is the contract every compiled layer honours. May import
torch, :mod:`flowdsl.layers` (specs) and :mod:`flowdsl.analysis` (the IR); the front stages
never import it.
"""

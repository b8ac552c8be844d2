"""The layers: every layer family's spec (arguments, shape rule, dependency structure), torch-free.

:mod:`.registry` holds the spec base classes and the families; :mod:`.catalog` declares the
built-in members; one module per layer family (its specs and rules), each with its torch code in
:mod:`flowdsl.runtime`. :mod:`.structure` (declared Jacobian patterns) and :mod:`.dependency_sets`
(the bitset algebra of autoregressive layers) are what the rules are written with. May import
:mod:`flowdsl.errors` and :mod:`flowdsl.language.values`; never torch, never the analysis or runtime.
"""

"""The language: text -> parse tree -> frozen AST -> a loaded unit -> bound layer sites.

Owns the grammar loading and parser (:mod:`.parser`), the Lark transformer building the AST
(:mod:`.syntax`, :mod:`.ast`), constant values and their evaluator (:mod:`.values`), files and
``use`` (:mod:`.loader`), and block/``repeat``/``for`` expansion into bound layer specs
(:mod:`.expand`). May import :mod:`flowdsl.errors` and, for binding names to specs,
:mod:`flowdsl.layers.registry`; never torch, never :mod:`flowdsl.analysis` or the runtime.
"""

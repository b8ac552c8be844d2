"""The analysis: bound layer sites -> the typed IR -> checks, all torch-free.

Owns the IR (:mod:`.ir`), the model-level checks (:mod:`.checks`) and the causality check of
autoregressive models (:mod:`.causality`). May import :mod:`flowdsl.errors`,
:mod:`flowdsl.language` and :mod:`flowdsl.layers` (specs and their torch-free rules); never
torch, never :mod:`flowdsl.runtime`.
"""

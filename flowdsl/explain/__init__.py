"""``flowdsl explain``: pictures of what the checker proves, drawn from the IR and the dependency engine.

It may import the front end and the analysis (the same dependency sets the checker proves, never
recomputed another way), :mod:`flowdsl.cli.graph` for the IR graph, and matplotlib for drawing
(lazily, Agg only: :mod:`.render`); it does not import torch.

Modules: :mod:`.pictures` (what a picture holds: the arrays handed to ``imshow``), :mod:`.reads`
(what one prediction reads, its blind spot, the generation order, the receptive field layer by
layer, PixelCNN vs Gated PixelCNN), :mod:`.kernels` (masks A/B and R-G-B groups), :mod:`.attention`
(each head's pattern, the k-step reachability), :mod:`.made` (units, masks, mask product),
:mod:`.flows` (coupling masks, Jacobian structure per layer and of the whole flow, factored parts),
:mod:`.model_pictures` (which pictures a model gets, ``--position``), :mod:`.report` (the compile
report from the IR), :mod:`.conditions` (a condition in words, how each layer family reads one),
:mod:`.render` (PNG/SVG) and :mod:`.page` (one self-contained HTML page).

Example:
    >>> from flowdsl.api import analyze_source
    >>> from flowdsl.explain.model_pictures import model_pictures
    >>> text = "flow f {\\n  input x: vector[4]\\n  coupling additive(mask=half)\\n}\\n"
    >>> [p.name for p in model_pictures(analyze_source(text, "f.flow").models["f"])]
    ['coupling-masks', 'jacobian-structure', 'jacobian']
"""

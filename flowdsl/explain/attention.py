"""Pictures of attention: each head's pattern as a (query, key) matrix, and what several layers reach.

A head's matrix is the pattern's exact dependency rule (:meth:`Pattern.propagate`, the one the
checker runs) applied to the identity sets, one index set per head as
:func:`flowdsl.layers.ar_attention.head_assignment` assigns them. Reachability is the causality
engine's per-layer record after each attention layer: within two layers a strided pattern
connects every earlier position to every later one.

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = ("autoregressive s {\\n input x: sequence[8] levels 2\\n embed(dim=8)\\n"
    ...         " attention(heads=2, dim=8, pattern=strided(stride=2))\\n}\\n")
    >>> heads = head_patterns(analyze_source(text, "s.ar").models["s"].layers[1].layer, 8)
    >>> [label for label, _ in heads], heads[1][1][6].astype(int).tolist()   # head 1: every 2nd back
    (['head 0: local', 'head 1: strided'], [1, 0, 1, 0, 1, 0, 1, 0])
"""

from __future__ import annotations

import numpy as np

from flowdsl.analysis.causality import _per_position, analyze
from flowdsl.analysis.ir import ModelIR
from flowdsl.explain.pictures import POSITION_CODES, READ_CODES, Panel, Picture
from flowdsl.layers.ar_attention import AttentionSpec, head_assignment
from flowdsl.layers.dependency_sets import DepMaps, layout_of, unpack

__all__ = ["head_patterns", "attention_picture", "reach_picture", "MAX_LENGTH"]

#: attention matrices are drawn for the first this many positions
MAX_LENGTH = 512


def head_patterns(layer: AttentionSpec, n: int) -> list[tuple[str, np.ndarray]]:
    """``(label, bool [n, n])`` per head: query i (row) may attend to key j (column)."""
    identity = DepMaps.identity(layout_of("sequence", (n,))).main
    sets = [unpack(s[0], n) for s in layer.pattern.propagate(identity)]
    labels = layer.pattern.labels()
    out = []
    for h, ks in enumerate(head_assignment(layer.heads, len(sets))):
        out.append((f"head {h}: {' + '.join(labels[k] for k in ks)}", np.logical_or.reduce([sets[k] for k in ks])))
    return out


def _attention_nodes(ir: ModelIR):
    return [node for node in ir.layers if isinstance(node.layer, AttentionSpec) and node.info is not None]


def attention_picture(ir: ModelIR) -> Picture | None:
    """Each head of each distinct attention layer as a matrix; None without attention."""
    rows, seen = [], set()
    for node in _attention_nodes(ir):
        layer = node.layer
        key = (layer.pattern.describe(), layer.heads)
        if key in seen:
            continue
        seen.add(key)
        n = int(node.meta["length"])
        m = min(n, MAX_LENGTH)
        panels = tuple(Panel(f"{label}", pattern[:m, :m].astype(np.int64), colours=READ_CODES,
                             xlabel="key", ylabel="query") for label, pattern in head_patterns(layer, m))
        rows.append(panels)
    if not rows:
        return None
    caption = ("Each head's attention pattern, query i (row) to key j (column), the index sets of the pattern "
               "the checker propagates, intersected with causality.")
    return Picture("attention", f"{ir.name}: attention heads", caption, tuple(rows), {"patterns": len(rows)})


def reach_picture(ir: ModelIR) -> Picture | None:
    """What each position reads after the first, second, ... attention layer (the k-step reachability)."""
    nodes = {id(node) for node in _attention_nodes(ir)}
    if not nodes:
        return None
    result = analyze(ir)
    n = result.layout.n
    m = min(n, MAX_LENGTH)
    panels, facts = [], {}
    earlier = np.tri(m, k=-1, dtype=bool)
    for step, main in enumerate((mn for nd, mn in result.layers if id(nd) in nodes), start=1):
        reads = unpack(_per_position(main, result.layout)[:m], n)[:, :m]
        codes = np.where(earlier, 4, 0)
        codes[reads] = 1
        pairs = int((reads & earlier).sum())
        facts[step] = round(pairs / max(1, int(earlier.sum())), 4)
        panels.append(Panel(f"after attention layer {step} ({100 * facts[step]:.1f}% of earlier pairs)", codes,
                            colours=POSITION_CODES, xlabel="input position", ylabel="prediction"))
    caption = ("What each prediction reads after 1, 2, ... attention layers (the causality engine's sets): a "
               "factorized pattern reaches every earlier position in two steps.")
    return Picture("reach", f"{ir.name}: reachability through the attention layers", caption, (tuple(panels),),
                   facts)

"""A model's condition in words: the one-line summary of reports and ``flowdsl compile``, and the reference
table of how each layer family reads a condition (the Conditions section of docs/layers.md, which
``flowdsl layers --markdown`` prints). Torch-free.

Example:
    >>> from flowdsl.api import analyze_source
    >>> src = ("flow f {\\n  input x: vector[4]\\n  condition c: vector[8] levels 3 embed mlp([8], out=2)\\n"
    ...        "  coupling affine\\n  actnorm\\n}\\n")
    >>> ir = analyze_source(src, "f.flow").models["f"]
    >>> print(condition_summary(ir.header.condition, ir).replace("; ", ";\\n"))
    c: vector[8] levels 3 embed mlp(hidden=[8], out=2) -> vector[2] (one-hot, embed 218 parameters);
    read by 1 of 2 layers
    >>> reference_markdown().splitlines()[0]
    '## Conditions'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowdsl.analysis.ir import ModelIR

__all__ = ["condition_summary", "CONDITION_READERS", "reference_markdown"]

_SECTION = """## Conditions

With a `condition` declared, every layer below that can read it does, unless its call says `reads=false`;
the others ignore it. A layer reads the encoded condition (the table in [language.md](language.md#conditions))
flattened to F features unless it reads the map itself. No way of reading it adds a dependency between
positions: couplings and MADEs stay invertible (triangular) for every fixed condition, and the causality
engine proves autoregressive models with it.

| layers | how they read the condition |
| --- | --- |
{rows}

A condition that no layer reads is a warning. The nets above also serve as `embed` nets
(`out=F` features): `mlp` flattens, `conv_net` and `resnet` keep an image's grid, `seq_conv` a sequence's length.
"""
#: (layers, how they read the condition): the table's rows
CONDITION_READERS = (
    ('`coupling T`', 'the net reads the kept part and the condition: a vector appended (constant channels over H x W '
                     "for a convolutional net on images); an image map of the coupling's own H x W as extra channels; "
                     'any other map flattened to constant channels (a note at `net=`)'),
    ('`autoregressive T`, `made` net', 'the flattened condition as extra inputs of degree 0 in the first mask: every '
                                       'hidden unit reads it, no path between inputs'),
    ('`continuous`', 'the dynamics net reads (z, t) and the flattened condition'),
    ('`residual`', 'the Lipschitz net reads the condition as extra input columns that are not spectrally normalised '
                   '(Lip(g) < 1 is needed in x only)'),
    ('`planar`, `radial`, `sylvester`', 'a zero-initialised linear hypernetwork shifts their parameters per example; '
                                        'the invertibility constraints hold after the shift'),
    ('`actnorm`, `batchnorm`, `invconv1x1`, `permute`, `squeeze`, `split`, `logit`, `dequantize`', 'never read it'),
    ('bases `normal(conditional=true)`, `logistic(conditional=true)`', 'location and log-scale from a '
                                                                       'zero-initialised linear map of the flattened '
                                                                       'condition'),
    ('`fvbn`, `nade`, `made` (.ar)', "a context term in each logistic conditional; U c on NADE's shared hidden "
                                     "pre-activation; degree-0 columns of MADE's first mask"),
    ('`masked_conv`, `gated_block`', 'a vector: a bias per channel (V h in both gates of a gated block); an image '
                                     'map: 1x1 convolutions, upsampled by repetition to the grid (its sizes must '
                                     'divide it)'),
    ('`causal_conv`, `gated_residual`', 'a vector: global conditioning; a sequence map: local conditioning, upsampled '
                                        "to the input's length by repetition or a learned transposed convolution "
                                        '(`upsample=repeat` or `transposed`), read by 1x1 convolutions'),
    ('`bytenet_block`', "a source map of the target's length at each position (encode the source with `embed "
                        'seq_conv(...)`)'),
    ('`row_lstm`, `diagonal_bilstm`', 'a projection added to the input-to-state term'),
    ('`attention`', 'a projection added to the residual stream; `context_keys=K` also makes K keys/values of it that '
                    'every query reads'),
    ('`pixel_decoder`', "the flattened condition beside the encoder's output"),
    ('`embed`, `relu`, `conv1x1`, `mlp`, `nonparametric`, `video_encoder`', 'never read it'),
)



def reference_markdown() -> str:
    """The Conditions section of the layer reference (docs/layers.md)."""
    return _SECTION.format(rows="\n".join(f"| {names} | {how} |" for names, how in CONDITION_READERS))


def condition_summary(condition, ir: ModelIR | None = None) -> str:
    """A condition in one line: its declaration, what the layers read (the encoding, the ``embed`` net's
    parameters) and, given the model, how many of its layers read it (and whether its base does)."""
    how = ["one-hot"] if condition.integer else []
    if condition.embed is not None:
        how.append(f"embed {condition.embed_params:,} parameters")
    text = f"{condition.name}: {condition.describe()} -> {condition.encoded.describe()}"
    text += f" ({', '.join(how)})" if how else ""
    if ir is not None:
        readers = sum(node.reads_condition for node in ir.layers)
        text += f"; read by {readers} of {len(ir.layers)} layer{'' if len(ir.layers) == 1 else 's'}"
        if getattr(ir.header.base, "conditional", False):
            text += " and the base"
    return text

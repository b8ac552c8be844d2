"""The typed facts a layer's rules infer and the IR carries: ``LayerInfo``, ``CausalFacts``, ``SinkInfo``.

A fact that more than one module reads is a field here; ``LayerInfo.meta`` keeps only what a layer
family passes from its spec to its own runtime.

Example:
    >>> info = LayerInfo(out_shape=(4,), params=12, logdet="zero", reads_condition=True)
    >>> info.factored is None, info.causal is None, info.reads_condition
    (True, True, True)
    >>> CausalFacts(orders=((0, 1), (1, 0))).configurations
    2
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Finding", "LogdetKind", "LayerInfo", "CausalFacts", "OutputHead", "SinkInfo", "ContextShape"]


@dataclass(frozen=True)
class Finding:
    """A warning or note a layer rule reports (an error is raised as SpecError instead)."""

    severity: Literal["warning", "note"]
    message: str
    arg: str | None = None


@dataclass(frozen=True)
class ContextShape:
    """What the layers of a conditional model read: the condition after its encoding (one-hot, ``embed`` net).

    ``layout`` is ``"vector"`` (``shape == (F,)``), ``"image"`` (a map ``(C, H, W)``) or ``"sequence"``
    (``(C, L)``, channels first, as the sequence layers hold features). A layer that reads a vector
    reads any layout flattened, ``features`` numbers; a layer that reads a map says so.

        >>> ContextShape("image", (3, 8, 8)).features
        192
    """

    layout: Literal["vector", "image", "sequence"]
    shape: tuple[int, ...]

    @property
    def features(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def describe(self) -> str:
        return f"{self.layout}[{', '.join(map(str, self.shape))}]"


LogdetKind = Literal["zero", "exact", "estimated, unbiased", "estimated, biased", "n/a"]


@dataclass(frozen=True)
class LayerInfo:
    """What a layer's rules infer: the typed facts the IR node carries and other stages read.

    A fact that more than one module reads is a field here; ``meta`` keeps only what a family
    passes from its spec to its own runtime (hidden sizes, index maps, ...).
    """

    out_shape: tuple[int, ...]
    params: int = 0
    logdet: LogdetKind = "exact"
    dependency: Any = None  # flowdsl.layers.structure.Dependency, or None when not declared
    #: whether the layer reads the model's condition (a declared condition no layer reads is a warning)
    reads_condition: bool = False
    #: the per-example shape this layer factors out to the base density (``split``), else None
    factored: tuple[int, ...] | None = None
    #: one line for the compile report ("affine transformer; order natural; ...")
    report: str = ""
    #: open interval of input values the layer accepts, when it is bounded (property tests draw inside it)
    domain: tuple[float, float] | None = None
    #: float64 accuracy the layer states (an iterative inverse, an ODE solver): property tests loosen to it
    roundtrip_tol: float = 0.0
    logdet_tol: float = 0.0
    #: autoregressive models: what the causality check and the AR runtime read (None for flow layers)
    causal: CausalFacts | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class CausalFacts:
    """Facts of an autoregressive-model layer that the causality check and the AR runtime read."""

    #: the layer outputs the output distribution's parameters itself (fvbn, nade, made): no head is added
    emits_params: bool = False
    #: the layer reads integer positions (an embedding), not the one-hot encoding of the input
    takes_indices: bool = False
    #: generation orders over the flattened positions, one per configuration (MADE's K masks); None: raster
    orders: tuple[tuple[int, ...], ...] | None = None
    #: earlier positions a prediction should see (a warning when the receptive field is shorter)
    declared_context: int | None = None
    #: "attention": every earlier position must reach every later one within the model's depth
    full_reach: str | None = None
    #: what to say when this layer is the first to read the current position
    causality_hint: str | None = None
    #: what removes a blind spot that persists from this layer to the output ("gated_block removes it")
    blind_spot_remedy: str | None = None
    #: what to do when positions stay unreached within the model's depth (full_reach layers)
    reach_remedy: str | None = None
    # -- the AR runtime protocol (flowdsl.runtime.ar_module.ARModule is built with these)
    #: the module takes and returns the further streams: ``layer(h, context, extra) -> (h, extra)``
    streams: bool = False
    #: (a streams layer) the next layer receives its second stream; False: the streams end here
    passes_stream: bool = True
    #: the module has an incremental form (``stepper(plan)``) for cached sampling
    cacheable: bool = False
    #: why the model defines no likelihood when this layer is in it (a sampler); None: it does
    no_likelihood: str | None = None

    @property
    def configurations(self) -> int:
        return len(self.orders) if self.orders else 1


@dataclass(frozen=True)
class OutputHead:
    """An autoregressive model's output head: a 1x1 projection (mask B over colour groups)."""

    in_features: int
    out_features: int
    channels: int
    #: the head's allowed group connections for the causality check (None: a single group)
    allowed: Any = None


@dataclass(frozen=True)
class SinkInfo:
    """What a model kind's sink rule infers: a flow's base density or an AR model's output."""

    params: int = 0
    report: str = ""
    distribution: str = ""
    params_per_position: int = 0
    channels: int = 1
    #: None when the last layer emits the distribution's parameters itself (or for a flow's base)
    head: OutputHead | None = None

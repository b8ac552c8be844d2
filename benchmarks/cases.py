"""The pairings: one spec in ``benchmarks/specs/`` and the peers that build the same architecture.

Example:
    >>> [c.key for c in CASES]
    ['maf', 'nsf_ar', 'nsf_coupling', 'realnvp', 'glow', 'planar', 'resflow', 'radial', 'sylvester', 'naf']
    >>> impl = flowdsl_impl(CASES[0])
    >>> impl.library, impl.extra["declared"] == sum(p.numel() for p in impl.module.parameters())
    ('flowdsl', True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import peers, peers_freia, peers_pyro
from .harness import Impl

__all__ = ["Case", "CASES", "SPECS", "flowdsl_impl", "build_peer"]

SPECS = Path(__file__).resolve().parent / "specs"


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    spec: str
    shape: tuple[int, ...]
    batch: int
    peers: tuple[Callable[[], Impl], ...]
    note: str = ""
    flowdsl_note: str = ""
    quick_batch: int = 16
    extra: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return SPECS / self.spec


CASES = [
    Case("maf", "MAF: 5 layers, MADE [64, 64], D=16", "maf.flow", (16,), 512,
         (peers.zuko_maf, peers.nflows_maf, peers_pyro.pyro_maf),
         "affine transformer; sampling: 16 sequential passes per layer in every library"),
    Case("nsf_ar", "autoregressive RQ spline: 5 layers, 8 bins, MADE [64, 64], D=16", "nsf_ar.flow", (16,), 512,
         (peers.zuko_nsf_ar, peers.nflows_nsf_ar, peers_pyro.pyro_nsf_ar), "linear/identity tails outside [-5, 5]"),
    Case("nsf_coupling", "coupling RQ spline: 5 layers, 8 bins, MLP [64, 64], D=16", "nsf_coupling.flow", (16,),
         512, (peers.zuko_nsf_coupling, peers.nflows_nsf_coupling, peers_pyro.pyro_nsf_coupling),
         "checkered masks, alternating (Pyro: halves, reversed between layers)"),
    Case("realnvp", "RealNVP: 6 affine couplings, MLP [64, 64], D=16", "realnvp.flow", (16,), 512,
         (peers.normflows_realnvp, peers_freia.freia_realnvp), "halves swapped between couplings"),
    Case("glow", "Glow on 3x16x16: squeeze, 4 x (actnorm, 1x1 conv LU, affine coupling, conv net 64)", "glow.flow",
         (3, 16, 16), 64, (peers.normflows_glow,), "", quick_batch=4),
    Case("planar", "planar: 16 layers, D=16", "planar.flow", (16,), 512,
         (peers.normflows_planar, peers_pyro.pyro_planar),
         "density column: the closed-form direction in both", "flowdsl samples by a bracketed Newton inverse"),
    Case("resflow", "residual flow: 4 blocks, Lipschitz MLP [64, 64] (0.9), Russian roulette", "resflow.flow",
         (16,), 512, (peers.normflows_resflow,), "unbiased log-det estimators; inverse by fixed-point iteration"),
    Case("radial", "radial: 16 layers, D=16", "radial.flow", (16,), 512, (peers_pyro.pyro_radial,),
         "density column: the closed-form direction in both (Pyro's radial has no inverse)",
         "flowdsl samples by the closed-form inverse (a quadratic in the radius)"),
    Case("sylvester", "Householder-Sylvester: 4 layers of full rank, Q from 16 reflections, D=16", "sylvester.flow",
         (16,), 512, (peers_pyro.pyro_sylvester,),
         "density column: the closed-form direction in both (Pyro's Sylvester has no inverse)",
         "flowdsl samples by back-substitution with bracketed 1-D root finds"),
    Case("naf", "NAF: 3 deep sigmoidal flows (16 sigmoids), MADE [64, 64], D=16", "naf.flow", (16,), 512,
         (peers_pyro.pyro_naf,), "density direction: one pass per layer in both (Pyro: NeuralAutoregressive "
         "through .inv)", "flowdsl samples by safeguarded Newton, 16 sequential dimensions per layer"),
]


def flowdsl_impl(case: Case, device="cpu") -> Impl:
    """Compile the case's spec; ``extra["declared"]`` is the checker's analytic parameter count."""
    import flowdsl

    analysis = flowdsl.analyze_file(case.path)
    flow = flowdsl.compile_file(case.path).to(device)
    return Impl("flowdsl", flow, flow.log_prob, flow.sample, case.flowdsl_note,
                extra={"declared": analysis.model().params})


def build_peer(builder: Callable[[], Impl], device="cpu") -> Impl | None:
    """The peer's model on ``device``, or None when its library is not installed."""
    try:
        impl = builder()
    except ImportError:
        return None
    impl.module.to(device)
    return impl

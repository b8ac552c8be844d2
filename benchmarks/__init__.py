"""Side-by-side benchmarks of flowdsl's compiled models against zuko, nflows and normflows.

    python -m benchmarks.run [--device cuda] [--quick] [--compile] [--only maf glow]

Each pairing builds one architecture twice, from a spec in ``benchmarks/specs/`` and by hand in
the peer library, with the same parameter count, and times both alternately in one process.
The peers are the optional ``bench`` extra (``pip install -e .[bench]``); without them the
flowdsl half still runs. ``benchmarks.compile_time`` measures the front end and
``benchmarks.compiled`` torch.compile. The recorded run is ``docs/benchmarks.md``.
"""

__all__: list[str] = []

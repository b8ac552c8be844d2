"""Write the compatibility checkpoints and their expected outputs (``expected.json``).

Run it with the code whose checkpoint format is to be pinned; the committed files were written by
commit b5008a4 (before the typed-IR redesign)::

    git worktree add /tmp/old b5008a4
    (cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/make_checkpoints.py /path/to/tests/data/checkpoints)
"""

import json
import sys
from pathlib import Path


def outputs(model, x):
    """What is pinned: a flow's z and log|det| at a fixed (dequantized) point, an AR model's log-probability."""
    import torch

    with torch.no_grad():
        if hasattr(model, "inverse_and_logdet"):
            z, ld = model(x.double() + 0.5 if model.levels else x)
            return torch.cat([z.reshape(len(x), -1), ld[:, None]], 1)
        return model.log_prob(x)


def main(here: Path) -> None:
    import torch

    import flowdsl
    from flowdsl.checkpoint import save_checkpoint

    expected = {}
    for spec in sorted(here.glob("tiny*.*")):
        if spec.suffix not in (".flow", ".ar"):
            continue
        torch.manual_seed(0)
        model = flowdsl.compile_file(str(spec)).double()
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        shape = model.input_shape
        if model.levels:
            x = torch.randint(0, model.levels, (5, *shape), generator=g)
        else:
            x = torch.randn(5, *shape, generator=g, dtype=torch.float64)
        out = outputs(model.eval(), x)
        save_checkpoint(model, here / (spec.stem + ".pt"))
        expected[spec.stem] = {"x": x.tolist(), "log_prob": out.tolist()}
    (here / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

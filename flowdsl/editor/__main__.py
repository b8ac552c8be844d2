"""``python -m flowdsl.editor [--log FILE] [--stdio]``: the language server on stdio (as ``flowdsl lsp``).

Example:
    >>> arguments(["--stdio", "--log", "lsp.log"]).log
    'lsp.log'
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["arguments"]


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m flowdsl.editor", description="the flowdsl language server")
    ap.add_argument("--log", metavar="FILE", help="write the server's log to FILE (default: warnings to stderr)")
    ap.add_argument("--stdio", action="store_true", help="talk on stdin/stdout (the default and only transport)")
    return ap.parse_args(argv)


if __name__ == "__main__":  # pragma: no cover
    from flowdsl.editor.server import main

    sys.exit(main(arguments().log))

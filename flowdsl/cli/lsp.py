"""The ``flowdsl lsp`` command: the language server on stdin/stdout (needs the ``lsp`` extra).

Example:
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="flowdsl").add_subparsers()
    >>> add_commands(sub)
    >>> sorted(sub.choices)
    ['lsp']
"""

from __future__ import annotations

import sys


def cmd_lsp(args) -> int:
    try:
        from flowdsl.editor.server import main
    except ImportError as err:  # pygls or lsprotocol missing: say how to get them, no traceback
        print(f"flowdsl lsp: the language server needs the 'lsp' extra ({err.name} is not installed); "
              "install it with: pip install 'flowdsl[lsp]'", file=sys.stderr)
        return 2
    return main(args.log)


def add_commands(sub) -> None:
    """Register ``lsp``."""
    sp = sub.add_parser("lsp", help="run the language server on stdin/stdout (for editors)")
    sp.add_argument("--log", metavar="FILE", help="write the server's log to FILE (default: warnings to stderr)")
    sp.add_argument("--stdio", action="store_true", help="talk on stdin/stdout (the default and only transport)")
    sp.set_defaults(run=cmd_lsp)

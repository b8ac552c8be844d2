"""``python -m flowdsl.editor``: the language server on stdio (what ``flowdsl lsp`` runs).

Example:
    >>> callable(main)
    True
"""

from __future__ import annotations

import sys

from flowdsl.editor.server import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))

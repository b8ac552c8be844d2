"""``python -m flowdsl``: the command-line interface."""

from flowdsl.cli.main import main

raise SystemExit(main())

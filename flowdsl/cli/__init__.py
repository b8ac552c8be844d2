"""The ``flowdsl`` command line: one module per group of commands.

:mod:`.main` (parse, check, compile, layers and the argument parser), :mod:`.train` (train,
eval), :mod:`.draw` (sample, complete, interpolate, graph; with :mod:`.plotting` and
:mod:`.graph`), :mod:`.testcmd` (``flowdsl test`` and ``--plugin``). May import everything
else; nothing imports it but ``flowdsl.__main__`` and the console script.
"""

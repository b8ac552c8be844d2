"""The Lark grammars of flowdsl, shipped with the package as ``flowdsl.grammars``."""

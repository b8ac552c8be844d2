"""Editor support: the language server (``flowdsl lsp``) and the syntax highlighters.

It may import the front end and the analysis (flowdsl.language, flowdsl.layers, flowdsl.analysis,
flowdsl.errors), pygls/lsprotocol and pygments; it never imports torch and never runs a spec's code.
"""

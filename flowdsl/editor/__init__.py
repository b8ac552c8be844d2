"""Editor support: the language server (``flowdsl lsp``) and the syntax highlighters.

It may import the front end and the analysis (flowdsl.language, flowdsl.layers, flowdsl.analysis,
flowdsl.errors), pygls/lsprotocol and pygments; it never imports torch and never runs a spec's code.

- :mod:`~flowdsl.editor.server`: the pygls server (``flowdsl lsp``, ``python -m flowdsl.editor``),
  built from :mod:`~flowdsl.editor.documents` (checked buffers, the ``use`` graph),
  :mod:`~flowdsl.editor.diagnostics`, :mod:`~flowdsl.editor.hover`, :mod:`~flowdsl.editor.completion`
  (with :mod:`~flowdsl.editor.schema`), :mod:`~flowdsl.editor.navigation` and
  :mod:`~flowdsl.editor.positions`; :mod:`~flowdsl.editor.stdio_client` drives it in tests;
- :mod:`~flowdsl.editor.lexer` (Pygments) and :mod:`~flowdsl.editor.textmate` (the generated
  TextMate grammar), both from :mod:`~flowdsl.editor.vocabulary`, which is checked against the grammar.

Example:
    >>> from flowdsl.editor.vocabulary import all_keywords
    >>> "repeat" in all_keywords() and "coupling" in all_keywords()
    True
"""

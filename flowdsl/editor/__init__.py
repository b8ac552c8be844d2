"""Editor support: the language server (``flowdsl lsp``) and the syntax highlighters."""

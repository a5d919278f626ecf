"""Editor support for .nn files: the canonical layout (`fmt`, `nnc fmt`), the language server
(`lsp`, `nnc lsp`) over an index of every value's type (`index`), and a Pygments lexer
(`highlight`). Only `lsp` and `highlight` need the `lsp` extra (pygls, pygments)."""

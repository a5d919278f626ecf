"""A Pygments lexer for .nn specs, registered as the `pygments.lexers` entry point `nn`, so
docs, Jupyter and GitHub-style renderers colour `.nn` code. Needs the `lsp` extra (pygments).

The keyword lists mirror grammar/nn.lark; tests/editor/test_highlight.py fails when they drift."""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

# The grammar's keywords, by the role a reader sees.
DECLARATIONS = ("block", "model")
STATEMENTS = ("import", "from", "in", "out", "repeat", "shared", "as", "scan", "reverse", "emit", "checkpoint", "if",
              "else", "for")
OPERATOR_WORDS = ("rename", "over", "and", "or", "not")
CONSTANTS = ("true", "false", "none")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool")
KEYWORDS = DECLARATIONS + STATEMENTS + OPERATOR_WORDS + CONSTANTS


class NNLexer(RegexLexer):
    """The .nn architecture language of nncircuit."""

    name = "nncircuit"
    aliases = ["nn", "nncircuit"]
    filenames = ["*.nn"]
    mimetypes = ["text/x-nncircuit"]
    url = "https://github.com/nncircuit/nncircuit"

    tokens = {
        "root": [
            (r"[ \t\f\r\n]+", Whitespace),
            (r"##[^\n]*", String.Doc),
            (r"#[^\n]*", Comment.Single),
            (r'"[^"\n]*"', String.Double),
            (r"(block|model)(\s+)([A-Za-z_][A-Za-z0-9_]*)",
             bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (words(DECLARATIONS, suffix=r"\b"), Keyword.Declaration),
            (words(STATEMENTS, suffix=r"\b"), Keyword),
            (words(OPERATOR_WORDS, suffix=r"\b"), Operator.Word),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(DTYPES, suffix=r"\b"), Keyword.Type),
            # Capitalised names are learned operations and blocks; lower-case calls are pure.
            (r"[A-Z][A-Za-z0-9_]*(?=\s*\()", Name.Class),
            (r"[A-Za-z_][A-Za-z0-9_]*(?=\s*\()", Name.Function),
            (r"[A-Z][A-Za-z0-9_]*", Name.Class),
            (r"[A-Za-z_][A-Za-z0-9_]*", Name),
            (r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?", Number),
            (r"\|>|->|\*\*|<=|>=|==|!=|[-+*/=~%?<>]", Operator),
            (r"[()\[\]{},:]", Punctuation),
        ],
    }


"""Parse .nn text with the Lark grammar into the AST of `ast.py`; syntax errors become
`ParseError`s that point at the offending token."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import sys
from importlib import resources

import lark
from lark import Lark, Token, Transformer, v_args

from nncircuit.lang import tree as A
from nncircuit.errors import InternalError, NNError, ParseError, Span, normalize_newlines
from nncircuit.io import cache_dir, read_private, write_atomic

# What a user should read for the terminals that match a pattern; every other terminal is a
# literal (the grammar names them all) and reads as itself, quoted.
_PATTERN_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "DTYPE": "a dtype",
    "DOC": "a doc comment",
    "COMMENT": "a comment",
    "WS": "white space",
    "$END": "end of file",
}

MAX_SOURCE_BYTES = 4 * 1024 * 1024

_PARSER_OPTIONS = dict(parser="lalr", propagate_positions=True, maybe_placeholders=True)


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    text = resources.files("nncircuit.grammar").joinpath("nn.lark").read_text(encoding="utf-8")
    return _cached_parser(text)


def _cached_parser(grammar: str) -> Lark:
    """The LALR parser of `grammar`, its table kept in the user's own cache folder (building
    it costs about 90 ms of CPU time, loading it 10 ms). The table is a pickle, so it is read only
    from a folder and a file that are the user's own and writable by nobody else, and never
    from a shared place such as the temp folder (where Lark's own `cache=True` keeps it)."""
    key = hashlib.sha256(
        "\0".join([grammar, lark.__version__, repr(sorted(_PARSER_OPTIONS.items())),
                   sys.version]).encode("utf-8")
    ).hexdigest()[:32]
    name = f"parser-{key}.pickle"
    folder = cache_dir()
    if folder is not None:
        data = read_private(folder, name)
        if data is not None:
            try:
                return Lark.load(io.BytesIO(data))
            except Exception:  # a damaged table of our own: build it again
                pass
    parser = Lark(grammar, **_PARSER_OPTIONS)
    if folder is not None:
        buf = io.BytesIO()
        parser.save(buf)
        try:
            write_atomic(os.path.join(folder, name), buf.getvalue(), mode=0o600)
        except NNError:  # a cache that cannot be written is only slower
            pass
    return parser


def terminal_spelling(name: str) -> str:
    """How a message names terminal `name`: `'->'` for a literal, `a name` for a pattern."""
    if name in _PATTERN_NAMES:
        return _PATTERN_NAMES[name]
    term = _terminals().get(name)
    if term is None or term.pattern.type != "str":
        raise InternalError(f"the grammar's terminal {name} has no spelling for messages")
    return f"'{term.pattern.value}'"


def _describe_expected(expected) -> str:
    names = []
    for t in sorted(expected):
        name = terminal_spelling(t)
        if name not in names:
            names.append(name)
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


@functools.lru_cache(maxsize=1)
def _terminals() -> dict:
    return {t.name: t for t in _parser().terminals}


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    return f"'{tok.value}'"


def _bin(op: str):
    """The transformer rule of a binary operator."""

    @v_args(meta=True)
    def make(self, meta, children):
        return A.BinOp(self._span(meta), op, children[0], children[1])

    return make


def _word(op: str):
    """The transformer rule of an operator whose terminal is named (and so kept in the tree):
    a comparison, `and`, `or`."""

    @v_args(meta=True)
    def make(self, meta, children):
        left, _, right = children
        return A.BinOp(self._span(meta), op, left, right)

    return make


class _ToAst(Transformer):
    def __init__(self, file: str, text: str, docs: dict[int, str]):
        super().__init__()
        self.file = file
        self.text = text
        self.docs = docs

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 1, 1, text=self.text)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column, self.text)

    def _tok_span(self, tok: Token) -> Span:
        if tok.line is None or tok.column is None or tok.end_line is None or tok.end_column is None:
            return Span(self.file, 1, 1, text=self.text)
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column, self.text)

    # ---- file level
    @v_args(meta=True)
    def start(self, meta, items):
        imports = tuple(i for i in items if isinstance(i, A.Import))
        blocks = tuple(i for i in items if isinstance(i, A.BlockDef))
        return A.Module(self._span(meta), self.file, imports, blocks)

    @v_args(meta=True)
    def import_all(self, meta, children):
        return A.Import(self._span(meta), children[0].value[1:-1], None)

    @v_args(meta=True)
    def import_some(self, meta, children):
        path, *names = children
        return A.Import(self._span(meta), path.value[1:-1], tuple(str(n) for n in names))

    @v_args(meta=True)
    def block_def(self, meta, children):
        kind, name, params, *body = children
        doc_lines: list[str] = []
        line = meta.line - 1
        while line in self.docs:
            doc_lines.insert(0, self.docs[line])
            line -= 1
        params = tuple(params or ())
        return A.BlockDef(
            self._span(meta),
            str(kind),
            str(name),
            tuple(p for p in params if isinstance(p, A.Param)),
            tuple(body),
            "\n".join(doc_lines),
            tuple(p.name for p in params if isinstance(p, A.AxisParam)),
        )

    def params(self, children):
        return tuple(children)

    @v_args(meta=True)
    def param(self, meta, children):
        name, default = children
        return A.Param(self._span(meta), str(name), default)

    @v_args(meta=True)
    def axis_param(self, meta, children):
        word, name = children
        if str(word) != "axis":
            raise ParseError(
                f"unexpected name '{name}' after the parameter '{word}'; expected '=', ',' or ')' "
                "(an axis parameter is written 'axis NAME')",
                self._tok_span(name),
            )
        return A.AxisParam(self._span(meta), str(name))

    # ---- statements
    @v_args(meta=True)
    def in_decl(self, meta, items):
        return A.InDecl(self._span(meta), tuple(items))

    @v_args(meta=True)
    def in_item(self, meta, children):
        name, ttype = children
        return A.InItem(self._span(meta), str(name), ttype)

    @v_args(meta=True)
    def ttype(self, meta, children):
        *axes, dtype = children
        axes = tuple(a for a in axes if a is not None)
        return A.TensorTypeDecl(self._span(meta), axes, str(dtype) if dtype else "float32")

    @v_args(meta=True)
    def axis_decl(self, meta, children):
        name, size = children
        return A.AxisDecl(self._span(meta), str(name), size)

    @v_args(meta=True)
    def size_same(self, meta, children):
        return A.SizeDecl(self._span(meta), None, True, None, str(children[0]))

    @v_args(meta=True)
    def size_static(self, meta, children):
        return A.SizeDecl(self._span(meta), children[0], False, None)

    @v_args(meta=True)
    def size_dynamic(self, meta, children):
        return A.SizeDecl(self._span(meta), children[0], True, children[1])

    @v_args(meta=True)
    def size_free(self, meta, children):
        return A.SizeDecl(self._span(meta), None, True, None)

    @v_args(meta=True)
    def out_stmt(self, meta, items):
        return A.OutStmt(self._span(meta), tuple(items))

    @v_args(meta=True)
    def out_item(self, meta, children):
        name, value = children
        return A.OutItem(self._span(meta), str(name) if name is not None else None, value)

    @v_args(meta=True)
    def assign(self, meta, children):
        *targets, value = children
        return A.Assign(self._span(meta), tuple(str(t) for t in targets), value)

    @v_args(meta=True)
    def repeat_stmt(self, meta, children):
        count, shared, name, index, axis, *body = children
        return A.Repeat(
            self._span(meta), count, shared is not None, str(name) if name else None, tuple(body),
            str(index) if index else None, str(axis) if axis else None,
        )

    @v_args(meta=True)
    def checkpoint_stmt(self, meta, children):
        return A.Checkpoint(self._span(meta), tuple(children[1:]))

    @v_args(meta=True)
    def checkpoint_rule(self, meta, children):
        ref, value = children
        return A.CheckpointRule(self._span(meta), ref.value[1:-1], value)

    @v_args(meta=True)
    def if_stmt(self, meta, children):
        _, cond, then, _else, orelse = (children + [None, None])[:5]
        if isinstance(orelse, A.If):
            orelse = (orelse,)
        return A.If(self._span(meta), cond, tuple(then), tuple(orelse or ()))

    def stmts(self, children):
        return list(children)

    @v_args(meta=True)
    def for_stmt(self, meta, children):
        _, (targets, unpack), *items, body = children
        return A.For(self._span(meta), targets, tuple(items), tuple(body), unpack)

    @v_args(meta=True)
    def for_expr(self, meta, children):
        _, (targets, unpack), source, body = children
        return A.For(self._span(meta), targets, (), tuple(body), unpack, source)

    def for_target(self, children):
        return tuple(str(c) for c in children), len(children) > 1

    @v_args(meta=True)
    def scan_stmt(self, meta, children):
        axis, reverse, when, index, *body = children
        return A.Scan(self._span(meta), str(axis), reverse is not None, str(index) if index else None, tuple(body),
                      reverse_when=when)

    @v_args(meta=True)
    def emit_stmt(self, meta, children):
        name, value = children
        return A.Emit(self._span(meta), str(name), value)

    # ---- expressions
    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    floordiv = _bin("//")
    pow = _bin("**")
    pipe = _bin("|>")
    lt = _word("<")
    le = _word("<=")
    gt = _word(">")
    ge = _word(">=")
    eq = _word("==")
    ne = _word("!=")
    and_ = _word("and")
    or_ = _word("or")

    @v_args(meta=True)
    def not_(self, meta, children):
        return A.Not(self._span(meta), children[1])

    @v_args(meta=True)
    def neg(self, meta, children):
        return A.Neg(self._span(meta), children[0])

    @v_args(meta=True)
    def call(self, meta, children):
        func, args = children
        return A.Call(self._span(meta), func, tuple(args or ()))

    @v_args(meta=True)
    def rename(self, meta, children):
        operand, old, new = children
        return A.Rename(self._span(meta), operand, str(old), str(new))

    @v_args(meta=True)
    def index(self, meta, children):
        operand, axis, idx = children
        return A.Index(self._span(meta), operand, str(axis), idx)

    @v_args(meta=True)
    def slice(self, meta, children):
        operand, axis, start, stop = children
        return A.Slice(self._span(meta), operand, str(axis), start, stop)

    def name(self, children):
        tok = children[0]
        return A.Name(self._tok_span(tok), str(tok))

    def number(self, children):
        tok = children[0]
        text = str(tok)
        is_float = any(c in text for c in ".eE")
        if not is_float and len(text) > 100:  # Python refuses to convert past 4300 digits
            raise ParseError(f"the number {text[:20]}... has {len(text)} digits; the limit is 100",
                             self._tok_span(tok))
        return A.Number(self._tok_span(tok), float(text) if is_float else int(text))

    def string(self, children):
        tok = children[0]
        return A.String(self._tok_span(tok), tok.value[1:-1])

    @v_args(meta=True)
    def true(self, meta, children):
        return A.Bool(self._span(meta), True)

    @v_args(meta=True)
    def false(self, meta, children):
        return A.Bool(self._span(meta), False)

    @v_args(meta=True)
    def none(self, meta, children):
        return A.NoneLit(self._span(meta))

    @v_args(meta=True)
    def cond_expr(self, meta, children):
        then, _, cond, _, orelse = children
        return A.IfExpr(self._span(meta), then, cond, orelse)

    @v_args(meta=True)
    def subscript(self, meta, children):
        operand, idx = children
        return A.Subscript(self._span(meta), operand, idx)

    @v_args(meta=True)
    def tuple(self, meta, children):
        return A.Tuple(self._span(meta), tuple(c for c in children if c is not None))

    # ---- call arguments
    def args(self, children):
        return tuple(children)

    @v_args(meta=True)
    def pos_arg(self, meta, children):
        return A.PosArg(self._span(meta), children[0])

    @v_args(meta=True)
    def kw_arg(self, meta, children):
        return A.KwArg(self._span(meta), str(children[0]), children[1])

    @v_args(meta=True)
    def map_arg(self, meta, children):
        return A.MapArg(self._span(meta), children[0], children[1])

    @v_args(meta=True)
    def map_arg_sized(self, meta, children):
        name, size, dst = children
        ref = A.AxisRef(self._tok_span(name), str(name), size)
        return A.MapArg(self._span(meta), (ref,), dst)

    @v_args(meta=True)
    def map_arg_expr(self, meta, children):
        src, dst = children
        if isinstance(src, A.Name):  # `d -> e`: an axis, as it always was
            return A.MapArg(self._span(meta), (A.AxisRef(src.span, src.id, None),), dst)
        return A.MapArg(self._span(meta), (), dst, src)

    @v_args(meta=True)
    def over_arg(self, meta, children):
        return A.OverArg(self._span(meta), children[0])

    @v_args(meta=True)
    def axes_arg(self, meta, children):
        return A.AxesArg(self._span(meta), children[0])

    def axes_side(self, children):
        (c,) = children
        return c if isinstance(c, tuple) else (c,)

    def axes_list(self, children):
        return tuple(c for c in children if c is not None)

    @v_args(meta=True)
    def axis_ref(self, meta, children):
        name, size = children
        return A.AxisRef(self._span(meta), str(name), size)


def parse(text: str, file: str = "<string>") -> A.Module:
    """Parse a whole .nn file. Raises ParseError with the position of the first mistake."""
    return _parse(text, file)


@functools.lru_cache(maxsize=16)  # the AST is frozen: `nnc check` of N models parses once
def _parse(text: str, file: str) -> A.Module:
    if len(text) > MAX_SOURCE_BYTES:
        raise ParseError(
            f"file is {len(text)} characters long; the limit is {MAX_SOURCE_BYTES}",
            Span(file, 1, 1, text=""),
        )
    text = normalize_newlines(text)  # the lines the lexer counts are the lines an editor shows
    docs: dict[int, str] = {}
    parser = _parser()
    try:
        # Doc comments are ignored by the grammar; the lexer hands them to us by line.
        for tok in parser.lex(text, dont_ignore=True):
            if tok.type == "DOC" and tok.line is not None:
                docs[tok.line] = tok.value[2:].strip()
        tree = parser.parse(text)
        return _ToAst(file, text, docs).transform(tree)
    except lark.exceptions.UnexpectedCharacters as e:
        pos = e.pos_in_stream
        ch = text[pos] if pos is not None and 0 <= pos < len(text) else "?"
        raise ParseError(
            f"unexpected character {ch!r}" + _expected_suffix(e.allowed),
            Span(file, e.line, e.column, text=text),
        ) from None
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        line = tok.line if tok.line is not None else max(1, text.count("\n") + 1)
        col = tok.column if tok.column is not None else 1
        if tok.type == "$END":
            line, col = _end_position(text)
        raise ParseError(
            f"unexpected {_describe_token(tok)}" + _expected_suffix(e.expected) + _conditional_hint(tok, text, line, col),
            Span(file, line, col, tok.end_line or line, tok.end_column or col + 1, text),
        ) from None
    except lark.exceptions.UnexpectedEOF as e:
        line, col = _end_position(text)
        raise ParseError(
            "unexpected end of file" + _expected_suffix(e.expected), Span(file, line, col, text=text)
        ) from None
    except lark.exceptions.VisitError as e:  # raised while building the AST
        if isinstance(e.orig_exc, ParseError):
            raise e.orig_exc from None
        if isinstance(e.orig_exc, RecursionError):
            raise ParseError("expression nested too deeply", Span(file, 1, 1, text=text)) from None
        raise
    except RecursionError:
        raise ParseError("expression nested too deeply", Span(file, 1, 1, text=text)) from None


def _conditional_hint(tok, text: str, line: int, col: int) -> str:
    """`y = a if c else b`: after `=` the `if` starts a statement (the parser cannot tell which
    is meant until `else`), so the `else` comes unexpected; say how to write it."""
    if tok.type != "ELSE":
        return ""
    lines = text.split("\n")
    before = lines[line - 1][: col - 1] if 0 < line <= len(lines) else ""
    if re.search(r"(?<![=!<>])=(?!=).*\bif\b", before):
        return "; a conditional expression right after `=` is written in parentheses: `y = (a if c else b)`"
    return ""


def _expected_suffix(expected) -> str:
    ignored = set(_parser().lexer_conf.ignore)
    expected = [t for t in (expected or ()) if t not in ignored]
    return f"; expected {_describe_expected(expected)}" if expected else ""


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1

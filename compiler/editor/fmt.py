"""`nnc fmt`: print a .nn file in its one canonical layout (4-space indent, one statement per
line, normalised spacing, one blank line between blocks), keeping every comment where it was.

The layout is printed from the syntax tree, so it is a function of the tree and the comments
alone (hence idempotent); the result is parsed again and must give the same tree, or the file
is left alone with an internal error: formatting never changes what a spec means."""

from __future__ import annotations

import bisect
import functools
import os
import sys
from dataclasses import dataclass, field

from nncircuit.lang import tree as A
from nncircuit.errors import InternalError, NNError, normalize_newlines
from nncircuit.io import write_atomic
from nncircuit.lang.parse import _parser, parse

INDENT = "    "
WIDTH = 100  # a pipeline longer than this is broken before its `|>`s

# Binding strength of each expression form, as in grammar/nn.lark (higher binds tighter).
_OR, _AND, _NOT, _COMPARE, _ARITH, _TERM, _NEG, _POWER, _POSTFIX, _ATOM = range(1, 11)
_BINOP_LEVEL = {"or": _OR, "and": _AND, "<": _COMPARE, "<=": _COMPARE, ">": _COMPARE,
                ">=": _COMPARE, "==": _COMPARE, "!=": _COMPARE, "|>": _ARITH, "+": _ARITH,
                "-": _ARITH, "*": _TERM, "/": _TERM, "//": _TERM,
                "**": _POWER}


@dataclass(frozen=True)
class Comment:
    line: int
    col: int
    text: str
    trailing: bool  # code precedes it on its line


@dataclass
class Unit:
    """One line of output before comments: a statement, an import, a header or a `}`."""

    start: tuple[int, int]
    end: tuple[int, int]
    depth: int
    lines: list[str]
    top: bool = False  # a block header: one blank line before it (and its comments)
    close: bool = False  # a `}`: comments before it are indented as the body
    leading: list[Comment] = field(default_factory=list)
    inner: list[Comment] = field(default_factory=list)  # inside a statement joined onto one line
    trailing: list[Comment] = field(default_factory=list)

    @property
    def opens(self) -> bool:
        return self.lines[-1].endswith("{")


# ---- expressions ---------------------------------------------------------------------------


class _Printer:
    def __init__(self, text: str, tokens):
        self.text = text
        code = [t for t in tokens if t.type not in ("COMMENT", "DOC") and not _is_space(t)]
        self.code_pos = [(t.line, t.column) for t in code]
        self.code_type = [t.type for t in code]
        self.offsets = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.offsets.append(i + 1)

    def offset(self, line: int, col: int) -> int:
        return self.offsets[line - 1] + col - 1

    def source(self, node: A.Node) -> str:
        sp = node.span
        return self.text[self.offset(sp.line, sp.col) : self.offset(sp.end_line, sp.end_col)]

    def level(self, e) -> int:
        if isinstance(e, A.BinOp):
            return _BINOP_LEVEL[e.op]
        if isinstance(e, A.Neg):
            return _NEG
        if isinstance(e, A.Not):
            return _NOT
        if isinstance(e, A.Rename):
            return _ARITH
        if isinstance(e, (A.Call, A.Index, A.Slice, A.Subscript)):
            return _POSTFIX
        return _ATOM

    def wrap(self, e, least: int) -> str:
        s = self.expr(e)
        return f"({s})" if self.level(e) < least else s

    def expr(self, e) -> str:
        if isinstance(e, A.Name):
            return e.id
        if isinstance(e, A.Number):
            return self.source(e)  # `1e3`, `0.50`: the user's spelling of the same value
        if isinstance(e, A.String):
            return f'"{e.value}"'
        if isinstance(e, A.Bool):
            return "true" if e.value else "false"
        if isinstance(e, A.NoneLit):
            return "none"
        if isinstance(e, A.IfExpr):  # bare only where bracketed (test()); a statement needs parentheses
            return f"({self.test(e)})"
        if isinstance(e, A.Subscript):
            return f"{self.wrap(e.operand, _POSTFIX)}[{self.test(e.index)}]"
        if isinstance(e, A.BinOp):
            lvl = _BINOP_LEVEL[e.op]
            if e.op == "**":  # right-associative: postfix ** factor
                return f"{self.wrap(e.left, _POSTFIX)} ** {self.wrap(e.right, _NEG)}"
            if e.op == "|>":  # the right side of a pipe is one call at most
                return f"{self.wrap(e.left, lvl)} |> {self.wrap(e.right, _POSTFIX)}"
            if lvl == _COMPARE:  # comparisons do not chain
                return f"{self.wrap(e.left, _ARITH)} {e.op} {self.wrap(e.right, _ARITH)}"
            return f"{self.wrap(e.left, lvl)} {e.op} {self.wrap(e.right, lvl + 1)}"
        if isinstance(e, A.Neg):
            return f"-{self.wrap(e.operand, _NEG)}"
        if isinstance(e, A.Not):
            return f"not {self.wrap(e.operand, _NOT)}"
        if isinstance(e, A.Tuple):
            items = ", ".join(self.test(i) for i in e.items)
            return f"({items},)" if len(e.items) == 1 else f"({items})"
        if isinstance(e, A.Rename):
            return f"{self.wrap(e.operand, _ARITH)} rename {e.old} -> {e.new}"
        if isinstance(e, A.Index):
            return f"{self.wrap(e.operand, _POSTFIX)}[{e.axis} = {self.expr(e.index)}]"
        if isinstance(e, A.Slice):
            start = "" if e.start is None else self.expr(e.start)
            stop = "" if e.stop is None else self.expr(e.stop)
            return f"{self.wrap(e.operand, _POSTFIX)}[{e.axis} = {start}:{stop}]"
        if isinstance(e, A.Call):
            args = ", ".join(self.arg(a) for a in e.args)
            return f"{self.wrap(e.func, _POSTFIX)}({args})"
        raise InternalError(f"fmt: no layout for {type(e).__name__}", getattr(e, "span", None))

    def test(self, e) -> str:
        """An expression where `a if c else b` needs no parentheses (arguments, defaults,
        tuple items, subscripts)."""
        if isinstance(e, A.IfExpr):
            orelse = self.test(e.orelse) if isinstance(e.orelse, A.IfExpr) else self.wrap(e.orelse, _OR)
            return f"{self.wrap(e.then, _OR)} if {self.wrap(e.cond, _OR)} else {orelse}"
        return self.expr(e)

    def arg(self, a) -> str:
        if isinstance(a, A.PosArg):
            return self.test(a.value)
        if isinstance(a, A.KwArg):
            return f"{a.name} = {self.test(a.value)}"
        if isinstance(a, A.MapArg) and a.operand is not None:
            return f"{self.expr(a.operand)} -> {self.side(a.dst)}"
        if isinstance(a, A.MapArg):
            return f"{self.side(a.src)} -> {self.side(a.dst)}"
        if isinstance(a, A.OverArg):
            return f"over {self.side(a.axes)}"
        if isinstance(a, A.AxesArg):
            return self.axes_list(a.axes)
        raise InternalError(f"fmt: no layout for {type(a).__name__}", getattr(a, "span", None))

    def axis_ref(self, r: A.AxisRef) -> str:
        return r.name if r.size is None else f"{r.name}: {self.expr(r.size)}"

    def axes_list(self, refs) -> str:
        return "[" + ", ".join(self.axis_ref(r) for r in refs) + "]"

    def side(self, refs) -> str:
        """`d` or `[d]`: the tree does not tell them apart, so the source does."""
        if len(refs) != 1:
            return self.axes_list(refs)
        if self._bracketed(refs[0]):
            return self.axes_list(refs)
        return self.axis_ref(refs[0])

    def _bracketed(self, ref: A.AxisRef) -> bool:
        i = bisect.bisect_left(self.code_pos, (ref.span.line, ref.span.col)) - 1
        return i >= 0 and self.code_type[i] == "LSQB"

    # ---- declarations and statements
    def ttype(self, t: A.TensorTypeDecl) -> str:
        axes = ", ".join(self.axis_decl(a) for a in t.axes)
        explicit = not self.source(t).rstrip().endswith("]")
        return f"[{axes}] {t.dtype}" if explicit else f"[{axes}]"

    def axis_decl(self, a: A.AxisDecl) -> str:
        if a.size is None:
            return a.name
        sd = a.size
        if sd.same is not None:
            return f"{a.name}: ={sd.same}"
        if sd.expr is None:
            return f"{a.name}: ?"
        if not sd.dynamic:
            return f"{a.name}: {self.expr(sd.expr)}"
        mult = f" % {self.expr(sd.multiple)}" if sd.multiple is not None else ""
        return f"{a.name}: ~{self.expr(sd.expr)}{mult}"

    def param(self, p: A.Param) -> str:
        return p.name if p.default is None else f"{p.name} = {self.test(p.default)}"

    def stmt_lines(self, st, indent: str) -> list[str]:
        if isinstance(st, A.InDecl):
            items = ", ".join(f"{i.name}: {self.ttype(i.type)}" for i in st.items)
            return [f"{indent}in  {items}"]
        if isinstance(st, A.OutStmt):
            if len(st.items) == 1:
                (item,) = st.items
                head = f"{indent}out {item.name} = " if item.name is not None else f"{indent}out "
                return self.pipeline(head, item.value)
            items = ", ".join(
                f"{i.name} = {self.expr(i.value)}" if i.name is not None else self.expr(i.value)
                for i in st.items
            )
            return [f"{indent}out {items}"]
        if isinstance(st, A.Assign):
            return self.pipeline(f"{indent}{', '.join(st.targets)} = ", st.value)
        if isinstance(st, A.Emit):
            return self.pipeline(f"{indent}emit {st.name} = ", st.value)
        raise InternalError(f"fmt: no layout for {type(st).__name__}", st.span)

    def pipeline(self, head: str, e) -> list[str]:
        """One line; a pipeline too long for one is broken before `|>`, aligned on the first."""
        one = head + self.expr(e)
        if len(one) <= WIDTH or not (isinstance(e, A.BinOp) and e.op == "|>"):
            return [one]
        stages: list[str] = []
        while isinstance(e, A.BinOp) and e.op == "|>":
            stages.insert(0, self.wrap(e.right, _POSTFIX))
            e = e.left
        first = head + self.wrap(e, _ARITH)
        lines = [f"{first} |> {stages[0]}"]
        pad = " " * (len(first) + 1)
        for s in stages[1:]:
            if len(lines[-1]) + 4 + len(s) <= WIDTH:
                lines[-1] += f" |> {s}"
            else:
                lines.append(f"{pad}|> {s}")
        return lines


# ---- the layout of a file ------------------------------------------------------------------


def _tokens(text: str):
    return list(_parser().lex(text, dont_ignore=True))


def _is_space(tok) -> bool:
    """White space the grammar ignores (every ignored terminal but the comments)."""
    return tok.type in _space_terminals()


@functools.cache
def _space_terminals() -> frozenset[str]:
    return frozenset(_parser().lexer_conf.ignore) - {"COMMENT", "DOC"}


def _comments(tokens) -> list[Comment]:
    out, code_lines = [], set()
    for tok in tokens:
        if tok.type in ("COMMENT", "DOC"):
            out.append(Comment(tok.line, tok.column, tok.value.rstrip(), tok.line in code_lines))
        elif not _is_space(tok):
            code_lines.add(tok.end_line)
    return out


def _units(module: A.Module, text: str, tokens, pr: _Printer) -> list[Unit]:
    braces = [(t.line, t.column) for t in tokens if t.type == "LBRACE"]
    matching: dict[tuple[int, int], tuple[int, int]] = {}  # each `{` -> its `}`
    open_braces: list[tuple[int, int]] = []
    for t in tokens:
        if t.type == "LBRACE":
            open_braces.append((t.line, t.column))
        elif t.type == "RBRACE" and open_braces:
            matching[open_braces.pop()] = (t.line, t.column)

    def brace_after(pos):
        return min(b for b in braces if b >= pos)

    def start(n):
        return (n.span.line, n.span.col)

    def end(n):
        return (n.span.end_line, n.span.end_col)

    units: list[Unit] = []

    def body(stmts, depth):
        ind = INDENT * depth
        for st in stmts:
            if isinstance(st, (A.Repeat, A.Scan)):
                units.append(Unit(start(st), brace_after(start(st)), depth, [_loop_head(pr, st, ind) + " {"]))
                body(st.body, depth + 1)
                close = (st.span.end_line, st.span.end_col - 1)
                units.append(Unit(close, end(st), depth, [ind + "}"], close=True))
            elif isinstance(st, A.Checkpoint):
                units.append(Unit(start(st), brace_after(start(st)), depth, [ind + "checkpoint {"]))
                inner = INDENT * (depth + 1)
                for r in st.rules:
                    line = f'{inner}"{r.ref}" = {pr.expr(r.value)}'
                    units.append(Unit(start(r), end(r), depth + 1, [line]))
                close = (st.span.end_line, st.span.end_col - 1)
                units.append(Unit(close, end(st), depth, [ind + "}"], close=True))
            elif isinstance(st, A.For):
                target = f"({', '.join(st.targets)})" if st.unpack else st.targets[0]
                rows = pr.expr(st.source) if st.source is not None else f"[{', '.join(pr.expr(i) for i in st.items)}]"
                head = f"{ind}for {target} in {rows} {{"
                units.append(Unit(start(st), brace_after(start(st)), depth, [head]))
                body(st.body, depth + 1)
                close = (st.span.end_line, st.span.end_col - 1)
                units.append(Unit(close, end(st), depth, [ind + "}"], close=True))
            elif isinstance(st, A.If):
                # each `} else {` is a line of its own, so comments keep their branch
                opening = brace_after(start(st))
                units.append(Unit(start(st), opening, depth, [f"{ind}if {pr.expr(st.cond)} {{"]))
                body(st.then, depth + 1)
                rest = st.orelse
                while rest:
                    shut = matching[opening]
                    if len(rest) == 1 and isinstance(rest[0], A.If):  # `else if`
                        opening = brace_after(start(rest[0]))
                        head = f"{ind}}} else if {pr.expr(rest[0].cond)} {{"
                        units.append(Unit(shut, opening, depth, [head], close=True))
                        body(rest[0].then, depth + 1)
                        rest = rest[0].orelse
                    else:
                        opening = brace_after(shut)
                        units.append(Unit(shut, opening, depth, [ind + "} else {"], close=True))
                        body(rest, depth + 1)
                        rest = ()
                close = (st.span.end_line, st.span.end_col - 1)
                units.append(Unit(close, end(st), depth, [ind + "}"], close=True))
            else:
                units.append(Unit(start(st), end(st), depth, pr.stmt_lines(st, ind)))

    items = sorted(module.imports + module.blocks, key=lambda n: (n.span.line, n.span.col))
    for item in items:
        if isinstance(item, A.Import):
            line = f'import "{item.path}"' if item.names is None else (
                f'from "{item.path}" import {", ".join(item.names)}'
            )
            units.append(Unit(start(item), end(item), 0, [line]))
            continue
        params = ", ".join([pr.param(p) for p in item.params] + [f"axis {a}" for a in item.axis_params])
        header = f"{item.kind} {item.name}({params}) {{"
        units.append(Unit(start(item), brace_after(start(item)), 0, [header], top=True))
        body(item.body, 1)
        close = (item.span.end_line, item.span.end_col - 1)
        units.append(Unit(close, end(item), 0, ["}"], close=True))
    return units


def _loop_head(pr: _Printer, st, ind: str) -> str:
    """`repeat N [shared] [as h[, i]] [over a]` or `scan a [reverse] [as t]`, without the brace."""
    if isinstance(st, A.Repeat):
        head = f"{ind}repeat {pr.expr(st.count)}"
        head += " shared" if st.shared else ""
        head += f" as {st.name}" if st.name else ""
        head += f", {st.index}" if st.index else ""
        return head + (f" over {st.axis}" if st.axis else "")
    head = f"{ind}scan {st.axis}" + (" reverse" if st.reverse else "")
    head += f" = {pr.expr(st.reverse_when)}" if st.reverse_when is not None else ""
    return head + (f" as {st.index}" if st.index else "")


def _attach(units: list[Unit], comments: list[Comment]) -> list[Comment]:
    """Give each comment to the unit it trails, precedes or sits inside; return those after
    the last unit."""
    tail: list[Comment] = []
    for c in comments:
        pos = (c.line, c.col)
        before = [u for u in units if u.start < pos]
        after = [v for v in units if v.start > pos]
        u = before[-1] if before else None
        if u is not None and u.end > pos:
            u.inner.append(c)
        elif (c.trailing and c.text.startswith("##") and after and after[0].top
              and after[0].start[0] == c.line + 1):
            after[0].leading.append(c)  # the doc comment of the block below it: keep it so
        elif u is not None and c.trailing and u.end[0] == c.line:
            u.trailing.append(c)
        else:
            (after[0].leading if after else tail).append(c)
    return tail


def _layout(units: list[Unit], tail: list[Comment]) -> list[str]:
    out: list[str] = []
    state = {"end": 0, "open": True, "top_close": False}

    def put(lines: list[str], line: int, *, force: bool = False, gap: bool = True, end=None):
        """Write lines that came from source line `line`; a blank line first where the source
        had one (or `force`), never at the top of the file or right after `{`."""
        blank = force or (gap and line - state["end"] > 1)
        if out and not state["open"] and blank and out[-1] != "":
            out.append("")
        out.extend(lines)
        state["end"], state["open"] = (end if end is not None else line), lines[-1].endswith("{")

    for u in units:
        ind = INDENT * (u.depth + (1 if u.close else 0))
        force = bool(u.top or (u.depth == 0 and not u.close and state["top_close"]))
        for c in u.leading:
            put([ind + c.text], c.line, force=force)
            force = False
        lines = list(u.lines)
        if u.opens and u.inner:  # comments inside a header: the first lines of its body
            put(lines, u.start[0], force=force, end=u.end[0])
            body = INDENT * (u.depth + 1)
            for c in u.inner + u.trailing:
                put([body + c.text], c.line, gap=False)
        else:
            for c in u.inner:
                put([ind + c.text], c.line, force=force)
                force = False
            if u.trailing:
                lines[-1] += "  " + "  ".join(c.text for c in u.trailing)
            put(lines, u.start[0], force=force, gap=not u.close and not u.inner, end=u.end[0])
        state["top_close"] = u.close and u.depth == 0
    for c in tail:
        put([c.text], c.line)
    return out


def format_text(text: str, file: str = "<string>") -> str:
    """The canonical layout of a .nn file. Raises ParseError for a file that does not parse."""
    text = normalize_newlines(text)  # the lines the parser counts: every line terminator alike
    module = parse(text, file)
    tokens = _tokens(text)
    pr = _Printer(text, tokens)
    units = _units(module, text, tokens, pr)
    tail = _attach(units, _comments(tokens))
    out = _layout(units, tail)
    result = "\n".join(out).rstrip("\n") + "\n" if out else ""
    _check_same(module, result, file)
    return result


def _check_same(module: A.Module, result: str, file: str):
    try:
        again = parse(result, file)
    except NNError as e:
        raise InternalError(f"fmt: the formatted text does not parse: {e.message}", e.span) from None
    if again.imports != module.imports or again.blocks != module.blocks:
        raise InternalError(f"fmt: formatting {file} would change its meaning; it is left as it was")


# ---- the command ---------------------------------------------------------------------------


def _expand(paths) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                out.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".nn"))
        else:
            out.append(p)
    return out


def run_cli_fmt(args) -> int:
    try:
        return _run(args)
    except RecursionError:
        raise NNError("fmt: the spec nests too deeply to lay out") from None


def _run(args) -> int:
    from nncircuit.lang.program import read_source

    if args.files == ["-"]:
        sys.stdout.write(format_text(sys.stdin.read(), "<stdin>"))
        return 0
    changed, failed = [], 0
    for path in _expand(args.files):
        try:  # one bad file is reported; the others are still formatted
            text = read_source(path)
            new = format_text(text, path)
            if new == text:
                continue
            changed.append(path)
            if not args.check:
                write_atomic(path, new)
        except NNError as e:
            if isinstance(e, InternalError):
                raise
            print(e.render(), file=sys.stderr)
            failed += 1
    for path in changed:
        print(f"would reformat {path}" if args.check else f"reformatted {path}")
    return 1 if failed or (args.check and changed) else 0

"""What the language server knows about one .nn document, without any LSP library: its
diagnostics, the tensor type the elaborator computed for each value (for hover), where its
blocks and values are defined, the names in scope (for completion) and its outline.

Positions here are 1-based (line, column in characters) as in `Span`; lsp.py converts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from nncircuit.lang import tree as A
from nncircuit.ops import registry
from nncircuit.lang.elaborate import BlockFn, Elaborator, Fn, TupleV, TVal
from nncircuit.errors import NNError, Span
from nncircuit.lang.program import Program, import_file
from nncircuit.lang.program import load as load_program
from nncircuit.types.tensor import HVal

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SHOWN = 4  # distinct types of one value shown on hover (one per instance of its block)


@dataclass(frozen=True)
class Diagnostic:
    line: int
    col: int
    end_line: int
    end_col: int
    message: str


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int


@dataclass
class Symbol:
    name: str
    kind: str  # "model" | "block" | "param" | "input" | "value" | "output" | "repeat" | "import"
    detail: str
    span: Location
    name_span: Location
    children: list[Symbol] = field(default_factory=list)


@dataclass
class Record:
    """What the elaborator computed for one piece of source: a value or an expression."""

    span: Location
    label: str  # the source name, or "" for an expression
    shown: list[str] = field(default_factory=list)


@dataclass
class Index:
    path: str
    text: str
    program: Program | None = None
    module: A.Module | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    records: dict[Location, Record] = field(default_factory=dict)

    # ---- hover
    def hover(self, line: int, col: int, others: tuple[Index, ...] = ()) -> str | None:
        """What is known at (line, col); `others` are analyses of other documents, which may
        have elaborated this file's blocks where this one could not (a block that needs
        hyperparameters, in a library imported by a model)."""
        word = word_at(self.text, line, col)
        hits, used_by = self._hits(line, col), ""
        for other in others if not hits else ():
            hits = other._hits(line, col, self.path)
            if hits:
                used_by = f"  (as used in {os.path.basename(other.path)})"
                break
        parts = []
        if hits:
            r = hits[0]
            parts.append((f"{r.label}: {_join(r.shown)}" if r.label else _join(r.shown)) + used_by)
            if r.shown and r.shown[0].startswith(("op ", "block ", "model ")):
                result = next((h for h in hits[1:] if h.shown and h.shown[0].startswith("[")), None)
                if result is not None:
                    parts.append(f"→ {_join(result.shown)}")
        elif word:
            known = self._static_hover(word[0], line)
            if known:
                parts.append(known)
        if not parts:
            return None
        doc = self._doc_of(word[0]) if word else ""
        text = "```nn\n" + "\n".join(parts) + "\n```"
        return text + (f"\n\n{doc}" if doc else "")

    def _hits(self, line: int, col: int, file: str | None = None) -> list[Record]:
        file = file or self.path
        hits = [r for r in self.records.values() if r.span.file == file and _inside(r.span, line, col)]
        hits.sort(key=lambda r: _length(self.text, r.span))
        return hits

    def _doc_of(self, name: str) -> str:
        block = self.blocks().get(name)
        if block is not None:
            return block.doc
        op = registry.all_ops().get(name)
        return op.doc if op is not None else ""

    def _static_hover(self, name: str, line: int) -> str | None:
        """What the syntax alone says, where no instance was elaborated."""
        block = self.blocks().get(name)
        if block is not None:
            return _signature(block)
        if name in registry.all_ops():
            return f"op {name}"
        bdef = self.block_at(line)
        if bdef is None:
            return None
        for p in bdef.params:
            if p.name == name:
                default = f" = {_src(self.text, p.default)}" if p.default is not None else " (no default)"
                return f"hyperparameter {name}{default}"
        for st in bdef.body:
            if isinstance(st, A.InDecl):
                for item in st.items:
                    if item.name == name:
                        return f"{name}: {_src(self.text, item.type)}"
        return None

    # ---- definitions
    def blocks(self) -> dict[str, A.BlockDef]:
        if self.program is not None:
            return self.program.scope(self.program.root)
        if self.module is not None:
            return {b.name: b for b in self.module.blocks}
        return {}

    def definition(self, line: int, col: int) -> Location | None:
        word = word_at(self.text, line, col)
        if word is None:
            imp = self._import_path_at(line, col)
            return imp
        name = word[0]
        block = self.blocks().get(name)
        if block is not None:
            return _name_location(block, self._text_of(block.span.file))
        imp = self._import_path_at(line, col)
        if imp is not None:
            return imp
        bdef = self.block_at(line)
        if bdef is not None:
            for loc in self._defining(bdef, name):
                return loc
        return None

    def _text_of(self, file: str) -> str:
        if file == self.path:
            return self.text
        if self.program is not None and file in self.program.files:
            blocks = self.program.files[file].blocks
            if blocks:
                return blocks[0].span.text
        return ""

    def _import_path_at(self, line: int, col: int) -> Location | None:
        if self.module is None:
            return None
        for imp in self.module.imports:
            sp = imp.span
            if _inside(Location(self.path, sp.line, sp.col, sp.end_line, sp.end_col), line, col):
                target = import_file(imp.path, os.path.dirname(self.path))
                if os.path.isfile(target):
                    return Location(target, 1, 1, 1, 1)
        return None

    def _defining(self, bdef: A.BlockDef, name: str):
        for p in bdef.params:
            if p.name == name:
                yield _loc(p.span)
        for st in _statements(bdef.body):
            if isinstance(st, A.InDecl):
                for item in st.items:
                    if item.name == name:
                        yield _loc(item.span)
            elif isinstance(st, A.Assign) and name in st.targets:
                yield _target_location(self.text, st, name)

    def block_at(self, line: int) -> A.BlockDef | None:
        if self.module is None:
            return None
        for b in self.module.blocks:
            if b.span.line <= line <= b.span.end_line:
                return b
        return None

    # ---- completion
    def completions(self, line: int) -> list[tuple[str, str, str]]:
        """(label, kind, detail) of what may be written here, sorted within each kind."""
        from nncircuit.editor.highlight import DTYPES, KEYWORDS

        out = [(k, "keyword", "keyword") for k in sorted(set(KEYWORDS) | set(DTYPES))]
        for name, op in sorted(registry.all_ops().items()):
            out.append((name, "op", op.doc.splitlines()[0] if op.doc else "op"))
        for name, b in sorted(self.blocks().items()):
            out.append((name, "block", _signature(b)))
        bdef = self.block_at(line)
        if bdef is not None:
            for name, size in sorted(self.axes_in(bdef).items()):
                out.append((name, "axis", f"axis {name}: {size}" if size else f"axis {name}"))
            for p in bdef.params:
                out.append((p.name, "param", "hyperparameter"))
            seen = set()
            for st in _statements(bdef.body):
                names = [i.name for i in st.items] if isinstance(st, A.InDecl) else (
                    list(st.targets) if isinstance(st, A.Assign) else [])
                for n in names:
                    if n not in seen:
                        seen.add(n)
                        out.append((n, "value", "value"))
        merged: dict[str, tuple[str, str, str]] = {}  # `d` is an axis and a hyperparameter
        for label, kind, detail in out:
            if label in merged:
                first = merged[label]
                merged[label] = (label, first[1], f"{first[2]}; {detail}")
            else:
                merged[label] = (label, kind, detail)
        return list(merged.values())

    def axes_in(self, bdef: A.BlockDef) -> dict[str, str]:
        """Axis name -> its size as text ("" when unknown), for the axes a block mentions."""
        axes: dict[str, str] = {}
        for node in _walk(bdef):
            if isinstance(node, (A.AxisDecl, A.AxisRef)):
                axes.setdefault(node.name, "")
        lo, hi = bdef.span.line, bdef.span.end_line
        for r in self.records.values():
            if r.span.file != self.path or not lo <= r.span.line <= hi:
                continue
            for t in r.shown:
                for name, size in _axes_of(t):
                    if name in axes and not axes[name]:
                        axes[name] = size
                    axes.setdefault(name, size)
        return axes

    # ---- outline
    def symbols(self) -> list[Symbol]:
        if self.module is None:
            return []
        out = []
        for imp in self.module.imports:
            names = ", ".join(imp.names) if imp.names is not None else "*"
            loc = _loc(imp.span)
            out.append(Symbol(imp.path, "import", names, loc, loc))
        for b in self.module.blocks:
            sym = Symbol(b.name, b.kind, _signature(b), _loc(b.span), _name_location(b, self.text))
            for p in b.params:
                sym.children.append(Symbol(p.name, "param", _src(self.text, p.default) if p.default else "",
                                           _loc(p.span), _loc(p.span)))
            sym.children.extend(self._stmt_symbols(b.body))
            out.append(sym)
        return out

    def _stmt_symbols(self, stmts) -> list[Symbol]:
        out = []
        for st in stmts:
            if isinstance(st, A.InDecl):
                for item in st.items:
                    loc = _loc(item.span)
                    out.append(Symbol(item.name, "input", self._type_text(loc, item), loc, loc))
            elif isinstance(st, A.Assign):
                for t in st.targets:
                    loc = _target_location(self.text, st, t)
                    rec = self.records.get(loc)
                    out.append(Symbol(t, "value", _join(rec.shown) if rec else "", _loc(st.span), loc))
            elif isinstance(st, A.OutStmt):
                for out_item in st.items:
                    name = out_item.name or _src(self.text, out_item.value)
                    rec = self.records.get(_loc(out_item.value.span))
                    out.append(Symbol(name, "output", _join(rec.shown) if rec else "",
                                      _loc(out_item.span), _loc(out_item.span)))
            elif isinstance(st, A.Repeat):
                label = f"repeat {_src(self.text, st.count)}" + (f" as {st.name}" if st.name else "")
                loc = _loc(st.span)
                sym = Symbol(label, "repeat", "shared" if st.shared else "", loc,
                             Location(loc.file, loc.line, loc.col, loc.line, loc.col + 6))
                sym.children = self._stmt_symbols(st.body)
                out.append(sym)
            elif isinstance(st, (A.If, A.For)):  # resolved at elaboration: their names are the block's
                out += self._stmt_symbols(st.body if isinstance(st, A.For) else st.then + st.orelse)
            elif isinstance(st, A.Scan):
                loc = _loc(st.span)
                sym = Symbol(f"scan {st.axis}", "repeat", "reverse" if st.reverse else "", loc,
                             Location(loc.file, loc.line, loc.col, loc.line, loc.col + 4))
                sym.children = self._stmt_symbols(st.body)
                out.append(sym)
        return out

    def _type_text(self, loc: Location, item: A.InItem) -> str:
        rec = self.records.get(loc)
        return _join(rec.shown) if rec else _src(self.text, item.type)


# ---- building the index --------------------------------------------------------------------


class _Recorder(Elaborator):
    """The elaborator, noting what it computes for each piece of source it reads."""

    def __init__(self, program: Program, index: Index):
        super().__init__(program)
        self.index = index

    def note(self, loc: Location, label: str, shown: str):
        r = self.index.records.get(loc)
        if r is None:
            r = self.index.records[loc] = Record(loc, label)
        if shown not in r.shown and len(r.shown) < MAX_SHOWN:
            r.shown.append(shown)

    def expr(self, ctx, e, hint=None):
        v = super().expr(ctx, e, hint)
        shown = _describe(ctx, v)
        if shown:
            self.note(_loc(e.span), e.id if isinstance(e, A.Name) else "", shown)
        return v

    def in_decl(self, ctx, st):
        super().in_decl(ctx, st)
        for item in st.items:
            self.note(_loc(item.span), item.name, _describe(ctx, ctx.env.get(item.name)))

    def out_stmt(self, ctx, st):
        super().out_stmt(ctx, st)
        for item in st.items:
            r = self.index.records.get(_loc(item.value.span))
            if item.name is not None and r is not None:
                start = _loc(item.span)
                for shown in r.shown:
                    self.note(Location(start.file, start.line, start.col, start.line,
                                       start.col + len(item.name)), item.name, shown)

    def assign(self, ctx, st):
        super().assign(ctx, st)
        for name in st.targets:
            shown = _describe(ctx, ctx.env.get(name))
            if shown:
                self.note(_target_location(st.span.text, st, name), name, shown)


def analyze(path: str, text: str) -> Index:
    """Parse, load the imports of, and elaborate a document; never raises for its mistakes."""
    index = Index(path, text)
    try:
        program = load_program(path, text)
    except NNError as e:
        index.diagnostics.append(_diagnostic(index, e))
        try:  # the syntax tree alone still gives an outline, definitions and completion
            from nncircuit.lang.parse import parse

            index.module = parse(text, path)
        except NNError:
            pass
        return index
    except RecursionError:
        index.diagnostics.append(Diagnostic(1, 1, 1, 2, "the spec nests too deeply"))
        return index
    index.program = program
    index.module = program.files[program.root]
    own = index.module.blocks
    models = [b for b in own if b.kind == "model"]
    rec = _Recorder(program, index)
    for m in models:
        try:
            rec.model(m.name, {}).verify()
        except NNError as e:
            index.diagnostics.append(_diagnostic(index, e))
        except RecursionError:
            index.diagnostics.append(Diagnostic(m.span.line, m.span.col, m.span.line, m.span.col + 1,
                                                "the spec nests too deeply"))
    for b in own:  # a library's blocks with every hyperparameter defaulted, as `nnc check` does
        if b.kind != "block" or any(p.default is None for p in b.params):
            continue
        try:
            rec.instantiate(b, {}, b.span).verify()
        except NNError as e:
            if not models:  # in a model's file, only what the models use is checked
                index.diagnostics.append(_diagnostic(index, e))
        except RecursionError:
            pass
    index.diagnostics = sorted(set(index.diagnostics), key=lambda d: (d.line, d.col, d.message))
    return index


def _diagnostic(index: Index, e: NNError) -> Diagnostic:
    message = e.message + "".join(f"\n{n}" for n in e.notes)
    sp = e.span
    if sp is None:
        return Diagnostic(1, 1, 1, 1, message)
    if sp.file != index.path:  # the mistake is in an imported file: show it on the import
        where = f"{sp.file}:{sp.line}:{sp.col}: {message}"
        for imp in index.module.imports if index.module else ():
            target = import_file(imp.path, os.path.dirname(index.path))
            if os.path.normpath(sp.file) == target:
                return Diagnostic(imp.span.line, imp.span.col, imp.span.end_line, imp.span.end_col, where)
        return Diagnostic(1, 1, 1, 1, where)
    end_line, end_col = sp.end_line, sp.end_col
    if not end_line or (end_line, end_col) <= (sp.line, sp.col):
        word = word_at(index.text, sp.line, sp.col)
        end_line, end_col = (sp.line, word[2]) if word else (sp.line, sp.col + 1)
    return Diagnostic(sp.line, sp.col, end_line, end_col, message)


# ---- helpers -------------------------------------------------------------------------------


def _loc(sp: Span) -> Location:
    return Location(sp.file, sp.line, sp.col, sp.end_line or sp.line, sp.end_col or sp.col + 1)


def _describe(ctx, v) -> str:
    if isinstance(v, TVal):
        return str(ctx.graph.type_of(v.value))
    if isinstance(v, TupleV):
        return "(" + ", ".join(_describe(ctx, i) for i in v.items) + ")"
    if isinstance(v, HVal):
        return f"= {v.value!r}"
    if isinstance(v, Fn):
        if isinstance(v, BlockFn):
            return _signature(v.block)
        return f"op {v.name}"
    return ""


def _signature(b: A.BlockDef) -> str:
    params = ", ".join(p.name if p.default is None else f"{p.name} = {_src(b.span.text, p.default)}"
                       for p in b.params)
    return f"{b.kind} {b.name}({params})"


def _src(text: str, node) -> str:
    sp = node.span
    lines = text.split("\n")
    if not (1 <= sp.line <= len(lines)) or not sp.end_line:
        return ""
    if sp.line == sp.end_line:
        return lines[sp.line - 1][sp.col - 1 : sp.end_col - 1]
    parts = [lines[sp.line - 1][sp.col - 1 :]] + lines[sp.line : sp.end_line - 1]
    parts.append(lines[sp.end_line - 1][: sp.end_col - 1])
    return " ".join(p.strip() for p in parts)


def _join(shown: list[str]) -> str:
    return " | ".join(shown)


def _axes_of(t: str):
    m = re.match(r"\[([^\]]*)\]", t)
    if not m:
        return
    for part in m.group(1).split(","):
        name, _, size = part.strip().partition(":")
        if name.strip():
            yield name.strip(), size.strip()


def _inside(loc: Location, line: int, col: int) -> bool:
    return (loc.line, loc.col) <= (line, col) < (loc.end_line, loc.end_col)


def _length(text: str, loc: Location) -> tuple[int, int]:
    return (loc.end_line - loc.line, loc.end_col - loc.col if loc.end_line == loc.line else 0)


def word_at(text: str, line: int, col: int) -> tuple[str, int, int] | None:
    """The name at (line, col) as (name, start col, end col), or None."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    for m in WORD.finditer(lines[line - 1]):
        if m.start() + 1 <= col <= m.end():
            return m.group(0), m.start() + 1, m.end() + 1
    return None


def _target_location(text: str, st: A.Assign, name: str) -> Location:
    """Where `name` is written among the targets of an assignment (they precede its '=')."""
    lines = text.split("\n")
    line = lines[st.span.line - 1] if st.span.line <= len(lines) else ""
    for m in WORD.finditer(line, st.span.col - 1):
        if m.group(0) == name:
            return Location(st.span.file, st.span.line, m.start() + 1, st.span.line, m.end() + 1)
    return Location(st.span.file, st.span.line, st.span.col, st.span.line, st.span.col + len(name))


def _name_location(b: A.BlockDef, text: str) -> Location:
    lines = text.split("\n")
    line = lines[b.span.line - 1] if 1 <= b.span.line <= len(lines) else ""
    i = line.find(b.name, b.span.col - 1 + len(b.kind))
    if i < 0:
        return _loc(b.span)
    return Location(b.span.file, b.span.line, i + 1, b.span.line, i + 1 + len(b.name))


def _statements(stmts):
    for st in stmts:
        yield st
        if isinstance(st, (A.Repeat, A.For, A.Scan)):
            yield from _statements(st.body)
        elif isinstance(st, A.If):
            yield from _statements(st.then + st.orelse)


def _walk(node):
    """Every syntax node under `node`."""
    yield node
    for name in getattr(node, "__dataclass_fields__", {}):
        if name == "span":
            continue
        v = getattr(node, name)
        items = v if isinstance(v, tuple) else (v,)
        for i in items:
            if isinstance(i, A.Node):
                yield from _walk(i)


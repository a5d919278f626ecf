"""The textual IR's printer (its parser is parser.py beside it). Printing a
model's graphs, parsing the text and printing again gives the same text, and the parsed
graphs verify: the text holds every field of the IR (calls as the call site gave them,
types with their size codes, spans)."""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction

from nncircuit.types import expr as X
from nncircuit.names import fresh
from nncircuit.errors import InternalError, Span
from nncircuit.ir.checkpoint import source_text
from nncircuit.ir.graph import BodyNode, CallNode, Graph, HyperParam, InputNode, LoopNode, Node, ScanNode, Value
from nncircuit.ops.registry import AxisSpec, OpCall
from nncircuit.types.sizes import Dim, Floor, Size
from nncircuit.types.tensor import Axis, HVal, TensorType

KINDS = ("model", "block", "repeat")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# words the value syntax gives a meaning; a bare name equal to one is printed quoted
_WORDS = frozenset({"true", "false", "none", "size", "axis"})


def all_graphs(root: Graph) -> list[Graph]:
    """Every graph `root` reaches, each once, callees before their callers (root last)."""
    out: list[Graph] = []
    seen: set[int] = set()

    def visit(g: Graph):
        if id(g) in seen:
            return
        seen.add(id(g))
        for n in g.nodes():
            if isinstance(n, BodyNode):
                visit(n.callee)
        out.append(g)

    visit(root)
    return out


# ==== printing ================================================================================


def print_ir(root: Graph, *, locs: bool = True) -> str:
    """The text of `root` and every graph it calls (callees first). `locs=False` leaves out
    source locations (the text still parses, to graphs without spans)."""
    return _Printer(locs).module(root)


class _Printer:
    def __init__(self, locs: bool):
        self.locs = locs
        self.files: list[str] = []
        self.labels: dict[int, str] = {}

    def module(self, root: Graph) -> str:
        graphs = all_graphs(root)
        taken: set[str] = set()
        for g in graphs:
            label = fresh(g.name, taken, sep=".", first=2)
            taken.add(label)
            self.labels[id(g)] = label
        body = [self.graph(g) for g in graphs]
        head = ["# nncircuit IR"]
        if self.files:
            head.append("files " + ", ".join(_q(f) for f in self.files))
        return "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"

    # ---- pieces
    def file_index(self, path: str) -> int:
        if path not in self.files:
            self.files.append(path)
        return self.files.index(path)

    def loc(self, span: Span | None) -> str:
        if not self.locs or span is None:
            return ""
        f = self.file_index(span.file)
        text = f"{f}:{span.line}:{span.col}"
        if span.end_line == span.line and span.end_col:
            text += f"-{span.end_col}"
        elif span.end_line:
            text += f"-{span.end_line}:{span.end_col}"
        return f" loc({text})"

    def graph(self, g: Graph) -> str:
        if g.kind not in KINDS:
            raise InternalError(f"graph {g.name} has kind {g.kind!r}")
        hyper = ", ".join(_hyper_text(h) for h in g.hyper)
        head = f"{g.kind} @{self.labels[id(g)]} = {_name(g.name)}({hyper})"
        span_file = g.span.file if g.span is not None else ""
        if g.file != span_file or (not self.locs and g.file):
            head += f" file {_q(g.file)}"
        lines = [head + self.loc(g.span) + " {"]
        if g.doc:
            lines.append(f"  doc {_q(g.doc)}")
        if g.dims:
            lines.append("  dims " + ", ".join(f"{_name(k)} = {v}" for k, v in g.dims.items()))
        for c in g.checks:
            guard = f" default {_name(c.guard)}" if c.guard is not None else ""
            lines.append(f"  check {_q(c.cond.text())} {_q(c.template())}{guard}")
        if g.checkpoint is not None:
            for r in g.checkpoint.rules:
                lines.append(f"  checkpoint {_q(r.ref)} {_q(source_text(r.source))}")
            for spec_name, py in g.checkpoint.escaped:
                lines.append(f"  checkpoint_name {_q(spec_name)} {_q(py)}")
        names = {n.id: _node_name(n.name) for n in g.nodes()}
        lines.append("  in " + ", ".join(f"%{names[i]}" for i in g.inputs))
        for n in g.nodes():
            lines.append("  " + self.node(g, n, names))
        outs = ", ".join(f"{_name(k)} = {_value(g, v, names)}" for k, v in g.outputs)
        lines.append(f"  out {outs}")
        lines.append("}")
        return "\n".join(lines)

    def node(self, g: Graph, n: Node, names: dict[int, str]) -> str:
        ins = [_value(g, v, names) for v in n.inputs]
        # (the attributes were checked against their schema when the node was made)
        if isinstance(n, InputNode):
            body = f"input {_name(n.input_name)}"
        elif isinstance(n, CallNode):
            args = ", ".join(f"{_name(k)} = {_hval(v)}" for k, v in n.args)
            body = (
                f"call @{self.labels[id(n.callee)]}({', '.join(ins)}) block {_name(n.block)} "
                f"args({args})"
            )
            if n.lift:
                body += f" lift [{', '.join(_name(a) for a in n.lift)}]"
        elif isinstance(n, LoopNode):
            sliced = n.sliced
            k = n.carried
            free = f"; {', '.join(ins[k:])}" if len(ins) > k else ""
            body = f"repeat @{self.labels[id(n.callee)]}({', '.join(ins[:k])}{free}) count {_hval(n.count)}"
            if n.shared:
                body += " shared"
            if sliced:
                body += f" axis {_name(n.axis)}" if n.axis is not None else " axis none"
                body += " index" if n.has_index else ""
                body += f" scanned [{', '.join(str(i) for i in n.scanned)}]"
                body += f" stack [{', '.join(str(i) for i in n.stack_at)}]"
        elif isinstance(n, ScanNode):
            k = n.carried
            free = f"; {', '.join(ins[k:])}" if len(ins) > k else ""
            body = f"scan @{self.labels[id(n.callee)]}({', '.join(ins[:k])}{free}) axis {_name(n.axis)}"
            body += " reverse" if n.reverse else ""
            body += " index" if n.has_index else ""
            body += f" scanned [{', '.join(str(i) for i in n.scanned)}]"
            body += f" stack [{', '.join(str(i) for i in n.stack_at)}]"
        else:
            if n.call is None:
                raise InternalError(f"node {n.name} ({n.op}) has no call to print")
            body = _call_text(n.call, ins)
        text = f"%{n.name} = {body} : {', '.join(type_text(t) for t in n.types)}"
        if n.module is not None:
            text += f" module {_name(n.module)}"
        if n.doc:
            text += f" doc {_q(n.doc)}"
        return text + self.loc(n.span)


def _q(s: str) -> str:
    """A string literal (JSON's escapes; other characters as they are)."""
    return json.dumps(s, ensure_ascii=False)


def _node_name(s: str) -> str:
    if not s.isidentifier():
        raise InternalError(f"cannot print the node name {s!r}")
    return s


def _name(s) -> str:
    if not isinstance(s, str) or not _NAME_RE.fullmatch(s):
        raise InternalError(f"cannot print {s!r} as a name")
    return s


def _value(g: Graph, v: Value, names: dict[int, str]) -> str:
    base = f"%{names[v.node]}"
    return base if len(g.node(v.node).types) == 1 else f"{base}.{v.index}"


def _hyper_text(h: HyperParam) -> str:
    text = f"{_name(h.name)} = {_hval(h.value)}"
    if h.default is not None:
        text += f" default {_q(h.default.text())}"
    return text


def _literal(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, tuple):  # a tuple-valued hyperparameter
        items = [_literal(x) for x in v]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):  # a mask's fill value: `where(m, x, -inf)`
            return "inf" if v > 0 else "-inf"
        text = repr(v)
        if not re.fullmatch(r"-?\d+(\.\d*)?([eE][+-]?\d+)?", text):
            raise InternalError(f"cannot print the number {v!r}")
        return text
    if isinstance(v, str):
        return _q(v)
    raise InternalError(f"cannot print {v!r} as a literal")


def _hval(h: HVal) -> str:
    lit = _literal(h.value)
    if h.expr == X.const(h.value) and type(h.expr.evaluate({})) is type(h.value):
        return lit
    return f"{lit}@{expr_text(h.expr)}"


def expr_text(e: X.Expr) -> str:
    """An expression after '@': a name (`d`), a plain integer (`3`), else quoted text."""
    if isinstance(e, X.Ref) and e.name.isidentifier() and e.name not in _WORDS:
        return e.name
    if isinstance(e, X.Const) and type(e.value) is int and e.value >= 0:
        return str(e.value)
    return _q(e.text())


def size_text(s: Size) -> str:
    """A size in the IR's syntax: `64`, `seq`, `seq%8`, `floor(h + 1, 2) - 1`, `3/2 * w`."""
    parts: list[str] = []
    for atom, c in s.terms:
        if isinstance(atom, Dim):
            base = _name(atom.name) + (f"%{atom.multiple}" if atom.multiple != 1 else "")
        elif isinstance(atom, Floor):
            base = f"floor({size_text(atom.num)}, {atom.den})"
        else:
            raise InternalError(f"unknown size atom {atom!r}")
        parts.append(_term(c, base, first=not parts))
    if s.const or not parts:
        parts.append(_term(s.const, "", first=not parts))
    return "".join(parts)


def _term(c: Fraction, base: str, *, first: bool) -> str:
    sign = "-" if c < 0 else "+"
    mag = abs(c)
    coef = str(mag.numerator) if mag.denominator == 1 else f"{mag.numerator}/{mag.denominator}"
    if not base:
        body = coef
    elif mag == 1:
        body = base
    else:
        body = f"{coef} * {base}"
    if first:
        return f"-{body}" if sign == "-" else body
    return f" {sign} {body}"


def axis_text(a: Axis) -> str:
    if a.code is None and a.size == Size.dim(a.name):
        return _name(a.name)
    text = f"{_name(a.name)}: {size_text(a.size)}"
    if a.code is not None:
        text += "@" + expr_text(a.code)
    return text


def type_text(t: TensorType) -> str:
    body = ", ".join(axis_text(a) for a in t.axes)
    return f"[{body}]" + ("" if t.dtype == "float32" else f" {t.dtype}")


def _spec_text(s: AxisSpec) -> str:
    return _name(s.name) if s.size is None else f"{_name(s.name)}: {_hval(s.size)}"


def _specs(specs) -> str:
    return "[" + ", ".join(_spec_text(s) for s in specs) + "]"


def _kw_value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, HVal):
        return _hval(v)
    if isinstance(v, str):
        if not v.isidentifier() or v in _WORDS:
            raise InternalError(f"cannot print the name {v!r}")
        return v
    if isinstance(v, (bool, int, float)):
        # a raw number reads back as a constant hyperparameter value: the same text
        return _literal(v)
    if isinstance(v, tuple):
        inner = ", ".join(_kw_value(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, Size):
        return f"size({size_text(v)})"
    if isinstance(v, AxisSpec):
        return f"axis({_spec_text(v)})"
    if isinstance(v, OpCall):
        return _call_text(v, [])
    raise InternalError(f"cannot print the argument {v!r}")


def _call_text(call: OpCall, ins: list[str]) -> str:
    parts = list(ins)
    if (call.src is None) != (call.dst is None):
        raise InternalError(f"call of {call.op} has only one side of 'IN -> OUT'")
    if call.dst is not None:
        if call.src:
            parts.append(f"{_specs(call.src)} -> {_specs(call.dst)}")
        elif parts:
            parts[-1] += f" -> {_specs(call.dst)}"
        else:
            parts.append(f"-> {_specs(call.dst)}")
    if call.over is not None:
        parts.append(f"over {_specs(call.over)}")
    if call.axes is not None:
        parts.append(f"axes {_specs(call.axes)}")
    for p in call.positional:
        if isinstance(p, AxisSpec):
            parts.append(_spec_text(p))
        elif isinstance(p, HVal):
            parts.append(_hval(p))
        else:
            raise InternalError(f"cannot print the positional argument {p!r} of {call.op}")
    for k, v in call.kwargs:
        parts.append(f"{_name(k)} = {_kw_value(v)}")
    return f"{call.op}({', '.join(parts)})"

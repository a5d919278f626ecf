"""The parser of the textual IR (the printer is printer.py beside it): `parse_ir`, a
tokenizer and a recursive-descent parser that rebuilds graphs through the Graph API,
re-running each op's shape rule and checking the types the text states."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction

from nncircuit.types import expr as X
from nncircuit.ops import registry
from nncircuit.errors import InternalError, NNError, ParseError, Span, did_you_mean
from nncircuit.ir.checkpoint import CkRule, CkSection, parse_source
from nncircuit.ir.graph import Graph, HyperParam, Node, Value, check_body
from nncircuit.ir.printer import KINDS, type_text
from nncircuit.ops.registry import AxisSpec, OpCall
from nncircuit.types.sizes import Floor, Size
from nncircuit.types.tensor import DTYPES, Axis, HVal, TensorType

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<value>%[A-Za-z_][A-Za-z0-9_]*(?:\.[0-9]+)?)
  | (?P<label>@[A-Za-z_][A-Za-z0-9_]*(?:\.[0-9]+)?)
  | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<arrow>->)
  | (?P<punct>[()\[\]{},:=;+\-*/%@])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # string | value | label | number | name | punct | eof
    text: str
    line: int
    col: int


def _tokenize(text: str, source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise ParseError(
                f"unexpected character {text[pos]!r} in the IR",
                Span(source, line, pos - line_start + 1, text=text),
            )
        kind = m.lastgroup
        if kind is None:
            raise InternalError("an IR token pattern has no name")
        if kind not in ("ws", "comment"):
            toks.append(_Tok("punct" if kind == "arrow" else kind, m.group(), line, pos - line_start + 1))
        chunk = m.group()
        nl = chunk.count("\n")
        if nl:
            line += nl
            line_start = pos + chunk.rindex("\n") + 1
        pos = m.end()
    toks.append(_Tok("eof", "", line, pos - line_start + 1))
    return toks




class Parser:
    def __init__(self, text: str, source: str):
        self.text = text
        self.source = source
        self.toks = _tokenize(text, source)
        self.i = 0
        self.files: list[str] = []
        self.graphs: dict[str, Graph] = {}

    # ---- token helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def span(self, t: _Tok | None = None) -> Span:
        t = t or self.tok
        return Span(self.source, t.line, t.col, t.line, t.col + max(1, len(t.text)), self.text)

    def fail(self, msg: str, t: _Tok | None = None) -> ParseError:
        return ParseError(msg, self.span(t))

    def next(self) -> _Tok:
        t = self.tok
        self.i += 1
        return t

    def at(self, text: str) -> bool:
        return self.tok.kind in ("punct", "name") and self.tok.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> _Tok:
        if not self.at(text):
            raise self.fail(f"expected '{text}', found {self.describe()}")
        return self.next()

    def describe(self, t: _Tok | None = None) -> str:
        t = t or self.tok
        return "the end of the text" if t.kind == "eof" else f"'{t.text}'"

    def name(self, what: str = "a name") -> str:
        if self.tok.kind != "name":
            raise self.fail(f"expected {what}, found {self.describe()}")
        return self.next().text

    def int_(self, what: str = "an integer") -> int:
        t = self.tok
        if t.kind != "number" or not t.text.isdigit():
            raise self.fail(f"expected {what}, found {self.describe()}")
        self.i += 1
        return int(t.text)

    def string(self) -> str:
        if self.tok.kind != "string":
            raise self.fail(f"expected a string, found {self.describe()}")
        return json.loads(self.next().text)

    def comma_list(self, close: str, item) -> list:
        out: list = []
        if self.accept(close):
            return out
        while True:
            out.append(item())
            if self.accept(close):
                return out
            self.expect(",")

    # ---- module and graphs
    def module(self) -> Graph:
        if self.accept("files"):
            self.files.append(self.string())
            while self.accept(","):
                self.files.append(self.string())
        last = None
        while self.tok.kind != "eof":
            last = self.graph()
        if last is None:
            raise self.fail("the IR text holds no graph")
        try:
            last.verify()
        except NNError as e:
            raise ParseError(f"the IR does not verify: {e.message}", Span(self.source, 1, 1, text=self.text)) from None
        return last

    def graph(self) -> Graph:
        kt = self.tok
        kind = self.name("'model', 'block' or 'repeat'")
        if kind not in KINDS:
            raise self.fail(f"expected 'model', 'block' or 'repeat', found '{kind}'", kt)
        lt = self.tok
        if lt.kind != "label":
            raise self.fail(f"expected a graph label such as @{kind.title()}, found {self.describe()}")
        self.i += 1
        label = lt.text[1:]
        if label in self.graphs:
            raise self.fail(f"graph @{label} is defined twice", lt)
        self.expect("=")
        gname = self.name("the graph's name")
        self.expect("(")
        self.env: dict[str, int | float | bool | str] = {}  # this graph's hyperparameters, as its expressions read them
        hyper = tuple(self.comma_list(")", self.hyper))
        file = None
        if self.accept("file"):
            file = self.string()
        span = self.opt_loc()
        if file is None:
            file = span.file if span is not None else ""
        g = Graph(gname, kind, hyper, span, "", file)
        self.expect("{")
        self.body(g)
        self.graphs[label] = g
        return g

    def hyper(self) -> HyperParam:
        name = self.name("a hyperparameter name")
        self.expect("=")
        value = self.hval()
        default = None
        if self.accept("default"):
            default = self.expr_string()
        self.env[name] = value.value
        return HyperParam(name, value, default)

    def expr_string(self) -> X.Expr:
        t = self.tok
        text = self.string()
        try:
            return X.parse(text, getattr(self, "env", {}))
        except X.ExprError as e:
            raise self.fail(str(e), t) from None

    def code(self) -> X.Expr:
        """The expression after '@': a name, a plain integer, or quoted text."""
        if self.tok.kind == "label" and "." not in self.tok.text:
            return X.Ref(self.next().text[1:])
        self.expect("@")
        if self.tok.kind == "number" and self.tok.text.isdigit():
            return X.Const(int(self.next().text))
        return self.expr_string()

    def body(self, g: Graph):
        by_name: dict[str, Node] = {}
        in_names: list[_Tok] | None = None
        while not self.accept("}"):
            t = self.tok
            if self.accept("doc"):
                g.doc = self.string()
            elif self.accept("dims"):
                while True:
                    k = self.name("an axis name")
                    self.expect("=")
                    g.dims[k] = self.int_("a typical size")
                    if not self.accept(","):
                        break
            elif self.accept("checkpoint"):
                ref = self.string()
                st = self.tok
                try:
                    source = parse_source(self.string())
                except ValueError as e:
                    raise self.fail(str(e), st) from None
                old = g.checkpoint or CkSection(())
                g.checkpoint = CkSection(old.rules + (CkRule(ref, source),), old.escaped)
            elif self.accept("checkpoint_name"):
                spec_name, py = self.string(), self.string()
                old = g.checkpoint or CkSection(())
                g.checkpoint = CkSection(old.rules, old.escaped + ((spec_name, py),))
            elif self.accept("check"):
                cond = self.expr_string()
                mt = self.tok
                text = self.string()
                guard = self.name("a hyperparameter name") if self.accept("default") else None
                try:
                    g.checks.append(X.Check.from_template(cond, text, guard, self.env))
                except X.ExprError as e:
                    raise self.fail(str(e), mt) from None
            elif self.accept("in"):
                in_names = []
                if self.tok.kind == "value" and self.peek().text != "=":
                    in_names.append(self.next())
                    while self.accept(","):
                        if self.tok.kind != "value":
                            raise self.fail(f"expected an input such as %x, found {self.describe()}")
                        in_names.append(self.next())
            elif self.accept("out"):
                if self.tok.kind == "name":
                    while True:
                        oname = self.name("an output name")
                        self.expect("=")
                        g.outputs.append((oname, self.value_ref(g, by_name)))
                        if not self.accept(","):
                            break
            elif t.kind == "value":
                self.node(g, by_name)
            else:
                raise self.fail(f"expected a node (%name = ...), 'in', 'out', 'doc', 'dims' or 'check', found {self.describe()}")
        if in_names is None:
            raise self.fail(f"graph {g.name} has no 'in' line")
        for t in in_names:
            node = by_name.get(t.text[1:])
            if node is None or node.op != "input":
                raise self.fail(f"{t.text} is not an input node of {g.name}", t)
            g.inputs.append(node.id)
        stray = [n.name for n in by_name.values() if n.op == "input" and n.id not in g.inputs]
        if stray:
            raise self.fail(f"input node %{stray[0]} is missing from the 'in' line of {g.name}")

    def value_ref(self, g: Graph, by_name: dict[str, Node]) -> Value:
        t = self.tok
        if t.kind != "value":
            raise self.fail(f"expected a value such as %x, found {self.describe()}")
        self.i += 1
        name, _, idx = t.text[1:].partition(".")
        node = by_name.get(name)
        if node is None:
            raise self.fail(f"%{name} is used before it is defined", t)
        index = int(idx) if idx else 0
        if idx and len(node.types) == 1:
            raise self.fail(f"%{name} has one result; write %{name}, not {t.text}", t)
        if not idx and len(node.types) != 1:
            raise self.fail(f"%{name} has {len(node.types)} results; write %{name}.0 … ", t)
        if index >= len(node.types):
            raise self.fail(f"%{name} has no result {index}", t)
        return Value(node.id, index)

    def values(self, g, by_name, close: str) -> list[Value]:
        return self.comma_list(close, lambda: self.value_ref(g, by_name))

    # ---- nodes
    def node(self, g: Graph, by_name: dict[str, Node]):
        nt = self.next()
        name = nt.text[1:]
        if "." in name:
            raise self.fail(f"a node's name cannot have a result index: {nt.text}", nt)
        if name in by_name:
            raise self.fail(f"%{name} is defined twice in {g.name}", nt)
        self.expect("=")
        optok = self.tok
        op = self.name("an op")
        if op == "input":
            iname = self.name("the input's name")
            self.expect(":")
            types = self.types()
            module, doc, span = self.tail()
            node = g.add("input", attrs={"name": iname}, types=types, name=name, module=module, span=span, doc=doc)
        elif op in ("call", "repeat", "scan"):
            node = self.structural(g, by_name, op, name)
        else:
            if op not in registry.all_ops():
                raise self.fail(f"unknown op '{op}'{did_you_mean(op, registry.all_ops())}", optok)
            call, ins = self.call_args(g, by_name, op)
            self.expect(":")
            types = self.types()
            module, doc, span = self.tail()
            try:
                node = g.add_op(call, ins, name=name, module=module, span=span)
            except NNError as e:
                raise self.fail(f"{op}: {e.message}", optok) from None
            node.doc = doc
            self.check_types(node, node.types, types, optok)
        by_name[name] = node

    def structural(self, g: Graph, by_name, op: str, name: str) -> Node:
        optok = self.peek(-1)
        lt = self.tok
        if lt.kind != "label":
            raise self.fail(f"expected the label of the called graph, found {self.describe()}")
        self.i += 1
        callee = self.graphs.get(lt.text[1:])
        if callee is None:
            raise self.fail(f"graph {lt.text} is not defined before its use", lt)
        self.expect("(")
        if op == "call":
            ins = self.values(g, by_name, ")")
            self.expect("block")
            block = self.name("the block's name")
            self.expect("args")
            self.expect("(")
            args = tuple(self.comma_list(")", self.named_hval))
            lift: tuple[str, ...] = ()
            if self.accept("lift"):
                self.expect("[")
                lift = tuple(self.comma_list("]", lambda: self.name("an axis name")))
            attrs: dict[str, object] = {"block": block, "args": args, "lift": lift}
        else:
            carried, free = [], []
            if not self.at(")") and not self.at(";"):
                carried.append(self.value_ref(g, by_name))
                while self.accept(","):
                    carried.append(self.value_ref(g, by_name))
            if self.accept(";"):
                free.append(self.value_ref(g, by_name))
                while self.accept(","):
                    free.append(self.value_ref(g, by_name))
            self.expect(")")
            ins = carried + free
            if op == "scan":
                self.expect("axis")
                axis = self.name("the scanned axis")
                reverse = self.accept("reverse")
                index = self.accept("index")
                self.expect("scanned")
                self.expect("[")
                scanned = tuple(self.comma_list("]", self.int_))
                self.expect("stack")
                self.expect("[")
                stack_at = tuple(self.comma_list("]", self.int_))
                attrs = {"axis": axis, "reverse": reverse, "carried": len(carried), "index": index,
                         "scanned": scanned, "stack_at": stack_at}
            else:
                self.expect("count")
                count = self.hval()
                shared = self.accept("shared")
                attrs = {"count": count, "shared": shared, "carried": len(carried)}
                if self.accept("axis"):  # `repeat N as h, i over layer`
                    axis_name = None if self.accept("none") else self.name("the sliced axis")
                    index = self.accept("index")
                    self.expect("scanned")
                    self.expect("[")
                    scanned = tuple(self.comma_list("]", self.int_))
                    self.expect("stack")
                    self.expect("[")
                    stack_at = tuple(self.comma_list("]", self.int_))
                    attrs.update({"axis": axis_name, "index": index, "scanned": scanned, "stack_at": stack_at})
        self.expect(":")
        types = self.types()
        module, doc, span = self.tail()
        node = g.add_body(op, ins, attrs=attrs, types=types, name=name, module=module, span=span, callee=callee, doc=doc)
        try:
            in_types = [g.type_of(v) for v in ins]
            derived = check_body(node, in_types)
        except NNError as e:
            raise self.fail(f"{op} %{name}: {e.message}", optok) from None
        self.check_types(node, derived, types, optok)
        return node

    def check_types(self, node: Node, derived, written, t: _Tok):
        """The types written in the text must be the ones the node's rule derives."""
        a = [type_text(x) for x in derived]
        b = [type_text(x) for x in written]
        if a != b:
            raise self.fail(f"%{node.name} ({node.op}) has types {', '.join(a)}, but the text says {', '.join(b)}", t)

    def named_hval(self):
        k = self.name()
        self.expect("=")
        return (k, self.hval())

    def tail(self):
        module = None
        doc = ""
        if self.accept("module"):
            module = self.name("a module name")
        if self.accept("doc"):
            doc = self.string()
        return module, doc, self.opt_loc()

    def opt_loc(self) -> Span | None:
        if not self.accept("loc"):
            return None
        self.expect("(")
        ft = self.tok
        f = self.int_("a file index")
        if f >= len(self.files):
            raise self.fail(f"file index {f} is not in the 'files' line", ft)
        self.expect(":")
        line = self.int_("a line")
        self.expect(":")
        col = self.int_("a column")
        end_line = end_col = 0
        if self.accept("-"):
            n = self.int_("a column")
            if self.accept(":"):
                end_line, end_col = n, self.int_("a column")
            else:
                end_line, end_col = line, n
        self.expect(")")
        return Span(self.files[f], line, col, end_line, end_col)

    # ---- calls of registry ops
    def call_args(self, g, by_name, op: str):
        self.expect("(")
        ins: list[Value] = []
        pieces: dict = {"positional": [], "kwargs": []}
        if self.accept(")"):
            return OpCall(op, ()), ins
        while True:
            if self.tok.kind == "value" and g is not None:
                if pieces["positional"] or pieces["kwargs"] or len(pieces) > 2:
                    raise self.fail("tensor inputs come first in a call")
                ins.append(self.value_ref(g, by_name))
                if self.at("->"):
                    self.next()
                    self.set_piece(pieces, "src", ())
                    self.set_piece(pieces, "dst", self.specs())
            elif self.at("->"):
                self.next()
                self.set_piece(pieces, "src", ())
                self.set_piece(pieces, "dst", self.specs())
            elif self.at("["):
                src = self.specs()
                self.expect("->")
                self.set_piece(pieces, "src", src)
                self.set_piece(pieces, "dst", self.specs())
            elif self.tok.kind == "name" and self.tok.text in ("over", "axes") and self.peek().text == "[":
                key = self.next().text
                self.set_piece(pieces, key, self.specs())
            elif self.tok.kind == "name" and self.peek().text == "=" and self.peek().kind == "punct":
                k = self.next().text
                self.next()
                if any(k == x for x, _ in pieces["kwargs"]):
                    raise self.fail(f"argument '{k}' given twice")
                pieces["kwargs"].append((k, self.kw_value()))
            elif self.tok.kind == "name":
                pieces["positional"].append(self.spec())
            else:
                pieces["positional"].append(self.hval())
            if self.accept(")"):
                break
            self.expect(",")
        call = OpCall(
            op, (), src=pieces.get("src"), dst=pieces.get("dst"), over=pieces.get("over"),
            axes=pieces.get("axes"), positional=tuple(pieces["positional"]), kwargs=tuple(pieces["kwargs"]),
        )
        return call, ins

    def set_piece(self, pieces: dict, key: str, val):
        if key in pieces:
            raise self.fail(f"'{key}' given twice in one call")
        pieces[key] = val

    def specs(self) -> tuple[AxisSpec, ...]:
        self.expect("[")
        return tuple(self.comma_list("]", self.spec))

    def spec(self) -> AxisSpec:
        name = self.name("an axis name")
        if self.accept(":"):
            return AxisSpec(name, self.hval())
        return AxisSpec(name)

    def kw_value(self):
        t = self.tok
        if self.accept("("):
            items = []
            if self.accept(")"):
                return ()
            while True:
                items.append(self.kw_value())
                if self.accept(")"):
                    return tuple(items)
                self.expect(",")
                if self.accept(")"):
                    return tuple(items)
        if t.kind == "name":
            if t.text == "none":
                self.i += 1
                return None
            if t.text in ("true", "false"):
                return self.hval()
            if t.text == "size" and self.peek().text == "(":
                self.i += 2
                s = self.size()
                self.expect(")")
                return s
            if t.text == "axis" and self.peek().text == "(":
                self.i += 2
                spec = self.spec()
                self.expect(")")
                return spec
            if self.peek().text == "(" and self.peek().kind == "punct":
                self.i += 1
                call, _ = self.call_args(None, None, t.text)
                return call
            self.i += 1
            return t.text
        return self.hval()

    # ---- literals, sizes and types
    def literal(self):
        t = self.tok
        neg = False
        if self.at("-"):
            neg = True
            self.i += 1
            t = self.tok
        if t.kind == "number":
            self.i += 1
            v = float(t.text) if any(c in t.text for c in ".eE") else int(t.text)
            return -v if neg else v
        if t.kind == "name" and t.text == "inf":
            self.i += 1
            return -math.inf if neg else math.inf
        if neg:
            raise self.fail(f"expected a number after '-', found {self.describe()}")
        if t.kind == "string":
            return self.string()
        if t.kind == "name" and t.text in ("true", "false"):
            self.i += 1
            return t.text == "true"
        if t.kind == "name" and t.text == "none":
            self.i += 1
            return None
        if self.accept("("):  # a tuple-valued hyperparameter: `(2, 2, 6, 2)`, `(3,)`
            items = []
            while not self.accept(")"):
                items.append(self.literal())
                if not self.accept(","):
                    self.expect(")")
                    break
            if not items:
                raise self.fail("expected a value in the tuple, found ')'")
            return tuple(items)
        raise self.fail(f"expected a value (number, string, true, false, none or a tuple), found {self.describe()}")

    def hval(self) -> HVal:
        v = self.literal()
        # `64@d` or `0.25@"1 / sqrt(dh)"`: the value and the expression it came from
        if (self.tok.kind == "label" and "." not in self.tok.text) or self.at("@"):
            return HVal(v, self.code())
        return HVal.const(v)

    def size(self) -> Size:
        total = Size.of(0)
        sign = 1
        if self.accept("-"):
            sign = -1
        while True:
            total = total + self.size_term() * Size(Fraction(sign))
            if self.accept("+"):
                sign = 1
            elif self.accept("-"):
                sign = -1
            else:
                return total

    def size_term(self) -> Size:
        t = self.tok
        if t.kind == "number":
            coef = Fraction(self.int_())
            if self.accept("/"):
                coef = coef / self.int_("a denominator")
            if self.accept("*"):
                return self.size_atom() * Size(coef)
            return Size(coef)
        return self.size_atom()

    def size_atom(self) -> Size:
        t = self.tok
        name = self.name("a size")
        if name == "floor" and self.accept("("):
            num = self.size()
            self.expect(",")
            den = self.int_("a divisor")
            self.expect(")")
            return Size._make(Fraction(0), {Floor(num, den): Fraction(1)})
        mult = 1
        if self.accept("%"):
            mult = self.int_("a multiple")
            if mult < 1:
                raise self.fail("a multiple must be positive", t)
        return Size.dim(name, mult)

    def axis(self) -> Axis:
        name = self.name("an axis name")
        if not self.accept(":"):
            return Axis(name, Size.dim(name))
        size = self.size()
        code = None
        if (self.tok.kind == "label" and "." not in self.tok.text) or self.at("@"):
            code = self.code()
        return Axis(name, size, code)

    def types(self) -> tuple[TensorType, ...]:
        out = [self.type_()]
        while self.at(",") and self.peek().text == "[":
            self.next()
            out.append(self.type_())
        return tuple(out)

    def type_(self) -> TensorType:
        t = self.tok
        self.expect("[")
        axes = self.comma_list("]", self.axis)
        dtype = "float32"
        if self.tok.kind == "name" and self.tok.text in DTYPES:
            dtype = self.next().text
        try:
            return TensorType(tuple(axes), dtype)
        except NNError as e:
            raise self.fail(e.message, t) from None


# ==== entry points ==========================================================================


def parse_ir(text: str, source: str = "<ir>") -> Graph:
    """The graphs of an IR text; returns the last one (the root), verified."""
    return Parser(text, source).module()


def parse_type(text: str) -> TensorType:
    """A tensor type in the IR's syntax: `[batch, seq, d: 64@d] int64`."""
    p = Parser(text, "<type>")
    t = p.type_()
    if p.tok.kind != "eof":
        raise p.fail(f"unexpected {p.describe()} after the type")
    return t

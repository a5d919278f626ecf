"""Hyperparameter expressions: a typed tree (constants, hyperparameter references, arithmetic,
comparisons, a closed set of functions) with constant folding, and its three printers —
Python source (torch), the IR's text form (read back by irparse), and math (diagrams)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

Scalar = int | float | bool | str
# A hyperparameter's value: a Scalar, None (`none`) or a tuple of these (`depths`); is_scalar
# checks it where one is made (Const, HVal). Typed Any so that readers that the checker has
# given a number (a size, an op's argument) need not narrow it again.
HyperValue = Any

# binary operators; "div" is the language's `/` on two integers (exact division, whose
# exactness the elaborator records as a check), "//" is floor division (pooling sizes)
ARITH = ("+", "-", "*", "/", "div", "//", "%", "**")
COMPARE = ("==", "!=", "<", "<=", ">", ">=")
LOGIC = ("or",)
FUNCS = ("sqrt", "exp", "log", "abs", "min", "max", "floor", "ceil", "int", "len", "is_int")  # is_int: in checks only
_PREC = {
    "or": 0,
    "==": 1,
    "!=": 1,
    "<": 1,
    "<=": 1,
    ">": 1,
    ">=": 1,
    "+": 2,
    "-": 2,
    "*": 3,
    "/": 3,
    "div": 3,
    "//": 3,
    "%": 3,
    "**": 5,
}
_TEXT_OP = {"div": "/"}
_PY_OP = {"div": "//"}
_MATH_OP = {"div": "/", "*": "·", "**": "^"}


class ExprError(ValueError):
    """An expression that cannot be evaluated (a division by zero, an unknown name)."""


class Expr:
    """Base of the tree; nodes are frozen, hashable dataclasses."""

    @property
    def prec(self) -> int:
        """How tightly the node binds when printed (6: an atom; Bin: its operator's)."""
        return 6

    def evaluate(self, env: dict[str, Scalar]) -> Scalar:
        raise NotImplementedError

    def refs(self) -> set[str]:
        return set()

    def subst(self, mapping: dict[str, Expr]) -> Expr:
        return self

    def python(self, name_of=lambda n: n) -> str:
        return self._print("py", name_of)

    def text(self) -> str:
        return self._print("text", lambda n: n)

    def math(self) -> str:
        return self._print("math", lambda n: n)

    def __str__(self) -> str:
        return self.text()

    def _print(self, style: str, name_of) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Const(Expr):
    value: HyperValue

    def __post_init__(self):
        if not is_scalar(self.value):
            raise TypeError(f"Const of {type(self.value).__name__}")

    def evaluate(self, env):
        return self.value

    def _print(self, style, name_of):
        v = self.value
        if v is None:
            return "None" if style == "py" else "none"
        if isinstance(v, tuple):
            return _tuple_text([const(x)._print(style, name_of) for x in v])
        if style == "text" and isinstance(v, bool):
            return "true" if v else "false"
        if style == "text" and isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, float) and not math.isfinite(v):
            # Python has no literal for them: `inf` in generated code is an unknown name
            if style == "py":
                text = 'float("nan")' if math.isnan(v) else f'float("{"-" if v < 0 else ""}inf")'
                return text
            text = "∞" if style == "math" else "inf"
            return f"(-{text})" if v < 0 else text
        text = repr(v)
        return (
            f"({text})"
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0
            else text
        )


@dataclass(frozen=True)
class Ref(Expr):
    """A hyperparameter of the enclosing block, by its name in the spec."""

    name: str

    def evaluate(self, env):
        if self.name not in env:
            raise ExprError(f"unknown hyperparameter '{self.name}'")
        return env[self.name]

    def refs(self) -> set[str]:
        return {self.name}

    def subst(self, mapping):
        return mapping.get(self.name, self)

    def _print(self, style, name_of):
        return name_of(self.name) if style == "py" else self.name


@dataclass(frozen=True)
class Neg(Expr):
    arg: Expr

    @property
    def prec(self) -> int:
        return 4

    def evaluate(self, env):
        v = self.arg.evaluate(env)
        if isinstance(v, str):
            raise ExprError(f"cannot negate {v!r}")
        return -v

    def refs(self) -> set[str]:
        return self.arg.refs()

    def subst(self, mapping):
        return neg(self.arg.subst(mapping))

    def _print(self, style, name_of):
        inner = self.arg._print(style, name_of)
        return f"-{inner}" if self.arg.prec > self.prec else f"-({inner})"


@dataclass(frozen=True)
class Bin(Expr):
    op: str
    left: Expr
    right: Expr

    def __post_init__(self):
        if self.op not in ARITH + COMPARE + LOGIC:
            raise ValueError(f"unknown operator {self.op!r}")

    @property
    def prec(self) -> int:
        return _PREC[self.op]

    def evaluate(self, env):
        return apply_op(self.op, self.left.evaluate(env), self.right.evaluate(env))

    def refs(self) -> set[str]:
        return self.left.refs() | self.right.refs()

    def subst(self, mapping):
        return binop(self.op, self.left.subst(mapping), self.right.subst(mapping))

    def _print(self, style, name_of):
        p = self.prec
        left, right = self.left._print(style, name_of), self.right._print(style, name_of)
        right_assoc = self.op == "**"
        # comparisons never chain: `(a == 1) == false` keeps its parentheses (Python would
        # read `a == 1 == False` as `a == 1 and 1 == False`)
        if self.left.prec < p or (right_assoc and self.left.prec == p) or (p == 1 and self.left.prec == 1):
            left = f"({left})"
        if (
            self.right.prec < p
            or (not right_assoc and self.right.prec == p)
            or (p == 1 and self.right.prec == 1)
        ):
            right = f"({right})"
        if style == "math" and self.op == "//":
            return f"⌊{left} / {right}⌋"
        table = {"py": _PY_OP, "text": _TEXT_OP, "math": _MATH_OP}[style]
        return f"{left} {table.get(self.op, self.op)} {right}"


@dataclass(frozen=True)
class Call(Expr):
    fn: str
    args: tuple[Expr, ...]

    def __post_init__(self):
        if self.fn not in FUNCS:
            raise ValueError(f"unknown function {self.fn!r}")

    def evaluate(self, env):
        return apply_fn(self.fn, [a.evaluate(env) for a in self.args])

    def refs(self) -> set[str]:
        out: set[str] = set()
        for a in self.args:
            out |= a.refs()
        return out

    def subst(self, mapping):
        return call(self.fn, tuple(a.subst(mapping) for a in self.args))

    def _print(self, style, name_of):
        args = [a._print(style, name_of) for a in self.args]
        if style == "math" and self.fn == "sqrt":
            return f"√{args[0]}" if self.args[0].prec == 6 else f"√({args[0]})"
        if style == "py" and self.fn == "is_int":  # a check's whole condition, never an operand
            return f"type({args[0]}) is int"
        if style == "py" and self.fn in ("sqrt", "exp", "log", "floor", "ceil"):
            return f"math.{self.fn}({', '.join(args)})"
        return f"{self.fn}({', '.join(args)})"


@dataclass(frozen=True)
class Tup(Expr):
    """A tuple whose items are expressions (a tuple of constants is a Const)."""

    items: tuple[Expr, ...]

    def evaluate(self, env) -> HyperValue:
        return tuple(a.evaluate(env) for a in self.items)

    def refs(self) -> set[str]:
        out: set[str] = set()
        for a in self.items:
            out |= a.refs()
        return out

    def subst(self, mapping):
        return tup(tuple(a.subst(mapping) for a in self.items))

    def _print(self, style, name_of):
        return _tuple_text([a._print(style, name_of) for a in self.items])


@dataclass(frozen=True)
class Index(Expr):
    """`depths[i]`: an item of a tuple-valued hyperparameter."""

    base: Expr
    index: Expr

    def evaluate(self, env) -> HyperValue:
        return apply_index(self.base.evaluate(env), self.index.evaluate(env))

    def refs(self) -> set[str]:
        return self.base.refs() | self.index.refs()

    def subst(self, mapping):
        return index(self.base.subst(mapping), self.index.subst(mapping))

    def _print(self, style, name_of):
        base = self.base._print(style, name_of)
        if self.base.prec < 6:
            base = f"({base})"
        return f"{base}[{self.index._print(style, name_of)}]"


@dataclass(frozen=True)
class Cond(Expr):
    """`a if c else b` over hyperparameters; printed in parentheses in every style."""

    cond: Expr
    then: Expr
    orelse: Expr

    def evaluate(self, env):
        return self.then.evaluate(env) if self.cond.evaluate(env) else self.orelse.evaluate(env)

    def refs(self) -> set[str]:
        return self.cond.refs() | self.then.refs() | self.orelse.refs()

    def subst(self, mapping):
        return cond(self.cond.subst(mapping), self.then.subst(mapping), self.orelse.subst(mapping))

    def _print(self, style, name_of):
        parts = [e._print(style, name_of) for e in (self.then, self.cond, self.orelse)]
        return f"({parts[0]} if {parts[1]} else {parts[2]})"


def _tuple_text(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def is_scalar(v) -> bool:
    """A hyperparameter value: a number, string, boolean, None, or a tuple of these."""
    if isinstance(v, tuple):
        return all(is_scalar(x) for x in v)
    return v is None or isinstance(v, (int, float, bool, str))


# ---- semantics -----------------------------------------------------------------------------


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def apply_op(op: str, x, y):
    if op == "or":
        return bool(x) or bool(y)
    if op in ("==", "!="):
        return (x == y) == (op == "==")
    if op in COMPARE:
        if not (_num(x) and _num(y)):
            raise ExprError(f"cannot compare {x!r} and {y!r}")
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    if not (_num(x) and _num(y)):
        raise ExprError(f"cannot apply '{_TEXT_OP.get(op, op)}' to {x!r} and {y!r}")
    try:
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            return x / y
        if op == "div":
            return x // y if isinstance(x, int) and isinstance(y, int) else x / y
        if op == "//":
            return x // y
        if op == "%":
            return x % y
        return x**y
    except (ZeroDivisionError, OverflowError) as err:
        raise ExprError(f"{x!r} {_TEXT_OP.get(op, op)} {y!r}: {err}") from None


def apply_index(base, i):
    if not isinstance(base, tuple):
        raise ExprError(f"cannot index {base!r}: it is not a tuple")
    if not (isinstance(i, int) and not isinstance(i, bool)):
        raise ExprError(f"a tuple index must be an integer, found {i!r}")
    if not -len(base) <= i < len(base):
        raise ExprError(f"index {i} is out of range for a tuple of {len(base)}")
    return base[i]


def apply_fn(fn: str, args):
    if fn == "is_int":
        return type(args[0]) is int
    if fn == "len":
        if len(args) != 1 or not isinstance(args[0], tuple):
            raise ExprError("len needs one tuple")
        return len(args[0])
    if not args or not all(_num(a) for a in args):
        raise ExprError(f"{fn} needs numbers")
    try:
        if fn == "sqrt":
            return math.sqrt(*args)
        if fn == "exp":
            return math.exp(*args)
        if fn == "log":
            return math.log(*args)
        if fn == "abs":
            return abs(*args)
        if fn in ("floor", "ceil", "int"):
            if len(args) != 1:
                raise ExprError(f"{fn} takes one number")
            if fn == "floor":
                return math.floor(args[0])
            return math.ceil(args[0]) if fn == "ceil" else int(args[0])
        return min(args) if fn == "min" else max(args)
    except (ValueError, OverflowError, TypeError) as err:
        raise ExprError(f"{fn}: {err}") from None


# ---- construction with constant folding --------------------------------------------------


def const(value) -> Expr:
    if _num(value) and value < 0:
        return Neg(Const(-value))
    return Const(value)


def _value(e: Expr) -> tuple[Any, bool]:
    if isinstance(e, Const):
        return e.value, True
    if isinstance(e, Neg) and isinstance(e.arg, Const) and _num(e.arg.value):
        v: Any = e.arg.value
        return -v, True
    return None, False


def neg(e: Expr) -> Expr:
    v, known = _value(e)
    if known and _num(v):
        return const(-v)
    return Neg(e)


def binop(op: str, a: Expr, b: Expr) -> Expr:
    x, kx = _value(a)
    y, ky = _value(b)
    # identities that keep printed sizes short: x + 0, x - 0, x * 1, 1 * x, x / 1 (integer
    # constants only: `1.0 * n / k` is a float division, which dropping the 1.0 would lose)
    if ky and _num(y) and not isinstance(y, float) and ((y == 0 and op in ("+", "-")) or (y == 1 and op in ("*", "div", "//"))):
        return a
    if kx and _num(x) and not isinstance(x, float) and ((x == 0 and op == "+") or (x == 1 and op == "*")):
        return b
    if op in ("==", "<=", ">=") and a == b:  # an expression equals itself
        return Const(True)
    if op == "or" and (kx or ky):  # a constant side of `or` decides or drops out
        v, other = (x, b) if kx else (y, a)
        return Const(True) if v else other
    if op in ("+", "-") and ky and _num(y) and isinstance(a, Bin) and a.op in ("+", "-"):
        c, kc = _value(a.right)
        if kc and _num(c):  # (x + 2) - 1 -> x + 1
            total = (c if a.op == "+" else -c) + (y if op == "+" else -y)
            return (
                binop("+", a.left, const(total))
                if total >= 0
                else binop("-", a.left, const(-total))
            )
    if kx and ky:
        try:
            v = apply_op(op, x, y)
        except ExprError:
            return Bin(op, a, b)
        if isinstance(v, float) and not math.isfinite(v):
            return Bin(op, a, b)
        return const(v)
    return Bin(op, a, b)


def call(fn: str, args: tuple[Expr, ...]) -> Expr:
    vals = [_value(a) for a in args]
    if all(k for _, k in vals):
        try:
            return const(apply_fn(fn, [v for v, _ in vals]))
        except ExprError:
            pass
    return Call(fn, tuple(args))


def tup(items: tuple[Expr, ...]) -> Expr:
    vals = [_value(a) for a in items]
    if all(k for _, k in vals):
        return Const(tuple(v for v, _ in vals))
    return Tup(tuple(items))


def index(base: Expr, i: Expr) -> Expr:
    b, kb = _value(base)
    v, kv = _value(i)
    if kb and kv:
        try:
            return const(apply_index(b, v))
        except ExprError:
            pass
    if isinstance(base, Tup) and kv and isinstance(v, int) and not isinstance(v, bool) and -len(base.items) <= v < len(base.items):
        return base.items[v]
    return Index(base, i)


def cond(c: Expr, a: Expr, b: Expr) -> Expr:
    v, known = _value(c)
    if known:
        return a if v else b
    return Cond(c, a, b)


def dependent(e: Expr | None) -> Expr | None:
    """e where it depends on a hyperparameter, else None (a derived size that is a plain
    number needs no expression)."""
    return e if e is not None and e.refs() else None


def product(items) -> Expr:
    items = list(items)
    out = items[0]
    for e in items[1:]:
        out = binop("*", out, e)
    return out


# ---- checks the generated constructor repeats ---------------------------------------------


@dataclass(frozen=True)
class Check:
    """A condition over a block's hyperparameters the checker required, and its message:
    text pieces and expressions (shown with repr when `fmt` is "r", else str).
    `guard`: the hyperparameter whose default needs it (checked only when defaulted)."""

    cond: Expr
    message: tuple[tuple[str, Any], ...]  # ("s", text) | ("e", Expr) | ("r", Expr)
    guard: str | None = None

    def render(self, env: dict[str, Scalar]) -> str:
        out = []
        for kind, piece in self.message:
            if kind == "s":
                out.append(piece)
            else:
                v = piece.evaluate(env)
                out.append(repr(v) if kind == "r" else str(v))
        return "".join(out)

    def template(self) -> str:
        """The message in the IR's text form: expressions in braces (`{d!r}`)."""
        parts = []
        for kind, piece in self.message:
            if kind == "s":
                parts.append(piece.replace("{", "{{").replace("}", "}}"))
            else:
                parts.append("{" + piece.text() + ("!r" if kind == "r" else "") + "}")
        return "".join(parts)

    @staticmethod
    def from_template(cond: Expr, text: str, guard: str | None, env) -> Check:
        pieces: list[tuple[str, Any]] = []
        buf, i = "", 0
        while i < len(text):
            c = text[i]
            if c in "{}" and text[i : i + 2] == c * 2:
                buf, i = buf + c, i + 2
            elif c == "{":
                end = text.find("}", i)
                if end < 0:
                    raise ExprError(f"unclosed '{{' in the message {text!r}")
                if buf:
                    pieces.append(("s", buf))
                    buf = ""
                body = text[i + 1 : end]
                kind = "r" if body.endswith("!r") else "e"
                pieces.append((kind, parse(body[:-2] if kind == "r" else body, env)))
                i = end + 1
            elif c == "}":
                raise ExprError(f"unmatched '}}' in the message {text!r}")
            else:
                buf, i = buf + c, i + 1
        if buf:
            pieces.append(("s", buf))
        return Check(cond, tuple(pieces), guard)

    def python_message(self, name_of) -> str:
        """The message as a Python string literal (an f-string where it shows a value)."""
        if all(kind == "s" for kind, _ in self.message):
            return repr("".join(piece for _, piece in self.message))
        parts = []
        for kind, piece in self.message:
            if kind == "s":
                parts.append(
                    piece.replace("\\", "\\\\")
                    .replace("{", "{{")
                    .replace("}", "}}")
                    .replace('"', '\\"')
                )
            else:
                parts.append("{" + piece.python(name_of) + ("!r" if kind == "r" else "") + "}")
        return 'f"' + "".join(parts) + '"'


# The checks of the block being elaborated: shape rules in the registry note the
# hyperparameter-dependent conditions they test here (the elaborator opens one per instance).
_RECORDING: list[list[Check]] = []
_GUARD: list[str | None] = [None]


def note(cond: Expr, *message) -> None:
    """Record that the checker required `cond` (a no-op where it is a constant)."""
    if not _RECORDING or not cond.refs():
        return
    pieces: list[tuple[str, Any]] = []
    for m in message:
        kind, piece = m if isinstance(m, tuple) else ("s", m)
        if kind != "s" and not piece.refs():  # a constant reads as text
            v = piece.evaluate({})
            kind, piece = "s", repr(v) if kind == "r" else str(v)
        if kind == "s" and pieces and pieces[-1][0] == "s":
            pieces[-1] = ("s", pieces[-1][1] + piece)
        else:
            pieces.append((kind, piece))
    check = Check(cond, tuple(pieces), _GUARD[-1])
    # the first message for a condition is the one the checker reports
    if not any(c.cond == check.cond and c.guard == check.guard for c in _RECORDING[-1]):
        _RECORDING[-1].append(check)


class recording:
    """`with recording() as checks:` collects the checks noted inside."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def __enter__(self) -> list[Check]:
        _RECORDING.append(self.checks)
        return self.checks

    def __exit__(self, *exc):
        _RECORDING.pop()
        return False


class guarded:
    """Checks noted inside belong to the default of hyperparameter `name`."""

    def __init__(self, name: str | None):
        self.name = name

    def __enter__(self):
        _GUARD.append(self.name)

    def __exit__(self, *exc):
        _GUARD.pop()
        return False


# ---- the text form read back (irparse) ---------------------------------------------------

_TOKENS = re.compile(
    r"\s*(?:(?P<num>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r'|(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>\*\*|//|==|!=|<=|>=|[-+*/%<>(),\[\]]))'
)


def parse(text: str, env: dict[str, Scalar] | None = None) -> Expr:
    """An expression in the text form. `/` of two integers (under `env`, the hyperparameters'
    values) is the language's exact division, else true division."""
    toks, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKENS.match(text, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"unexpected {text[pos : pos + 10]!r} in the expression {text!r}")
        kind = m.lastgroup or ""
        toks.append((kind, m.group(kind)))
        pos = m.end()
    p = _Parser(toks, env or {}, text)
    out = p.expr(0)
    if p.i != len(toks):
        raise ExprError(f"unexpected {toks[p.i][1]!r} in the expression {text!r}")
    return out


class _Parser:
    def __init__(self, toks, env, text):
        self.toks, self.env, self.text, self.i = toks, env, text, 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, want=None):
        kind, tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ExprError(f"expected {want or 'more'} in the expression {self.text!r}")
        self.i += 1
        return kind, tok

    def expr(self, level: int) -> Expr:
        left = self.unary() if level <= 4 else self.atom()
        while True:
            kind, tok = self.peek()
            if not (kind == "op" or tok == "or") or tok not in _PREC or tok == "div":
                return left
            prec = _PREC["*" if tok == "/" else tok]
            if prec < level:
                return left
            self.i += 1
            right = self.expr(prec if tok == "**" else prec + 1)
            op = tok
            if tok == "/":
                op = "div" if self._ints(left, right) else "/"
            left = Bin(op, left, right)

    def _ints(self, a: Expr, b: Expr) -> bool:
        try:
            x, y = a.evaluate(self.env), b.evaluate(self.env)
        except ExprError:
            return True
        return (
            isinstance(x, int)
            and isinstance(y, int)
            and not isinstance(x, bool)
            and not isinstance(y, bool)
        )

    def unary(self) -> Expr:
        if self.peek()[1] == "-":
            self.i += 1
            return Neg(self.unary())
        base = self.atom()
        if self.peek()[1] == "**":
            self.i += 1
            return Bin("**", base, self.unary())
        return base

    def atom(self) -> Expr:
        out = self._atom()
        while self.peek()[1] == "[":  # `depths[i]`
            self.i += 1
            i = self.expr(0)
            self.take("]")
            out = Index(out, i)
        return out

    def _paren(self) -> Expr:
        """After '(': an expression, `a if c else b`, or a tuple."""
        if self.peek()[1] == ")":
            raise ExprError(f"empty parentheses in the expression {self.text!r}")
        inner = self.expr(0)
        if self.peek()[1] == "if":
            self.i += 1
            c = self.expr(0)
            self.take("else")
            inner = Cond(c, inner, self.expr(0))
        if self.peek()[1] == ",":
            items = [inner]
            while self.peek()[1] == ",":
                self.i += 1
                if self.peek()[1] == ")":
                    break
                items.append(self.expr(0))
            inner = tup(tuple(items))
        self.take(")")
        return inner

    def _atom(self) -> Expr:
        kind, tok = self.take()
        if kind == "num":
            return Const(float(tok) if any(c in tok for c in ".eE") else int(tok))
        if kind == "str":
            return Const(tok[1:-1].replace('\\"', '"').replace("\\\\", "\\"))
        if kind == "name":
            if tok in ("true", "false"):
                return Const(tok == "true")
            if tok == "none":
                return Const(None)
            if tok == "inf" and tok not in self.env:  # the text of Const(inf), as in the language
                return Const(math.inf)
            if self.peek()[1] == "(":
                self.i += 1
                args = [self.expr(0)]
                while self.peek()[1] == ",":
                    self.i += 1
                    args.append(self.expr(0))
                self.take(")")
                if tok not in FUNCS:
                    raise ExprError(f"unknown function '{tok}' in the expression {self.text!r}")
                return Call(tok, tuple(args))
            if tok == "inf" and tok not in self.env:  # the language's infinity, unless a name
                return Const(float("inf"))
            return Ref(tok)
        if tok == "(":
            return self._paren()
        raise ExprError(f"unexpected {tok!r} in the expression {self.text!r}")

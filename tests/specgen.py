"""A generator of random well-typed .nn specs, for differential testing and fuzzing.

A spec is a random composition of registered ops over random named axes, with blocks
(called lifted over extra axes, one definition instantiated with several hyperparameter
values), `repeat` (independent and shared, nested), weight sharing and tying. The generator
keeps its own model of every value's type, written from the language rules and independent
of the compiler: a spec it makes that the compiler rejects is a finding.

Static sizes are tracked as expressions over the hyperparameters in scope and every choice
compares expressions, never values, so a block body is valid for any hyperparameter values.

`generate(seed)` makes one spec from an integer seed; `specs()` is the same generator as a
hypothesis strategy whose choices shrink."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

# Axis names; never the name of a hyperparameter (k*), value (t*, x*, m*, b*, w*), block (B*).
AXES = ("d", "e", "f", "g", "h", "w", "c", "n", "p", "q", "r", "u", "v", "z")
UNARY = ("relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "neg", "abs")
# The maps of ops/activations.py and ops/compare.py, as they are written in a spec.
MAPS = ("sin", "cos", "relu6", "hardswish", "hardsigmoid", "mish", "softplus",
        "softplus(beta = 2, threshold = 5)", "elu", "elu(alpha = 0.5)", "leaky_relu(slope = 0.2)",
        "hardtanh", "hardtanh(min = -2, max = 0.5)", "clamp(min = -1, max = 1)", "clamp(min = 0)",
        "clamp(max = 0.5)")
COMPARE = ("<", "<=", ">", ">=", "==", "!=")


class Retry(Exception):
    """A choice the generator cannot complete; it makes another."""


# ---- choices -------------------------------------------------------------------------------


class RandomChooser:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, seq):
        seq = list(seq)
        if not seq:
            raise Retry("nothing to pick from")
        return seq[self.integer(0, len(seq) - 1)]

    def chance(self, p: float) -> bool:
        return self.integer(0, 99) >= 100 - round(100 * p)


class DrawChooser(RandomChooser):
    """Choices drawn through hypothesis (they shrink towards 0: fewer, simpler things)."""

    def __init__(self, draw):
        import hypothesis.strategies as st

        self.draw = draw
        self.st = st

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))


# ---- the generator's own type model --------------------------------------------------------


@dataclass(frozen=True)
class Ax:
    name: str
    expr: str  # static: a Python expression over hyperparameters; run-time size: "$N"
    value: int  # static: its value; run-time: the size the test feeds

    @property
    def dynamic(self) -> bool:
        return self.expr.startswith("$")

    def decl(self) -> str:
        return self.name if self.dynamic else f"{self.name}: {self.expr}"


@dataclass(frozen=True)
class T:
    axes: tuple[Ax, ...]
    dtype: str = "float32"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def get(self, name: str) -> Ax | None:
        return next((a for a in self.axes if a.name == name), None)

    def without(self, names) -> T:
        return T(tuple(a for a in self.axes if a.name not in names), self.dtype)

    def is_float(self) -> bool:
        return self.dtype == "float32"

    def static(self) -> list[Ax]:
        return [a for a in self.axes if not a.dynamic]


def _one(a: Ax) -> bool:
    return a.expr == "1"


def compatible(a: Ax, b: Ax) -> bool:
    return a.expr == b.expr or _one(a) or _one(b)


def broadcast(a: T, b: T, *, outer: bool = True) -> T | None:
    """The language's rule: the layout of the operand with more axes (the left one on a
    tie), the other's extra axes appended; a shared axis must agree or be 1. Unless `outer`
    (an explicit `add(a, b, outer = true)`; concat and gather), one side's axes must include
    the other's."""
    if not outer and set(a.names) - set(b.names) and set(b.names) - set(a.names):
        return None
    if len(b.axes) > len(a.axes):
        a, b = b, a
    axes = list(a.axes)
    for ax in b.axes:
        mine = a.get(ax.name)
        if mine is None:
            axes.append(ax)
        elif not compatible(mine, ax):
            return None
        elif _one(mine):
            axes[a.names.index(ax.name)] = ax
    return T(tuple(axes))


def evaluate(expr: str, env: dict) -> int:
    # only expressions this module writes, over hyperparameter names
    return int(eval(expr, {"__builtins__": {}}, dict(env)))  # noqa: S307


def substitute(expr: str, exprs: dict[str, str]) -> str:
    return re.sub(r"\b[A-Za-z_]\w*\b", lambda m: f"({exprs[m[0]]})" if m[0] in exprs else m[0], expr)


@dataclass
class BlockDef:
    name: str
    params: list[str]  # bound to declared axis sizes, then one with a default
    defaulted: str | None
    inputs: int
    declared: T  # the declared input type, in the block's terms
    outputs: list[T]  # in the block's terms
    names: frozenset[str]  # every axis name the body makes


class Scope:
    def __init__(self, kind: str, env: dict, parent: Scope | None = None, inputs=()):
        self.kind = kind  # "model" | "block" | "repeat"
        self.env = env  # hyperparameter -> value
        self.parent = parent
        self.vals: dict[str, T] = {}
        self.exact: set[str] = set()  # names bound to a model input itself (test data, no arithmetic)
        self.lines: list[str] = []
        self.input_axes = set(inputs) if parent is None else parent.input_axes
        self.first_axis: dict[str, Ax] = dict(parent.first_axis) if parent else {}

    def block_level(self) -> bool:
        s = self
        while s.parent is not None:
            s = s.parent
        return s.kind == "block"

    def visible(self) -> dict[str, T]:
        out = dict(self.parent.visible()) if self.parent else {}
        out.update(self.vals)
        return out

    def hyper(self) -> list[str]:
        return sorted(self.env)

    def is_exact(self, name: str) -> bool:
        """Whether `name` here is a model input itself: the same numbers in every backend."""
        s = self
        while s is not None and name not in s.vals:
            s = s.parent
        return s is not None and name in s.exact

    def note(self, name: str, t: T):
        self.exact.discard(name)
        self.vals[name] = t
        for a in t.axes:
            self.first_axis.setdefault(a.name, a)


@dataclass(frozen=True)
class GenSpec:
    """A generated spec and what the generator knows about it."""

    text: str
    model: str
    params: dict  # hyperparameter overrides to load it with
    inputs: tuple  # (name, shape, dtype, exclusive bound of int values)
    outputs: tuple  # (name, axis names, shape at the input sizes)
    seed: object = None

    def describe(self) -> str:
        return f"# specgen.generate({self.seed}); load with {self.params}; inputs {self.inputs}\n{self.text}"


# ---- the generator -------------------------------------------------------------------------


class Gen:
    def __init__(self, ch: RandomChooser, size: int = 8):
        self.ch = ch
        self.size = size
        self.counters: dict[str, int] = {}
        self.tokens = 0
        self.depth = 0
        self.blocks: list[BlockDef] = []
        self.texts: list[str] = []  # block definitions, in order
        self.int_bound: dict[str, str] = {}  # int value -> expression its values stay below
        self.topk_src: dict[str, tuple[str, str]] = {}  # top_k indices -> (axis, its size)
        self.routes: dict[str, tuple[str, str]] = {}  # top_k indices -> (its input, its values)

    def fresh(self, prefix: str) -> str:
        n = self.counters.get(prefix, 0)
        self.counters[prefix] = n + 1
        return f"{prefix}{n}"

    def token(self) -> str:
        self.tokens += 1
        return f"${self.tokens}"

    # ---- sizes and values
    def size_expr(self, sc: Scope) -> tuple[str, int]:
        hs = sc.hyper()
        if hs and self.ch.chance(0.4):
            h = self.ch.pick(hs)
            expr = self.ch.pick([h, f"{h} + 1", f"2 * {h}"])
        else:
            expr = str(self.ch.integer(1, 5))
        return expr, evaluate(expr, sc.env)

    def text(self, sc: Scope, a: Ax) -> str:
        """A static size as spec text. Sizes after a convolution or pooling are floor
        divisions, which the language cannot write: at model level their value stands in
        for them (one instance); inside a block the choice is abandoned."""
        if "//" not in a.expr:
            return a.expr
        if sc.block_level():
            raise Retry("a size the language cannot write, inside a block")
        return str(a.value)

    def writable(self, sc: Scope, a: Ax) -> Ax:
        return a if a.dynamic else Ax(a.name, self.text(sc, a), a.value)

    def new_axis(self, sc: Scope, avoid) -> Ax:
        return Ax(self.ch.pick([a for a in AXES if a not in avoid]), *self.size_expr(sc))

    def pick(self, sc: Scope, pred=lambda t: True, *, floats=True) -> tuple[str, T]:
        cands = [(n, t) for n, t in sc.visible().items() if (t.is_float() or not floats) and pred(t)]
        if len(cands) > 3 and self.ch.chance(0.6):
            cands = cands[-3:]  # recent values, so that computations chain
        return self.ch.pick(cands)

    def operand(self, name: str, t: T) -> str:
        """The value, or a type-preserving expression of it (nesting, pipes, inline ops)."""
        if not t.is_float() or not self.ch.chance(0.25):
            return name
        form = self.ch.integer(0, 4)
        if form == 0:
            return f"{self.ch.pick(UNARY)}({name})"
        if form == 1:
            return f"({name} |> {self.ch.pick(UNARY)})"
        if form == 2:
            return f"({name} * 0.5)"
        if form == 3 and t.static():
            return f"LayerNorm({name}, over {self.ch.pick(t.static()).name})"
        return f"-{name}"

    def assign(self, sc: Scope, expr: str, t: T) -> str:
        name = self.fresh("t")
        sc.note(name, t)
        sc.lines.append(f"{name} = {expr}")
        return name

    def statements(self, sc: Scope, count: int):
        done = tries = 0
        while done < count and tries < count * 10:
            tries += 1
            op = self.ch.pick(self.ops())
            try:
                op(sc)
                done += 1
            except Retry:
                continue

    def ops(self):
        table = [
            self.op_unary, self.op_unary, self.op_scalar, self.op_binary, self.op_binary,
            self.op_softmax, self.op_causal, self.op_einsum, self.op_transpose, self.op_rename,
            self.op_flatten, self.op_unflatten, self.op_concat, self.op_reduce, self.op_cast,
            self.op_select, self.op_topk, self.op_gather, self.op_linear, self.op_linear,
            self.op_scatter, self.op_moe, self.op_experts,
            self.op_norm, self.op_batchnorm, self.op_conv, self.op_conv, self.op_pool,
            self.op_param, self.op_positions, self.op_arange, self.op_pad_to, self.op_embedding, self.op_named,
            self.op_map, self.op_where, self.op_minmax, self.op_rounding, self.op_prelu,
            self.op_slice, self.op_split, self.op_move, self.op_cumulative, self.op_stack,
            self.op_group_norm, self.op_upsample,
            self.op_buffer, self.op_random, self.op_static_if, self.op_static_for,
            self.op_axis_block,
            self.op_length,
            self.op_cell,
        ]
        if self.depth < 2:
            table += [self.op_block, self.op_block, self.op_repeat, self.op_repeat, self.op_scan]
            table += [self.op_linear_recurrence]
            table += [self.op_linear_readout]
        return table

    # ---- pure ops
    def op_unary(self, sc):
        name, t = self.pick(sc)
        x = self.operand(name, t)
        fn = self.ch.pick(UNARY + ("exp", "log", "sqrt", "dropout"))
        if fn == "exp":
            expr = f"exp(tanh({x}))"
        elif fn == "log":
            expr = f"log(abs({x}) + 1)"
        elif fn == "sqrt":
            expr = f"({x} |> abs |> sqrt)"
        elif fn == "dropout":
            expr = self.ch.pick([f"dropout({x}, p = 0.25)", f"{x} |> dropout"])
        else:
            expr = self.ch.pick([f"{fn}({x})", f"{x} |> {fn}"])
        self.assign(sc, expr, t)

    def op_map(self, sc):
        name, t = self.pick(sc)
        x = self.operand(name, t)
        fn = self.ch.pick(MAPS)
        bare = fn.split("(")[0]
        args = fn[len(bare) + 1:-1] if "(" in fn else ""
        expr = self.ch.pick([f"{x} |> {fn}", f"{bare}({x}{', ' + args if args else ''})"])
        self.assign(sc, expr, t)

    def condition(self, x: str, y: str) -> tuple[str, bool]:
        """A bool expression of two values: a comparison, maybe joined with `and`/`or`/`not`;
        and whether it reads `y` (its type then has y's axes too)."""
        right = self.ch.pick([y, '0', '0.5', '-inf'])
        cond = f"{x} {self.ch.pick(COMPARE)} {right}"
        form = self.ch.integer(0, 3)
        if form == 1:
            cond = f"({cond}) and ({y} {self.ch.pick(COMPARE)} 0)"
        elif form == 2:
            cond = f"not ({cond}) or {x} > {y}"
        return cond, right == y or form in (1, 2)

    def exact_within(self, sc, t: T) -> list[tuple[str, T]]:
        """Model inputs whose axes are all axes of t, of the same sizes."""
        return [
            (n, u) for n, u in sc.visible().items()
            if u.is_float() and sc.is_exact(n)
            and all((mine := t.get(x.name)) is not None and mine.expr == x.expr for x in u.axes)
        ]

    def op_where(self, sc):
        a, ta = self.pick(sc)
        # comparisons and selection never broadcast outer, as arithmetic (the language's rule)
        b, tb = self.pick(sc, lambda t: broadcast(ta, t, outer=False) is not None)
        # The condition compares model inputs only (as op_rounding rounds only them): comparing
        # computed values turns two correct backends' last-bit differences into another
        # selection (the 30-minute fuzz at seed 2031 found `t != 0.5` of a mean of a softmax,
        # 0.5 exactly in one backend and not in the other). Its axes are a's, so the condition
        # never broadcasts outer against the values.
        x, tx = self.ch.pick(self.exact_within(sc, ta))
        y, ty = self.ch.pick([(n, u) for n, u in self.exact_within(sc, ta) if broadcast(tx, u, outer=False) is not None])
        cond, reads_y = self.condition(x, y)
        # the layouts as the language gives them: where(m, x, y) lays out as broadcast(values,
        # m), a binary op as broadcast(left, right) (the operand with more axes, the left on a tie)
        tcond = broadcast(tx, ty) if reads_y else tx
        form = self.ch.integer(0, 2)
        if form == 0:
            expr = f"where({cond}, {a}, {b})"
            out = broadcast(broadcast(ta, tb), tcond)
        elif form == 1:  # masked fill, kept finite so that later sums stay comparable
            expr = f"maximum(where({cond}, {a}, -inf), -30)"
            out = broadcast(ta, tcond)
        else:
            expr = f"where({cond}, 0.5, {b}) * {a}"
            out = broadcast(broadcast(tb, tcond), ta)
        self.assign(sc, expr, out)

    def op_minmax(self, sc):
        a, ta = self.pick(sc)
        b, tb = self.pick(sc, lambda t: broadcast(ta, t, outer=False) is not None)
        fn = self.ch.pick(["minimum", "maximum"])
        if self.ch.chance(0.5):
            self.assign(sc, f"{fn}({a}, {b})", broadcast(ta, tb))
        else:
            self.assign(sc, self.ch.pick([f"{fn}({a}, 0.25)", f"{fn}(-0.5, {a})"]), ta)

    def op_rounding(self, sc):
        # Steps (floor, sign, ...) of a computed value turn the last-bit differences of two
        # correct backends into a whole step (the 30-minute fuzz found floor(t * 4) / 4 off by
        # 0.25, and sign of a sigmoid that one backend underflows to 0): round model inputs only.
        cands = [(n, t) for n, t in sc.visible().items() if t.is_float() and sc.is_exact(n)]
        name, t = self.ch.pick(cands)
        fn = self.ch.pick(["floor", "ceil", "round", "sign"])
        self.assign(sc, self.ch.pick([f"{fn}({name} * 4) / 4", f"{name} |> {fn}"]), t)

    def op_prelu(self, sc):
        name, t = self.pick(sc)
        if t.static() and self.ch.chance(0.6):
            ax = self.ch.pick(t.static()).name
            self.assign(sc, self.ch.pick([f"PReLU({name}, over {ax})", f"{name} |> PReLU(over {ax}, init = constant(0.1))"]), t)
        else:
            self.assign(sc, f"PReLU({name})", t)

    def op_scalar(self, sc):
        name, t = self.pick(sc)
        h = self.ch.pick(sc.hyper() or ["2"])
        expr = self.ch.pick([
            f"{name} * 2", f"{name} + 0.5", f"3 - {name}", f"{name} / 4", f"tanh({name}) ** 2",
            f"2 ** tanh({name})", f"{name} * {h}", f"{name} / sqrt({h})", f"{name} * abs({h})",
            f"{name} * max({h}, 2)", f"{name} / min({h}, 3)", f"{name} * (1.0 / {h})",
            f"{name} * -{h}", f"{name} * ({h} ** 2 - {h})",
        ])
        self.assign(sc, expr, t)

    def op_binary(self, sc):
        a, ta = self.pick(sc)
        outer = self.ch.chance(0.25)  # an outer broadcast is written out: add(x, y, outer = true)
        b, tb = self.pick(sc, lambda t: broadcast(ta, t, outer=outer) is not None)
        x, y = self.operand(a, ta), self.operand(b, tb)
        if outer and broadcast(ta, tb, outer=False) is None:
            fn = self.ch.pick(["add", "sub", "mul", "div", "pow"])
            y = f"abs({y}) + 1" if fn == "div" else f"tanh({y})" if fn == "pow" else y
            x = f"abs({x}) + 1" if fn == "pow" else x
            expr = f"{fn}({x}, {y}, outer = true)"
        else:
            expr = self.ch.pick([f"{x} + {y}", f"{x} - {y}", f"{x} * {y}",
                                 f"{x} / (abs({y}) + 1)", f"(abs({x}) + 1) ** tanh({y})"])
        self.assign(sc, expr, broadcast(ta, tb))

    def op_softmax(self, sc):
        name, t = self.pick(sc, lambda t: t.axes)
        ax = self.ch.pick(t.axes).name
        fn = self.ch.pick(["softmax", "log_softmax"])
        x = self.operand(name, t)
        over = ax
        if len(t.axes) >= 2 and self.ch.chance(0.5):  # several axes together, named in any order
            axes = [ax]
            for _ in range(self.ch.integer(1, len(t.axes) - 1)):
                axes.append(self.ch.pick([a.name for a in t.axes if a.name not in axes]))
            over = f"[{', '.join(axes)}]"
        self.assign(sc, self.ch.pick([f"{fn}({x}, over {over})", f"{x} |> {fn}(over {over})"]), t)

    def op_causal(self, sc):
        # the mask is lined up at the end: with more queries than keys the first queries see
        # no key (a row of -inf, NaN after softmax), so the key axis is never the shorter one
        # for any hyperparameter values: the same size, one query, or constants that say so
        def fits(q: Ax, k: Ax) -> bool:
            return q.expr == k.expr or q.expr == "1" or (q.expr.isdigit() and k.expr.isdigit() and int(k.expr) >= int(q.expr))

        name, t = self.pick(sc, lambda t: any(fits(a, b) for a in t.axes for b in t.axes if a is not b))
        q, k = self.ch.pick([(a.name, b.name) for a in t.axes for b in t.axes if a is not b and fits(a, b)])
        self.assign(sc, f"softmax(causal({name}, over [{q}, {k}]), over {k})", t)

    def op_einsum(self, sc):
        a, ta = self.pick(sc, lambda t: t.axes)

        def fits(t):
            shared = [x for x in t.axes if ta.get(x.name)]
            return shared and all(ta.get(x.name).expr == x.expr for x in shared)

        if self.ch.chance(0.2):
            sizes, args, ins = {x.name: x for x in ta.axes}, a, [ta]
        else:
            b, tb = self.pick(sc, fits)
            # the operand before `->` may be any expression (a name, a call, a pipe, a product)
            sizes, args, ins = {x.name: x for x in ta.axes + tb.axes}, f"{a}, {self.operand(b, tb)}", [ta, tb]
        if len(sizes) > 1 and self.ch.chance(0.3):  # einsum(a, b, over [..]): sums those, keeps the rest
            summed: list[str] = []
            for _ in range(self.ch.integer(1, min(2, len(sizes) - 1))):
                summed.append(self.ch.pick([n for n in sizes if n not in summed]))
            kept = tuple(sizes[n] for n in sizes if n not in summed)
            self.assign(sc, f"einsum({args}, over [{', '.join(summed)}])", T(kept))
            return
        out: list[str] = []
        for _ in range(self.ch.integer(1, min(3, len(sizes)))):
            out.append(self.ch.pick([n for n in sizes if n not in out]))
        dropped = [n for n in sizes if n not in out]
        # a run-time axis every input carries is summed only when named
        hidden = [n for n in dropped if sizes[n].dynamic and all(t.get(n) for t in ins)]
        over = f", over [{', '.join(dropped)}]" if dropped and (hidden or self.ch.chance(0.2)) else ""
        self.assign(sc, f"einsum({args} -> [{', '.join(out)}]{over})", T(tuple(sizes[n] for n in out)))

    def op_transpose(self, sc):
        name, t = self.pick(sc, lambda t: len(t.axes) >= 2)
        n = len(t.axes)
        i, j = self.ch.pick([(i, j) for i in range(n) for j in range(i + 1, n)])
        axes = list(t.axes)
        axes[i], axes[j] = axes[j], axes[i]
        a, b = t.axes[i].name, t.axes[j].name
        expr = self.ch.pick([f"transpose({name}, {a}, {b})", f"{name} |> transpose({b}, {a})"])
        self.assign(sc, expr, T(tuple(axes), t.dtype))

    def op_rename(self, sc):
        name, t = self.pick(sc, lambda t: t.axes, floats=False)
        ax = self.ch.pick(t.axes)
        new = self.ch.pick([n for n in AXES if n not in t.names])
        axes = tuple(Ax(new, a.expr, a.value) if a is ax else a for a in t.axes)
        self.assign(sc, f"{name} rename {ax.name} -> {new}", T(axes, t.dtype))

    def op_flatten(self, sc):
        def pairs(t):
            return [(i, j) for i in range(len(t.axes)) for j in range(len(t.axes))
                    if i != j and not t.axes[i].dynamic and not t.axes[j].dynamic]

        name, t = self.pick(sc, pairs)
        # any two axes in either order: flatten moves them next to each other first
        i, j = self.ch.pick(pairs(t)) if self.ch.chance(0.5) else self.ch.pick(
            [p for p in pairs(t) if p[1] == p[0] + 1] or pairs(t))
        a, b = t.axes[i], t.axes[j]
        into = self.ch.pick([n for n in AXES if n not in t.names] + [a.name, b.name])
        merged = Ax(into, f"({a.expr}) * ({b.expr})", a.value * b.value)
        first = min(i, j)
        axes = t.axes[:first] + (merged,) + tuple(x for x in t.axes[first:] if x is not a and x is not b)
        self.assign(sc, f"{name} |> flatten([{a.name}, {b.name}] -> {into})", T(axes, t.dtype))

    def op_unflatten(self, sc):
        name, t = self.pick(sc, T.static)
        ax = self.ch.pick(t.static())
        free = [n for n in AXES if n not in t.names or n == ax.name]
        p = self.ch.pick(free)
        q = self.ch.pick([n for n in free if n != p])
        expr = self.text(sc, ax)
        if expr in ("4", "6"):
            e1, e2 = "2", str(ax.value // 2)
        else:
            e1, e2 = self.ch.pick([(expr, "1"), ("1", expr)])
        i = t.names.index(ax.name)
        axes = t.axes[:i] + (Ax(p, e1, evaluate(e1, sc.env)), Ax(q, e2, evaluate(e2, sc.env))) + t.axes[i + 1:]
        self.assign(sc, f"unflatten({name}, {ax.name} -> [{p}: {e1}, {q}: {e2}])", T(axes, t.dtype))

    def op_concat(self, sc):
        name, t = self.pick(sc, lambda t: t.axes)
        ax = self.ch.pick(t.axes)
        if ax.dynamic and sc.block_level():
            raise Retry("a run-time size would change inside a block")
        form = self.ch.integer(0, 2)
        if form == 0:  # the other input lacks the axis: it adds one slice
            other, slices = f"mean({name}, over {ax.name})", 1
        elif form == 1 and len(t.axes) >= 2:  # the other input has another layout
            b = self.ch.pick([a for a in t.axes if a is not ax])
            other, slices = f"transpose({name}, {ax.name}, {b.name})", None
        else:
            other, slices = f"relu({name})", None
        if ax.dynamic:
            size = Ax(ax.name, self.token(), ax.value + (slices or ax.value))
        elif slices:
            size = Ax(ax.name, f"({ax.expr}) + 1", ax.value + 1)
        else:
            size = Ax(ax.name, f"2 * ({ax.expr})", 2 * ax.value)
        args = f"{name}, {other}" if form == 1 or self.ch.chance(0.5) else f"{other}, {name}"
        axes = tuple(size if a is ax else a for a in t.axes)
        self.assign(sc, f"concat({args}, over {ax.name})", T(axes))

    def op_reduce(self, sc):
        name, t = self.pick(sc, lambda t: len(t.axes) >= 2)
        axes: list[str] = []
        for _ in range(self.ch.integer(1, min(2, len(t.axes) - 1))):
            axes.append(self.ch.pick([a.name for a in t.axes if a.name not in axes]))
        fn = self.ch.pick(["sum", "mean", "max", "min"])
        over = axes[0] if len(axes) == 1 else f"[{', '.join(axes)}]"
        self.assign(sc, f"{fn}({self.operand(name, t)}, over {over})", t.without(axes))

    def op_cast(self, sc):
        name, t = self.pick(sc)
        self.assign(sc, f'cast(cast({name}, to = "float64") |> tanh, to = "float32")', t)

    def op_select(self, sc):
        name, t = self.pick(sc, lambda t: len(t.axes) >= 2, floats=False)
        ax = self.ch.pick(t.axes)
        self.assign(sc, f"{name}[{ax.name} = {self.ch.pick(['0', '-1'])}]", t.without([ax.name]))

    def op_topk(self, sc):
        name, t = self.pick(sc, T.static)
        ax = self.ch.pick(t.static())
        k = self.ch.pick(["1", self.text(sc, ax)] + ([str(ax.value - 1)] if ax.expr.isdigit() and ax.value > 2 else []))
        into = self.ch.pick([n for n in AXES if n not in t.names]) if self.ch.chance(0.3) else None
        out = Ax(into or ax.name, k, evaluate(k, sc.env))
        axes = tuple(out if a is ax else a for a in t.axes)
        vals, idx = self.fresh("t"), self.fresh("t")
        sc.note(vals, T(axes))
        sc.note(idx, T(axes, "int64"))
        self.int_bound[idx] = self.text(sc, ax)
        if into is None:
            self.topk_src[idx] = (ax.name, ax.expr)
        extra = f", into = {into}" if into else ""
        # a random offset along the axis breaks ties (relu's zeros, copies), whose order
        # backends may break differently
        x = f"{name} + Param([{ax.name}: {self.text(sc, ax)}], std = 0.1)"
        sc.lines.append(f"{vals}, {idx} = top_k({x}, over {ax.name}, k = {k}{extra})")
        if into is None and t.is_float():
            self.routes[idx] = (name, vals)
            if self.ch.chance(0.4):
                self.op_scatter(sc)
        if into is None and self.ch.chance(0.5):
            try:
                self.op_gather(sc)
            except Retry:
                pass

    def op_gather(self, sc):
        """Gather along the axis a top_k ran over, with its indices (always in range)."""
        vis = sc.visible()
        idx = self.ch.pick([i for i in self.topk_src if i in vis])
        axis, size = self.topk_src[idx]
        ti = vis[idx]

        def fits(t):
            a = t.get(axis)
            return a is not None and a.expr == size and broadcast(t.without([axis]), ti.without([axis]))

        name, t = self.pick(sc, fits)
        rest = broadcast(t.without([axis]), ti.without([axis]))
        pos = min(t.names.index(axis), len(rest.axes))
        axes = rest.axes[:pos] + (ti.get(axis),) + rest.axes[pos:]
        self.assign(sc, f"gather({name}, {idx}, over {axis})", T(axes))

    def op_scatter(self, sc):
        """Write a top_k's values back into its input at its indices (scatter, scatter_add), or
        add them along the axis at indices reduced to that one axis (index_add: repeated
        indices likely)."""
        vis = sc.visible()
        idx = self.ch.pick([i for i in self.routes if i in vis and self.routes[i][0] in vis])
        name, vals = self.routes[idx]
        axis, _ = self.topk_src[idx]
        t = vis[name]
        form = self.ch.pick(["scatter", "scatter_add", "index_add"])
        if form != "index_add":
            self.assign(sc, f"{form}({name}, {idx}, {vals}, over {axis})", t)
            return
        others = [n for n in vis[idx].names if n != axis]
        rows = f"max({idx}, over [{', '.join(others)}])" if others else idx
        self.assign(sc, f"index_add({name}, {rows}, {vals}, over {axis})", t)

    def op_moe(self, sc):
        """A sparse mixture of SwiGLU experts over a static axis."""
        name, t = self.pick(sc, T.static)
        ax = self.ch.pick(t.static())
        experts, e = self.size_expr(sc)
        k = self.ch.pick(["1", experts] + ([str(e - 1)] if experts.isdigit() and e > 2 else []))
        hidden, _ = self.size_expr(sc)
        self.assign(sc, f"MoE({self.operand(name, t)}, over {ax.name}, experts = {experts}, k = {k}, hidden = {hidden})", t)

    def op_experts(self, sc):
        """Routed experts: a top_k over one static axis of a value picks each token's experts
        (so its indices are in range) and another static axis is the features."""
        name, t = self.pick(sc, lambda t: len(t.static()) >= 2)
        a = self.ch.pick(t.static())
        f = self.ch.pick([s for s in t.static() if s is not a])
        experts = self.text(sc, a)
        k = self.ch.pick(["1", experts])
        choice = Ax(a.name, k, evaluate(k, sc.env))
        routed = t.without([f.name])
        axes = tuple(choice if x.name == a.name else x for x in routed.axes)
        w, idx = self.fresh("t"), self.fresh("t")
        sc.note(w, T(axes))
        sc.note(idx, T(axes, "int64"))
        self.int_bound[idx] = experts
        # a random offset along the experts breaks ties, which backends may break differently
        sc.lines.append(f"{w}, {idx} = top_k(max({name}, over {f.name}) + Param([{a.name}: {experts}], std = 0.1), "
                        f"over {a.name}, k = {k})")
        hidden, _ = self.size_expr(sc)
        self.assign(sc, f"Experts(sum({name}, over {a.name}), {w}, {idx}, over {f.name}, experts = {experts}, "
                        f"hidden = {hidden})", t.without([a.name]))

    def op_positions(self, sc):
        ax = self.ch.pick([a for a in sc.first_axis.values() if a.name in sc.input_axes])
        if ax.dynamic and sc.kind == "repeat":
            # a repeat body reads run-time sizes from its inputs only (the torch backend's
            # limit): it may not have this axis
            raise Retry("positions of a run-time axis in a repeat body")
        if (ax.dynamic and sc.block_level()) or self.ch.chance(0.5):
            self.assign(sc, f'cast(positions({ax.name}), to = "float32")', T((ax,)))
            return
        bound = str(ax.value) if ax.dynamic else self.text(sc, ax)
        name = self.assign(sc, f"positions({ax.name})", T((ax,), "int64"))
        self.int_bound[name] = bound

    def op_length(self, sc):
        """`length(AXIS)`: an axis's size as an int64 scalar, added to a tensor as a float."""
        ax = self.ch.pick([a for a in sc.first_axis.values() if a.name in sc.input_axes])
        if ax.dynamic and sc.kind == "repeat":
            raise Retry("length of a run-time axis in a repeat body")
        name, t = self.pick(sc, lambda t: True)
        self.assign(sc, f'{self.operand(name, t)} + cast(length({ax.name}), to = "float32")', t)

    def op_arange(self, sc):
        """`arange([AXIS], start = S, step = P)` over an axis in scope (its size inferred, a
        run-time one read from an input), float32 or int64 cast back, or in a Buffer."""
        ax = self.ch.pick([a for a in sc.first_axis.values() if a.name in sc.input_axes])
        if ax.dynamic and sc.kind == "repeat":
            raise Retry("arange of a run-time axis in a repeat body")
        start = self.ch.pick(["", ", start = 1", ", start = -0.5"])
        if self.ch.chance(0.3):
            hexpr, _ = self.size_expr(sc)
            start = f", start = {hexpr}"
        step = self.ch.pick(["", ", step = 2", ", step = 0.25", ", step = -1"])
        call = f"arange([{ax.name}]{start}{step})"
        if self.ch.chance(0.3) and "0.25" not in step and "0.5" not in start:
            call = f'cast(arange([{ax.name}]{start}{step}, dtype = "int64"), to = "float32")'
        if not ax.dynamic and self.ch.chance(0.3):
            call = f"Buffer({call} * 0.5, persistent = false)"
        self.assign(sc, call, T((ax,)))

    def op_pad_to(self, sc):
        name, t = self.pick(sc, lambda t: t.axes)
        ax = self.ch.pick(t.axes)
        like, tl = self.pick(sc, lambda u: u.get(ax.name) is not None, floats=False)
        target = tl.get(ax.name)
        if target.dynamic and sc.block_level() and target.expr != ax.expr:
            raise Retry("a run-time size would change inside a block")
        axes = tuple(target if a is ax else a for a in t.axes)
        self.assign(sc, f"pad_to({name}, {like}, over [{ax.name}])", T(axes))

    # ---- learned ops
    def linear_parts(self, sc, t: T):
        static = t.static()
        if not static:
            raise Retry("no static axis")
        src = [self.ch.pick(static)]
        if len(static) > 1 and self.ch.chance(0.25):
            src.append(self.ch.pick([a for a in static if a is not src[0]]))
        kept = [a.name for a in t.axes if a not in src]
        dst = [self.new_axis(sc, kept)]
        if self.ch.chance(0.25):
            dst.append(self.new_axis(sc, kept + [dst[0].name]))
        return src, dst

    @staticmethod
    def linear_type(t: T, src, dst) -> T:
        consumed = [a.name for a in src]
        pos = max(t.names.index(n) for n in consumed)
        kept = [a for a in t.axes if a.name not in consumed]
        before = [a for a in t.axes[:pos] if a.name not in consumed]
        return T(tuple(before + list(dst) + kept[len(before):]))

    @staticmethod
    def side(axes, sized=True) -> str:
        text = [a.decl() if sized else a.name for a in axes]
        return text[0] if len(text) == 1 else f"[{', '.join(text)}]"

    def op_linear(self, sc):
        name, t = self.pick(sc)
        src, dst = self.linear_parts(sc, t)
        arrow = f"{self.side(src, False)} -> {self.side(dst)}"
        bias = ", bias = false" if self.ch.chance(0.2) else ""
        x = self.operand(name, t)
        expr = self.ch.pick([f"Linear({x}, {arrow}{bias})", f"{x} |> Linear({arrow}{bias})"])
        self.assign(sc, expr, self.linear_type(t, src, dst))

    def op_norm(self, sc):
        name, t = self.pick(sc, T.static)
        static = [a.name for a in t.static()]
        over = [self.ch.pick(static)]
        if len(static) > 1 and self.ch.chance(0.3):
            over.append(self.ch.pick([a for a in static if a != over[0]]))
        kind = self.ch.pick(["LayerNorm", "RMSNorm"])
        extra = self.ch.pick(["", ", eps = 1e-6", ", affine = false"] + ([", bias = false"] if kind == "LayerNorm" else []))
        ov = over[0] if len(over) == 1 else f"[{', '.join(over)}]"
        self.assign(sc, self.ch.pick([f"{kind}({name}, over {ov}{extra})", f"{name} |> {kind}(over {ov}{extra})"]), t)

    def op_batchnorm(self, sc):
        def channels(t):
            return [a for i, a in enumerate(t.axes) if not a.dynamic and len(t.axes) - i - 1 <= 3]

        name, t = self.pick(sc, channels)
        c = self.ch.pick(channels(t)).name
        self.assign(sc, self.ch.pick([f"BatchNorm({name}, {c})", f"{name} |> BatchNorm({c})"]), t)

    def spatial(self, sc, a: Ax, expr: str, value: int, same: bool) -> Ax:
        if a.dynamic:
            if same:
                return a
            if sc.block_level():
                raise Retry("a run-time size would change inside a block")
            return Ax(a.name, self.token(), value)
        return Ax(a.name, expr, evaluate(expr, sc.env))

    def op_conv(self, sc):
        name, t = self.pick(sc, lambda t: len(t.axes) >= 2 and t.static())
        c = self.ch.pick(t.static())
        others = [a for a in t.axes if a is not c]
        spatial = [self.ch.pick(others)]
        if len(others) > 1 and self.ch.chance(0.4):
            spatial.append(self.ch.pick([a for a in others if a is not spatial[0]]))
        transposed = self.ch.chance(0.25)
        k, s, dil = self.ch.integer(1, 3), self.ch.integer(1, 2), self.ch.pick([1, 1, 2])
        ext = dil * (k - 1)
        kw = [f"kernel = {k}"] + ([f"stride = {s}"] if s != 1 else []) + ([f"dilation = {dil}"] if dil != 1 else [])
        op_ = 0
        if transposed:
            p = self.ch.integer(0, ext // 2)
            if s > 1 and self.ch.chance(0.3):
                op_ = 1
                kw.append("output_padding = 1")
        else:
            p = (ext + 1) // 2  # so that any size >= 1 fits
        if not transposed and s == 1 and ext % 2 == 0 and self.ch.chance(0.3):
            kw.append('padding = "same"')
        elif p:
            kw.append(f"padding = {p}")
        out_c = Ax(self.ch.pick([c.name] + [n for n in AXES if n not in t.names]), *self.size_expr(sc))
        if not transposed and self.ch.chance(0.25):
            out_c = Ax(out_c.name, f"2 * ({self.text(sc, c)})", 2 * c.value)
            kw.append(f"groups = {self.text(sc, c)}")
        if self.ch.chance(0.2):
            kw.append("bias = false")
        axes = []
        for a in t.axes:
            if a is c:
                axes.append(out_c)
            elif a in spatial and transposed:
                expr = f"(({a.expr}) - 1) * {s} - {2 * p} + {ext} + {op_} + 1"
                value = (a.value - 1) * s - 2 * p + ext + op_ + 1
                axes.append(self.spatial(sc, a, expr, value, s == 1 and ext + op_ == 2 * p))
            elif a in spatial:
                expr = f"(({a.expr}) + {2 * p} - {ext} - 1) // {s} + 1"
                value = (a.value + 2 * p - ext - 1) // s + 1
                axes.append(self.spatial(sc, a, expr, value, s == 1 and 2 * p == ext))
            else:
                axes.append(a)
        op = "ConvTranspose" if transposed else "Conv"
        over = self.side(spatial, False)
        self.assign(sc, f"{op}({name}, {c.name} -> {out_c.decl()}, {', '.join(kw)}, over {over})", T(tuple(axes)))

    def op_pool(self, sc):
        name, t = self.pick(sc, lambda t: t.axes)
        spatial = [self.ch.pick(t.axes)]
        if len(t.axes) > 1 and self.ch.chance(0.3):
            spatial.append(self.ch.pick([a for a in t.axes if a is not spatial[0]]))
        k = self.ch.integer(1, 3)
        s = self.ch.pick([None, 1, 2])
        p = self.ch.pick([0, k // 2])
        if 1 + 2 * p < k and any(not a.expr.isdigit() or a.value + 2 * p < k for a in spatial):
            raise Retry("the kernel may not fit the axis")
        stride = s or k
        kw = [f"kernel = {k}"] + ([f"stride = {s}"] if s else []) + ([f"padding = {p}"] if p else [])
        axes = []
        for a in t.axes:
            if a in spatial:
                expr = f"(({a.expr}) + {2 * p} - {k}) // {stride} + 1"
                value = (a.value + 2 * p - k) // stride + 1
                axes.append(self.spatial(sc, a, expr, value, stride == 1 and 2 * p == k - 1))
            else:
                axes.append(a)
        fn = self.ch.pick(["maxpool", "avgpool"])
        self.assign(sc, f"{fn}({name}, {', '.join(kw)}, over {self.side(spatial, False)})", T(tuple(axes)))

    def op_param(self, sc):
        name, t = self.pick(sc, T.static)
        axes = [a for a in t.static() if self.ch.chance(0.6)] or t.static()[:1]
        init = self.ch.pick(["", ', init = "zeros"', ', init = "ones"', ", std = 0.02"])
        decl = ", ".join(self.writable(sc, a).decl() for a in axes)
        self.assign(sc, self.ch.pick([f"{name} + Param([{decl}]{init})", f"Param([{decl}]{init}) * {name}"]), t)

    def op_buffer(self, sc):
        """A Buffer of static axes (a constant, in the state_dict or not), or one made from
        positions of a static axis in scope."""
        persistent = self.ch.pick(["", ", persistent = false", ", persistent = true"])
        statics = [a for a in sc.first_axis.values() if a.name in sc.input_axes and not a.dynamic]
        if statics and self.ch.chance(0.4):
            ax = self.ch.pick(statics)
            expr = f'1.0 / (cast(positions({ax.name}), to = "float32") + 2.0)'
            self.assign(sc, f"Buffer({expr}{persistent})", T((self.writable(sc, ax),)))
            return
        name, t = self.pick(sc, T.static)
        axes = [a for a in t.static() if self.ch.chance(0.6)] or t.static()[:1]
        init = self.ch.pick(["", ", init = zeros", ", init = ones", ", init = constant(0.5)"])
        decl = ", ".join(self.writable(sc, a).decl() for a in axes)
        self.assign(sc, self.ch.pick([f"{name} + Buffer([{decl}]{init}{persistent})",
                                      f"Buffer([{decl}]{init}{persistent}) * {name}"]), t)

    def op_random(self, sc):
        """Random ops in forms whose eval-mode value every backend agrees on: drop_path is the
        identity, a draw is scaled by zero or has one possible value."""
        name, t = self.pick(sc)
        x = self.operand(name, t)
        forms = [f"{x} + normal_like({x}) * 0.0", f"uniform_like({x}, low = 0.5, high = 0.5) * {x}",
                 f"bernoulli(sigmoid({x}) * 0.0 + 1.0) * {x}", f"{x} - bernoulli(sigmoid({x}) * 0.0)"]
        if t.axes:
            forms.append(f"drop_path({x}, p = 0.25, over {self.ch.pick(t.axes).name})")
        self.assign(sc, self.ch.pick(forms), t)

    def op_axis_block(self, sc):
        """A block with an axis parameter (`block B(axis ap)`), called on one axis of a value
        (`B(ap = h)(x)`), lifted over the others."""
        name, t = self.pick(sc, lambda t: t.axes)
        ax = self.ch.pick(t.axes)
        block = self.fresh("B")
        fn = self.ch.pick(["x * 2.0 + relu(x)", "softmax(x, over ap)", "x - mean(x, over ap)"])
        self.texts.append(f"## Block {block}: an axis parameter.\nblock {block}(axis ap) {{\n"
                          f"    in  x: [ap]\n    out {fn}\n}}\n")
        # lifted: the other axes move to the front, the block's own axis comes last
        out = T(tuple(a for a in t.axes if a.name != ax.name) + (ax,), t.dtype)
        self.assign(sc, f"{block}(ap = {ax.name})({self.operand(name, t)})", out)

    def op_static_if(self, sc):
        """A static `if` on a hyperparameter whose branches define one name with one type (a
        block may be instantiated with values that take either branch)."""
        name, t = self.pick(sc)
        x = self.operand(name, t)
        hyper = sc.hyper()
        if hyper and self.ch.chance(0.8):
            k = self.ch.pick(hyper)
            cond = f"{k} {self.ch.pick(COMPARE)} {self.ch.integer(1, 6)}"
            if self.ch.chance(0.3):
                cond = f"{cond} {self.ch.pick(['and', 'or'])} not ({k} == 2)"
        else:
            cond = self.ch.pick(["true", "false", "1 < 2"])
        out = self.fresh("t")
        then = f"{out} = {self.ch.pick(UNARY)}({x})"
        other = f"{out} = {x} * 0.5"
        if self.ch.chance(0.3):
            sc.lines += [f"if {cond} {{", f"    {then}", f"}} else if {cond} {{", f"    {other}",
                         "} else {", f"    {other}", "}"]
        else:
            sc.lines += [f"if {cond} {{", f"    {then}", "} else {", f"    {other}", "}"]
        sc.note(out, t)

    def op_static_for(self, sc):
        """A static `for` over a table of numbers and hyperparameters, unrolled (or over
        `range` or `zip`, op_static_range)."""
        if self.ch.chance(0.4):
            return self.op_static_range(sc)
        name, t = self.pick(sc)
        out = self.fresh("t")
        sc.lines.append(f"{out} = {self.operand(name, t)}")
        rows = [f"({self.ch.pick(['0.5', '1.0', '2.0'])}, {self.ch.pick(['0', '1'] + sc.hyper()[:2])})"
                for _ in range(self.ch.integer(1, 3))]
        sc.lines += [f"for (a, b) in [{', '.join(rows)}] {{", f"    {out} = tanh({out} * a + b)", "}"]
        sc.note(out, t)

    def op_static_range(self, sc):
        """`for i in range(K)` (K a number or a hyperparameter, at most 3 rows) whose body
        scales by a conditional expression of the index; or a `for` over `zip` of tuples."""
        name, t = self.pick(sc)
        out = self.fresh("t")
        sc.lines.append(f"{out} = {self.operand(name, t)}")
        hyper = sc.hyper()
        if self.ch.chance(0.3):
            items = [self.ch.pick(["0", "1"] + hyper[:2]) for _ in range(self.ch.integer(1, 3))]
            second = f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
            sc.lines += [f"for (a, b) in zip((0.5, 1.0, 2.0), {second}) {{", f"    {out} = tanh({out} * a + b)", "}"]
        else:
            count = f"min({self.ch.pick(hyper)}, 3)" if hyper and self.ch.chance(0.5) else str(self.ch.integer(0, 3))
            scale = self.ch.pick(["0.5 if i == 0 else 0.25", f"(i + 1) * 0.5 if i < 2 else {self.ch.pick(['1.5'] + hyper[:1])}"])
            sc.lines += [f"for i in range({count}) {{", f"    {out} = tanh({out} * ({scale}) + i)", "}"]
        sc.note(out, t)

    def op_embedding(self, sc):
        """An Embedding of integer values (inputs, positions, top_k indices); at model level
        sometimes named, with a Linear tied to it that maps back to the entries."""
        vis = sc.visible()
        name = self.ch.pick([n for n in self.int_bound if n in vis])
        t = vis[name]
        bound = self.int_bound[name]
        num = str(int(bound) + self.ch.integer(0, 2)) if bound.isdigit() else bound
        out = self.new_axis(sc, t.names)
        arrow = f"n: {num} -> {out.decl()}"
        if sc.kind != "model" or not self.ch.chance(0.4):
            self.assign(sc, self.ch.pick([f"Embedding({name}, {arrow})", f"{name} |> Embedding({arrow})"]), T(t.axes + (out,)))
            return
        inst = self.fresh("w")
        sc.lines.append(f"{inst} = Embedding({arrow})")
        emb = self.assign(sc, f"{inst}({name})", T(t.axes + (out,)))
        back = Ax(self.ch.pick([a for a in AXES if a not in t.names]), num, evaluate(num, sc.env))
        bias = self.ch.pick(["", ", bias = false"])
        self.assign(sc, f"Linear({emb}, {out.name} -> {back.decl()}{bias}, tied = {inst})", T(t.axes + (back,)))

    def op_named(self, sc):
        """A learned instance bound to a name and applied to two values (shared weights)."""
        if sc.kind == "repeat":
            raise Retry("an instance bound outside a repeat cannot be used inside it")
        name, t = self.pick(sc, T.static)
        inst = self.fresh("m")
        if self.ch.chance(0.5):
            src, dst = self.linear_parts(sc, t)
            if len(src) > 1:
                raise Retry("a named Linear here maps one axis")
            (a,) = src
            sc.lines.append(f"{inst} = Linear({a.name} -> {self.side(dst)})")

            def fits(u):
                mine = u.get(a.name)
                clash = any(u.get(d.name) for d in dst if d.name != a.name)
                return mine is not None and mine.expr == a.expr and not clash

            def make(u):
                return self.linear_type(u, [u.get(a.name)], dst)
        else:
            a = self.ch.pick(t.static())
            sc.lines.append(f"{inst} = {self.ch.pick(['LayerNorm', 'RMSNorm'])}(over {a.name})")

            def fits(u):
                return u.get(a.name) is not None and u.get(a.name).expr == a.expr

            def make(u):
                return u
        self.assign(sc, f"{inst}({name})", make(t))
        others = [(n, u) for n, u in sc.visible().items() if u.is_float() and fits(u)]
        if others:
            n2, u2 = self.ch.pick(others)
            self.assign(sc, f"{inst}({n2})", make(u2))

    # ---- axis surgery (slices, split/chunk, roll/shift/reverse, cumsum/cumprod, stack,
    # upsample) and the group/instance norms
    def op_slice(self, sc):
        name, t = self.pick(sc, lambda t: any(a.value >= 3 for a in t.axes), floats=False)
        ax = self.ch.pick([a for a in t.axes if a.value >= 3])
        if ax.dynamic and sc.block_level():
            raise Retry("a run-time size would change inside a block")
        form, keep = self.ch.pick([("1:", -1), (":-1", -1), ("-2:", 2), (":2", 2), ("1:-1", -2), (":", 0)])
        if ax.dynamic:
            size = Ax(ax.name, self.token(), ax.value + keep if keep <= 0 else keep)
        elif keep <= 0:
            size = Ax(ax.name, f"({ax.expr}) - {-keep}" if keep else ax.expr, ax.value + keep)
        else:
            size = Ax(ax.name, str(keep), keep)
        axes = tuple(size if a is ax else a for a in t.axes)
        self.assign(sc, f"{name}[{ax.name} = {form}]", T(axes, t.dtype))

    def op_split(self, sc):
        name, t = self.pick(sc, lambda t: any(not a.dynamic and a.value >= 2 for a in t.axes), floats=False)
        ax = self.ch.pick([a for a in t.axes if not a.dynamic and a.value >= 2])
        e = self.text(sc, ax)
        if ax.value % 2 == 0 and self.ch.chance(0.4):
            half = Ax(ax.name, f"({e}) // 2", ax.value // 2)
            parts = (half, half)
            call = f"chunk({name}, 2, over {ax.name})"
        else:
            parts = (Ax(ax.name, "1", 1), Ax(ax.name, f"({e}) - 1", ax.value - 1))
            call = f"split({name}, over {ax.name}, (1, {e} - 1))"
        names = [self.fresh("t") for _ in parts]
        for n, p in zip(names, parts):
            sc.note(n, T(tuple(p if a is ax else a for a in t.axes), t.dtype))
        sc.lines.append(f"{', '.join(names)} = {call}")

    def op_move(self, sc):
        name, t = self.pick(sc, lambda t: t.axes, floats=False)
        ax = self.ch.pick(t.axes)
        k = self.ch.integer(-3, 3)
        fn = self.ch.pick(["roll", "shift", "reverse"] if t.dtype != "bool" else ["roll", "reverse"])
        if fn == "reverse":
            expr = f"reverse({name}, over {ax.name})"
        elif fn == "shift" and t.is_float() and self.ch.chance(0.5):
            expr = f"shift({name}, {k}, over {ax.name}, fill = {self.ch.pick(['0.5', '-1', '0'])})"
        else:
            expr = f"{fn}({name}, {k}, over {ax.name})"
        self.assign(sc, expr, t)

    def op_cumulative(self, sc):
        name, t = self.pick(sc, lambda t: t.axes)
        ax = self.ch.pick(t.axes)
        if self.ch.chance(0.5):
            self.assign(sc, f"cumsum({self.operand(name, t)}, over {ax.name})", t)
        else:  # factors in (-1, 1): the products stay finite
            self.assign(sc, f"cumprod(tanh({name}), over {ax.name})", t)

    def op_stack(self, sc):
        name, t = self.pick(sc, lambda t: t.axes and len(t.axes) < 4)
        new = self.ch.pick([n for n in AXES if n not in t.names])
        others = [name, self.operand(name, t)] + ([f"relu({name})"] if self.ch.chance(0.3) else [])
        if len(t.axes) >= 2 and self.ch.chance(0.4):  # another layout: matched by name
            a, b = t.axes[0].name, t.axes[1].name
            others[1] = f"transpose({others[1]}, {a}, {b})"
        size = f": {len(others)}" if self.ch.chance(0.5) else ""
        axes = (Ax(new, str(len(others)), len(others)),) + t.axes
        self.assign(sc, f"stack({', '.join(others)}, over {new}{size})", T(axes))

    def op_group_norm(self, sc):
        form = self.ch.integer(0, 2)
        if form == 0:  # GroupNorm over a channel axis and the axes after it
            def chans(t):
                return [a for a in t.axes if not a.dynamic and a.value >= 2]

            name, t = self.pick(sc, chans)
            c = self.ch.pick(chans(t))
            after = math.prod(a.value for a in t.axes[t.names.index(c.name) + 1:])
            # more than one element per group (the checker refuses one)
            g = self.ch.pick([d for d in range(1, c.value + 1) if c.value % d == 0 and c.value // d * after > 1])
            extra = self.ch.pick(["", ", affine = false", ", eps = 1e-3"])
            self.assign(sc, f"GroupNorm({name}, {g}, over {c.name}{extra})", t)
        elif form == 1:  # InstanceNorm over one or two axes, any of them run-time
            # more than one element to normalise over: torch refuses one (the checker too)
            name, t = self.pick(sc, lambda t: len(t.axes) >= 2 and any(a.value >= 2 for a in t.axes))
            over = [self.ch.pick([a for a in t.axes if a.value >= 2]).name]
            rest = [a for a in t.axes if a.name not in over and not a.dynamic]
            extra = ""
            if rest and self.ch.chance(0.5):
                extra = f", affine = true, channel = {self.ch.pick(rest).name}"
            self.assign(sc, f"InstanceNorm({name}, over {over[0]}{extra})", t)
        else:  # LayerNorm/RMSNorm over a run-time axis: no weights
            name, t = self.pick(sc, lambda t: any(a.dynamic for a in t.axes))
            ax = self.ch.pick([a for a in t.axes if a.dynamic])
            kind = self.ch.pick(["LayerNorm", "RMSNorm"])
            self.assign(sc, f"{kind}({name}, over {ax.name}, affine = false)", t)

    def op_upsample(self, sc):
        name, t = self.pick(sc, lambda t: t.axes)
        ax = self.ch.pick(t.axes)
        if ax.dynamic and sc.block_level():
            raise Retry("a run-time size would change inside a block")
        k = self.ch.integer(1, 2)
        size = Ax(ax.name, self.token(), ax.value * k) if ax.dynamic else Ax(ax.name, f"{k} * ({ax.expr})", ax.value * k)
        mode = self.ch.pick(["", ", mode = nearest", ", mode = bilinear"])
        axes = tuple(size if a is ax else a for a in t.axes)
        self.assign(sc, f"upsample({name}, {k}, over {ax.name}{mode})", T(axes))

    # ---- blocks and repeats
    def op_block(self, sc):
        name, t = self.pick(sc, lambda t: t.axes)
        fit = [b for b in self.blocks if self.binding(b, t, sc.block_level()) is not None]
        b = self.ch.pick(fit) if fit and self.ch.chance(0.5) else self.make_block(sc, t)
        bound = self.binding(b, t, sc.block_level())
        if bound is None:
            raise Retry("the block does not fit")
        exprs, dyn = bound
        lift = [a for a in t.axes if a.name not in b.declared.names]
        if {a.name for a in lift} & b.names:
            raise Retry("an axis of the block clashes with a lifted one")
        given = [p for p in b.params if p != b.defaulted or self.ch.chance(0.5)]
        if b.defaulted and b.defaulted in given:
            exprs[b.defaulted] = self.ch.pick(["2", "4"] + sc.hyper())
        elif b.defaulted:
            exprs[b.defaulted] = "3"
        if self.ch.chance(0.4):
            args = ", ".join(exprs[p] for p in given)
        else:
            args = ", ".join(f"{p} = {exprs[p]}" for p in given)
        outs = [T(tuple(lift) + tuple(self.outside(a, exprs, dyn, sc) for a in o.axes), o.dtype) for o in b.outputs]
        rest = [name] * (b.inputs - 1)
        if lift and rest and self.ch.chance(0.4):
            # an input shared across (some of) the lifted axes: a mask, a rotary table
            drop = [a.name for a in lift if self.ch.chance(0.6)] or [lift[0].name]
            rest[-1] = f"mean({name}, over [{', '.join(drop)}])"
        tensors = ", ".join([self.operand(name, t)] + rest)
        call = f"{b.name}({args})({tensors})"
        if sc.kind != "repeat" and self.ch.chance(0.3):
            inst = self.fresh("b")
            sc.lines.append(f"{inst} = {b.name}({args})")
            call = f"{inst}({tensors})"
        if len(outs) == 1:
            self.assign(sc, call, outs[0])
            return
        names = [self.fresh("t") for _ in outs]
        for n, o in zip(names, outs):
            sc.note(n, o)
        sc.lines.append(f"{', '.join(names)} = {call}")

    def outside(self, a: Ax, exprs: dict, dyn: dict, sc: Scope) -> Ax:
        """An output axis of a block, in the caller's terms."""
        if a.dynamic:
            caller = dyn[a.expr]
            return Ax(a.name, caller.expr, caller.value)
        expr = substitute(a.expr, exprs)
        return Ax(a.name, expr, evaluate(expr, sc.env))

    def binding(self, b: BlockDef, t: T, scope_block: bool):
        """The block's hyperparameter expressions and run-time axes for a call on t."""
        exprs, dyn = {}, {}
        for d in b.declared.axes:
            a = t.get(d.name)
            if a is None:
                return None
            if d.dynamic:
                dyn[d.expr] = a
            elif d.expr in b.params:
                if a.dynamic or ("//" in a.expr and scope_block):
                    return None
                exprs[d.expr] = a.expr if "//" not in a.expr else str(a.value)
            elif d.expr != a.expr:
                return None
        return exprs, dyn

    def make_block(self, sc: Scope, t: T) -> BlockDef:
        name = self.fresh("B")
        declared = [a for a in t.axes if self.ch.chance(0.5)] or [self.ch.pick(t.axes)]
        params, env, axes = [], {}, []
        for a in declared:
            if a.dynamic or self.ch.chance(0.2):
                axes.append(Ax(a.name, self.token(), a.value))
            elif a.expr.isdigit() and self.ch.chance(0.3):  # a literal size
                axes.append(a)
            else:
                p = self.fresh("k")
                params.append(p)
                env[p] = a.value
                axes.append(Ax(a.name, p, a.value))
        defaulted = None
        if self.ch.chance(0.4):
            defaulted = self.fresh("k")
            params.append(defaulted)
            env[defaulted] = 3
        declared_t = T(tuple(axes))
        bsc = Scope("block", env, inputs=declared_t.names)
        n_in = 2 if self.ch.chance(0.25) else 1
        xs = [self.fresh("x") for _ in range(n_in)]
        for x in xs:
            bsc.note(x, declared_t)
        self.depth += 1
        try:
            self.statements(bsc, self.ch.integer(1, max(1, self.size // 2)))
        finally:
            self.depth -= 1
        made = [(n, u) for n, u in bsc.vals.items() if u.axes and n not in xs] or [(xs[0], declared_t)]
        outs = [self.ch.pick(made[-3:])]
        if len(made) > 1 and self.ch.chance(0.25):
            other = self.ch.pick(made)
            if other[0] != outs[0][0]:
                outs.append(other)
        names = set()
        for u in bsc.vals.values():
            names |= {a.name for a in u.axes}
        names -= set(declared_t.names)
        head = ", ".join(p if p != defaulted else f"{p} = 3" for p in params)
        decl = ", ".join(f"{x}: [{', '.join(a.decl() for a in axes)}]" for x in xs)
        lines = [f"## Block {name}: made by specgen.", f"block {name}({head}) {{", f"    in  {decl}"]
        lines += [f"    {ln}" for ln in bsc.lines]
        lines += [f"    out {', '.join(n for n, _ in outs)}", "}", ""]
        self.texts.append("\n".join(lines))
        b = BlockDef(name, params, defaulted, n_in, declared_t, [u for _, u in outs], frozenset(names))
        self.blocks.append(b)
        return b

    def op_repeat(self, sc):
        cands = [(n, t) for n, t in sc.visible().items() if t.is_float() and t.axes]
        carried = [self.ch.pick(cands[-3:])]
        if len(cands) > 1 and self.ch.chance(0.3):
            other = self.ch.pick(cands)
            if other[0] != carried[0][0]:
                carried.append(other)
        count = self.ch.pick(["0", "1", "2", "3"] + sc.hyper()[:1])
        inner = Scope("repeat", sc.env, parent=sc)
        self.depth += 1
        try:
            self.statements(inner, self.ch.integer(0, max(1, self.size // 2)))
        finally:
            self.depth -= 1
        index = self.fresh("i") if self.ch.chance(0.3) else None
        for cname, ct in carried:
            step = f" + cast({index}, to = \"float32\") * 0.25" if index else ""
            inner.lines.append(f"{cname} = {cname} + {self.coerce(inner, cname, ct)}{step}")
        shared = " shared" if self.ch.chance(0.3) else ""
        label = f" as {self.fresh('layers')}" if self.ch.chance(0.5) or index else ""
        label += f", {index}" if index else ""
        over = ""
        n = int(count) if count.isdigit() else sc.env.get(count, 0)
        if n >= 1 and self.ch.chance(0.3):  # per-iteration values stacked along a new axis
            axis, e = self.fresh("rep"), self.fresh("e")
            cname, ct = carried[0]
            inner.lines.append(f"emit {e} = {cname} * 0.5")
            over = f" over {axis}"
            sc.note(e, T((Ax(axis, count, n),) + ct.axes, ct.dtype))
        sc.lines.append(f"repeat {count}{shared}{label}{over} {{")
        sc.lines += [f"    {ln}" for ln in inner.lines]
        sc.lines.append("}")

    def op_scan(self, sc):
        """`scan AXIS [reverse [= COND]] [as t] { s = ...; emit e = ... }`: a state started from the
        mean over the axis, updated from each step's slice, and a per-step value stacked back
        (it has the type of the scanned value)."""
        name, t = self.pick(sc, lambda u: len(u.axes) >= 2)
        ax = self.ch.pick(t.axes)
        state_t = t.without([ax.name])
        s, e = self.fresh("s"), self.fresh("e")
        reverse = self.ch.pick(["", " reverse", " reverse = true", " reverse = false"]) if self.ch.chance(0.5) else ""
        step = self.fresh("i") if self.ch.chance(0.4) else None
        sc.lines.append(f"{s} = mean({name}, over {ax.name})")
        sc.lines.append(f"scan {ax.name}{reverse}{f' as {step}' if step else ''} {{")
        update = self.ch.pick([f"tanh({s} + {name})", f"{s} * 0.5 + {name}", f"maximum({s}, {name})"])
        if step:
            update += f" + cast({step}, to = \"float32\") * 0.125"
        sc.lines.append(f"    {s} = {update}")
        sc.lines.append(f"    emit {e} = {self.ch.pick([s, f'{s} - {name}', f'sigmoid({s})'])}")
        sc.lines.append("}")
        sc.note(s, state_t)
        sc.note(e, t)

    def op_cell(self, sc):
        """A recurrent cell (LSTMCell, GRUCell, RNNCell) over a static feature axis of a value:
        one step from states made by a Linear of it, or stepped in a `scan` over another axis
        from states made of its mean (inline, or a named instance bound in the body)."""
        name, t = self.pick(sc, T.static)
        a = self.ch.pick(t.static())
        hid = self.new_axis(sc, t.names)
        hid = self.writable(sc, hid)
        op = self.ch.pick(["LSTMCell", "GRUCell", "RNNCell"])
        extra = self.ch.pick(["", ", bias = false"] + ([', nonlinearity = "relu"'] if op == "RNNCell" else []))
        others = [x for x in t.axes if x.name != a.name]
        states = ["h", "c"] if op == "LSTMCell" else ["h"]
        arrow = f"{a.name} -> {hid.decl()}"
        if others and self.depth < 2 and self.ch.chance(0.5):
            ax = self.ch.pick(others)
            step = t.without([ax.name])
            st = self.linear_type(step, [a], [hid])
            names = [self.fresh("s") for _ in states]
            for i, n in enumerate(names):
                sc.lines.append(f"{n} = Linear(mean({name}, over {ax.name}), {a.name} -> {hid.decl()}){' * 0.5' if i else ''}")
            sc.lines.append(f"scan {ax.name}{self.ch.pick(['', ' reverse'])} {{")
            if self.ch.chance(0.5):
                inst = self.fresh("m")
                sc.lines.append(f"    {inst} = {op}({arrow}{extra})")
                sc.lines.append(f"    {', '.join(names)} = {inst}({name}, {', '.join(names)})")
            else:
                sc.lines.append(f"    {', '.join(names)} = {op}({name}, {', '.join(names)}, {arrow}{extra})")
            sc.lines.append("}")
            for n in names:
                sc.note(n, st)
            return
        st = self.linear_type(t, [a], [hid])
        inits = [self.assign(sc, f"Linear({name}, {a.name} -> {hid.decl()})", st) for _ in states]
        outs = [self.fresh("t") for _ in states]
        sc.lines.append(f"{', '.join(outs)} = {op}({name}, {', '.join(inits)}, {arrow}{extra})")
        for n in outs:
            sc.note(n, st)

    def op_linear_recurrence(self, sc):
        """A linear recurrence h = a * h + b: a `scan` whose state is updated so (which the
        parallel-scan pass of -O2 turns into linear_scan, so -O0 vs -O2 compares the loop and
        the parallel form, and ONNX runs it either way), or `linear_scan` written directly."""
        name, t = self.pick(sc, lambda u: len(u.axes) >= 2 and u.is_float())
        ax = self.ch.pick(t.axes)
        state_t = t.without([ax.name])
        s, e = self.fresh("s"), self.fresh("e")
        reverse = self.ch.chance(0.4)
        decay = self.ch.pick([f"sigmoid({name})", f"exp(-abs({name}))", "0.75", "1", f"tanh({name})"])
        if self.ch.chance(0.3):
            last = self.fresh("last")
            a = decay if decay not in ("0.75", "1") else f"sigmoid({name})"
            sc.lines.append(f"{e}, {last} = linear_scan({a}, {name} * 0.5, mean({name}, over {ax.name}), "
                            f"over {ax.name}{', reverse = true' if reverse else ''})")
            sc.note(e, t)
            sc.note(last, state_t)
            return
        sc.lines.append(f"{s} = mean({name}, over {ax.name})")
        sc.lines.append(f"scan {ax.name}{' reverse' if reverse else ''} {{")
        update = f"{s} + {name} * 0.5" if decay == "1" else self.ch.pick(
            [f"{decay} * {s} + {name} * 0.5", f"{name} * 0.5 + {s} * {decay}"])
        sc.lines.append(f"    {s} = {update}")
        sc.lines.append(f"    emit {e} = {self.ch.pick([s, f'{s} * {name}', f'tanh({s})'])}")
        sc.lines.append("}")
        sc.note(s, state_t)
        sc.note(e, t)

    def op_linear_readout(self, sc):
        """A linear recurrence read out by a sum over a state axis: a `scan` emitting
        einsum(h, x, over k) (the parallel-scan pass of -O2 makes one linear_scan_sum of it, a
        and b folded from the products that make them), or linear_scan_sum written directly."""
        name, t = self.pick(sc, lambda u: len(u.axes) >= 2 and u.is_float())
        ax = self.ch.pick(t.axes)
        k = self.ch.pick(t.without([ax.name]).axes).name
        y_t = t.without([k])
        s, e = self.fresh("s"), self.fresh("e")
        reverse = self.ch.chance(0.4)
        exp_a = self.ch.chance(0.5)
        h0 = f"mean({name}, over {ax.name})"
        if self.ch.chance(0.4):
            last = self.fresh("last")
            a = f"{name}, -sigmoid({name})" if exp_a else f"sigmoid({name})"
            kw = (", na = 2, exp_a = true" if exp_a else "") + (", reverse = true" if reverse else "")
            sc.lines.append(f"{e}, {last} = linear_scan_sum({a}, {name}, tanh({name}), {h0}, {name}, "
                            f"over {ax.name}, [{', '.join(y_t.names)}]{kw})")
            sc.note(e, y_t)
            sc.note(last, t.without([ax.name]))
            return
        decay = f"exp({name} * -sigmoid({name}))" if exp_a else f"sigmoid({name})"
        sc.lines.append(f"{s} = {h0}")
        sc.lines.append(f"scan {ax.name}{' reverse' if reverse else ''} {{")
        sc.lines.append(f"    {s} = {decay} * {s} + {self.ch.pick([f'{name} * 0.5', f'{name} * tanh({name})'])}")
        sc.lines.append(f"    emit {e} = einsum({s}, {name}, over {k})")
        sc.lines.append("}")
        # the scan stacks the emitted steps where the axis is in the sliced input
        step = list(t.without([ax.name, k]).axes)
        step.insert(t.names.index(ax.name), ax)
        sc.note(s, t.without([ax.name]))
        sc.note(e, T(tuple(step), t.dtype))

    def coerce(self, sc: Scope, cname: str, target: T) -> str:
        """An expression of a recent body value whose axes all fit `target`, so that
        `x = x + it` keeps the type of x."""
        vals = [(n, t) for n, t in sc.vals.items() if t.is_float()] or [(cname, target)]
        expr, cur = self.ch.pick(vals[-3:])

        def bad(a):
            want = target.get(a.name)
            if want is None:
                return True
            return a.expr != want.expr and not _one(a) and (a.dynamic or want.dynamic)

        drop = [a.name for a in cur.axes if bad(a)]
        if drop:
            expr = f"mean({expr}, over [{', '.join(drop)}])"
            cur = cur.without(drop)
        for a in cur.axes:
            want = target.get(a.name)
            if a.expr != want.expr and not _one(a):
                expr = f"Linear({expr}, {a.name} -> {a.name}: {self.text(sc, want)})"
                cur = self.linear_type(cur, [a], [want])
        return f"({expr})"


# ---- model ---------------------------------------------------------------------------------


def _model(gen: Gen, name: str) -> GenSpec:
    ch = gen.ch
    params, head, defaults = [], [], {}
    for _ in range(ch.integer(0, 2)):
        p = gen.fresh("k")
        defaults[p] = f"{params[-1]} + 1" if params and ch.chance(0.4) else str(ch.integer(2, 4))
        head.append(f"{p} = {defaults[p]}")
        params.append(p)
    overrides = {params[0]: ch.integer(2, 5)} if params and ch.chance(0.3) else {}
    env: dict[str, int] = {}
    for p in params:
        env[p] = overrides.get(p, evaluate(defaults[p], env))
    batch = Ax("batch", gen.token(), 2)
    declared: list[tuple[str, T]] = []
    used: dict[str, Ax] = {}
    same: dict[str, str] = {}  # `nm: =other`: a run-time axis declared equal to an earlier one
    scratch = Scope("model", env)
    for i in range(ch.integer(1, 2)):
        axes = [batch]
        for _ in range(ch.integer(1, 3)):
            nm = ch.pick([a for a in AXES + ("s",) if a not in [x.name for x in axes]])
            if nm not in used:
                earlier = [a for a in used.values() if a.dynamic]
                if earlier and nm != "s" and ch.chance(0.15):
                    other = ch.pick(earlier)
                    used[nm] = Ax(nm, other.expr, other.value)
                    same[nm] = other.name
                elif nm == "s" or ch.chance(0.2):
                    used[nm] = Ax(nm, gen.token(), ch.integer(3, 7))
                else:
                    used[nm] = Ax(nm, *gen.size_expr(scratch))
            axes.append(used[nm])
        declared.append(("x" if i == 0 else f"x{i}", T(tuple(axes))))
    if ch.chance(0.35):
        seq = next((a for a in used.values() if a.dynamic), None) or Ax("s", gen.token(), ch.integer(3, 6))
        used.setdefault(seq.name, seq)
        declared.append(("ids", T((batch, seq), "int64")))
        gen.int_bound["ids"] = str(ch.integer(3, 9))
    sc = Scope("model", env, inputs={a.name for _, t in declared for a in t.axes})
    in_parts, shapes, seen = [], [], set()
    for xname, t in declared:
        sc.note(xname, t)
        sc.exact.add(xname)
        parts = []
        for a in t.axes:
            if a.dynamic and (a.name in seen or a.name == "batch"):
                parts.append(a.name)
            elif a.name in same:
                parts.append(f"{a.name}: ={same[a.name]}")
            else:
                parts.append(f"{a.name}: ~{a.value}" if a.dynamic else a.decl())
            seen.add(a.name)
        in_parts.append(f"{xname}: [{', '.join(parts)}]" + (" int64" if t.dtype == "int64" else ""))
        bound = int(gen.int_bound.get(xname, 0))
        shapes.append((xname, tuple(a.value for a in t.axes), t.dtype, bound))
    gen.statements(sc, ch.integer(2, gen.size))
    made = [(n, t) for n, t in sc.vals.items() if t.axes and n not in dict(declared)]
    made = made or declared[:1]
    outs = [ch.pick(made[-2:])]
    if len(made) > 1 and ch.chance(0.4):
        more = ch.pick(made)
        if more[0] != outs[0][0]:
            outs.append(more)
    lines = list(gen.texts)
    lines.append(f'## A random circuit; its "doc" has quotes.\nmodel {name}({", ".join(head)}) {{')
    lines.append(f"    in  {', '.join(in_parts)}")
    lines += [f"    {ln}" for ln in sc.lines]
    lines.append(f"    out {', '.join(f'y{i} = {n}' for i, (n, _) in enumerate(outs))}")
    if ch.chance(0.3):  # a reference that nests the whole model one level deeper
        lines.append('    checkpoint {\n        "net" = ""\n    }')
    lines.append("}")
    expected = tuple((f"y{i}", t.names, tuple(a.value for a in t.axes)) for i, (_, t) in enumerate(outs))
    return GenSpec("\n".join(lines) + "\n", name, overrides, tuple(shapes), expected)


def generate(seed: int, *, size: int = 8) -> GenSpec:
    """A random well-typed spec; the same seed always gives the same spec."""
    for attempt in range(100):
        try:
            gs = _model(Gen(RandomChooser(seed * 1009 + attempt), size), "Net")
        except Retry:
            continue
        label = seed if size == 8 else f"{seed}, size={size}"  # what reproduces it
        return GenSpec(gs.text, gs.model, gs.params, gs.inputs, gs.outputs, label)
    raise RuntimeError(f"specgen: no spec for seed {seed}")


def specs(size: int = 6):
    """The generator as a hypothesis strategy."""
    import hypothesis.strategies as st
    from hypothesis import assume

    @st.composite
    def build(draw):
        try:
            return _model(Gen(DrawChooser(draw), size), "Net")
        except Retry:
            assume(False)

    return build()


def make_inputs(gs: GenSpec, seed: int = 0):
    """Random tensors for a generated spec's inputs."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _, shape, dtype, bound in gs.inputs:
        if dtype == "int64":
            out.append(torch.randint(0, bound, shape, generator=g))
        else:
            out.append(torch.randn(*shape, generator=g))
    return out


# Float32 results beyond this magnitude are near overflow: another engine summing in another
# order may overflow where this one did not (float32's largest value is about 3.4e38).
NEAR_OVERFLOW = 1e34


def float32_overflow(module, inputs) -> str | None:
    """Why the torch module's float32 arithmetic leaves float32's range on these inputs
    (None when it does not): an op that, given finite operands, yields an infinity, a NaN or
    a value beyond NEAR_OVERFLOW. Such a spec's results depend on the order of evaluation
    (inf - inf in one engine's sum is a huge finite number in another's), so backends that
    disagree on it are not a finding. A non-finite value a spec writes on purpose (`-inf` in a
    masked fill) has a non-finite operand and is not counted, so 0 x -inf = NaN bugs still
    show."""
    import math

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    def finite(v) -> bool:
        if isinstance(v, torch.Tensor):
            return not v.is_floating_point() or v.numel() == 0 or bool(torch.isfinite(v).all())
        return not isinstance(v, float) or math.isfinite(v)

    class Watch(TorchDispatchMode):
        found: str | None = None

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if self.found is None and all(finite(v) for v in tree_flatten((args, kwargs))[0]):
                for o in tree_flatten(out)[0]:
                    if (isinstance(o, torch.Tensor) and o.is_floating_point() and o.numel()
                            and not bool((o.abs() <= NEAR_OVERFLOW).all())):
                        self.found = f"{func} leaves float32's range ({o.abs().max().item():.3g})"
            return out

    with torch.no_grad(), Watch() as watch:
        module.eval()(*inputs)
    return watch.found


# ---- mutations: near-valid, mostly invalid inputs for the fuzzers -------------------------

TOKENS = (
    "block", "model", "in", "out", "repeat", "shared", "as", "scan", "reverse", "emit", "import", "from", "over", "rename",
    "if", "else", "for", "axis", "Buffer", "normal_like", "drop_path",
    "and", "or", "not", "<", "<=", "==", "!=", ">=", ">", "inf", "where",
    "true", "false", "int64", "float16", "(", ")", "[", "]", "{", "}", ",", ":", "=", "->", "|>",
    "+", "-", "*", "/", "**", "~", "?", "%", "#", "##", '"', "x", "d", "batch", "Linear",
    "softmax", "Conv", "relu", "einsum", "concat", "top_k", "positions", "Param", "self",
    "torch", "__import__", "os", "_channels_first", "forward", "training", "class", "lambda",
    "0", "-1", "1", "3", "0.5", "1e400", "1e-400", "99999999999999999999999", "1000000000000",
    "1099511627777", "2 ** 64", "1000000000", "δ", "\u00e9", "\u200b", "\t", "\n", "\r", "\\",
    '"a\\"b"', '"\\u0000"', "'", "`", "$", "@",
)
HOSTILE_NUMBERS = ("0", "-1", "1000000000", "1000000000000", "10000000000000000000000",
                   "1e400", "0.0", "1e-300", "2 ** 63", "9" * 120)


def mutate(text: str, ch: RandomChooser, rounds: int = 3) -> str:
    """A few random edits of `text`: truncation, deletion, duplication, token insertion or
    replacement, line swaps, hostile numbers and names."""
    for _ in range(ch.integer(1, rounds)):
        n = len(text)
        i = ch.integer(0, n)
        j = min(n, i + ch.integer(1, 24))
        kind = ch.integer(0, 8)
        if kind == 0:
            text = text[:i]
        elif kind == 1:
            text = text[:i] + text[j:]
        elif kind == 2:
            text = text[:j] + text[i:j] + text[j:]
        elif kind == 3:
            text = text[:i] + f" {ch.pick(TOKENS)} " + text[i:]
        elif kind == 4:
            words = list(re.finditer(r"\w+|[^\w\s]+", text))
            if words:
                m = ch.pick(words)
                text = text[: m.start()] + ch.pick(TOKENS) + text[m.end():]
        elif kind == 5:
            lines = text.split("\n")
            if len(lines) > 1:
                a, b = ch.integer(0, len(lines) - 1), ch.integer(0, len(lines) - 1)
                lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        elif kind == 6:
            nums = list(re.finditer(r"\b\d+(\.\d+)?\b", text))
            if nums:
                m = ch.pick(nums)
                text = text[: m.start()] + ch.pick(HOSTILE_NUMBERS) + text[m.end():]
        elif kind == 7:
            names = list(re.finditer(r"\b[A-Za-z_]\w*\b", text))
            if names:
                m = ch.pick(names)
                text = re.sub(rf"\b{m[0]}\b", ch.pick(TOKENS[:60]), text)
        else:
            text = text[:i] + "(" * ch.integer(1, 50) + text[i:j] + ")" * ch.integer(0, 50) + text[j:]
    return text


def mutate_bytes(data: bytes, ch: RandomChooser) -> bytes:
    """Byte-level damage: flipped bits, stray NULs, invalid UTF-8."""
    b = bytearray(data)
    for _ in range(ch.integer(1, 4)):
        if not b:
            b.append(ch.integer(0, 255))
            continue
        i = ch.integer(0, len(b) - 1)
        kind = ch.integer(0, 2)
        if kind == 0:
            b[i] ^= 1 << ch.integer(0, 7)
        elif kind == 1:
            b.insert(i, ch.pick([0x00, 0xFF, 0xC3, 0xE2, 0x80]))
        else:
            b[i:i] = ch.pick(["δ", "\u2028", "\ufeff", "😀"]).encode("utf-8")
    return bytes(b)

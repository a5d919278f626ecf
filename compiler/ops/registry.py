"""The op registry: the one place where each primitive's signature, shape rule, parameters
and their initialisation, cost and diagram glyph are defined. Ops themselves live in
the op families beside it (core, nn, fused); this module holds the machinery they register
with, and importing the `nncircuit.ops` package registers them all."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable

from nncircuit.errors import ShapeError
from nncircuit.types.sizes import Size
from nncircuit.types.tensor import FLOAT_DTYPES, Axis, HVal, TensorType

AttrValue = object  # int | float | bool | str | None | HVal | Axis | tuple of these


@dataclass(frozen=True)
class Attrs:
    """An op's attributes: a frozen, ordered mapping validated against the op's schema."""

    items: tuple[tuple[str, AttrValue], ...] = ()

    @staticmethod
    def of(mapping: dict) -> Attrs:
        return Attrs(tuple(sorted(mapping.items())))

    def __getitem__(self, key: str):
        for k, v in self.items:
            if k == key:
                return v
        raise KeyError(key)

    def get(self, key: str, default=None):
        for k, v in self.items:
            if k == key:
                return v
        return default

    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.items)

    def replace(self, **changes) -> Attrs:
        d = dict(self.items)
        d.update(changes)
        return Attrs.of(d)


@dataclass(frozen=True)
class AxisSpec:
    """An axis as a call site names it: its name and, where known, its size."""

    name: str
    size: HVal | None = None


@dataclass(frozen=True)
class OpCall:
    """Everything a call site gives an op, already evaluated."""

    op: str
    inputs: tuple[TensorType, ...]
    src: tuple[AxisSpec, ...] | None = None  # `src -> dst`
    dst: tuple[AxisSpec, ...] | None = None
    over: tuple[AxisSpec, ...] | None = None
    axes: tuple[AxisSpec, ...] | None = None  # a bare `[a, b]` argument
    positional: tuple[object, ...] = ()  # non-tensor positional args (HVal or AxisSpec)
    kwargs: tuple[tuple[str, object], ...] = ()

    def kw(self, name: str, default=None):
        for k, v in self.kwargs:
            if k == name:
                return v
        return default


@dataclass(frozen=True)
class ParamSpec:
    """A learned tensor (or buffer) an op owns; shape in PyTorch's layout."""

    name: str
    shape: tuple[HVal, ...]
    init: str  # "uniform_fan_in" | "normal" | "ones" | "zeros" | "normal:STD" | "kaiming_conv" | "constant:V"
    buffer: bool = False
    fan_in: int = 0

    @property
    def numel(self) -> int:
        return math.prod(int(s.value) for s in self.shape)


@dataclass(frozen=True)
class OpDef:
    name: str
    doc: str
    check: Callable[[OpCall], tuple[dict, tuple[TensorType, ...]]]
    arity: int | None  # tensor inputs; None: one or more
    learned: bool = False
    params: Callable[[Attrs, tuple[TensorType, ...]], tuple[ParamSpec, ...]] = lambda a, t: ()
    flops: Callable[[Attrs, tuple[TensorType, ...], tuple[TensorType, ...], dict], int] = (
        lambda a, i, o, env: 0
    )
    glyph: str = ""
    kwargs: tuple[str, ...] = ()  # accepted keyword arguments
    positional: tuple[str, ...] = ()  # kinds of non-tensor positional args: "axis" | "value"
    # {"map", "over", "axes", "scalars"}; "scalars": a positional argument may be a number
    # (it reaches the shape rule as the keyword `scalars`: (position, HVal) pairs)
    takes: frozenset[str] = field(default_factory=frozenset)
    example: str = ""
    # What passes, analysis and backends ask of an op instead of keeping lists of op names:
    # "random" (draws random numbers: never merged by CSE), "stateful" (updates state of its
    # own while training: never removed while its module lives), "view" (its result is a view
    # of its input or a parameter itself: no new activation memory).
    traits: frozenset[str] = field(default_factory=frozenset)
    # How a circuit diagram draws it (the conventions of neural circuit diagrams): "auto" (by
    # its wires: a box, a merge or a tag), "cup" (contraction), "circle" (normalisation),
    # "triangle" (softmax), "trapezoid" (convolution), "relabel" (a tick: renames only).
    figure: str = "auto"

    def __post_init__(self):
        unknown = sorted(self.traits - TRAITS)
        if unknown:
            raise ValueError(f"op {self.name!r}: unknown trait {unknown[0]!r}; traits: {', '.join(sorted(TRAITS))}")
        if self.figure not in FIGURES:
            raise ValueError(f"op {self.name!r}: unknown figure {self.figure!r}; figures: {', '.join(FIGURES)}")

    @property
    def is_random(self) -> bool:
        return "random" in self.traits

    @property
    def is_stateful(self) -> bool:
        return "stateful" in self.traits

    @property
    def is_view(self) -> bool:
        return "view" in self.traits


TRAITS = frozenset({"random", "stateful", "view"})
FIGURES = ("auto", "cup", "circle", "triangle", "trapezoid", "relabel")

REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} registered twice")
    REGISTRY[op.name] = op
    return op


def get(name: str) -> OpDef:
    return REGISTRY[name]


def all_ops() -> dict[str, OpDef]:
    return dict(sorted(REGISTRY.items()))


# ---- helpers the shape rules share -------------------------------------------------------


def fail(msg: str) -> ShapeError:
    return ShapeError(msg)


def require_float(op: str, t: TensorType):
    if t.dtype not in FLOAT_DTYPES:
        raise fail(f"{op} needs a floating-point tensor, found {t}")


def require_axis(op: str, t: TensorType, spec: AxisSpec) -> Axis:
    if not t.has(spec.name):
        raise fail(f"{op} expects an axis '{spec.name}' but the input is {t}")
    ax = t.axis(spec.name)
    if spec.size is not None and isinstance(spec.size.value, int):
        if not (ax.size.is_static and ax.size.value == spec.size.value):
            raise fail(
                f"{op}: axis '{spec.name}' has size {ax.size} in the input {t}, "
                f"but the call says {spec.size.value}"
            )
    return ax


def static_size(op: str, ax: Axis) -> int:
    if not ax.size.is_static:
        raise fail(f"{op} needs a fixed size for axis '{ax.name}', found the run-time size {ax.size}")
    return ax.size.value


def new_axis(op: str, spec: AxisSpec) -> Axis:
    if spec.size is None:
        raise fail(f"{op}: the size of the new axis '{spec.name}' is unknown; write '{spec.name}: SIZE'")
    v = spec.size.value
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise fail(f"{op}: axis '{spec.name}' needs a positive integer size, found {v!r}")
    return Axis(spec.name, Size.of(v), spec.size.expr)


def size_hval(ax: Axis, spec: AxisSpec | None) -> HVal:
    """The size of an existing axis as an HVal: the call's expression when it gave one."""
    if spec is not None and spec.size is not None:
        return spec.size
    return HVal(ax.size.value, ax.code) if ax.code else HVal.const(ax.size.value)


def product_hval(vals: tuple[HVal, ...]) -> HVal:
    if len(vals) == 1:
        return vals[0]
    value = math.prod(int(v.value) for v in vals)
    return HVal(value, " * ".join(f"({v.expr})" if " " in v.expr else v.expr for v in vals))


def replace_axes(t: TensorType, consumed: tuple[str, ...], produced: tuple[Axis, ...]) -> TensorType:
    """Drop `consumed`, put `produced` where the last consumed axis stood (so a map over
    trailing axes keeps them trailing, as nn.Linear does)."""
    pos = max(t.index(n) for n in consumed) if consumed else t.rank
    kept = [a for a in t.axes if a.name not in consumed]
    before = [a for a in t.axes[:pos] if a.name not in consumed]
    clash = {a.name for a in kept} & {a.name for a in produced}
    if clash:
        raise fail(f"new axis '{sorted(clash)[0]}' already exists in {t}; rename one of them")
    return t.with_axes(before + list(produced) + kept[len(before):])


def broadcast(op: str, a: TensorType, b: TensorType) -> TensorType:
    """Elementwise result type: axes matched by name. The layout follows the operand with
    more axes (the left one on a tie), the other's extra axes appended."""
    if b.rank > a.rank:
        return broadcast(op, b, a).with_dtype(a.dtype if a.dtype == b.dtype else _promote(a.dtype, b.dtype))
    axes = list(a.axes)
    for ax in b.axes:
        if a.has(ax.name):
            mine = a.axis(ax.name)
            if mine.size != ax.size and not (_is_one(mine.size) or _is_one(ax.size)):
                raise fail(
                    f"{op}: axis '{ax.name}' has size {mine.size} on the left ({a}) "
                    f"and {ax.size} on the right ({b})"
                )
            if _is_one(mine.size):
                axes[a.index(ax.name)] = ax
        else:
            axes.append(ax)
    dtype = a.dtype if a.dtype == b.dtype else _promote(a.dtype, b.dtype)
    return TensorType(tuple(axes), dtype)


def _is_one(s: Size) -> bool:
    return s.is_static and s.value == 1


def _promote(x: str, y: str) -> str:
    order = ["bool", "int32", "int64", "float16", "bfloat16", "float32", "float64"]
    return max(x, y, key=order.index)


def numel(t: TensorType, env: dict[str, int]) -> int:
    return math.prod(a.size.evaluate(env) for a in t.axes)


def over_names(op: str, call: OpCall, *, required=True) -> tuple[str, ...]:
    if call.over is None:
        if required:
            raise fail(f"{op} needs 'over AXIS' to say which axis it acts on")
        return ()
    return tuple(s.name for s in call.over)


def as_int(op: str, name: str, v, *, minimum=None) -> int:
    val = v.value if isinstance(v, HVal) else v
    if not isinstance(val, int) or isinstance(val, bool):
        raise fail(f"{op}: {name} must be an integer, found {val!r}")
    if minimum is not None and val < minimum:
        raise fail(f"{op}: {name} must be at least {minimum}, found {val}")
    return val


def as_float(op: str, name: str, v) -> float:
    val = v.value if isinstance(v, HVal) else v
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise fail(f"{op}: {name} must be a number, found {val!r}")
    return float(val)


def as_bool(op: str, name: str, v) -> bool:
    val = v.value if isinstance(v, HVal) else v
    if not isinstance(val, bool):
        raise fail(f"{op}: {name} must be true or false, found {val!r}")
    return val

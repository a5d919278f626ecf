"""The op registry: the one place where each primitive's signature, shape rule, parameters
and their initialisation, cost and diagram glyph are defined. Ops themselves live in
the op families beside it (core, nn, fused); this module holds the machinery they register
with, and importing the `nncircuit.ops` package registers them all."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable

from nncircuit.errors import InternalError, ShapeError, did_you_mean
from nncircuit.types import expr as X
from nncircuit.types.sizes import Size
from nncircuit.types.tensor import DTYPES, FLOAT_DTYPES, Axis, HVal, TensorType

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


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()  # an AttrSpec default: the shape rule always sets it

# What an attribute value may be (AttrSpec.kind), and the test a value must pass:
#   "int", "float" (a number, or an HVal keeping its hyperparameter expression), "bool",
#   "str", "axis" (the name of an axis), "axes" (a tuple of axis names), "axis_def" (an Axis:
#   a new axis with its size), "axis_defs" (a tuple of Axis), "hval" (an HVal), "hvals" (a
#   tuple of HVal), "init" (an Init), "dtype" (a dtype name), "names" (a tuple of other names,
#   e.g. modules), "any" (anything else; its doc says what).
ATTR_KINDS = frozenset({
    "int", "float", "bool", "str", "axis", "axes", "axis_def", "axis_defs", "hval", "hvals",
    "init", "dtype", "names", "any",
})


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _kind_test(kind: str) -> Callable[[object], bool]:
    def strs(v) -> bool:
        return isinstance(v, tuple) and all(isinstance(x, str) for x in v)

    tests: dict[str, Callable[[object], bool]] = {
        "int": _is_int,
        # an int is a number too (a rule may return its default as written), a bool is not
        "float": lambda v: isinstance(v, (float, HVal)) or _is_int(v),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "axis": lambda v: isinstance(v, str),
        "axes": strs,
        "names": strs,
        "axis_def": lambda v: isinstance(v, Axis),
        "axis_defs": lambda v: isinstance(v, tuple) and all(isinstance(x, Axis) for x in v),
        "hval": lambda v: isinstance(v, HVal),
        "hvals": lambda v: isinstance(v, tuple) and all(isinstance(x, HVal) for x in v),
        "init": lambda v: isinstance(v, Init),
        "dtype": lambda v: isinstance(v, str) and v in DTYPES,
        "any": lambda v: True,
    }
    return tests[kind]


# kinds whose values name axes (what an op's axis arguments are)
AXIS_KINDS = frozenset({"axis", "axes", "axis_def", "axis_defs"})


@dataclass(frozen=True)
class AttrSpec:
    """One attribute in an op's schema: its name, the kind of value it holds, its default
    (REQUIRED: the shape rule always sets it), whether None is allowed, and what it means."""

    name: str
    kind: str
    default: object = REQUIRED
    optional: bool = False
    doc: str = ""
    choices: tuple = ()  # the only values it may take, where it is one of a few

    def __post_init__(self):
        if self.kind not in ATTR_KINDS:
            raise ValueError(f"attribute {self.name!r}: unknown kind {self.kind!r}; kinds: {', '.join(sorted(ATTR_KINDS))}")
        if self.default is None and not self.optional:
            raise ValueError(f"attribute {self.name!r}: a default of None needs optional=True")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def accepts(self, value: object) -> bool:
        """Whether `value` is of this attribute's kind (None: where it is optional)."""
        if value is None:
            return self.optional
        if self.choices and value not in self.choices:
            return False
        return _kind_test(self.kind)(value)


class AttrError(InternalError):
    """An op's attributes disagree with its schema: a compiler bug, never a user's mistake."""


def validate_attrs(op: str, schema: tuple[AttrSpec, ...], given: Attrs | dict) -> Attrs:
    """`given` checked against `schema` (an unknown key, a value of the wrong kind or a
    missing required key is an AttrError naming the op and the attribute), with the
    defaults of the keys it leaves out filled in: every node's attributes are complete."""
    values = dict(given.items) if isinstance(given, Attrs) else dict(given)
    by_name = {s.name: s for s in schema}
    for key in values:
        if key not in by_name:
            known = ", ".join(by_name) or "none"
            raise AttrError(f"op {op}: unknown attribute {key!r} (its schema declares: {known})")
    out: dict[str, AttrValue] = {}
    for spec in schema:
        if spec.name in values:
            v = values[spec.name]
        elif spec.required:
            raise AttrError(f"op {op}: attribute {spec.name!r} ({spec.kind}) is required but missing")
        else:
            v = spec.default
        if not spec.accepts(v):
            what = "None" if v is None else f"{v!r} ({type(v).__name__})"
            kind = " or ".join(map(repr, spec.choices)) if spec.choices else spec.kind
            raise AttrError(f"op {op}: attribute {spec.name!r} must be {kind}"
                            f"{' or None' if spec.optional else ''}, found {what}")
        out[spec.name] = v
    done = Attrs.of(out)
    return given if isinstance(given, Attrs) and given == done else done


def hyper_refs(value: object) -> frozenset[str]:
    """The hyperparameters an attribute value's expressions reference (HVals, Inits, tuples)."""
    if isinstance(value, HVal):
        return frozenset(value.expr.refs())
    if isinstance(value, Init):
        return frozenset().union(*(hyper_refs(a) for a in value.args))
    if isinstance(value, tuple):
        return frozenset().union(*(hyper_refs(v) for v in value))
    return frozenset()


def axis_names(value: object) -> tuple[str, ...]:
    """The axis names in a value of an axis kind (AXIS_KINDS), nested tuples too."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Axis):
        return (value.name,)
    if isinstance(value, tuple):
        return tuple(n for v in value for n in axis_names(v))
    return ()


# A binary op applied to a tensor and a number (`x * 2`, `1 - x`) records the number and
# the side it stands on; applied to two tensors, both are None.
SCALAR_ATTRS = (
    AttrSpec("scalar", "hval", default=None, optional=True, doc="the number operand, if one side is a number"),
    AttrSpec("side", "str", default=None, optional=True, doc="where the number stands", choices=("left", "right")),
)


# The attributes of the structural nodes (not registry ops): a graph's inputs, block calls
# and repeats. compiler/ops/structural.py reads them with typed accessors.
STRUCTURAL_ATTRS: dict[str, tuple[AttrSpec, ...]] = {
    "input": (AttrSpec("name", "str", doc="the input's declared name"),),
    "call": (
        AttrSpec("block", "str", doc="the called block's name"),
        AttrSpec("args", "any", default=(), doc="the call's hyperparameter arguments: (name, HVal) pairs"),
        AttrSpec("lift", "axes", default=None, optional=True,
                 doc="the axes the call is lifted over, in its first input's order (None: not recorded)"),
    ),
    "repeat": (
        AttrSpec("count", "hval", doc="how many times the body runs"),
        AttrSpec("shared", "bool", default=False, doc="every iteration uses one set of parameters"),
        AttrSpec("carried", "int", doc="how many leading inputs are carried from one iteration to the next"),
        AttrSpec("axis", "axis", default=None, optional=True,
                 doc="`repeat ... over AXIS`: the axis sliced per iteration (None: no slices)"),
        AttrSpec("index", "bool", default=False, doc="the body takes the iteration index"),
        AttrSpec("scanned", "any", default=(), doc="input positions sliced per iteration (ints)"),
        AttrSpec("stack_at", "any", default=(), doc="where each emitted output's stacked axis stands (ints)"),
    ),
    "scan": (
        AttrSpec("axis", "axis", doc="the axis the scan steps along"),
        AttrSpec("reverse", "bool", default=False, doc="step from the last position to the first"),
        AttrSpec("carried", "int", doc="how many leading inputs are carried states"),
        AttrSpec("index", "bool", default=False, doc="the body takes the step index"),
        AttrSpec("scanned", "any", doc="input positions the body sees one slice of per step (ints)"),
        AttrSpec("stack_at", "any", doc="where each emitted output's stacked axis stands (ints)"),
    ),
}


def schema_of(op: str) -> tuple[AttrSpec, ...]:
    """The attribute schema of a registry op or a structural node kind."""
    if op in STRUCTURAL_ATTRS:
        return STRUCTURAL_ATTRS[op]
    if op not in REGISTRY:
        raise InternalError(f"unknown op {op!r}")
    schema = REGISTRY[op].attrs
    if schema is None:
        raise InternalError(f"op {op}: declare its attribute schema")
    return schema


def checked_attrs(op: str, given: Attrs | dict) -> Attrs:
    """`given` validated against the schema of `op` (see validate_attrs), defaults filled."""
    return validate_attrs(op, schema_of(op), given)


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


# How a parameter's initial values are drawn: the kind and the names of its arguments, in
# the order a spec gives them positionally (with their defaults; None: required).
INIT_KINDS: dict[str, tuple[tuple[str, float | None], ...]] = {
    "zeros": (),
    "ones": (),
    "constant": (("value", None),),
    "normal": (("std", 1.0), ("mean", 0.0)),
    "uniform": (("low", None), ("high", None)),  # uniform(b) is uniform(-b, b)
    "xavier_uniform": (("gain", 1.0),),
    "xavier_normal": (("gain", 1.0),),
    "kaiming_uniform": (("a", 0.0),),  # gain sqrt(2 / (1 + a²)), PyTorch's leaky_relu rule
    "kaiming_normal": (("a", 0.0),),
    "fan_in_uniform": (),  # uniform(±1/sqrt(fan_in)): PyTorch's Linear/Conv bias default
}
FAN_INITS = frozenset({"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"})
INIT_MODES = ("fan_in", "fan_out")


@dataclass(frozen=True)
class Init:
    """A parameter's initial distribution. `args` follow INIT_KINDS[kind] (all given, as
    HVals, so generated code keeps hyperparameter expressions); `mode` is the fan the
    kaiming kinds scale by."""

    kind: str
    args: tuple[HVal, ...] = ()
    mode: str = "fan_in"

    def __post_init__(self):
        if self.kind not in INIT_KINDS:
            raise ShapeError(f"unknown initialisation '{self.kind}'")
        if len(self.args) != len(INIT_KINDS[self.kind]):
            raise ShapeError(f"initialisation {self.kind} needs {len(INIT_KINDS[self.kind])} argument(s)")
        if self.mode not in INIT_MODES:
            raise ShapeError(f"initialisation mode must be fan_in or fan_out, found {self.mode!r}")

    def arg(self, name: str) -> float:
        names = [n for n, _ in INIT_KINDS[self.kind]]
        return float(self.args[names.index(name)].value)

    def __str__(self) -> str:
        parts = [a.expr.text() for a in self.args]
        if self.mode != "fan_in":
            parts.append(f"mode = {self.mode}")
        return f"{self.kind}({', '.join(parts)})" if parts else self.kind


def _num(v: float) -> HVal:
    return HVal.const(v)


ZEROS = Init("zeros")
ONES = Init("ones")
FAN_IN_UNIFORM = Init("fan_in_uniform")
# nn.Linear / nn.Conv weight: kaiming_uniform(a=sqrt(5)), i.e. uniform(±1/sqrt(fan_in))
TORCH_WEIGHT = Init("kaiming_uniform", (HVal(math.sqrt(5), X.call("sqrt", (X.Const(5),))),))
STD_NORMAL = Init("normal", (_num(1.0), _num(0.0)))


def parse_init(op: str, key: str, v, *, ndim: int) -> Init | None:
    """The Init a call's `init`/`bias_init` argument names (None when absent): a bare kind
    (`zeros`), a call of one (`normal(0.02)`, `kaiming_normal(mode = fan_out)`), or a string
    (`"zeros"`, as Param's older form). `ndim`: the rank of the parameter it applies to."""
    return None if v is None else init_of(op, key, v, ndim=ndim)


def init_of(op: str, key: str, v, *, ndim: int) -> Init:
    """The Init that the given `init`/`bias_init` argument `v` names (see parse_init)."""
    if isinstance(v, HVal) and isinstance(v.value, str):
        v = v.value
    pos: tuple[object, ...]
    kw: tuple[tuple[str, object], ...]
    if isinstance(v, str):
        kind, pos, kw = v, (), ()
    elif isinstance(v, OpCall) and v.src is None and v.over is None and v.axes is None:
        kind, pos, kw = v.op, v.positional, v.kwargs
    else:
        raise fail(f"{op}: {key} must name an initialisation, e.g. {key} = normal(0.02); found {v!r}")
    if kind not in INIT_KINDS:
        raise fail(
            f"{op}: unknown initialisation '{kind}' for {key}{did_you_mean(kind, tuple(INIT_KINDS))}; "
            f"known: {', '.join(sorted(INIT_KINDS))}"
        )
    spec = INIT_KINDS[kind]
    names = [n for n, _ in spec]
    given: dict[str, HVal] = {}
    if len(pos) > len(spec):
        raise fail(f"{op}: {kind} takes at most {len(spec)} argument(s) ({', '.join(names) or 'none'}), found {len(pos)}")
    for name, p in zip(names, pos):
        if not isinstance(p, HVal):
            raise fail(f"{op}: the argument '{name}' of {kind} must be a number")
        given[name] = p
    mode = "fan_in"
    for k, val in kw:
        if k == "mode" and kind.startswith("kaiming"):
            m = val.value if isinstance(val, HVal) else val
            if not isinstance(m, str) or m not in INIT_MODES:
                raise fail(f"{op}: mode of {kind} must be fan_in or fan_out, found {m!r}")
            mode = m
        elif k in names and k not in given and isinstance(val, HVal):
            given[k] = val
        else:
            raise fail(f"{op}: {kind} has no argument '{k}'" + (f"; it takes {', '.join(names)}" if names else ""))
    if kind == "uniform" and "low" in given and "high" not in given:  # uniform(b): ±b
        b = given["low"]
        given = {"low": HVal(-_number(op, kind, "low", b), X.neg(b.expr)), "high": b}
    args = []
    for name, default in spec:
        if name in given:
            _number(op, kind, name, given[name])
            args.append(given[name])
        elif default is None:
            raise fail(f"{op}: {kind} needs its argument '{name}', e.g. {key} = {kind}(0.1)")
        else:
            args.append(_num(default))
    init = Init(kind, tuple(args), mode)
    if kind in ("normal",) and init.arg("std") < 0:
        raise fail(f"{op}: the std of {key} must not be negative, found {init.arg('std')}")
    if kind == "uniform" and init.arg("low") > init.arg("high"):
        raise fail(f"{op}: uniform needs low <= high, found {init.arg('low')} > {init.arg('high')}")
    if kind in FAN_INITS and ndim < 2:
        raise fail(f"{op}: {kind} needs a parameter of at least two axes (it scales by fan-in/out); "
                   f"{key} applies to one of {ndim}")
    return init


def _number(op: str, kind: str, name: str, v: HVal) -> float:
    if isinstance(v.value, bool) or not isinstance(v.value, (int, float)):
        raise fail(f"{op}: the argument '{name}' of {kind} must be a number, found {v.value!r}")
    if not math.isfinite(float(v.value)):
        raise fail(f"{op}: the argument '{name}' of {kind} must be finite")
    return float(v.value)


@dataclass(frozen=True)
class ParamSpec:
    """A learned tensor (or buffer) an op owns; shape in PyTorch's layout. `init` is its
    initial distribution; `explicit` says the spec chose it (the torch backend emits code
    for those; the others are what the torch module's constructor does already). A dotted
    name is another module of the block (`q.weight` of a fused op) unless `inside`: then it
    is a path inside the op's own module (`gate.weight` of MoE)."""

    name: str
    shape: tuple[HVal, ...]
    init: Init
    buffer: bool = False
    fan_in: int = 0
    explicit: bool = False
    inside: bool = False

    def __post_init__(self):
        if not isinstance(self.init, Init):
            raise TypeError(f"ParamSpec {self.name}: init must be an Init, found {self.init!r}")

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
    # of its input or a parameter itself: no new activation memory), "commutative" (its two
    # operands may be swapped: a diagram takes each from the side it arrives on), "built"
    # (computed once when the module is built, from inputs that read no model input: a Buffer).
    traits: frozenset[str] = field(default_factory=frozenset)
    # How a circuit diagram draws it (the conventions of neural circuit diagrams): "auto" (by
    # its wires: a box, a merge or a tag), "cup" (contraction), "circle" (normalisation),
    # "triangle" (softmax), "trapezoid" (convolution), "relabel" (a tick: renames only),
    # "router" (a mixture of experts: router, top-k, the expert stack, the weighted sum).
    figure: str = "auto"
    # The attribute schema: every key the shape rule may return, its kind and default. A node's
    # attributes are checked against it and completed with its defaults when the node is built
    # and when its graph is verified. `register` refuses an op without one (None); () for none.
    attrs: tuple[AttrSpec, ...] | None = None
    # What a diagram writes, read off the attributes ("" for nothing): `label` in place of the
    # glyph's text (an index: `[seq = 0]`), `note` on the line under it (a window: `3×3 /2`).
    label: Callable[[Attrs], str] = lambda a: ""
    note: Callable[[Attrs], str] = lambda a: ""
    # The module whose parameter the op uses instead of owning one (Linear's `tied = E`), or None.
    ties: Callable[[Attrs], str | None] = lambda a: None
    # The shape, in PyTorch's layout, of the weight it takes from that module.
    tied_shape: Callable[[Attrs], tuple[HVal, ...]] = lambda a: ()
    # The axes the op's attributes name (None: those of the attributes of an axis kind).
    axis_args: Callable[[Attrs], tuple[str, ...]] | None = None

    def __post_init__(self):
        unknown = sorted(self.traits - TRAITS)
        if unknown:
            raise ValueError(f"op {self.name!r}: unknown trait {unknown[0]!r}; traits: {', '.join(sorted(TRAITS))}")
        if self.figure not in FIGURES:
            raise ValueError(f"op {self.name!r}: unknown figure {self.figure!r}; figures: {', '.join(FIGURES)}")
        if self.attrs is not None:
            names = [a.name for a in self.attrs]
            if len(set(names)) != len(names):
                raise ValueError(f"op {self.name!r}: an attribute declared twice in {names}")

    def make_attrs(self, given: Attrs | dict) -> Attrs:
        """`given` checked against the schema, defaults filled (see validate_attrs)."""
        if self.attrs is None:
            raise InternalError(f"op {self.name}: declare its attribute schema")
        return validate_attrs(self.name, self.attrs, given)

    def _values(self, attrs: Attrs, kinds: frozenset[str] | None = None) -> list[object]:
        return [attrs[s.name] for s in self.attrs or () if kinds is None or s.kind in kinds]

    def hyper_refs(self, attrs: Attrs) -> frozenset[str]:
        """The hyperparameters the attributes' expressions reference (sizes, scalars, inits)."""
        return frozenset().union(*(hyper_refs(v) for v in self._values(attrs)))

    def axes_named(self, attrs: Attrs) -> tuple[str, ...]:
        """The axes the attributes name: the op's axis arguments and the axes it makes."""
        if self.axis_args is not None:
            return self.axis_args(attrs)
        return tuple(n for v in self._values(attrs, AXIS_KINDS) for n in axis_names(v))

    def scalar_operand(self, attrs: Attrs) -> tuple[HVal, str] | None:
        """(the number, "left" or "right") for a binary op applied to a tensor and a number
        (`x * 2`, `1 - x`), None for one applied to two tensors or an op without one."""
        if not any(s.name == "scalar" for s in self.attrs or ()):
            return None
        value, side = attrs["scalar"], attrs["side"]
        if not isinstance(value, HVal) or side not in ("left", "right"):
            return None
        return value, side

    @property
    def is_random(self) -> bool:
        return "random" in self.traits

    @property
    def is_stateful(self) -> bool:
        return "stateful" in self.traits

    @property
    def is_built(self) -> bool:
        return "built" in self.traits

    @property
    def is_view(self) -> bool:
        return "view" in self.traits

    @property
    def is_commutative(self) -> bool:
        return "commutative" in self.traits


TRAITS = frozenset({"random", "stateful", "view", "commutative", "built"})
FIGURES = ("auto", "cup", "circle", "triangle", "trapezoid", "relabel", "router")

REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.attrs is None:
        raise ValueError(
            f"op {op.name}: declare its attribute schema: attrs=(AttrSpec(name, kind, ...), ...), "
            "or attrs=() for an op without attributes (see docs/architecture.md, 'Adding an op')"
        )
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
    code = ax.size_code()
    if spec.size is not None and ax.size.is_static and code is not None:
        X.note(X.binop("==", code, spec.size.expr), f"{op}: axis '{spec.name}' has size ",
               ("e", code), " in the input ", *type_pieces(t), ", but the call says ",
               ("e", spec.size.expr))
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


def new_size(op: str, spec: AxisSpec) -> HVal:
    """The size a call gives a new axis (`name: SIZE`)."""
    if spec.size is None:
        raise fail(f"{op}: the size of the new axis '{spec.name}' is unknown; write '{spec.name}: SIZE'")
    return spec.size


def new_axis(op: str, spec: AxisSpec) -> Axis:
    size = new_size(op, spec)
    v = size.value
    for cond in (X.Call("is_int", (size.expr,)), X.binop(">=", size.expr, X.Const(1))):
        X.note(cond, f"{op}: axis '{spec.name}' needs a positive integer size, found ", ("r", size.expr))
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise fail(f"{op}: axis '{spec.name}' needs a positive integer size, found {v!r}")
    return Axis(spec.name, Size.of(v), size.expr)


def size_hval(ax: Axis, spec: AxisSpec | None) -> HVal:
    """The size of an existing axis as an HVal: the call's expression when it gave one."""
    if spec is not None and spec.size is not None:
        return spec.size
    return HVal(ax.size.value, ax.code) if ax.code is not None else HVal.const(ax.size.value)


def product_hval(vals: tuple[HVal, ...]) -> HVal:
    if len(vals) == 1:
        return vals[0]
    value = math.prod(int(v.value) for v in vals)
    return HVal(value, X.product(v.expr for v in vals))


def sum_code(axes) -> X.Expr | None:
    """The size expression of axes laid end to end (a concat), None if one is run-time."""
    codes = [a.size_code() for a in axes]
    if any(c is None for c in codes):
        return None
    out = codes[0]
    for c in codes[1:]:
        out = X.binop("+", out, c)
    return out


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


def broadcast(op: str, a: TensorType, b: TensorType, *, outer: bool = True, explicit: str = "") -> TensorType:
    """Elementwise result type: axes matched by name. The layout follows the operand with
    more axes (the left one on a tie), the other's extra axes appended. Unless `outer`, the
    axes of one side must include the other's (a bias, a position table): each side with
    an axis the other lacks is refused, `explicit` saying how to write it on purpose."""
    if not outer:
        mine = [x.name for x in a.axes if not b.has(x.name)]
        theirs = [x.name for x in b.axes if not a.has(x.name)]
        if mine and theirs:
            raise fail(
                f"{op}: each side has an axis the other lacks ({a} has {', '.join(mine)}; {b} "
                f"has {', '.join(theirs)}), which would broadcast both into every combination"
                + (f"; if that outer broadcast is meant, write {explicit}" if explicit else "")
            )
    if b.rank > a.rank:
        return broadcast(op, b, a).with_dtype(a.dtype if a.dtype == b.dtype else _promote(a.dtype, b.dtype))
    axes = list(a.axes)
    for ax in b.axes:
        if a.has(ax.name):
            left = a.axis(ax.name)
            x, y = left.size_code(), ax.size_code()
            if x is not None and y is not None and x != y:
                one = X.Const(1)
                X.note(
                    X.binop("or", X.binop("or", X.binop("==", x, y), X.binop("==", x, one)), X.binop("==", y, one)),
                    f"{op}: axis '{ax.name}' has size ", ("e", x), " on the left (", *type_pieces(a),
                    ") and ", ("e", y), " on the right (", *type_pieces(b), ")",
                )
            if left.size != ax.size and not (_is_one(left.size) or _is_one(ax.size)):
                raise fail(
                    f"{op}: axis '{ax.name}' has size {left.size} on the left ({a}) "
                    f"and {ax.size} on the right ({b})"
                )
            if _is_one(left.size):
                axes[a.index(ax.name)] = ax
        else:
            axes.append(ax)
    dtype = a.dtype if a.dtype == b.dtype else _promote(a.dtype, b.dtype)
    return TensorType(tuple(axes), dtype)


def type_pieces(t: TensorType) -> list:
    """str(t) as message pieces: static sizes as their expressions."""
    out: list = ["["]
    for i, a in enumerate(t.axes):
        if i:
            out.append(", ")
        code = a.size_code()
        if code is None:
            out.append(str(a))
        else:
            out += [f"{a.name}: ", ("e", code)]
    out.append("]" + ("" if t.dtype == "float32" else f" {t.dtype}"))
    return out


def _is_one(s: Size) -> bool:
    return s.is_static and s.value == 1


def _promote(x: str, y: str) -> str:
    order = ["bool", "int32", "int64", "float16", "bfloat16", "float32", "float64"]
    return max(x, y, key=order.index)


def numel(t: TensorType, env: dict[str, int]) -> int:
    return math.prod(a.size.evaluate(env) for a in t.axes)


def over_specs(op: str, call: OpCall) -> tuple[AxisSpec, ...]:
    """The axes of the call's `over`, which the op requires."""
    if call.over is None:
        raise fail(f"{op} needs 'over AXIS' to say which axis it acts on")
    return call.over


def positional_axes(op: str, call: OpCall) -> tuple[AxisSpec, ...]:
    """The call's positional arguments, for an op that takes axis names that way."""
    out = []
    for p in call.positional:
        if not isinstance(p, AxisSpec):
            raise fail(f"{op} expects axis names as its positional arguments, found {p}")
        out.append(p)
    return tuple(out)


def over_names(op: str, call: OpCall, *, required=True) -> tuple[str, ...]:
    if call.over is None:
        if required:
            raise fail(f"{op} needs 'over AXIS' to say which axis it acts on")
        return ()
    return tuple(s.name for s in call.over)


def as_int(op: str, name: str, v, *, minimum=None) -> int:
    val = v.value if isinstance(v, HVal) else v
    if isinstance(v, HVal):
        X.note(X.Call("is_int", (v.expr,)), f"{op}: {name} must be an integer, found ", ("r", v.expr))
    if minimum is not None and isinstance(v, HVal):
        X.note(X.binop(">=", v.expr, X.Const(minimum)), f"{op}: {name} must be at least {minimum}, found ", ("e", v.expr))
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


def float_attr(op: str, name: str, v):
    """A float argument: a float where it is a constant, else an HVal that keeps the
    hyperparameter expression (generated code must not bake it)."""
    val = as_float(op, name, v)
    if isinstance(v, HVal) and not v.is_const:
        return HVal(val, v.expr)
    return val


def as_bool(op: str, name: str, v) -> bool:
    """A true/false argument. One given by a hyperparameter (`bias = use_bias`) chooses the
    structure, as an `if` does: a generated class keeps the choice it was compiled with and
    its constructor refuses a value that would flip it (a check noted here)."""
    val = v.value if isinstance(v, HVal) else v
    if not isinstance(val, bool):
        raise fail(f"{op}: {name} must be true or false, found {val!r}")
    if isinstance(v, HVal) and not v.is_const:
        X.note(v.expr if val else X.binop("==", v.expr, X.Const(False)),
               f"{op}: `{name} = {v.expr.text()}` was compiled for it being {str(val).lower()}: the "
               "structure of a compiled module is fixed, so compile the spec again for these "
               "hyperparameters (nnc compile -p NAME=VALUE)")
    return val

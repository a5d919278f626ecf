"""The syntax tree of a .nn file: frozen dataclasses, each with the span it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from nncircuit.errors import Span


@dataclass(frozen=True)
class Node:
    span: Span = field(compare=False, repr=False)


# ---- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Number(Node):
    value: int | float


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class Bool(Node):
    value: bool


@dataclass(frozen=True)
class NoneLit(Node):
    """`none`: a hyperparameter left unset (Python's None)."""


@dataclass(frozen=True)
class IfExpr(Node):
    """`a if cond else b`: static, the condition reads hyperparameters."""

    then: Expr
    cond: Expr
    orelse: Expr


@dataclass(frozen=True)
class Subscript(Node):
    """`depths[i]`: an item of a tuple-valued hyperparameter."""

    operand: Expr
    index: Expr


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / ** |> < <= > >= == != and or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg(Node):
    operand: Expr


@dataclass(frozen=True)
class Not(Node):
    operand: Expr


@dataclass(frozen=True)
class Tuple(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Rename(Node):
    operand: Expr
    old: str
    new: str


@dataclass(frozen=True)
class Index(Node):
    operand: Expr
    axis: str
    index: Expr


@dataclass(frozen=True)
class Slice(Node):
    """`x[c = a:b]`: positions a up to b of an axis, either end open (None)."""

    operand: Expr
    axis: str
    start: Expr | None
    stop: Expr | None


@dataclass(frozen=True)
class AxisRef(Node):
    """An axis named in an argument: `d`, or `c: 64` to give its size."""

    name: str
    size: Expr | None


@dataclass(frozen=True)
class PosArg(Node):
    value: Expr


@dataclass(frozen=True)
class KwArg(Node):
    name: str
    value: Expr


@dataclass(frozen=True)
class MapArg(Node):
    """`src -> dst`: the axes an operation consumes and the ones it produces."""

    src: tuple[AxisRef, ...]
    dst: tuple[AxisRef, ...]
    operand: Expr | None = None  # `f(x) -> [i, j]`: an einsum operand that is no bare name (src is ())


@dataclass(frozen=True)
class OverArg(Node):
    axes: tuple[AxisRef, ...]


@dataclass(frozen=True)
class AxesArg(Node):
    axes: tuple[AxisRef, ...]


Arg = PosArg | KwArg | MapArg | OverArg | AxesArg


@dataclass(frozen=True)
class Call(Node):
    func: Expr
    args: tuple[Arg, ...]


Expr = Name | Number | String | Bool | NoneLit | IfExpr | Subscript | BinOp | Neg | Not | Tuple | Rename | Index | Slice | Call


# ---- declarations and statements ---------------------------------------------------------


@dataclass(frozen=True)
class SizeDecl(Node):
    expr: Expr | None  # None: `?`, a run-time size of this input's own
    dynamic: bool  # `~224`: known only at run time; 224 is its typical size
    multiple: Expr | None  # `~224 % 16`: the size is a multiple of 16
    same: str | None = None  # `nbr: =node`: the size of the axis `node` (expr is None)


@dataclass(frozen=True)
class AxisDecl(Node):
    name: str
    size: SizeDecl | None


@dataclass(frozen=True)
class TensorTypeDecl(Node):
    axes: tuple[AxisDecl, ...]
    dtype: str


@dataclass(frozen=True)
class InItem(Node):
    name: str
    type: TensorTypeDecl


@dataclass(frozen=True)
class InDecl(Node):
    items: tuple[InItem, ...]


@dataclass(frozen=True)
class OutItem(Node):
    name: str | None
    value: Expr


@dataclass(frozen=True)
class OutStmt(Node):
    items: tuple[OutItem, ...]


@dataclass(frozen=True)
class Assign(Node):
    targets: tuple[str, ...]
    value: Expr


@dataclass(frozen=True)
class Repeat(Node):
    count: Expr
    shared: bool
    name: str | None
    body: tuple[Stmt, ...]
    index: str | None = None  # `as h, i`: the iteration index
    axis: str | None = None  # `over layer`: sliced per iteration, emitted values stacked along it


@dataclass(frozen=True)
class CheckpointRule(Node):
    """`"c_attn" = concat("q", "k", "v")`: a reference state_dict path (a pattern; `*` is
    one path component) and how this model's tensors make it up."""

    ref: str
    value: Expr


@dataclass(frozen=True)
class Checkpoint(Node):
    rules: tuple[CheckpointRule, ...]


@dataclass(frozen=True)
class If(Node):
    """`if COND { ... } else { ... }`: resolved at elaboration (COND reads hyperparameters)."""

    cond: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]  # `else if` is an If here


@dataclass(frozen=True)
class For(Node):
    """`for (a, b) in [(1, 2), (3, 4)] { ... }`: unrolled at elaboration, one pass per row."""

    targets: tuple[str, ...]
    items: tuple[Expr, ...]
    body: tuple[Stmt, ...]
    unpack: bool  # `for (a, b)`: each row is a tuple of len(targets)
    source: Expr | None = None  # `for i in range(n)`, `for d in depths`: rows from an expression (items empty)


@dataclass(frozen=True)
class Scan(Node):
    """`scan AXIS [reverse [= COND]] [as t] { body }`: the body runs once per position of AXIS."""

    axis: str
    reverse: bool
    index: str | None  # the name the step index is bound to
    body: tuple[Stmt, ...]
    reverse_when: Expr | None = None  # `reverse = COND`: the direction from hyperparameters


@dataclass(frozen=True)
class Emit(Node):
    """`emit y = EXPR` in a scan body: y after the scan stacks one value per step."""

    name: str
    value: Expr


Stmt = InDecl | OutStmt | Assign | Repeat | Scan | Emit | Checkpoint | If | For


@dataclass(frozen=True)
class Param(Node):
    name: str
    default: Expr | None


@dataclass(frozen=True)
class AxisParam(Node):
    """`axis dh` among a block's parameters: an axis the caller names (`B(dh = rope)`)."""

    name: str


@dataclass(frozen=True)
class BlockDef(Node):
    kind: str  # "block" or "model"
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    doc: str
    axis_params: tuple[str, ...] = ()  # `axis dh` parameters, in order


@dataclass(frozen=True)
class Import(Node):
    path: str
    names: tuple[str, ...] | None  # None: every block of the file


@dataclass(frozen=True)
class Module(Node):
    file: str
    imports: tuple[Import, ...]
    blocks: tuple[BlockDef, ...]

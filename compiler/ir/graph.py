"""The IR: one `Graph` per block instance, over a small adjacency (ir.digraph;
`Graph.to_networkx()` gives the networkx view). Nodes are registry ops, `input`s, `call`s
of another block's graph (lifted over extra axes), and `repeat`s of a body graph. The graph keeps its own use lists; passes go through this API only."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from nncircuit.ir.checkpoint import CkSection
from nncircuit.ir.digraph import Digraph
from nncircuit.ops import registry, structural
from nncircuit.errors import InternalError, NNError, ShapeError, Span
from nncircuit.types.expr import Expr, const, dependent
from nncircuit.ops.registry import Attrs, OpCall
from nncircuit.types.sizes import Dim, Size
from nncircuit.types.tensor import Axis, HVal, TensorType

STRUCTURAL = ("input", "call", "repeat", "scan")


@dataclass(frozen=True, order=True)
class Value:
    """Output `index` of node `node`."""

    node: int
    index: int = 0


@dataclass(frozen=True)
class HyperParam:
    name: str
    value: HVal  # the value bound in this instance
    default: Expr | None  # expression of the default, over earlier hyperparameters


@dataclass(eq=False)
class Node:
    """A node of the IR. Its kind is its class, chosen by `Graph.add` from the op name:
    `InputNode` ("input"), `CallNode` ("call"), `LoopNode` ("repeat") or `OpNode` (a
    registry op). The two kinds with a body graph share `BodyNode`; narrow with isinstance."""

    id: int
    op: str
    inputs: tuple[Value, ...]
    call: OpCall | None  # what the call site said (registry ops); re-checked by verify()
    attrs: Attrs
    types: tuple[TensorType, ...]
    name: str  # unique in its graph: scope segment, ONNX node name, diagram box id
    module: str | None = None  # owner of the parameters (shared by applications of one instance)
    span: Span | None = None
    doc: str = ""

    @property
    def owner(self) -> str:
        """The module that owns this node's parameters (an error for a node with none)."""
        if self.module is None:
            raise InternalError(f"node {self.name} ({self.op}) belongs to no module")
        return self.module

    @property
    def type(self) -> TensorType:
        if len(self.types) != 1:
            raise InternalError(f"node {self.name} has {len(self.types)} outputs")
        return self.types[0]

    def out(self, i: int = 0) -> Value:
        return Value(self.id, i)


@dataclass(eq=False)
class OpNode(Node):
    """An application of a registry op (`op` is its name)."""


@dataclass(eq=False)
class InputNode(Node):
    """An input of its graph (`input_name` is the declared name)."""

    @property
    def input_name(self) -> str:
        return structural.input_name(self.attrs)


@dataclass(eq=False)
class BodyNode(Node):
    """A node that runs another graph: a block call or a repeat."""

    callee: Graph = field(kw_only=True)


@dataclass(eq=False)
class CallNode(BodyNode):
    """A call of another block instance's graph, lifted over the extra axes of its inputs."""

    @property
    def block(self) -> str:
        """The called block's name."""
        return structural.call_block(self.attrs)

    @property
    def args(self) -> tuple[tuple[str, HVal], ...]:
        """The hyperparameter arguments, (name, value), as the call gives them."""
        return structural.call_args(self.attrs)

    @property
    def lift(self) -> tuple[str, ...]:
        """The axes the call is lifted over (as recorded; () where none is)."""
        return structural.call_lift(self.attrs) or ()

    @property
    def recorded_lift(self) -> tuple[str, ...] | None:
        """The lift as recorded (None: not recorded, as a parsed call may leave it)."""
        return structural.call_lift(self.attrs)


@dataclass(eq=False)
class SteppedNode(BodyNode):
    """What a repeat and a scan share: carried values first among the inputs, an optional
    step index for the body, inputs seen one slice per step, per-step values stacked."""

    @property
    def carried(self) -> int:
        """How many leading inputs are carried from one iteration to the next."""
        return structural.repeat_carried(self.attrs)

    @property
    def has_index(self) -> bool:
        return structural.loop_index(self.attrs)

    @property
    def scanned(self) -> tuple[int, ...]:
        return structural.loop_scanned(self.attrs)

    @property
    def stack_at(self) -> tuple[int, ...]:
        return structural.loop_stack_at(self.attrs)


@dataclass(eq=False)
class LoopNode(SteppedNode):
    """A `repeat` of a body graph, `count` times."""

    @property
    def count(self) -> HVal:
        return structural.repeat_count(self.attrs)

    @property
    def shared(self) -> bool:
        """Every iteration uses one set of parameters."""
        return structural.repeat_shared(self.attrs)

    @property
    def axis(self) -> str | None:
        """`repeat ... over AXIS`: the axis its inputs are sliced along (None: no slices)."""
        return structural.loop_axis(self.attrs)

    @property
    def sliced(self) -> bool:
        """Whether it binds the iteration index, slices inputs or stacks per-iteration values
        (`repeat N as h, i over AXIS`): the loop the backends write out iteration by iteration."""
        return self.axis is not None or self.has_index or bool(self.scanned) or bool(self.stack_at)


@dataclass(eq=False)
class ScanNode(SteppedNode):
    """A `scan` of a body graph over the named axis `axis`, one step per position.

    Inputs: the `carried` initial states, then the outer values the body reads; those named
    in `scanned` (input positions) carry the axis and the body sees one slice per step.
    The body's inputs are the carried states, the step index when `has_index` (an int64
    scalar), then one per further input. Its outputs are the carried states' new values,
    then the emitted values; the node's outputs are the final states, then each emitted
    value stacked along the axis at position `stack_at[i]`."""

    @property
    def axis(self) -> str:
        return structural.loop_axis(self.attrs) or ""

    @property
    def reverse(self) -> bool:
        return structural.loop_reverse(self.attrs)


@dataclass(eq=False)
class Graph:
    name: str  # the block definition's name (or Parent.repeat_name for repeat bodies)
    kind: str  # "model" | "block" | "repeat"
    hyper: tuple[HyperParam, ...] = ()
    span: Span | None = None
    doc: str = ""
    file: str = ""
    inputs: list[int] = field(default_factory=list)
    outputs: list[tuple[str, Value]] = field(default_factory=list)
    dims: dict[str, int] = field(default_factory=dict)  # dynamic axis -> typical size
    # hyperparameter-dependent conditions the checker required (types.expr.Check), in order
    checks: list = field(default_factory=list)
    # a model's checkpoint section (ir.checkpoint.CkSection), or None
    checkpoint: CkSection | None = None
    _g: Digraph[Node] = field(default_factory=Digraph, repr=False)
    _ids: itertools.count = field(default_factory=itertools.count, repr=False)
    # nodes() in order, until the next mutation: passes and backends walk block instances
    # once per call site, which is exponential in the nesting of blocks that call blocks
    _order: list[int] | None = field(default=None, repr=False)
    _names: set[str] | None = field(default=None, repr=False)  # for fresh_name
    _free: dict[str, int] = field(default_factory=dict, repr=False)
    _checked: dict = field(default_factory=dict, repr=False)  # see verify(incremental=True)

    # ---- construction
    def add(
        self,
        op: str,
        inputs=(),
        *,
        call: OpCall | None = None,
        attrs: Attrs | dict | None = None,
        types=(),
        name: str,
        module: str | None = None,
        span: Span | None = None,
        callee: Graph | None = None,
        doc: str = "",
    ) -> Node:
        inputs = tuple(inputs)
        for v in inputs:
            self._check_value(v)
        inferred = op not in STRUCTURAL and call is not None and attrs is None
        nid = next(self._ids)
        fields = (nid, op, inputs, call, Attrs(), tuple(types), name, module, span, doc)
        node: Node
        if op in ("call", "repeat", "scan"):
            if callee is None:
                raise InternalError(f"{op} node {name} has no callee")
            kind = {"call": CallNode, "repeat": LoopNode, "scan": ScanNode}[op]
            node = kind(*fields, callee=callee)
        else:
            if callee is not None:
                raise InternalError(f"{op} node {name} cannot have a callee")
            node = InputNode(*fields) if op == "input" else OpNode(*fields)
        # the one place a node's attributes are checked against its op's schema and completed
        # with its defaults (infer() does it for the attributes a shape rule returns)
        if inferred:
            node.attrs, node.types = infer(node, [self.type_of(v) for v in inputs])
        else:
            node.attrs = registry.checked_attrs(op, attrs or {})
        self._order = None
        if self._names is not None:
            self._names.add(name)
        self._g.add_node(nid, node)
        for pos, v in enumerate(inputs):
            self._g.add_edge(v.node, nid, pos, v.index)
        return node

    def add_body(self, op: str, inputs=(), *, callee: Graph, **kw) -> BodyNode:
        """Add a "call" or "repeat" node running `callee`; `kw` as for `add`."""
        node = self.add(op, inputs, callee=callee, **kw)
        if not isinstance(node, BodyNode):
            raise InternalError(f"{op} node {node.name} does not run a body graph")
        return node

    def add_op(self, call: OpCall, inputs, *, name: str, module=None, span=None) -> Node:
        """Add a registry op; its attributes and output types come from the op's shape rule."""
        return self.add(call.op, inputs, call=call, name=name, module=module, span=span)

    # ---- queries
    def node(self, nid: int) -> Node:
        return self._g.data[nid]

    def input_node(self, nid: int) -> InputNode:
        """The input node `nid` (one of `inputs`)."""
        node = self.node(nid)
        if not isinstance(node, InputNode):
            raise InternalError(f"graph {self.name}: node {node.name} is not an input")
        return node

    def input_names(self) -> list[str]:
        """The declared names of the inputs, in order."""
        return [self.input_node(i).input_name for i in self.inputs]

    def nodes(self) -> list[Node]:
        """All nodes in a deterministic topological order (ties broken by creation order)."""
        if self._order is None or len(self._order) != len(self._g):
            self._order = self._g.topological_order()
        return [self.node(n) for n in self._order]

    def __len__(self) -> int:
        return len(self._g)

    def to_networkx(self):
        """This graph as a networkx MultiDiGraph, for analyses that want networkx's
        algorithms: node attribute `node` (the Node), edge key the input position, edge
        attribute `out` the output index."""
        return self._g.to_networkx()

    def type_of(self, v: Value) -> TensorType:
        return self.node(v.node).types[v.index]

    def users(self, v: Value) -> list[tuple[Node, int]]:
        """(user node, input position) for every use of v, in a stable order."""
        out = []
        for dst, pos, index in self._g.uses(v.node):
            if index == v.index:
                out.append((self.node(dst), pos))
        out.sort(key=lambda p: (p[0].id, p[1]))
        return out

    def is_output(self, v: Value) -> bool:
        return any(o == v for _, o in self.outputs)

    # ---- mutation
    def replace_all_uses(self, old: Value, new: Value) -> None:
        if old == new:
            return
        self._check_value(new)
        for user, pos in self.users(old):
            self._set_input(user, pos, new)
        self.outputs = [(n, new if v == old else v) for n, v in self.outputs]

    def _set_input(self, node: Node, pos: int, new: Value) -> None:
        self._order = None
        self._g.remove_edge(node.inputs[pos].node, node.id, pos)
        ins = list(node.inputs)
        ins[pos] = new
        node.inputs = tuple(ins)
        self._g.add_edge(new.node, node.id, pos, new.index)

    def erase(self, node: Node) -> None:
        if self._g.out_degree(node.id):
            raise InternalError(f"erasing node {node.name} which still has users")
        if any(v.node == node.id for _, v in self.outputs):
            raise InternalError(f"erasing node {node.name} which is a graph output")
        if node.id in self.inputs:
            raise InternalError(f"erasing input {node.name}")
        self._order = None
        self._names = None
        self._g.remove_node(node.id)

    def _check_value(self, v: Value) -> None:
        if v.node not in self._g:
            raise InternalError(f"value {v} refers to a node not in graph {self.name}")
        if not 0 <= v.index < len(self.node(v.node).types):
            raise InternalError(f"value {v} refers to a missing output")

    def fresh_name(self, base: str) -> str:
        # The taken names and, per base, the lowest suffix that may be free are kept between
        # calls: a body of n statements named from one base was O(n**2) to elaborate.
        if self._names is None:
            self._names = {self.node(n).name for n in self._g.data}
            self._free = {}
        if base not in self._names:
            return base
        for i in itertools.count(self._free.get(base, 1)):
            if f"{base}_{i}" not in self._names:
                self._free[base] = i
                return f"{base}_{i}"
        raise InternalError("unreachable")

    # ---- checking
    def verify(self, _done: set | None = None, *, incremental: bool = False) -> None:
        """Check structure (edges, order, names) and re-derive every type. `incremental`
        skips re-deriving the types of a node whose op, attributes, input types, result
        types (and callee interface) are the very objects a previous verify derived them
        from: all are immutable, so the rule would give the same answer."""
        # a block instance called from many places is checked once (else: exponential time)
        done = set() if _done is None else _done
        if self in done:
            return
        done.add(self)
        checked = self._checked
        if not incremental and not self._g.is_acyclic():
            raise InternalError(f"graph {self.name} has a cycle")
        names: dict[str, int] = {}
        before: set[int] = set()
        for node in self.nodes():
            if node.name in names:
                raise InternalError(f"graph {self.name}: node name {node.name!r} used twice")
            names[node.name] = node.id
            edges = sorted(self._g.pred[node.id].items())
            expect = [(i, (v.node, v.index)) for i, v in enumerate(node.inputs)]
            if edges != expect:
                raise InternalError(f"graph {self.name}: edges of {node.name} disagree with its inputs")
            # every input made by an earlier node in nodes()' order: no cycle, order current
            if any(v.node not in before for v in node.inputs):
                raise InternalError(f"graph {self.name}: {node.name} uses a value made after it")
            before.add(node.id)
            in_types = [self.type_of(v) for v in node.inputs]
            if registry.checked_attrs(node.op, node.attrs) is not node.attrs:
                raise registry.AttrError(f"graph {self.name}: node {node.name} ({node.op}) lacks the "
                                         f"defaults of its attributes: {node.attrs}")
            if node.op == "input":
                if node.id not in self.inputs or node.inputs:
                    raise InternalError(f"graph {self.name}: stray input node {node.name}")
                continue
            if isinstance(node, BodyNode):
                node.callee.verify(done, incremental=incremental)
            key = _derivation(node, in_types)
            if incremental and _same(checked.get(node.id), key):
                continue
            if isinstance(node, BodyNode):
                types = check_body(node, in_types)
                if types != node.types:
                    raise InternalError(f"graph {self.name}: types of {node.name} are stale")
            else:
                attrs, types = infer(node, in_types)
                if types != node.types or attrs != node.attrs:
                    raise InternalError(
                        f"graph {self.name}: node {node.name} ({node.op}) has types "
                        f"{[str(t) for t in node.types]} but its inputs give {[str(t) for t in types]}"
                    )
            checked[node.id] = key
        for _, v in self.outputs:
            self._check_value(v)

    def walk(self, prefix: str = ""):
        """(scope path, graph) for this graph and every graph it calls, depth first."""
        yield prefix, self
        for node in self.nodes():
            if isinstance(node, BodyNode):
                path = f"{prefix}.{node.name}" if prefix else node.name
                yield from node.callee.walk(path)


def _derivation(node: Node, in_types) -> tuple:
    """What a node's types are derived from, as objects (compared by identity)."""
    interface: tuple = ()
    if isinstance(node, BodyNode):
        callee = node.callee
        interface = (
            callee,
            *(callee.node(i).type for i in callee.inputs),
            *(callee.type_of(v) for _, v in callee.outputs),
        )
    return (node.op, node.call, node.attrs, node.types, *in_types, *interface)


def _same(a: tuple | None, b: tuple) -> bool:
    return a is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b))


def infer(node: Node, in_types) -> tuple[Attrs, tuple[TensorType, ...]]:
    """Run the registry shape rule of `node` on `in_types`."""
    op = registry.get(node.op)
    if node.call is None:
        raise InternalError(f"node {node.name} ({node.op}) has no call to check")
    call = replace(node.call, inputs=tuple(in_types))
    try:
        attrs, types = op.check(call)
    except NNError as e:
        raise e.with_span(node.span) from None
    return op.make_attrs(attrs), tuple(types)


def split_lift(node_name: str, actual: TensorType, declared: TensorType) -> tuple[str, ...]:
    """The axes of `actual` a block call is lifted over (those its input does not declare)."""
    missing = [a.name for a in declared.axes if not actual.has(a.name)]
    if missing:
        raise ShapeError(
            f"{node_name} expects an input with axes {declared} but got {actual} "
            f"(no axis '{missing[0]}'; use 'rename' if it has another name)"
        )
    return tuple(a.name for a in actual.axes if not declared.has(a.name))


def bind_dims(node_name: str, actual: TensorType, declared: TensorType, binding: dict[str, Size]):
    """Check sizes of a call's input against the callee's declaration, binding its dynamic axes."""
    for dax in declared.axes:
        aax = actual.axis(dax.name)
        syms = dax.size.symbols()
        if not syms:
            if aax.size != dax.size:
                raise ShapeError(
                    f"{node_name}: axis '{dax.name}' has size {aax.size}, but the block declares {dax.size}"
                )
            continue
        (sym,) = syms
        if sym in binding and binding[sym] != aax.size:
            raise ShapeError(
                f"{node_name}: axis '{dax.name}' has size {aax.size} here but {binding[sym]} "
                "in another input"
            )
        mult = next((a.multiple for a, _ in dax.size.terms if isinstance(a, Dim)), 1)
        if mult > 1 and aax.size.exact_div(mult) is None:
            raise ShapeError(
                f"{node_name}: axis '{dax.name}' must be a multiple of {mult}, found {aax.size}"
            )
        binding[sym] = aax.size
    if actual.dtype != declared.dtype:
        raise ShapeError(f"{node_name}: expects {declared.dtype} input, found {actual}")


def call_mapping(callee: Graph, given: dict[str, HVal]) -> dict[str, Expr]:
    """Each hyperparameter of callee as an expression over the caller's: the call's argument,
    else the callee's default over the arguments."""
    mapping: dict[str, Expr] = {}
    for h in callee.hyper:
        if h.name in given:
            mapping[h.name] = given[h.name].expr
        elif h.default is not None:
            mapping[h.name] = h.default.subst(mapping)
        else:
            mapping[h.name] = const(h.value.value)
    return mapping


def caller_codes(callee: Graph, given: dict[str, HVal], types, n_lift: int):
    """The call's output types with the callee's static sizes as expressions over the
    caller's hyperparameters (the callee's, bound to the call's arguments and defaults)."""
    mapping = call_mapping(callee, given)
    out = []
    for t, (_, v) in zip(types, callee.outputs):
        inner = callee.type_of(v)
        axes = list(t.axes)
        for i, ca in enumerate(inner.axes):
            j = n_lift + i
            if ca.size.is_static and ca.code is not None and axes[j].code is None:
                axes[j] = Axis(axes[j].name, axes[j].size, dependent(ca.code.subst(mapping)))
        out.append(t.with_axes(axes))
    return tuple(out)


def check_body(node: BodyNode, in_types) -> tuple[TensorType, ...]:
    """Output types of a call or repeat node on `in_types`."""
    if isinstance(node, CallNode):
        return check_call(node, in_types)
    if isinstance(node, LoopNode):
        return check_repeat(node, in_types)
    if isinstance(node, ScanNode):
        return check_scan(node, in_types)
    raise InternalError(f"{node.op} node {node.name} is neither a call nor a repeat")


def check_call(node: CallNode, in_types) -> tuple[TensorType, ...]:
    """Output types of a block call node; its recorded `lift` must be the one its inputs give."""
    types, lift = call_types(node.callee, in_types)
    types = caller_codes(node.callee, dict(node.args), types, len(lift))
    if node.recorded_lift is not None and tuple(node.recorded_lift) != lift:
        raise InternalError(f"call {node.name}: recorded lift {node.recorded_lift} but its inputs give {lift}")
    return types


def call_types(callee: Graph, in_types) -> tuple[tuple[TensorType, ...], tuple[str, ...]]:
    """Output types of a call of `callee` on `in_types` (its dynamic axes bound, lifted) and
    the axes it is lifted over, in the order the first input carries them."""
    declared = [callee.node(i).type for i in callee.inputs]
    label = f"block {callee.name}"
    if len(in_types) != len(declared):
        raise ShapeError(f"{label} takes {len(declared)} input(s), found {len(in_types)}")
    lift_axes: dict[str, Axis] = {}
    binding: dict[str, Size] = {}
    extras = [split_lift(label, actual, decl) for actual, decl in zip(in_types, declared)]
    # The call is lifted over the extra axes of the input that has the most; an input with
    # only some of them (none: a mask, a rotary table) is shared by every position of the others.
    lift = max(extras, key=len) if extras else None
    for extra in extras:
        if lift is not None and not set(extra) <= set(lift):
            raise ShapeError(
                f"{label}: every input must carry the extra axes the call is lifted over, or some "
                f"of them (an input shared across the others); found [{', '.join(lift)}] and "
                f"[{', '.join(extra)}]"
            )
    for actual, decl, extra in zip(in_types, declared, extras):
        for name in extra:
            ax = actual.axis(name)
            if name in lift_axes and lift_axes[name].size != ax.size:
                raise ShapeError(f"{label}: lifted axis '{name}' has sizes {lift_axes[name].size} and {ax.size}")
            lift_axes[name] = ax
        bind_dims(label, actual, decl, binding)
    lifted = tuple(lift_axes[n] for n in (lift or ()))
    outs = []
    caller_axes: dict[str, Axis] = {}  # callee symbol -> the caller's axis bound to it
    for actual, decl in zip(in_types, declared):
        for dax in decl.axes:
            sym = dax.size.bare_symbol()
            if sym is not None:
                caller_axes.setdefault(sym, actual.axis(dax.name))
    for _, v in callee.outputs:
        t = callee.type_of(v).subst(binding, caller_axes)
        clash = {a.name for a in t.axes} & set(lift or ())
        if clash:
            raise ShapeError(f"{label}: its output axis '{sorted(clash)[0]}' clashes with a lifted axis")
        outs.append(TensorType(lifted + t.axes, t.dtype))
    return tuple(outs), tuple(lift or ())


def check_repeat(node: LoopNode, in_types) -> tuple[TensorType, ...]:
    body = node.callee
    declared = [body.node(i).type for i in body.inputs]
    axis = node.axis
    k = node.carried
    if node.has_index:
        declared = declared[:k] + declared[k + 1:]
    scanned = set(node.scanned)
    seen = [t.with_axes(a for a in t.axes if a.name != axis) if i in scanned else t for i, t in enumerate(in_types)]
    if seen != declared:
        raise ShapeError(f"repeat {node.name}: inputs do not match its body")
    outs = [body.type_of(v) for _, v in body.outputs]
    if outs[:k] != declared[:k]:
        raise ShapeError(f"repeat {node.name}: its body changes the types of the values it carries")
    if len(outs) == k:
        return tuple(outs)
    count = node.count
    if axis is None:
        raise ShapeError(f"repeat {node.name}: it stacks values along no axis")
    length = in_types[min(scanned)].axis(axis) if scanned else Axis(axis, Size.of(int(count.value)), count.expr)
    result = outs[:k]
    for t, at in zip(outs[k:], node.stack_at):
        axes = list(t.axes)
        axes.insert(at, length)
        result.append(t.with_axes(axes))
    return tuple(result)


def check_scan(node: ScanNode, in_types) -> tuple[TensorType, ...]:
    """Output types of a scan node on `in_types`: the body must take each input (a scanned
    one without the axis) and keep the carried states' types."""
    body = node.callee
    axis = node.axis
    k = node.carried
    scanned = set(node.scanned)
    declared = [body.node(i).type for i in body.inputs]
    if node.has_index:
        declared = declared[:k] + declared[k + 1:]
    if len(declared) != len(in_types):
        raise ShapeError(f"scan {node.name}: takes {len(declared)} inputs, found {len(in_types)}")
    length = None
    for i, (t, d) in enumerate(zip(in_types, declared)):
        if i in scanned:
            if axis not in t.names:
                raise ShapeError(f"scan {node.name}: input {i} lacks the axis '{axis}'")
            length = length or t.axis(axis)
            t = t.with_axes(a for a in t.axes if a.name != axis)
        if t != d:
            raise ShapeError(f"scan {node.name}: input {i} is {t} but its body takes {d}")
    if length is None:
        raise ShapeError(f"scan {node.name}: no input carries the axis '{axis}'")
    outs = [body.type_of(v) for _, v in body.outputs]
    for i in range(k):
        if outs[i] != declared[i]:
            raise ShapeError(f"scan {node.name}: carried value {i} changes from {declared[i]} to {outs[i]}")
    result = outs[:k]
    for t, at in zip(outs[k:], node.stack_at):
        axes = list(t.axes)
        axes.insert(at, length)
        result.append(t.with_axes(axes))
    return tuple(result)

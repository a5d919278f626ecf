"""Elaboration: resolve names, bind hyperparameters, instantiate blocks, and build the typed
IR graph of a model, checking every shape on the way."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nncircuit.lang import tree as A
from nncircuit.names import fresh, snake
from nncircuit.types import expr as X
from nncircuit.ops import registry
from nncircuit.errors import (
    HyperparameterError,
    InternalError,
    NameResolutionError,
    NNError,
    ResourceError,
    ShapeError,
    Span,
    did_you_mean,
)
from nncircuit.ir.graph import (
    CallNode, Graph, HyperParam, InputNode, LoopNode, ScanNode, Value, call_mapping, call_types, caller_codes, check_body,
)
from nncircuit.lang.checkpoint import section as checkpoint_section
from nncircuit.lang.program import Program
from nncircuit.ops.registry import INIT_KINDS, AxisSpec, OpCall, OpDef
from nncircuit.types.sizes import MAX_SIZE, Size
from nncircuit.types.tensor import Axis, HVal, TensorType

MAX_REPEAT = 100_000
FILL_OPS = ("zeros", "ones", "full", "arange")
MAX_NESTING = 64
MAX_UNROLLED = 1_000_000  # operations once calls are inlined and repeats unrolled


# ---- values an expression can have ---------------------------------------------------------


@dataclass(frozen=True)
class TVal:
    value: Value


@dataclass(frozen=True)
class TupleV:
    items: tuple


@dataclass
class Fn:
    """An op or block, possibly with its non-tensor arguments given, not yet applied: an
    `OpFn` or a `BlockFn` (narrow with isinstance)."""

    kind: ClassVar[str]  # "op" | "block"
    name: str
    args: tuple = ()  # evaluated ast args (see _eval_args)
    instance: str | None = None  # module name once bound to a name
    tensors: tuple = ()  # tensors given with the partial application
    span: Span | None = None
    hyper: dict | None = None  # blocks: evaluated hyperparameter args
    hyper_order: tuple = ()
    axes: tuple = ()  # blocks: (axis parameter, the caller's axis) pairs


@dataclass
class OpFn(Fn):
    kind: ClassVar[str] = "op"
    opdef: OpDef = field(kw_only=True)


@dataclass
class BlockFn(Fn):
    kind: ClassVar[str] = "block"
    block: A.BlockDef = field(kw_only=True)


@dataclass
class Ctx:
    """Elaboration of one graph: the environment and what is in scope."""

    graph: Graph
    env: dict = field(default_factory=dict)
    parent: Ctx | None = None
    free: dict = field(default_factory=dict)  # parent Value -> body input Value (repeat bodies)
    reserved: set = field(default_factory=set)
    modules: dict = field(default_factory=dict)  # module name -> param signature (weight sharing)
    axis_sizes: dict = field(default_factory=dict)
    axis_codes: dict = field(default_factory=dict)  # axis name -> its size expression
    scan_axis: str | None = None  # a scan body: outer values with this axis are sliced
    scanned: set = field(default_factory=set)  # parent Values the body sees one slice of
    emits: list | None = None  # a scan body: (name, Value, span) of each `emit`
    loop: str = "repeat"  # the kind of loop whose body this is: "repeat" | "scan"
    sections: list = field(default_factory=list)  # a model's `checkpoint` sections, in taken `if` branches too

    def lookup(self, name: str):
        if name in self.env:
            return self.env[name]
        if self.parent is not None:
            v = self.parent.lookup(name)
            if isinstance(v, TVal):
                return TVal(self._free_input(name, v.value))
            if isinstance(v, TupleV):
                return TupleV(tuple(TVal(self._free_input(name, t.value)) for t in v.items))
            if isinstance(v, Fn) and v.instance is not None and self.loop == "scan":
                raise NameResolutionError(
                    f"'{name}' is a learned instance bound outside this scan; bind it inside the scan "
                    "(the body is one module: an instance there serves every step)"
                )
            if isinstance(v, Fn) and v.instance is not None:
                raise NameResolutionError(
                    f"'{name}' is a learned instance bound outside this repeat; bind it inside "
                    "the repeat (with 'repeat N shared', one instance serves every iteration)"
                )
            return v
        return None

    def peek(self, name: str):
        """The binding of `name` without making it an input of a repeat body."""
        if name in self.env:
            return self.env[name]
        return self.parent.peek(name) if self.parent is not None else None

    def _outer(self) -> Ctx:
        if self.parent is None:
            raise InternalError(f"graph {self.graph.name} has no enclosing scope")
        return self.parent

    def _free_input(self, name: str, outer: Value) -> Value:
        if outer not in self.free:
            t = self._outer().graph.type_of(outer)
            if self.scan_axis is not None and t.has(self.scan_axis):
                t = t.with_axes(a for a in t.axes if a.name != self.scan_axis)
                self.scanned.add(outer)
            node = self.graph.add(
                "input", attrs={"name": name}, types=(t,), name=self.graph.fresh_name(name)
            )
            self.graph.inputs.append(node.id)
            self.free[outer] = node.out()
            self.note_type(t)
        return self.free[outer]

    def carried_input(self, name: str, outer: Value) -> Value:
        """A repeat body's input for a value it updates: bound to `name` here, never shared
        with another name through `free`."""
        t = self._outer().graph.type_of(outer)
        node = self.graph.add("input", attrs={"name": name}, types=(t,), name=self.graph.fresh_name(name))
        self.graph.inputs.append(node.id)
        self.env[name] = TVal(node.out())
        self.note_type(t)
        return node.out()

    def note_type(self, t: TensorType):
        for a in t.axes:
            if a.name not in self.axis_sizes:
                self.axis_sizes[a.name] = a.size
                self.axis_codes[a.name] = a.code

    def fresh(self, base: str) -> str:
        name = self.graph.fresh_name(base)
        i = 1
        while name in self.reserved:
            name = self.graph.fresh_name(f"{base}_{i}")
            i += 1
        return name


def _code(v: HVal) -> X.Expr:
    """An axis's size expression, as the spec gave it."""
    return v.expr


class Elaborator:
    def __init__(self, program: Program):
        self.program = program
        self.instances: dict[tuple, Graph] = {}
        self.sizes: dict[Graph, int] = {}  # memo of unrolled()
        self.stack: list[str] = []

    # ---- entry point
    def model(self, name: str | None, params: dict) -> Graph:
        bdef = self.program.model(name)
        if bdef.axis_params:
            raise ShapeError(
                f"model {bdef.name} has an axis parameter ('axis {bdef.axis_params[0]}'); a model's "
                "axes come from its inputs, axis parameters are for blocks", bdef.span)
        known = {p.name for p in bdef.params}
        for k in sorted(params):
            if k not in known:
                raise HyperparameterError(
                    f"model {bdef.name} has no hyperparameter '{k}'{did_you_mean(k, known)}; "
                    f"known: {', '.join(p.name for p in bdef.params) or 'none'}"
                )
        given = {}
        for k, v in params.items():
            v = _from_python(v)
            if v is _BAD:
                raise HyperparameterError(
                    f"hyperparameter '{k}' must be a finite number, a string, a boolean, None or a "
                    f"non-empty tuple of them, found {params[k]!r}")
            given[k] = HVal.const(v)
        try:
            g = self.instantiate(bdef, given, bdef.span)
            self.check_unrolled(g, bdef.span, f"model {bdef.name}")
            return g
        except RecursionError:
            raise ResourceError("the spec nests too deeply to elaborate", bdef.span) from None

    def unrolled(self, g: Graph) -> int:
        """Operations of g once every call is inlined and every repeat unrolled (what a
        backend that inlines builds, and a bound on the modules torch builds)."""
        n = self.sizes.get(g)
        if n is None:
            n = 0
            for node in g.nodes():
                if isinstance(node, CallNode):
                    n += 1 + self.unrolled(node.callee)
                elif isinstance(node, LoopNode):
                    n += 1 + int(node.count.value) * self.unrolled(node.callee)
                elif isinstance(node, ScanNode):
                    n += 1 + self.unrolled(node.callee)
                else:
                    n += 1
            self.sizes[g] = n
        return n

    def check_unrolled(self, g: Graph, span: Span, what: str, times: int = 1):
        n = times * self.unrolled(g)
        if n > MAX_UNROLLED:
            raise ResourceError(
                f"{what} unrolls to {n:,} operations, over the limit of {MAX_UNROLLED:,} "
                "(blocks that call blocks several times multiply)", span)

    # ---- hyperparameters
    def bind_hyper(self, bdef: A.BlockDef, given: dict[str, HVal], span: Span) -> tuple[HyperParam, ...]:
        known = [p.name for p in bdef.params]
        both = sorted(set(known) & set(bdef.axis_params))
        if both:
            raise HyperparameterError(f"block {bdef.name}: '{both[0]}' is both a hyperparameter and an axis parameter", span)
        for k in given:
            if k not in known:
                raise HyperparameterError(
                    f"block {bdef.name} has no hyperparameter '{k}'{did_you_mean(k, known)}; "
                    f"known: {', '.join(known) or 'none'}",
                    span,
                )
        scope = Ctx(Graph(bdef.name, "block"))
        out = []
        for p in bdef.params:
            default = None
            dval = None
            if p.default is not None:
                try:
                    with X.guarded(p.name):  # its checks hold only where the default is used
                        dval = self.expr(scope, p.default)
                except HyperparameterError:
                    # a default that cannot be computed for these values is no error when the
                    # value is given (`dk = d / heads` with heads not dividing d, dk given)
                    if p.name not in given:
                        raise
                    dval = given[p.name]
                dval = _as_hval(dval)
                if not isinstance(dval, HVal):
                    raise HyperparameterError(
                        f"the default of '{p.name}' must be a number, string, boolean, none or a tuple of "
                        "them", p.default.span
                    )
                default = dval.expr
            if p.name in given:
                value = given[p.name].value
                if not self.stack:  # the model's values given to the compiler are its defaults
                    default = given[p.name].expr
            elif dval is not None:
                value = dval.value
            else:
                raise HyperparameterError(
                    f"block {bdef.name} needs a value for hyperparameter '{p.name}'", span
                )
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SIZE:
                raise ResourceError(f"hyperparameter {p.name} = {value} is larger than the limit {MAX_SIZE}", span)
            hv = HVal(value, X.Ref(p.name))
            scope.env[p.name] = hv
            out.append(HyperParam(p.name, hv, default))
        return tuple(out)

    # ---- blocks
    def instantiate(self, bdef: A.BlockDef, given: dict[str, HVal], span: Span) -> Graph:
        try:
            return self._instantiate(bdef, given, span)
        except NNError as e:
            # an error inside a block says where that instance was asked for
            if span is not None and bdef.kind == "block" and (e.span is None or e.span != span):
                args = ", ".join(f"{k}={v.value!r}" for k, v in given.items())
                note = f"in {bdef.name}({args}), used at {span.file}:{span.line}:{span.col}"
                if note not in e.notes:
                    e.notes = e.notes + (note,)
            raise

    def _instantiate(self, bdef: A.BlockDef, given: dict[str, HVal], span: Span) -> Graph:
        with X.recording() as checks:
            return self._instance(bdef, given, span, checks)

    def _instance(self, bdef: A.BlockDef, given: dict[str, HVal], span: Span, checks) -> Graph:
        hyper = self.bind_hyper(bdef, given, span)
        key = (bdef.span.file, bdef.name, tuple((h.name, type(h.value.value).__name__, h.value.value) for h in hyper))
        if key in self.instances:
            return self.instances[key]
        if bdef.name in self.stack:
            chain = " -> ".join(self.stack[self.stack.index(bdef.name):] + [bdef.name])
            raise NameResolutionError(f"block {bdef.name} uses itself: {chain}", span)
        if len(self.stack) >= MAX_NESTING:
            raise ResourceError(f"blocks nest more than {MAX_NESTING} deep", span)
        self.stack.append(bdef.name)
        try:
            g = Graph(bdef.name, bdef.kind, hyper, bdef.span, bdef.doc, bdef.span.file)
            ctx = Ctx(g)
            for h in hyper:
                ctx.env[h.name] = h.value
            self.body(ctx, bdef.body)
            if not g.outputs:
                raise ShapeError(f"{bdef.kind} {bdef.name} has no 'out' statement", bdef.span)
            if not g.inputs and bdef.kind == "block":
                raise ShapeError(f"block {bdef.name} has no 'in' declaration", bdef.span)
        finally:
            self.stack.pop()
        g.checks = list(checks)
        top = [st for st in bdef.body if isinstance(st, A.Checkpoint)]
        if len(top) > 1:
            raise ShapeError(f"model {bdef.name} has two 'checkpoint' sections; join them", top[1].span)
        if ctx.sections:
            # a section inside a taken static `if` branch adds its rules to the model's
            first = ctx.sections[0]
            rules = tuple(r for sec in ctx.sections for r in sec.rules)
            g.checkpoint = checkpoint_section(g, A.Checkpoint(first.span, rules) if len(ctx.sections) > 1 else first)
        self.instances[key] = g
        return g

    def body(self, ctx: Ctx, stmts):
        for st in stmts:
            try:
                if isinstance(st, A.InDecl):
                    self.in_decl(ctx, st)
                elif isinstance(st, A.Assign):
                    self.assign(ctx, st)
                elif isinstance(st, A.OutStmt):
                    self.out_stmt(ctx, st)
                elif isinstance(st, A.Repeat):
                    self.repeat(ctx, st)
                elif isinstance(st, A.Checkpoint):  # elaborated once the model is complete
                    if ctx.parent is not None or ctx.graph.kind != "model":
                        raise ShapeError(
                            "a 'checkpoint' section belongs at the top level of a model", st.span)
                    ctx.sections.append(st)
                elif isinstance(st, A.If):
                    self.if_stmt(ctx, st)
                elif isinstance(st, A.For):
                    self.for_stmt(ctx, st)
                elif isinstance(st, A.Scan):
                    self.scan(ctx, st)
                elif isinstance(st, A.Emit):
                    self.emit(ctx, st)
            except NNError as e:
                raise e.with_span(st.span) from None

    def in_decl(self, ctx: Ctx, st: A.InDecl):
        g = ctx.graph
        if ctx.parent is not None:
            raise ShapeError("'in' declarations belong at the top of a block, not inside repeat or scan", st.span)
        for item in st.items:
            if item.name in ctx.env:
                raise NameResolutionError(f"'{item.name}' is already defined", item.span)
            axes: list[Axis] = []
            for ad in item.type.axes:
                axes.append(self.axis_decl(ctx, ad, item.name, axes))
            try:
                t = TensorType(tuple(axes), item.type.dtype)
            except ShapeError as e:
                raise e.with_span(item.type.span) from None
            node = g.add("input", attrs={"name": item.name}, types=(t,), name=item.name, span=item.span)
            g.inputs.append(node.id)
            ctx.env[item.name] = TVal(node.out())
            ctx.note_type(t)

    def axis_decl(self, ctx: Ctx, ad: A.AxisDecl, owner: str, earlier: list[Axis] | tuple = ()) -> Axis:
        g = ctx.graph
        sd = ad.size
        if sd is not None and sd.same is not None:
            # `nbr: =node`: one size for two axes (an adjacency matrix), so ops that need them
            # equal type-check; the generated module checks it at run time, ONNX names both dims alike
            other = next((a for a in earlier if a.name == sd.same), None)
            size = other.size if other is not None else ctx.axis_sizes.get(sd.same)
            if sd.same == ad.name or size is None:
                raise ShapeError(
                    f"axis '{ad.name}: ={sd.same}' needs '{sd.same}' to be an axis declared before it "
                    "(earlier in this input or in an earlier input)", sd.span)
            code = other.code if other is not None else ctx.axis_codes.get(sd.same)
            return Axis(ad.name, size, code if size.is_static else None)
        if sd is not None and sd.expr is None:
            # `h: ?` — this input's own run-time size, not tied to other inputs' `h`
            sym = f"{owner}.{ad.name}"
            g.dims.setdefault(sym, 0)
            return Axis(ad.name, Size.dim(sym))
        if sd is None:
            v = ctx.env.get(ad.name)
            if isinstance(v, HVal):
                return Axis(ad.name, self.size_of(v, ad.span, ad.name), _code(v))
            if ad.name in ctx.axis_sizes:
                return Axis(ad.name, ctx.axis_sizes[ad.name], ctx.axis_codes.get(ad.name))
            g.dims.setdefault(ad.name, 1 if ad.name == "batch" else 0)
            return Axis(ad.name, Size.dim(ad.name))
        val = self.expr(ctx, sd.expr)
        if not isinstance(val, HVal):
            raise ShapeError(f"the size of axis '{ad.name}' must be a number", sd.span)
        n = self.size_of(val, sd.span, ad.name)
        if not sd.dynamic:
            return Axis(ad.name, n, _code(val))
        mult = 1
        if sd.multiple is not None:
            m = self.expr(ctx, sd.multiple)
            mult = self.size_of(m, sd.multiple.span, ad.name).value if isinstance(m, HVal) else 0
            if mult < 1:
                raise ShapeError(f"axis '{ad.name}': the multiple must be a positive integer", sd.span)
            if n.value % mult:
                raise ShapeError(f"axis '{ad.name}': typical size {n.value} is not a multiple of {mult}", sd.span)
        g.dims[ad.name] = n.value
        return Axis(ad.name, Size.dim(ad.name, mult))

    def size_of(self, v: HVal, span: Span, what: str) -> Size:
        for cond in (X.Call("is_int", (v.expr,)), X.binop(">=", v.expr, X.Const(1))):
            X.note(cond, f"axis '{what}' needs a positive integer size, found ", ("r", v.expr))
        if not isinstance(v.value, int) or isinstance(v.value, bool) or v.value < 1:
            raise ShapeError(f"axis '{what}' needs a positive integer size, found {v.value!r}", span)
        try:
            return Size.of(v.value)
        except ShapeError as e:
            raise e.with_span(span) from None

    def assign(self, ctx: Ctx, st: A.Assign):
        # a first definition names the operation that computes it; a re-assignment
        # (`x = x + ...`) leaves the operation its own name
        hint = st.targets[0] if len(st.targets) == 1 and ctx.peek(st.targets[0]) is None else None
        val = self.expr(ctx, st.value, hint)
        if len(st.targets) == 1:
            (name,) = st.targets
            if isinstance(val, Fn) and val.instance is None and self._learned(val):
                val.instance = ctx.fresh(name)
                ctx.reserved.add(val.instance)
            ctx.env[name] = val
            return
        items = val.items if isinstance(val, TupleV) else None
        if items is None or len(items) != len(st.targets):
            n = len(items) if items is not None else 1
            raise ShapeError(f"cannot unpack {n} value(s) into {len(st.targets)} names", st.span)
        for name, item in zip(st.targets, items):
            ctx.env[name] = item

    def out_stmt(self, ctx: Ctx, st: A.OutStmt):
        g = ctx.graph
        if ctx.parent is not None:
            raise ShapeError("'out' belongs to a block, not inside repeat or scan", st.span)
        for item in st.items:
            hint = item.name
            val = self.expr(ctx, item.value, hint)
            vals = val.items if isinstance(val, TupleV) else (val,)
            for i, v in enumerate(vals):
                if not isinstance(v, TVal):
                    raise ShapeError(f"a block's output must be a tensor, found {_describe(v)}", item.span)
                name = item.name or (item.value.id if isinstance(item.value, A.Name) else "out")
                if len(vals) > 1:
                    name = f"{name}{i}"
                name = fresh(name, {n for n, _ in g.outputs})
                g.outputs.append((name, v.value))

    def repeat(self, ctx: Ctx, st: A.Repeat):
        count = self.expr(ctx, st.count)
        if isinstance(count, HVal):
            for cond in (X.Call("is_int", (count.expr,)), X.binop(">=", count.expr, X.Const(0))):
                X.note(cond, "repeat needs a non-negative integer count, found the value ", ("r", count.expr))
        if not isinstance(count, HVal) or not isinstance(count.value, int) or isinstance(count.value, bool) or count.value < 0:
            raise HyperparameterError(
                f"repeat needs a non-negative integer count, found {_describe(count)}", st.count.span
            )
        if count.value > MAX_REPEAT:
            raise ResourceError(f"repeat {count.value} is more than the limit of {MAX_REPEAT}", st.count.span)
        parent = ctx.graph
        name = ctx.fresh(st.name or "layers")
        ctx.reserved.add(name)
        body_g, inner, carried, opened = self._open_loop(ctx, st, name, "repeat", [] if st.axis else None)
        self.body(inner, st.body)
        outer_inputs = self._loop_inputs(ctx, inner, carried, opened)
        scanned = [v for v in inner.free if v in inner.scanned]
        for v in scanned:  # `over layer`: one slice per iteration
            ax = parent.type_of(v).axis(st.axis or "")
            if not ax.size.is_static or ax.size.value != count.value:
                raise ShapeError(
                    f"repeat {count.value} over '{st.axis}': a value read in the body has '{st.axis}' of size "
                    f"{ax.size}, not one slice per iteration", st.span)
        self._carried_outputs(ctx, inner, carried, "repeat", st.span)
        emits = inner.emits or []
        if emits and count.value < 1:
            raise ShapeError(f"repeat {count.value} emits values but runs no iteration to stack", st.span)
        stack_at = self._emit_outputs(inner, parent.type_of(scanned[0]) if scanned else None, st.axis)
        if not carried and not emits:
            raise ShapeError("repeat updates no value defined before it (write e.g. 'x = f(x)')", st.span)
        attrs = {"count": count, "shared": st.shared, "carried": len(carried)}
        if st.axis is not None or st.index is not None:
            attrs.update({"axis": st.axis, "index": st.index is not None,
                          "scanned": tuple(len(carried) + i for i, v in enumerate(inner.free) if v in inner.scanned),
                          "stack_at": tuple(stack_at)})
        node = parent.add_body(
            "repeat",
            outer_inputs,
            attrs=attrs,
            types=(),
            name=name,
            module=name,
            span=st.span,
            callee=body_g,
        )
        node.types = check_body(node, [parent.type_of(v) for v in outer_inputs])
        self.check_unrolled(body_g, st.span, f"repeat {count.value}", count.value)
        self._bind_loop(ctx, node, carried, emits)

    # ---- what `repeat` and `scan` share: the body graph, its inputs, outputs and results
    def _open_loop(self, ctx: Ctx, st, name: str, kind: str, emits: list | None):
        """The body graph of a repeat or scan and its context; the carried names (defined
        before the loop and assigned in the body) as its first inputs; the step index."""
        parent = ctx.graph
        body_g = Graph(f"{parent.name}_{name}", "repeat", parent.hyper, st.span, "", parent.file)
        body_g.dims = parent.dims
        inner = Ctx(body_g, parent=ctx, scan_axis=st.axis, emits=emits, loop=kind)
        inner.axis_sizes = {k: v for k, v in ctx.axis_sizes.items() if k != st.axis}
        inner.axis_codes = {k: v for k, v in ctx.axis_codes.items() if k != st.axis}
        carried = []
        for n in _assigned(st.body, []):  # a nested loop's updates are this one's too
            if n not in ctx.env and isinstance(ctx.peek(n), TVal):
                ctx.env[n] = ctx.lookup(n)  # an enclosing body's value: an input here too
            if isinstance(ctx.env.get(n), TVal):
                carried.append(n)
        # the carried values are the first inputs, in order of first assignment; each carried
        # name is an input of its own even when two names (or a read-only name) are bound to
        # one value before the loop (`b = a`): they part ways at the first update
        carried_inputs = [inner.carried_input(n, ctx.env[n].value) for n in carried]
        index_input = None
        if st.index is not None:  # `as h, i` / `as t`: the step index, an int64 scalar
            if st.index in carried:
                what = "the index" if kind == "repeat" else "the step index"
                raise NameResolutionError(f"{kind}: {what} '{st.index}' is also assigned in the body", st.span)
            node = body_g.add("input", attrs={"name": st.index}, types=(TensorType((), "int64"),),
                              name=body_g.fresh_name(st.index))
            inner.env[st.index] = TVal(node.out())
            index_input = node.out()
        return body_g, inner, carried, (carried_inputs, index_input)

    @staticmethod
    def _loop_inputs(ctx: Ctx, inner: Ctx, carried: list[str], opened) -> list:
        """The body's inputs (carried, the index, the outer values it reads); returns the
        loop node's inputs from outside."""
        carried_inputs, index_input = opened
        body_g = inner.graph
        body_g.inputs = [v.node for v in carried_inputs] + ([index_input.node] if index_input else [])
        body_g.inputs += [inner.free[v].node for v in inner.free]
        return [ctx.env[n].value for n in carried] + list(inner.free)

    @staticmethod
    def _carried_outputs(ctx: Ctx, inner: Ctx, carried: list[str], kind: str, span: Span):
        """Each carried name's value after the body is an output; its type must not change."""
        body_g = inner.graph
        for n in carried:
            v = inner.env[n]
            if not isinstance(v, TVal):
                raise ShapeError(f"{kind}: '{n}' must stay a tensor", span)
            body_g.outputs.append((n, v.value))
            before, after = ctx.graph.type_of(ctx.env[n].value), body_g.type_of(v.value)
            if before != after:
                raise ShapeError(
                    f"repeat changes '{n}' from {before} to {after}; a repeated body must keep "
                    "the types of the values it updates" if kind == "repeat" else
                    f"scan changes the carried value '{n}' from {before} to {after}; a scan's "
                    "state must keep its type (initialise it with the type it has after a step)",
                    span,
                )

    @staticmethod
    def _emit_outputs(inner: Ctx, first: TensorType | None, axis: str | None) -> list[int]:
        """Each emitted value is an output after the carried ones; where each is stacked:
        at the place the axis has in the first sliced input (0 when none is sliced)."""
        stack_at = []
        for en, v, _ in inner.emits or []:
            inner.graph.outputs.append((en, v))
            stack_at.append(min(first.index(axis), inner.graph.type_of(v).rank) if first and axis else 0)
        return stack_at

    @staticmethod
    def _bind_loop(ctx: Ctx, node, carried: list[str], emits: list):
        """After the loop: each carried name holds its last value, each emitted name the stack."""
        for i, n in enumerate(carried):
            ctx.env[n] = TVal(node.out(i))
        for j, (en, _, _) in enumerate(emits):
            ctx.env[en] = TVal(node.out(len(carried) + j))
            ctx.note_type(node.types[len(carried) + j])

    def scan(self, ctx: Ctx, st: A.Scan):
        """`scan AXIS [reverse] [as t] { body }`: the body runs once per position of AXIS.
        Outer values that carry AXIS are seen one slice at a time; names assigned in the body
        that exist before it are carried states; `emit y = ...` values are stacked along AXIS."""
        parent = ctx.graph
        reverse = st.reverse
        if st.reverse_when is not None:
            reverse = self.static_choice(ctx, st.reverse_when, "scan ... reverse =")
        name = ctx.fresh("scan")
        ctx.reserved.add(name)
        body_g, inner, carried, opened = self._open_loop(ctx, st, name, "scan", [])
        self.body(inner, st.body)
        if not any(v in inner.scanned for v in inner.free):
            # a body that reads no value with the axis (a decoder feeding its own output
            # back) steps along the axis of the first value in scope that has it
            src = next((n for n, v in ctx.env.items() if n not in carried and isinstance(v, TVal)
                        and parent.type_of(v.value).has(st.axis)), None)
            if src is not None:
                inner._free_input(src, ctx.env[src].value)
        free = list(inner.free)
        scanned = [v for v in free if v in inner.scanned]
        if not scanned:
            here = sorted(n for n in ctx.axis_sizes if n != st.axis)
            raise ShapeError(
                f"scan over '{st.axis}': no value the body reads has the axis '{st.axis}'"
                + (did_you_mean(st.axis, here) if here else ""),
                st.span,
            )
        outer_inputs = self._loop_inputs(ctx, inner, carried, opened)
        self._carried_outputs(ctx, inner, carried, "scan", st.span)
        emits = inner.emits or []
        stack_at = self._emit_outputs(inner, parent.type_of(scanned[0]), st.axis)
        if not carried and not emits:
            raise ShapeError(
                "scan neither updates a value defined before it nor emits one "
                "(write e.g. 'h = f(h, x)' or 'emit y = f(x)')", st.span)
        k = len(carried)
        node = parent.add_body(
            "scan",
            outer_inputs,
            attrs={
                "axis": st.axis, "reverse": reverse, "carried": k, "index": st.index is not None,
                "scanned": tuple(k + i for i, v in enumerate(free) if v in inner.scanned),
                "stack_at": tuple(stack_at),
            },
            types=(),
            name=name,
            module=name,
            span=st.span,
            callee=body_g,
        )
        node.types = check_body(node, [parent.type_of(v) for v in outer_inputs])
        self._bind_loop(ctx, node, carried, emits)

    def emit(self, ctx: Ctx, st: A.Emit):
        if ctx.emits is None:
            raise ShapeError("'emit' belongs directly in the body of a scan or of a 'repeat N over AXIS'", st.span)
        if any(n == st.name for n, _, _ in ctx.emits):
            raise NameResolutionError(f"'{st.name}' is emitted twice in this scan", st.span)
        if st.name in ctx.env:
            raise NameResolutionError(
                f"'{st.name}' is a value of this scan body; the stacked values need a name of their "
                f"own: emit {st.name}s = {st.name}", st.span)
        v = self._tensor(self.expr(ctx, st.value, st.name), st.value.span)
        t = ctx.graph.type_of(v)
        if t.has(ctx.scan_axis or ""):
            raise ShapeError(
                f"emit {st.name}: the value already has the scanned axis '{ctx.scan_axis}' ({t}); "
                "it is stacked along that axis after the scan", st.span)
        ctx.emits.append((st.name, v, st.span))

    # ---- static structure: `if` and `for`, resolved here
    def if_stmt(self, ctx: Ctx, st: A.If):
        """Elaborate the branch the condition picks, in this scope. A generated class keeps
        the structure it was compiled with: its constructor refuses hyperparameters that
        would pick the other branch (a check, as for any size the checker proved)."""
        self.body(ctx, st.then if self.static_choice(ctx, st.cond, "if") else st.orelse)

    def static_choice(self, ctx: Ctx, e, what: str) -> bool:
        """A structural choice over hyperparameters (`if COND`, `scan ... reverse = COND`):
        its value; a generated class refuses hyperparameters that would choose otherwise."""
        cond, text = self.static_bool(ctx, e)
        self._note_choice(cond, f"`{what} {text}`")
        return bool(cond.value)

    def static_bool(self, ctx: Ctx, e) -> tuple[HVal, str]:
        """A condition over hyperparameters: its value and expression, and its text as
        written (the expression spells `and` and `not` with `or` and `== false`)."""
        if isinstance(e, A.Not):
            v, t = self.static_bool(ctx, e.operand)
            return HVal(not v.value, _not(v.expr)), f"not ({t})"
        if isinstance(e, A.BinOp) and e.op in ("and", "or"):
            (a, ta), (b, tb) = self.static_bool(ctx, e.left), self.static_bool(ctx, e.right)
            text = f"({ta}) {e.op} ({tb})"
            if e.op == "or":
                return HVal(bool(a.value or b.value), X.binop("or", a.expr, b.expr)), text
            return HVal(bool(a.value and b.value), _not(X.binop("or", _not(a.expr), _not(b.expr)))), text
        if isinstance(e, A.BinOp) and e.op in ("<", "<=", ">", ">=", "==", "!="):
            a, b = _as_hval(self.expr(ctx, e.left)), _as_hval(self.expr(ctx, e.right))
            if not (isinstance(a, HVal) and isinstance(b, HVal)):
                raise ShapeError(_STATIC_COND.format(found=_describe(b if isinstance(a, HVal) else a)), e.span)
            try:
                value = X.apply_op(e.op, a.value, b.value)
            except (TypeError, X.ExprError):
                raise HyperparameterError(f"cannot compare {a.value!r} {e.op} {b.value!r}", e.span) from None
            return HVal(bool(value), X.binop(e.op, a.expr, b.expr)), f"{a.expr.text()} {e.op} {b.expr.text()}"
        v = self.expr(ctx, e)
        if not isinstance(v, HVal):
            raise ShapeError(_STATIC_COND.format(found=_describe(v)), e.span)
        if not isinstance(v.value, bool):
            raise HyperparameterError(f"a condition (`if`, `a if c else b`, `scan ... reverse =`) must be true or false, found {v.value!r}", e.span)
        return v, v.expr.text()

    def for_stmt(self, ctx: Ctx, st: A.For):
        """Unroll the body once per row of the table, its names bound to the row's values
        (hyperparameter expressions, so generated code follows them)."""
        if len(st.items) > MAX_REPEAT:
            raise ResourceError(f"for over {len(st.items)} rows is more than the limit of {MAX_REPEAT}", st.span)
        missing = object()
        saved = {t: ctx.env.get(t, missing) for t in st.targets}
        rows = [(row.span, lambda row=row: self.expr(ctx, row)) for row in st.items]
        if st.source is not None:
            span = st.source.span
            rows = [(span, lambda v=v: v) for v in self.for_rows(ctx, st)]
        for span, row in rows:
            v = row()
            if st.unpack:
                v = _as_rows(v)
                if not isinstance(v, TupleV) or len(v.items) != len(st.targets):
                    raise ShapeError(
                        f"for ({', '.join(st.targets)}): each row must be a tuple of {len(st.targets)} "
                        f"values, found {_describe(v)}",
                        span,
                    )
                items = v.items
            else:
                items = (v,)
            for name, item in zip(st.targets, items):
                item = _as_hval(item)
                if not isinstance(item, HVal):
                    raise ShapeError(
                        f"for: a row holds numbers, strings or booleans (static values), found {_describe(item)}",
                        span,
                    )
                ctx.env[name] = item
            self.body(ctx, st.body)
        for name, old in saved.items():
            if old is missing:
                ctx.env.pop(name, None)
            else:
                ctx.env[name] = old

    def for_rows(self, ctx: Ctx, st: A.For) -> list:
        """The rows of `for ... in EXPR`: range(...), zip(...), enumerate(...), a tuple or a
        tuple-valued hyperparameter. The number of rows is structure: the generated class
        refuses hyperparameters that would change it, as for an `if`."""
        src = st.source
        if src is None:
            raise InternalError("for_rows of a `for` over a table")
        name = src.func.id if isinstance(src, A.Call) and isinstance(src.func, A.Name) else None
        if isinstance(src, A.Call) and name in ("range", "zip", "enumerate") and ctx.peek(name) is None:
            vals = []
            for a in src.args:
                if not isinstance(a, A.PosArg):
                    raise ShapeError(f"{name} takes positional arguments", a.span)
                vals.append((self.expr(ctx, a.value), a.span))
            if name == "range":
                rows, count, text = self._range(vals, src.span)
            else:
                if not vals or (name == "enumerate" and len(vals) != 1):
                    raise ShapeError(f"{name} takes {'one tuple' if name == 'enumerate' else 'tuples'}", src.span)
                seqs = [self._sequence(v, sp, name) for v, sp in vals]
                n = min(len(items) for items, _ in seqs)
                count = X.call("min", tuple(X.call("len", (ex,)) for _, ex in seqs)) if len(seqs) > 1 else X.call("len", (seqs[0][1],))
                if name == "enumerate":
                    rows = [TupleV((HVal.const(i), seqs[0][0][i])) for i in range(n)]
                else:
                    rows = [TupleV(tuple(items[i] for items, _ in seqs)) for i in range(n)]
                text = f"{name}({', '.join(ex.text() for _, ex in seqs)})"
        else:
            items, ex = self._sequence(self.expr(ctx, src), src.span, "for")
            rows, count, text = list(items), X.call("len", (ex,)), ex.text()
        if len(rows) > MAX_REPEAT:
            raise ResourceError(f"for over {len(rows)} rows is more than the limit of {MAX_REPEAT}", st.span)
        X.note(
            X.binop("==", count, X.Const(len(rows))),
            f"`for {', '.join(st.targets)} in {text}` was compiled for {len(rows)} rows, found ", ("r", count),
            ": the structure of a compiled module is fixed, so compile the spec again for these "
            "hyperparameters (nnc compile -p NAME=VALUE)",
        )
        return rows

    def _range(self, vals, span: Span):
        for v, sp in vals:
            if not isinstance(v, HVal):
                raise ShapeError(f"range takes hyperparameters (integers), found {_describe(v)}; it unrolls "
                                 "when the model is built", sp)
            if not (isinstance(v.value, int) and not isinstance(v.value, bool)):
                raise HyperparameterError(f"range takes integers, found {X.const(v.value).text()}", sp)
        if not 1 <= len(vals) <= 3:
            raise ShapeError(f"range takes 1 to 3 integers, found {len(vals)}", span)
        hv = [v for v, _ in vals]
        start, stop = (HVal.const(0), hv[0]) if len(hv) == 1 else (hv[0], hv[1])
        step = hv[2] if len(hv) == 3 else HVal.const(1)
        if step.value < 1:
            raise HyperparameterError(f"range's step must be a positive integer, found {step.value}", vals[2][1])
        n = max(0, (stop.value - start.value + step.value - 1) // step.value)  # len(range) overflows past 2**63
        if n > MAX_REPEAT:
            raise ResourceError(f"range of {n} rows is more than the limit of {MAX_REPEAT}", span)
        diff = X.binop("-", stop.expr, start.expr)
        if step.value != 1 or step.expr.refs():
            diff = X.binop("//", X.binop("+", diff, X.binop("-", step.expr, X.Const(1))), step.expr)
        count = X.call("max", (diff, X.Const(0)))
        rows = [HVal(start.value + i * step.value, X.binop("+", start.expr, X.binop("*", X.Const(i), step.expr)))
                for i in range(n)]
        text = f"range({', '.join(v.expr.text() for v in hv)})"
        return rows, count, text

    def _sequence(self, v, span: Span, what: str) -> tuple[tuple, X.Expr]:
        """The items of a tuple (a tuple-valued hyperparameter's items keep their expressions,
        `depths[2]`) and the tuple's expression."""
        v = _as_hval(v)
        if isinstance(v, HVal) and isinstance(v.value, tuple):
            items = tuple(HVal(x, X.index(v.expr, X.Const(i))) for i, x in enumerate(v.value))
            return items, v.expr
        if isinstance(v, TupleV):
            return v.items, X.Const(len(v.items) * (0,))
        raise ShapeError(
            f"{what}: expected range(...), zip(...), enumerate(...), a tuple or a table [...], "
            f"found {_describe(v)}", span)

    def if_expr(self, ctx: Ctx, e: A.IfExpr, hint):
        """`a if c else b`: c is static. Two hyperparameter branches give an expression that
        the generated class computes; otherwise the branch is chosen as an `if` chooses it
        (and the class refuses hyperparameters that would choose the other)."""
        cond, text = self.static_bool(ctx, e.cond)
        taken, other = (e.then, e.orelse) if cond.value else (e.orelse, e.then)
        if _is_static(ctx, taken) and _is_static(ctx, other):
            v = _as_hval(self.expr(ctx, taken, hint))
            with X.recording():  # what the other branch would require is no check of this one
                try:
                    w = _as_hval(self.expr(ctx, other))
                except NNError:
                    w = None
            if isinstance(v, HVal) and isinstance(w, HVal):
                a, b = (v, w) if cond.value else (w, v)
                return HVal(v.value, X.cond(cond.expr, a.expr, b.expr))
            if isinstance(v, HVal):
                self._note_choice(cond, f"`{text}` (a conditional expression's condition)")
                return v
        self._note_choice(cond, f"`{text}` (a conditional expression's condition)")
        return self.expr(ctx, taken, hint)

    @staticmethod
    def _note_choice(cond: HVal, label: str):
        """Note the structural choice `cond` made (`label` names it in the message): a generated
        class refuses hyperparameters that would choose otherwise."""
        taken = bool(cond.value)
        X.note(
            cond.expr if taken else _not(cond.expr),
            f"{label} was compiled for it being {str(taken).lower()}: the structure of a "
            "compiled module is fixed, so compile the spec again for these hyperparameters "
            "(nnc compile -p NAME=VALUE)",
        )

    def subscript(self, ctx: Ctx, e: A.Subscript):
        base = self.expr(ctx, e.operand)
        if isinstance(base, TVal):
            raise ShapeError("a tensor is indexed by axis name: x[seq = 0] (a subscript without a name "
                             "reads a tuple of hyperparameters)", e.span)
        idx = _as_hval(self.expr(ctx, e.index))
        if not isinstance(idx, HVal) or not (isinstance(idx.value, int) and not isinstance(idx.value, bool)):
            raise HyperparameterError(f"a tuple's index must be an integer, found {_describe(idx)}", e.index.span)
        if isinstance(base, TupleV):
            if not -len(base.items) <= idx.value < len(base.items):
                raise HyperparameterError(f"index {idx.value} is out of range for a tuple of {len(base.items)}", e.index.span)
            return base.items[idx.value]
        base = _as_hval(base)
        if not (isinstance(base, HVal) and isinstance(base.value, tuple)):
            raise HyperparameterError(f"only a tuple can be indexed, found {_describe(base)}", e.operand.span)
        n = len(base.value)
        ex = X.index(base.expr, idx.expr)
        X.note(X.binop("<", idx.expr if idx.value >= 0 else X.neg(idx.expr), X.binop("+", X.call("len", (base.expr,)), X.Const(0 if idx.value >= 0 else 1))),
               f"{ex.text()}: index ", ("r", idx.expr), " is out of range for a tuple of ", ("r", X.call("len", (base.expr,))))
        if not -n <= idx.value < n:
            raise HyperparameterError(f"index {idx.value} is out of range for a tuple of {n} ({X.const(base.value).text()})", e.index.span)
        return HVal(base.value[idx.value], ex)

    def hyper_call(self, ctx: Ctx, e: A.Call):
        """`len(depths)`, `int(x)`: functions of hyperparameters."""
        name = e.func.id if isinstance(e.func, A.Name) else ""
        if name in ("range", "zip", "enumerate"):
            raise ShapeError(f"{name}(...) gives the rows of a `for` loop: for i in {name}(...) {{ ... }}", e.span)
        if len(e.args) != 1 or not isinstance(e.args[0], A.PosArg):
            raise ShapeError(f"{name} takes one argument", e.span)
        arg = e.args[0]
        v = _as_hval(self.expr(ctx, arg.value))
        if not isinstance(v, HVal):
            raise ShapeError(f"{name} acts on hyperparameters, found {_describe(v)}", arg.span)
        if name == "len":
            if not isinstance(v.value, tuple):
                raise HyperparameterError(f"len needs a tuple, found {X.const(v.value).text()}", arg.span)
            return HVal(len(v.value), X.call("len", (v.expr,)))
        if not _number(v.value) or not math.isfinite(v.value):
            raise HyperparameterError(f"{name} needs a finite number, found {X.const(v.value).text()}", arg.span)
        return HVal(int(v.value), X.call("int", (v.expr,)))

    # ---- expressions
    def expr(self, ctx: Ctx, e, hint: str | None = None):
        try:
            return self._expr(ctx, e, hint)
        except NNError as err:
            raise err.with_span(e.span) from None

    def _expr(self, ctx: Ctx, e, hint):
        if isinstance(e, A.Number):
            if isinstance(e.value, float) and not math.isfinite(e.value):
                raise HyperparameterError(f"number {e.value} is not finite", e.span)
            if isinstance(e.value, int) and e.value > 2**63 - 1:
                raise ResourceError(f"the number {e.value} is larger than a 64-bit integer", e.span)
            return HVal.const(e.value)
        if isinstance(e, A.String):
            return HVal.const(e.value)
        if isinstance(e, A.Bool):
            return HVal.const(e.value)
        if isinstance(e, A.NoneLit):
            return HVal.const(None)
        if isinstance(e, A.IfExpr):
            return self.if_expr(ctx, e, hint)
        if isinstance(e, A.Subscript):
            return self.subscript(ctx, e)
        if isinstance(e, A.Name):
            return self.name(ctx, e)
        if isinstance(e, A.Tuple):
            return TupleV(tuple(self.expr(ctx, i) for i in e.items))
        if isinstance(e, A.Neg):
            v = self.expr(ctx, e.operand)
            if isinstance(v, HVal):
                return self.hval_arith("neg", v, v, e.span)
            return self.apply_op(ctx, self.op_fn("neg", e.span), (self._tensor(v, e.operand.span),), e.span, hint)
        if isinstance(e, A.BinOp):
            return self.binop(ctx, e, hint)
        if isinstance(e, A.Not):
            v = self._tensor(self.expr(ctx, e.operand), e.operand.span)
            return self.apply_op(ctx, self.op_fn("logical_not", e.span), (v,), e.span, hint)
        if isinstance(e, A.Rename):
            # the name goes to the operation whose result is renamed: `k = Linear(x, ..) rename a -> b`
            v = self._tensor(self.expr(ctx, e.operand, hint), e.operand.span)
            call = OpCall("rename", (), kwargs=(("new", e.new), ("old", e.old)))
            return self._add(ctx, call, (v,), e.span, None)
        if isinstance(e, A.Index):
            v = self._tensor(self.expr(ctx, e.operand), e.operand.span)
            idx = self.expr(ctx, e.index)
            call = OpCall("select", (), kwargs=(("axis", e.axis), ("index", idx)))
            return self._add(ctx, call, (v,), e.span, hint)
        if isinstance(e, A.Slice):
            v = self._tensor(self.expr(ctx, e.operand), e.operand.span)
            ends: list[HVal | None] = []
            for part in (e.start, e.stop):
                if part is None:
                    ends.append(None)
                    continue
                end = self.expr(ctx, part)
                if not isinstance(end, HVal):
                    raise ShapeError(f"a slice's ends are numbers, found {_describe(end)}", part.span)
                ends.append(end)
            call = OpCall("slice", (), kwargs=(("axis", e.axis), ("start", ends[0]), ("stop", ends[1])))
            return self._add(ctx, call, (v,), e.span, hint)
        if isinstance(e, A.Call):
            return self.call(ctx, e, hint)
        raise NNError(f"unsupported expression {type(e).__name__}", e.span)

    def name(self, ctx: Ctx, e: A.Name):
        v = ctx.lookup(e.id)
        if v is not None:
            return v
        blocks = self.program.scope(ctx.graph.file)
        if e.id in blocks:
            return BlockFn(e.id, block=blocks[e.id], span=e.span)
        ops = registry.all_ops()
        if e.id in ops:
            return self.op_fn(e.id, e.span)
        if e.id == "inf":  # for masks: `where(m, e, -inf)`, `x > -inf`
            return HVal.const(math.inf)
        known = set(ops) | set(blocks) | _all_names(ctx)
        raise NameResolutionError(f"unknown name '{e.id}'{did_you_mean(e.id, known)}", e.span)

    def op_fn(self, name: str, span: Span) -> OpFn:
        return OpFn(name, opdef=registry.get(name), span=span)

    def _tensor(self, v, span) -> Value:
        if isinstance(v, TVal):
            return v.value
        raise ShapeError(f"expected a tensor, found {_describe(v)}", span)

    def binop(self, ctx: Ctx, e: A.BinOp, hint):
        if e.op == "|>":
            left = self.expr(ctx, e.left)
            fn = self.expr(ctx, e.right)
            if not isinstance(fn, Fn):
                raise ShapeError(f"the right side of '|>' must be an operation or block, found {_describe(fn)}", e.right.span)
            items = left.items if isinstance(left, TupleV) else (left,)
            tensors = tuple(self._tensor(i, e.left.span) for i in items)
            return self.apply(ctx, fn, tensors, e.right.span, hint)
        a = self.expr(ctx, e.left)
        b = self.expr(ctx, e.right)
        if e.op == "//" and not (isinstance(a, HVal) and isinstance(b, HVal)):
            raise ShapeError(f"'//' (floor division) acts on hyperparameters, found {_describe(a)} and "
                             f"{_describe(b)}; for tensors write floor(a / b)", e.span)
        op = TENSOR_BINOPS.get(e.op, e.op)
        if isinstance(a, HVal) and isinstance(b, HVal) and e.op not in ARITH_BINOPS:
            raise HyperparameterError(f"'{e.op}' acts on tensors; found {_describe(a)} and {_describe(b)}", e.span)
        if isinstance(a, HVal) and isinstance(b, HVal):
            out = self.hval_arith(e.op, a, b, e.span)
            v = out.value
            if isinstance(v, float) and not math.isfinite(v):  # 1e308 * 10: no `inf` in code
                raise HyperparameterError(f"{a.expr.text()} {e.op} {b.expr.text()} is {v}, not a finite number", e.span)
            if isinstance(v, int) and abs(v) > 2**63 - 1:
                raise ResourceError(f"{a.expr.text()} {e.op} {b.expr.text()} is larger than a 64-bit integer", e.span)
            return out
        if isinstance(a, TVal) and isinstance(b, TVal):
            return self.apply_op(ctx, self.op_fn(op, e.span), (a.value, b.value), e.span, hint)
        if isinstance(a, TVal) and isinstance(b, HVal):
            call = OpCall(op, (), kwargs=(("scalar", b), ("side", "right")))
            return self._add(ctx, call, (a.value,), e.span, hint)
        if isinstance(a, HVal) and isinstance(b, TVal):
            call = OpCall(op, (), kwargs=(("scalar", a), ("side", "left")))
            return self._add(ctx, call, (b.value,), e.span, hint)
        raise ShapeError(f"cannot apply '{e.op}' to {_describe(a)} and {_describe(b)}", e.span)

    def hval_arith(self, op: str, a: HVal, b: HVal, span: Span) -> HVal:
        x, y = a.value, b.value
        if not (_number(x) and _number(y)):
            shown = [X.const(v).text() for v in (x, y)]
            raise HyperparameterError(
                f"cannot apply '{'-' if op == 'neg' else op}' to {shown[0]} and {shown[1]}"
                + ("; compare with `== none` or choose with `A if C else B`" if x is None or y is None else ""), span)
        ta, tb = a.expr.text(), b.expr.text()
        try:
            if op == "neg":
                return HVal(-x, X.neg(a.expr))
            if op in ("+", "-", "*"):
                return HVal(X.apply_op(op, x, y), X.binop(op, a.expr, b.expr))
            if op == "/":
                zero = f"division by zero ({ta} / {tb})"
                X.note(X.binop("!=", b.expr, X.Const(0)), zero)
                if y == 0:
                    raise HyperparameterError(zero, span)
                if isinstance(x, int) and isinstance(y, int):
                    X.note(
                        X.binop("==", X.binop("%", a.expr, b.expr), X.Const(0)),
                        f"{ta} / {tb}: ", ("e", a.expr), " is not divisible by ", ("e", b.expr),
                        " (write a float, e.g. 1.0 / 3, for a fraction)",
                    )
                    if x % y:
                        raise HyperparameterError(
                            f"{ta} / {tb}: {x} is not divisible by {y} "
                            "(write a float, e.g. 1.0 / 3, for a fraction)",
                            span,
                        )
                    return HVal(x // y, X.binop("div", a.expr, b.expr))
                return HVal(x / y, X.binop("/", a.expr, b.expr))
            if op == "//":
                zero = f"division by zero ({ta} // {tb})"
                X.note(X.binop("!=", b.expr, X.Const(0)), zero)
                if y == 0:
                    raise HyperparameterError(zero, span)
                return HVal(x // y, X.binop("//", a.expr, b.expr))
            if op == "**":
                if isinstance(y, int) and abs(y) > 64 or (isinstance(x, int) and abs(x) > 2**20 and y > 4):
                    raise ResourceError(f"{x} ** {y} is too large", span)
                return HVal(x**y, X.binop("**", a.expr, b.expr))
        except (OverflowError, ZeroDivisionError, X.ExprError) as err:
            raise HyperparameterError(f"{ta} {op} {tb}: {err}", span) from None
        raise HyperparameterError(f"unknown operator {op}", span)

    # ---- calls and application
    def call(self, ctx: Ctx, e: A.Call, hint):
        if (isinstance(e.func, A.Name) and e.func.id in HYPER_FUNCS and ctx.peek(e.func.id) is None
                and e.func.id not in self.program.scope(ctx.graph.file)):
            return self.hyper_call(ctx, e)
        fn = self.expr(ctx, e.func)
        if isinstance(fn, HVal) and isinstance(e.func, A.Name) and e.func.id in registry.all_ops():
            # a number is never called: a hyperparameter named like an op (torchvision's
            # `dropout`) leaves the op callable, `dropout(p = dropout)`
            fn = self.op_fn(e.func.id, e.func.span)
        if isinstance(fn, HVal) or (fn is None):
            raise ShapeError(f"{_describe(fn)} cannot be called", e.func.span)
        # `exp(2.0)` is arithmetic on numbers, `exp(x)` an op: the arguments are evaluated
        # once here and handed on, since evaluating one again would instantiate its learned
        # ops again (`exp(Linear(x, c -> c))` had two Linears)
        pre: dict[int, object] = {}
        if (
            isinstance(e.func, A.Name) and e.func.id in SCALAR_FUNCS and isinstance(fn, Fn)
            and e.args and all(isinstance(a, A.PosArg) for a in e.args)
        ):
            vals = [self.expr(ctx, a.value) for a in e.args if isinstance(a, A.PosArg)]
            if all(isinstance(v, HVal) for v in vals):
                return SCALAR_FUNCS[e.func.id](vals, e.span)
            pre = {id(a): v for a, v in zip(e.args, vals)}
        if not isinstance(fn, Fn):
            raise ShapeError(f"{_describe(fn)} cannot be called", e.func.span)
        if fn.args or fn.hyper is not None or fn.instance is not None:
            # an already-configured op or block: the call's arguments are its tensors
            tensors: list[Value] = []
            for a in e.args:
                if not isinstance(a, A.PosArg):
                    raise ShapeError(f"'{fn.name}' is already configured; pass only tensors here", a.span)
                v = self._arg(ctx, a, pre)
                items = v.items if isinstance(v, TupleV) else (v,)
                tensors.extend(self._tensor(i, a.span) for i in items)
            return self.apply(ctx, fn, tuple(tensors), e.span, hint)
        if isinstance(fn, BlockFn):
            return self.block_args(ctx, fn, e, hint, pre)
        if not isinstance(fn, OpFn):
            raise InternalError(f"{fn.name} is neither an op nor a block")
        return self.op_args(ctx, fn, e, hint, pre)

    def _arg(self, ctx: Ctx, a: A.PosArg, pre: dict):
        return pre[id(a)] if id(a) in pre else self.expr(ctx, a.value)

    def block_args(self, ctx: Ctx, fn: BlockFn, e: A.Call, hint, pre: dict):
        tensors: list[Value] = []
        hyper: dict[str, HVal] = {}
        order: list[str] = []
        params = [p.name for p in fn.block.params]
        pos = 0
        axes: dict[str, str] = {}
        for a in e.args:
            if isinstance(a, A.KwArg) and a.name in fn.block.axis_params:
                # `RotateHalf(dh = rope)`: the caller's axis `rope` plays the block's `dh`
                if not isinstance(a.value, A.Name):
                    raise ShapeError(f"axis parameter '{a.name}' of block {fn.name} takes an axis name, e.g. {a.name} = seq", a.value.span)
                if a.name in axes:
                    raise HyperparameterError(f"axis parameter '{a.name}' given twice", a.span)
                axes[a.name] = a.value.id
                continue
            if isinstance(a, A.KwArg):
                if a.name in hyper:
                    raise HyperparameterError(f"hyperparameter '{a.name}' given twice", a.span)
                hyper[a.name] = self._hval(self.expr(ctx, a.value), a.value.span, a.name)
                order.append(a.name)
            elif isinstance(a, A.PosArg):
                v = _as_hval(self._arg(ctx, a, pre))  # a tuple of numbers is a hyperparameter
                if isinstance(v, (TVal, TupleV)):
                    items = v.items if isinstance(v, TupleV) else (v,)
                    tensors.extend(self._tensor(i, a.span) for i in items)
                    continue
                if pos >= len(params):
                    raise HyperparameterError(
                        f"block {fn.name} takes {len(params)} hyperparameter(s), found more", a.span
                    )
                hyper[params[pos]] = self._hval(v, a.span, params[pos])
                order.append(params[pos])
                pos += 1
            else:
                raise ShapeError(f"block {fn.name} takes hyperparameters and tensors, not axis arguments", a.span)
        out = BlockFn(fn.name, block=fn.block, span=e.span, hyper=hyper, hyper_order=tuple(order),
                      axes=tuple(sorted(axes.items())))
        if tensors:
            return self.apply(ctx, out, tuple(tensors), e.span, hint)
        return out

    def _hval(self, v, span, name) -> HVal:
        v = _as_hval(v)
        if not isinstance(v, HVal):
            raise HyperparameterError(f"hyperparameter '{name}' must be a number, string or boolean, found {_describe(v)}", span)
        return v

    def op_args(self, ctx: Ctx, fn: OpFn, e: A.Call, hint, pre: dict):
        op = fn.opdef
        n_axis = len(op.positional)
        pos_args = [a for a in e.args if isinstance(a, A.PosArg)]
        axis_pos = pos_args[len(pos_args) - n_axis:] if n_axis and len(pos_args) >= n_axis else []
        tensors: list[Value] = []
        pieces: dict[str, Any] = {"positional": [], "kwargs": []}
        scalars: list = []
        for a in e.args:
            if isinstance(a, A.PosArg):
                if any(a is p for p in axis_pos):
                    if not isinstance(a.value, A.Name):
                        raise ShapeError(f"{op.name} expects an axis name here", a.span)
                    pieces["positional"].append(AxisSpec(a.value.id))
                    continue
                v = self._arg(ctx, a, pre)
                if (isinstance(v, TupleV) and "sizes" in op.kwargs and v.items
                        and all(isinstance(i, HVal) for i in v.items)):  # `split(x, over c, (2, 3))`
                    if any(k == "sizes" for k, _ in pieces["kwargs"]):
                        raise ShapeError("argument 'sizes' given twice", a.span)
                    pieces["kwargs"].append(("sizes", v.items))
                elif isinstance(v, (TVal, TupleV)):
                    items = v.items if isinstance(v, TupleV) else (v,)
                    tensors.extend(self._tensor(i, a.span) for i in items)
                elif isinstance(v, HVal) and "scalars" in op.takes:  # `where(m, x, -inf)`
                    scalars.append((len(tensors) + len(scalars), v))
                else:
                    raise ShapeError(
                        f"{op.name} takes tensors as positional arguments, found {_describe(v)}"
                        + (f"; keywords: {', '.join(op.kwargs)}" if op.kwargs else ""),
                        a.span,
                    )
            elif isinstance(a, A.KwArg):
                if a.name not in op.kwargs:
                    raise ShapeError(
                        f"{op.name} has no argument '{a.name}'{did_you_mean(a.name, op.kwargs)}"
                        + (f"; it takes {', '.join(op.kwargs)}" if op.kwargs else ""),
                        a.span,
                    )
                if any(k == a.name for k, _ in pieces["kwargs"]):
                    raise ShapeError(f"argument '{a.name}' given twice", a.span)
                pieces["kwargs"].append((a.name, self.kwarg(ctx, op, a)))
            elif isinstance(a, A.MapArg):
                if "map" not in op.takes:
                    raise ShapeError(f"{op.name} takes no 'IN -> OUT' axes", a.span)
                if a.operand is not None:  # `einsum(a, f(b) -> [i, j])`: the last operand
                    if op.name != "einsum":
                        raise ShapeError(
                            f"{op.name} takes axis names on the left of '->', found an expression",
                            a.operand.span,
                        )
                    v = self.expr(ctx, a.operand)
                    items = v.items if isinstance(v, TupleV) else (v,)
                    tensors.extend(self._tensor(i, a.operand.span) for i in items)
                    pieces["src"] = ()
                elif (
                    op.name == "einsum"
                    and len(a.src) == 1
                    and a.src[0].size is None
                    and isinstance(ctx.lookup(a.src[0].name), TVal)
                ):
                    tensors.append(ctx.lookup(a.src[0].name).value)
                    pieces["src"] = ()
                else:
                    pieces["src"] = self.axis_specs(ctx, a.src)
                pieces["dst"] = self.axis_specs(ctx, a.dst)
            elif isinstance(a, A.OverArg):
                if "over" not in op.takes:
                    raise ShapeError(f"{op.name} takes no 'over' axes", a.span)
                # an existing axis: a hyperparameter of the same name is not its size
                pieces["over"] = self.axis_specs(ctx, a.axes, sized_by_hyper=False)
            elif isinstance(a, A.AxesArg):
                if "axes" not in op.takes:
                    raise ShapeError(f"{op.name} takes no axis list", a.span)
                pieces["axes"] = self.axis_specs(ctx, a.axes)
        if scalars:
            pieces["kwargs"].append(("scalars", tuple(scalars)))
        args = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in pieces.items()))
        out = OpFn(op.name, opdef=op, args=args, span=e.span, tensors=tuple(tensors))
        # an op of one or more tensors that also takes a bare axis list (Buffer([e: n])) is
        # applied with the list alone
        by_axes = op.arity is None and "axes" in pieces and not tensors
        if op.arity == 0 or by_axes or (tensors and (op.arity is None or len(tensors) >= op.arity)):
            return self.apply(ctx, out, (), e.span, hint)
        return out  # configured, not applied: its (remaining) tensors come from a call or a pipe

    def kwarg(self, ctx: Ctx, op: OpDef, a: A.KwArg):
        if a.name == "tied":
            if not isinstance(a.value, A.Name):
                raise ShapeError("tied names an Embedding or Linear instance: tied = wte", a.span)
            v = ctx.env.get(a.value.id)
            if not isinstance(v, Fn) or v.instance is None:
                raise NameResolutionError(
                    f"tied = {a.value.id}: no learned instance named '{a.value.id}' in this block", a.value.span
                )
            return v.instance
        if a.name in ("into", "channel", "mode") and isinstance(a.value, A.Name):
            return a.value.id
        if a.name in ("init", "bias_init"):
            return self.init_arg(ctx, a.value)
        v = self.expr(ctx, a.value)
        if isinstance(v, TupleV):
            if not all(isinstance(i, HVal) for i in v.items):
                raise ShapeError(f"argument '{a.name}' must be numbers", a.span)
            return v.items
        if not isinstance(v, HVal):
            raise ShapeError(f"argument '{a.name}' must be a number, string or boolean, found {_describe(v)}", a.span)
        if a.name == "to":
            return v.value
        return v

    def init_arg(self, ctx: Ctx, e):
        """`init = zeros`, `init = normal(0.02 / sqrt(2 * layers))`, `kaiming_normal(mode =
        fan_out)`: the kind as a name and its arguments as values (the op checks them)."""
        if isinstance(e, A.Name) and e.id in INIT_KINDS:
            return e.id
        if isinstance(e, A.Call) and isinstance(e.func, A.Name) and e.func.id in INIT_KINDS:
            pos, kw = [], []
            kind = e.func.id

            def number(a):
                v = self.expr(ctx, a.value)
                if not isinstance(v, HVal):
                    raise ShapeError(f"the arguments of {kind} are numbers, found {_describe(v)}", a.span)
                return v

            for a in e.args:
                if isinstance(a, A.PosArg):
                    pos.append(number(a))
                elif isinstance(a, A.KwArg) and a.name == "mode" and isinstance(a.value, A.Name):
                    kw.append((a.name, a.value.id))
                elif isinstance(a, A.KwArg):
                    kw.append((a.name, number(a)))
                else:
                    raise ShapeError(f"the arguments of {e.func.id} are numbers", a.span)
            return OpCall(e.func.id, (), positional=tuple(pos), kwargs=tuple(kw))
        head = e.func if isinstance(e, A.Call) else e
        if isinstance(head, A.Name) and (isinstance(e, A.Call) or ctx.peek(head.id) is None):
            raise ShapeError(
                f"unknown initialisation '{head.id}'{did_you_mean(head.id, INIT_KINDS)}; "
                f"known: {', '.join(sorted(INIT_KINDS))}",
                head.span,
            )
        v = self.expr(ctx, e)
        if isinstance(v, HVal) and isinstance(v.value, str):
            return v
        raise ShapeError(
            f"init names an initialisation ({', '.join(sorted(INIT_KINDS))}), found {_describe(v)}", e.span
        )

    def axis_specs(self, ctx: Ctx, refs, sized_by_hyper: bool = True) -> tuple[AxisSpec, ...]:
        out = []
        for r in refs:
            if r.size is not None:
                v = self.expr(ctx, r.size)
                if not isinstance(v, HVal):
                    raise ShapeError(f"the size of axis '{r.name}' must be a number", r.size.span)
                out.append(AxisSpec(r.name, v))
            else:
                v = ctx.peek(r.name) if sized_by_hyper else None
                out.append(AxisSpec(r.name, v if isinstance(v, HVal) else None))
        names = [s.name for s in out]
        for n in names:
            if names.count(n) > 1:
                raise ShapeError(f"axis '{n}' is named twice", refs[0].span)
        return tuple(out)

    def _learned(self, fn: Fn) -> bool:
        return isinstance(fn, BlockFn) or (isinstance(fn, OpFn) and fn.opdef.learned)

    def apply(self, ctx: Ctx, fn: Fn, tensors: tuple, span: Span, hint):
        if isinstance(fn, BlockFn):
            return self.apply_block(ctx, fn, tensors, span, hint)
        if not isinstance(fn, OpFn):
            raise InternalError(f"{fn.name} is neither an op nor a block")
        return self.apply_op(ctx, fn, tensors, span, hint)

    def apply_op(self, ctx: Ctx, fn: OpFn, tensors: tuple, span: Span, hint):
        op = fn.opdef
        tensors = tuple(fn.tensors) + tuple(tensors)
        if op.arity is not None and len(tensors) != op.arity:
            raise ShapeError(f"{op.name} takes {op.arity} tensor(s), found {len(tensors)}", span)
        pieces = dict(fn.args)
        if op.arity is None and not tensors and "axes" not in pieces:
            raise ShapeError(f"{op.name} needs at least one tensor", span)
        kwargs = tuple(pieces.get("kwargs", ()))
        positional = tuple(pieces.get("positional", ()))
        if op.name in ("positions", "length") and positional:
            size = ctx.axis_sizes.get(positional[0].name)
            if size is not None:
                kwargs = kwargs + (("_size", size),)
                code = X.dependent(ctx.axis_codes.get(positional[0].name))
                if size.is_static and code is not None:
                    kwargs = kwargs + (("_code", HVal(size.value, code)),)
        if op.name in FILL_OPS and pieces.get("axes"):
            # an axis without a size takes the one it has in scope: a static one as its
            # expression, a run-time one (batch) as `_sizes`, read from an input when it runs
            specs, dyn = [], []
            for sp in pieces["axes"]:
                size = ctx.axis_sizes.get(sp.name) if sp.size is None else None
                code = ctx.axis_codes.get(sp.name)
                if size is not None and size.is_static:
                    sp = AxisSpec(sp.name, HVal(size.value, code) if code is not None else HVal.const(size.value))
                elif size is not None:
                    dyn.append(size)
                elif sp.size is None:
                    raise ShapeError(
                        f"{op.name}: the size of axis '{sp.name}' is unknown: no tensor in scope has it "
                        f"and no hyperparameter is called so; write '{sp.name}: SIZE'", span)
                specs.append(sp)
            pieces["axes"] = tuple(specs)
            if dyn:
                kwargs = kwargs + (("_sizes", tuple(dyn)),)
        call = OpCall(
            op.name,
            (),
            src=pieces.get("src"),
            dst=pieces.get("dst"),
            over=pieces.get("over"),
            axes=pieces.get("axes"),
            positional=positional,
            kwargs=tuple(sorted(kwargs)),
        )
        return self._add(ctx, call, tensors, span, hint, fn)

    def _add(self, ctx: Ctx, call: OpCall, tensors, span, hint, fn: Fn | None = None):
        g = ctx.graph
        for key, val in call.kwargs:  # a tuple or `none` is a hyperparameter's value, not an op's
            for item in val if isinstance(val, tuple) else (val,):
                if isinstance(item, HVal) and not _plain(item.value):
                    raise ShapeError(
                        f"{call.op}: argument '{key}' takes a number, string or boolean, found "
                        f"{X.const(item.value).text()}", span)
        op = registry.get(call.op)
        module = None
        if op.learned:
            if fn is not None and fn.instance is not None:
                module = fn.instance
                name = g.fresh_name(module)
            else:
                name = ctx.fresh(hint or snake(op.name))
                module = name
        else:
            name = ctx.fresh(hint or call.op)
        if op.is_built:
            self._check_built(ctx, op, tensors, span)
        node = g.add_op(call, tensors, name=name, module=module, span=span)
        if op.learned:
            self._check_sharing(ctx, node, op, span)
        for t in node.types:
            ctx.note_type(t)
        if len(node.types) == 1:
            return TVal(node.out())
        return TupleV(tuple(TVal(node.out(i)) for i in range(len(node.types))))

    def _check_built(self, ctx: Ctx, op: OpDef, tensors, span):
        """An op computed when the module is built (a Buffer) may read only what exists then:
        its inputs must come from hyperparameters, positions and other such ops, never from a
        model input, a learned or random op, or a block call."""
        g = ctx.graph
        todo = [v.node for v in tensors]
        seen: set[int] = set()
        while todo:
            nid = todo.pop()
            if nid in seen:
                continue
            seen.add(nid)
            n = g.node(nid)
            what = None
            if isinstance(n, InputNode):
                what = f"the input '{n.input_name}'" if g.kind != "repeat" else "a value of the loop"
            elif isinstance(n, (CallNode, LoopNode)):
                what = f"the block call '{n.name}'"
            else:
                d = registry.get(n.op)
                if d.is_random:
                    what = f"the random op {n.op}"
                elif d.learned and not d.is_built:
                    what = f"the learned op {n.op} ('{n.name}')"
            if what is not None:
                raise ShapeError(
                    f"{op.name} is made when the module is built, so its initial value cannot read "
                    f"{what}; build it from hyperparameters, positions and other buffers",
                    span,
                )
            todo.extend(v.node for v in n.inputs)

    def _check_sharing(self, ctx: Ctx, node, op: OpDef, span):
        specs = op.params(node.attrs, ())
        sig = (node.op, tuple((p.name, tuple(s.value for s in p.shape)) for p in specs))
        prev = ctx.modules.get(node.module)
        if prev is not None and prev != sig:
            raise ShapeError(f"'{node.module}' is applied again with different weight shapes", span)
        ctx.modules[node.module] = sig
        tied = op.ties(node.attrs)
        if tied is not None:
            target = ctx.modules.get(tied)
            mine = tuple(s.value for s in op.tied_shape(node.attrs))
            theirs = dict(target[1]).get("weight") if target else None
            if theirs is None:
                raise NameResolutionError(f"tied = {tied}: '{tied}' has not been applied yet, so it has no weight", span)
            if tuple(theirs) != mine:
                raise ShapeError(
                    f"tied = {tied}: its weight is {list(theirs)} but this Linear needs {list(mine)}", span
                )

    def apply_block(self, ctx: Ctx, fn: BlockFn, tensors, span, hint):
        if not fn.axes:
            return self._apply_block(ctx, fn, tensors, span, hint)
        # axis parameters: the caller's axes are renamed to the block's names on the way in
        # and back on the way out (renames cost nothing)
        g = ctx.graph
        renamed = []
        for v in tensors:
            t = g.type_of(v)
            for param, mine in fn.axes:
                if t.has(mine) and param != mine:
                    if t.has(param):
                        raise ShapeError(
                            f"block {fn.name}: axis parameter {param} = {mine}, but the input {t} already "
                            f"has an axis '{param}'; rename it first", span)
                    v = self._tensor(self._add(ctx, OpCall("rename", (), kwargs=(("new", param), ("old", mine))), (v,), span, None), span)
                    t = g.type_of(v)
            renamed.append(v)
        out = self._apply_block(ctx, fn, tuple(renamed), span, hint)
        items = out.items if isinstance(out, TupleV) else (out,)
        back = []
        for item in items:
            v = item.value
            for param, mine in fn.axes:
                t = g.type_of(v)
                if t.has(param) and param != mine:
                    if t.has(mine):
                        raise ShapeError(f"block {fn.name}: its output {t} has both '{param}' and '{mine}'", span)
                    v = self._tensor(self._add(ctx, OpCall("rename", (), kwargs=(("new", mine), ("old", param))), (v,), span, None), span)
            back.append(TVal(v))
        return back[0] if len(back) == 1 and not isinstance(out, TupleV) else TupleV(tuple(back))

    def _apply_block(self, ctx: Ctx, fn: BlockFn, tensors, span, hint):
        hyper = fn.hyper or {}
        callee = self.instantiate(fn.block, hyper, span)
        # the callee's checks are this block's too: its constructor may never run (repeat 0)
        mapping = call_mapping(callee, hyper)
        for c in callee.checks:
            if c.guard is None or c.guard not in hyper:
                X.note(c.cond.subst(mapping), *((k, p if k == "s" else p.subst(mapping)) for k, p in c.message))
        self.check_unrolled(callee, span, f"block {fn.name}")
        g = ctx.graph
        if fn.instance is not None:
            module = fn.instance
            name = g.fresh_name(module)
        else:
            name = ctx.fresh(hint or snake(fn.name))
            module = name
        args = tuple((k, hyper[k]) for k in fn.hyper_order)
        try:
            types, lift = call_types(callee, [g.type_of(v) for v in tensors])
        except NNError as e:
            raise e.with_span(span) from None
        types = caller_codes(callee, hyper, types, len(lift))
        for v, decl_id in zip(tensors, callee.inputs):  # the static sizes this call matched
            actual = g.type_of(v)
            for dax in callee.node(decl_id).type.axes:
                mine = actual.axis(dax.name).size_code()
                want = dax.size_code()
                if mine is not None and want is not None and mine != want.subst(mapping):
                    want = want.subst(mapping)
                    X.note(X.binop("==", mine, want), f"block {callee.name}: axis '{dax.name}' has size ",
                           ("e", mine), ", but the block declares ", ("e", want))
        node = g.add_body(
            "call", tensors, attrs={"block": fn.name, "args": args, "lift": lift}, types=types,
            name=name, module=module, span=span, callee=callee,
        )
        prev = ctx.modules.get(module)
        sig = ("call", fn.name, args)
        if prev is not None and prev != sig:
            raise ShapeError(f"'{module}' is applied again with different hyperparameters", span)
        ctx.modules[module] = sig
        for t in node.types:
            ctx.note_type(t)
        if len(node.types) == 1:
            return TVal(node.out())
        return TupleV(tuple(TVal(node.out(i)) for i in range(len(node.types))))


def _assigned(stmts, out: list[str]) -> list[str]:
    """Names a block of statements assigns, nested repeats included, in order of first
    assignment."""
    for s in stmts:
        targets = s.targets if isinstance(s, A.Assign) else ()
        for t in targets:
            if t not in out:
                out.append(t)
        if isinstance(s, (A.Repeat, A.For, A.Scan)):
            _assigned(s.body, out)
        elif isinstance(s, A.If):
            _assigned(s.then + s.orelse, out)
    return out


_STATIC_COND = (
    "a condition (`if`, `a if c else b`, `scan ... reverse =`) is resolved when the model is built, so it compares hyperparameters; "
    "found {found} (for a choice per element, use where(m, a, b))"
)


def _not(e: X.Expr) -> X.Expr:
    return X.binop("==", e, X.Const(False))


def _describe(v) -> str:
    if isinstance(v, HVal):
        return f"the value {v.value!r}"
    if isinstance(v, TVal):
        return "a tensor"
    if isinstance(v, TupleV):
        return f"a tuple of {len(v.items)}"
    if isinstance(v, OpFn) and v.tensors and v.opdef.arity:  # `LSTMCell(x, h, d -> e)`: c missing
        return (f"the operation '{v.name}' given {len(v.tensors)} of its {v.opdef.arity} tensors "
                "(the others may come from a call or a pipe)")
    if isinstance(v, Fn):
        return f"the {'block' if v.kind == 'block' else 'operation'} '{v.name}'"
    return "nothing"


def _all_names(ctx: Ctx) -> set[str]:
    out = set(ctx.env)
    if ctx.parent is not None:
        out |= _all_names(ctx.parent)
    return out


def _scalar(fn, pyfn):
    def apply(vals, span):
        try:
            if not all(_number(v.value) for v in vals):
                raise HyperparameterError(f"{fn} needs numbers, found {', '.join(X.const(v.value).text() for v in vals)}", span)
            x = [v.value for v in vals]
            return HVal(pyfn(*x), X.call(fn, tuple(v.expr for v in vals)))
        except (ValueError, OverflowError) as err:
            raise HyperparameterError(f"{fn}: {err}", span) from None

    return apply


ARITH_BINOPS = ("+", "-", "*", "/", "//", "**")
TENSOR_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "<": "lt", "<=": "le",
                 ">": "gt", ">=": "ge", "==": "eq", "!=": "ne", "and": "logical_and", "or": "logical_or"}

SCALAR_FUNCS = {
    "sqrt": _scalar("sqrt", math.sqrt),
    "exp": _scalar("exp", math.exp),
    "log": _scalar("log", math.log),
    "abs": _scalar("abs", abs),
    "min": _scalar("min", min),
    "max": _scalar("max", max),
    "floor": _scalar("floor", math.floor),
    "ceil": _scalar("ceil", math.ceil),
}


HYPER_FUNCS = ("len", "int", "range", "zip", "enumerate")  # not ops: they act on hyperparameters only


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _plain(v) -> bool:
    """A value an operation takes: a number, string or boolean (not a tuple, not none)."""
    return isinstance(v, (int, float, bool, str))


def _as_hval(v):
    """A tuple of static values as one hyperparameter value (`depths = (2, 2, 6, 2)`); any
    other value unchanged."""
    if isinstance(v, TupleV):
        items = [_as_hval(i) for i in v.items]
        if items and all(isinstance(i, HVal) for i in items):
            return HVal(tuple(i.value for i in items), X.tup(tuple(i.expr for i in items)))
    return v


def _as_rows(v):
    """A row of a `for (a, b)`: a tuple-valued hyperparameter's item is split into its items."""
    if isinstance(v, HVal) and isinstance(v.value, tuple):
        return TupleV(tuple(HVal(x, X.index(v.expr, X.Const(i))) for i, x in enumerate(v.value)))
    return v


_BAD = object()


def _from_python(v):
    """A hyperparameter value given from Python: lists become tuples; _BAD if it is none."""
    if isinstance(v, (list, tuple)):
        items = [_from_python(x) for x in v]
        return _BAD if not items or any(x is _BAD for x in items) else tuple(items)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return v
    return _BAD


def _is_static(ctx: Ctx, e) -> bool:
    """Whether e reads only hyperparameters and numbers (so evaluating it builds nothing)."""
    if isinstance(e, (A.Number, A.String, A.Bool, A.NoneLit)):
        return True
    if isinstance(e, A.Name):
        return isinstance(ctx.peek(e.id), HVal) or (e.id == "inf" and ctx.peek(e.id) is None)
    if isinstance(e, (A.Neg, A.Not)):
        return _is_static(ctx, e.operand)
    if isinstance(e, A.BinOp):
        return e.op != "|>" and _is_static(ctx, e.left) and _is_static(ctx, e.right)
    if isinstance(e, A.Tuple):
        return all(_is_static(ctx, i) for i in e.items)
    if isinstance(e, A.Subscript):
        return _is_static(ctx, e.operand) and _is_static(ctx, e.index)
    if isinstance(e, A.IfExpr):
        return all(_is_static(ctx, x) for x in (e.cond, e.then, e.orelse))
    if isinstance(e, A.Call):
        return (isinstance(e.func, A.Name) and (e.func.id in SCALAR_FUNCS or e.func.id in ("len", "int"))
                and ctx.peek(e.func.id) is None
                and all(isinstance(a, A.PosArg) and _is_static(ctx, a.value) for a in e.args))
    return False


def elaborate(program: Program, model: str | None = None, params: dict | None = None) -> Graph:
    graph = Elaborator(program).model(model, params or {})
    graph.verify()
    return graph

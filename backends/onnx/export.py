"""Lower a checked spec straight to an ONNX ModelProto (onnx.helper, no tracing): block
calls and repeats are inlined (or kept as local functions), every op goes through
ONNX_LOWERINGS, dynamic axes stay symbolic, initializers carry the torch state_dict names.
Also fp16 and int8 variants with their measured accuracy, and atomic writing."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nncircuit.ops import registry
from nncircuit.errors import InternalError, LoweringError, NNError
from nncircuit.names import fresh
from nncircuit.io import write_atomic
from nncircuit.ir.graph import CallNode, Graph, LoopNode, Node, ScanNode, Value
from nncircuit.names import pyname
from nncircuit.ops.registry import ParamSpec

from nncircuit.backends.onnx import weights as W
from nncircuit.backends.onnx.builder import ELEM, FUNCTION_DOMAIN, Builder, Dims, Tensor, value_info
from nncircuit.backends.onnx.ops import OpCx
from nncircuit.backends.onnx.table import ONNX_LOWERINGS
from nncircuit.backends.onnx.precision import accuracy, quantize_int8
from nncircuit.backends.structure import class_name, input_dependent, single_call_body
from nncircuit.backends.onnx import stream as S


DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 21
EXTERNAL_THRESHOLD = 2**30  # weights above this go to a data file beside the model
# a repeat of at least this many iterations becomes one local function called once per
# iteration, even without --functions: the graph then grows by one node per iteration
REPEAT_AS_FUNCTION = 64


# ---- inlining ----------------------------------------------------------------------------


class Lowerer:
    """Lowers one IR graph (and, inlined, everything it calls) into a Builder."""

    def __init__(
        self, b: Builder, weights, functions: Functions | None, repeats: Functions | None = None
    ):
        self.b = b
        self.weights = weights
        self.functions = functions
        self.repeats = functions or repeats  # where the body of a long repeat goes

    def graph(
        self, g: Graph, args: list[Tensor], scope: str, pscope: str, parent: Dims | None
    ) -> list[Tensor]:
        env: dict[Value, Tensor] = {}
        for nid, a in zip(g.inputs, args):
            t = g.node(nid).type
            env[Value(nid)] = Tensor(a.name, t, a.rank - t.rank)
        dims = Dims(self.b, [env[Value(nid)] for nid in g.inputs], parent)
        for n in g.nodes():
            if n.op == "input":
                continue
            path = f"{scope}.{n.name}" if scope else n.name
            ins = [env[v] for v in n.inputs]
            if isinstance(n, CallNode):
                outs = self._call(n, ins, path, pscope)
            elif isinstance(n, LoopNode):
                outs = self._repeat(n, ins, path, pscope, dims)
            elif isinstance(n, ScanNode):
                outs = self._scan(n, ins, path, pscope, dims)
            else:
                outs = self._op(g, n, ins, path, pscope, dims)
            for i, r in enumerate(outs):
                env[n.out(i)] = r
        return [self._output(g, env, v, scope) for _, v in g.outputs]

    def _output(self, g: Graph, env: dict[Value, Tensor], v: Value, scope: str) -> Tensor:
        """A block result that depends on no input (positions, a Param) lacks the lifted
        axes its caller's type has: it gets the first input's, as the torch module does."""
        o = env[v]
        if g.kind == "model" or not g.inputs or v.node in input_dependent(g):
            return o
        first = env[Value(g.inputs[0])]
        if first.prefix == 0:
            return o
        b = self.b
        b.scope = scope
        shape = b.cat([b.shape(first.name, 0, first.prefix), b.shape(o.name)])
        return replace(o, name=b.op("Expand", [o.name, shape]), prefix=o.prefix + first.prefix)

    def _op(
        self, g: Graph, n: Node, ins: list[Tensor], path: str, pscope: str, dims: Dims
    ) -> list[Tensor]:
        low = ONNX_LOWERINGS.get(n.op)
        if low is None:
            raise LoweringError(f"op '{n.op}' has no ONNX lowering", n.span)
        if self.b.opset < low.min_opset:
            raise LoweringError(
                f"{n.op} needs ONNX opset {low.min_opset} or newer (it becomes {low.onnx}); "
                f"the chosen opset is {self.b.opset}",
                n.span,
            )
        specs = {p.name: p for p in registry.get(n.op).params(n.attrs, tuple(t.type for t in ins))}

        def weight(pname: str) -> str:
            spec = specs[pname]
            return self.weights.resolve(W.state_dict_key(n, pscope, pname, inside=spec.inside), spec)

        def tied(module: str) -> str:
            owner = next((m for m in g.nodes() if m.module == module and m.op == "Embedding"), None)
            if owner is None:
                raise LoweringError(
                    f"{n.name}: 'tied = {module}' names no Embedding of this block", n.span
                )
            (spec,) = registry.get("Embedding").params(owner.attrs, ())
            return self.weights.resolve(W.state_dict_key(owner, pscope, "weight"), spec)

        def declare(pname: str) -> None:
            self.weights.declare(W.state_dict_key(n, pscope, pname), specs[pname])

        self.b.scope = path
        start = len(self.b.nodes)
        try:
            outs = low.fn(OpCx(self.b, n, ins, weight, tied, dims, declare))
        except NNError as e:
            raise e.with_span(n.span) from None
        names = self.b.name_result([t.name for t in outs], start)
        return [replace(t, name=name) for t, name in zip(outs, names)]

    def _call(
        self, n: CallNode, ins: list[Tensor], path: str, pscope: str, child: str | None = None
    ) -> list[Tensor]:
        callee = n.callee
        lift = tuple(n.lift)
        self.b.scope = path
        args: list[Tensor | None] = []
        for a, nid in zip(ins, callee.inputs):
            has_all = all(a.type.has(x) for x in lift)
            args.append(self.b.transpose(a, lift + callee.node(nid).type.names) if has_all else None)
        full = [t for t in args if t is not None]
        if full:  # inputs shared across the lifted axes: size 1 there, expanded to the others'
            ref = max(full, key=lambda t: t.prefix)
            lead = self.b.shape(ref.name, 0, ref.prefix + len(lift))
            for i, (a, nid) in enumerate(zip(ins, callee.inputs)):
                if args[i] is None:
                    names = callee.node(nid).type.names
                    al = self.b.align(a, lift + names, full=True)
                    target = self.b.cat([lead, self.b.i64([1] * len(names))])
                    axes = [ref.type.axis(x) for x in lift] + [al.type.axis(x) for x in names]
                    args[i] = Tensor(self.b.op("Expand", [al.name, target]), al.type.with_axes(axes), ref.prefix)
        given = [t for t in args if t is not None]
        child = child or f"{pscope}{pyname(n.owner)}."
        if self.functions is not None:
            outs = self.functions.call(self, callee, given, path, child)
        else:
            outs = self.graph(callee, given, path, child, None)
        return [self._back(callee, o, t, given[0] if given else None) for o, t in zip(outs, n.types)]

    def _back(self, g: Graph, o: Tensor, t, first: Tensor | None) -> Tensor:
        """A callee's result seen by the caller, whose type includes the lifted axes. A result
        computed without the inputs (positions, a Param, pad_to of one) lacks them at run
        time: it takes those of the first input, as in the torch backend."""
        if o.rank < t.rank:
            if first is None:
                raise LoweringError(
                    f"block {g.name} returns a value that does not depend on its inputs, so it "
                    "lacks the axes the call is lifted over; add it to an input first",
                    g.span,
                )
            lead = first.rank - g.node(g.inputs[0]).type.rank  # lifted axes and outer prefix
            target = self.b.cat([self.b.shape(first.name, 0, lead), self.b.shape(o.name, o.prefix)])
            return Tensor(self.b.op("Expand", [o.name, target]), t, lead + o.type.rank - t.rank)
        return Tensor(o.name, t, o.rank - t.rank)

    def _repeat(
        self, n: LoopNode, ins: list[Tensor], path: str, pscope: str, dims: Dims
    ) -> list[Tensor]:
        k = n.carried
        shared = n.shared
        carried, free = list(ins[:k]), list(ins[k:])
        body = n.callee
        inner = single_call_body(body)  # torch makes that a list of the block itself
        count = int(n.count.value)
        if count == 0 and shared:
            # never applied, but torch builds the shared body: its weights are in the
            # state_dict, so they are declared (the scratch graph is dropped)
            scratch = Lowerer(
                Builder(self.b.opset, fp16=self.b.fp16), W.DeclaredWeights(self.weights), None
            )
            child = f"{pscope}{pyname(n.owner)}."
            args = carried + free
            if n.has_index:
                at = scratch.b.const(np.array(0, dtype=np.int64))
                args = carried + [Tensor(at, body.node(body.inputs[len(carried)]).type, 0)] + free
            if inner is not None:
                scratch._call(inner, args, path, pscope, child)
            else:
                scratch.graph(body, args, path, child, None)
        saved = self.functions
        if count >= REPEAT_AS_FUNCTION:
            self.functions = self.repeats
        try:
            return self._iterations(n, carried, free, path, pscope, dims, count)
        finally:
            self.functions = saved

    def _scan(self, n: ScanNode, ins: list[Tensor], path: str, pscope: str, dims: Dims) -> list[Tensor]:
        """A scan as one ONNX Loop over the axis's run-time length (never unrolled): the
        carried states are loop-carried values, each step Gathers its slice of the scanned
        inputs from the outer scope, and the emitted values are the Loop's scan outputs
        (stacked on axis 0, then moved to their place)."""
        b = self.b
        axis = n.axis
        k = n.carried
        scanned = set(n.scanned)
        body = n.callee
        x0 = ins[min(scanned)]
        b.scope = path
        length = b.dim(x0.name, x0.pos(axis))
        # the body's names come from the same pool: ONNX forbids a subgraph to shadow a name
        sb = Builder(b.opset, fp16=b.fp16)
        sb.values, sb.node_names, sb.scope = b.values, b.node_names, path
        it = sb.values.fresh(f"{path}/step")
        cond = sb.values.fresh(f"{path}/cond")
        states = [Tensor(sb.values.fresh(f"{path}/state"), t.type, t.prefix) for t in ins[:k]]
        step = it
        if n.reverse:
            last = b.op("Sub", [length, b.const(np.array(1, dtype=np.int64))])
            step = sb.op("Sub", [last, it])
        args = list(states)
        if n.has_index:
            args.append(Tensor(step, body.node(body.inputs[k]).type, 0))
        for i, t in enumerate(ins[k:], start=k):
            if i in scanned:
                sliced = sb.op("Gather", [t.name, step], axis=t.pos(axis))
                t = Tensor(sliced, t.type.with_axes(a for a in t.type.axes if a.name != axis), t.prefix)
            args.append(t)
        child = f"{pscope}{pyname(n.owner)}."
        outs = Lowerer(sb, self.weights, self.functions, self.repeats).graph(body, args, path, child, dims)
        sb.scope = path
        cond_out = sb.op("Identity", [cond])
        results = [sb.op("Identity", [o.name]) for o in outs]
        elem = [b.elem(t.dtype) for t in n.types]
        graph = helper.make_graph(
            sb.nodes,
            f"{body.name}",
            [helper.make_tensor_value_info(it, TensorProto.INT64, []),
             helper.make_tensor_value_info(cond, TensorProto.BOOL, [])]
            + [helper.make_tensor_value_info(s.name, e, None) for s, e in zip(states, elem)],
            [helper.make_tensor_value_info(cond_out, TensorProto.BOOL, [])]
            + [helper.make_tensor_value_info(r, e, None) for r, e in zip(results, elem)],
        )
        b.scope = path
        loop = b.op("Loop", [length, "", *(t.name for t in ins[:k])], outputs=len(outs), body=graph)
        loop = [loop] if isinstance(loop, str) else loop
        final = [Tensor(name, t, o.prefix) for name, t, o in zip(loop[:k], n.types[:k], outs[:k])]
        for j, (name, o) in enumerate(zip(loop[k:], outs[k:])):
            stacked = n.types[k + j]
            if n.reverse:  # the steps ran from the end: put them back in order
                name = b.op("Slice", [name, b.i64([-1]), b.i64([-(2**63)]), b.i64([0]), b.i64([-1])])
            rank = o.rank + 1
            if o.prefix == 0:
                # a Loop that ran no step has no shape for its scan outputs (onnxruntime
                # makes them [0]): give them theirs, [length, the per-step axes]
                step_axes = o.type.axes
                sizes = [b.unsqueeze(length, [0])] + [b.unsqueeze(dims.size(a.size), [0]) for a in step_axes]
                name = b.op("Reshape", [name, b.cat(sizes)])
            at = o.prefix + stacked.index(axis)
            if at:
                order = list(range(1, rank))
                order.insert(at, 0)
                name = b.op("Transpose", [name], perm=order)
            final.append(Tensor(name, stacked, o.prefix))
        return final

    def _iterations(self, n: LoopNode, carried, free, path, pscope, dims, count) -> list[Tensor]:
        shared = n.shared
        body = n.callee
        inner = single_call_body(body)
        k = len(carried)
        axis = n.axis or ""  # "": slices nothing (no input is scanned, nothing stacked)
        scanned = set(n.scanned)
        body_types = [body.type_of(v) for _, v in body.outputs]
        emitted: list[list[Tensor]] = [[] for _ in body_types[k:]]
        for i in range(count):
            scope = f"{path}.{i}"
            child = f"{pscope}{pyname(n.owner)}." + ("" if shared else f"{i}.")
            step = list(free)
            if scanned or n.has_index:  # `as h, i over layer`: this iteration's slices
                self.b.scope = scope
                at = self.b.const(np.array(i, dtype=np.int64))
                for j, t in enumerate(free):
                    if k + j in scanned:
                        name = self.b.op("Gather", [t.name, at], axis=t.pos(axis))
                        step[j] = Tensor(name, t.type.with_axes(a for a in t.type.axes if a.name != axis), t.prefix)
                if n.has_index:
                    step.insert(0, Tensor(at, body.node(body.inputs[k]).type, 0))
            if inner is not None:
                outs = self._call(inner, carried + step, scope, pscope, child)
            elif self.functions is not None:
                outs = self.functions.call(self, body, carried + step, scope, child)
            else:
                outs = self.graph(body, carried + step, scope, child, dims)
            if inner is None:
                first = (carried + step)[0] if carried + step else None
                outs = [self._back(body, o, t, first) for o, t in zip(outs, body_types)]
            carried = outs[:k]
            for lst, o in zip(emitted, outs[k:]):
                lst.append(o)
        self.b.scope = path
        for j, parts in enumerate(emitted):  # stacked along the axis, in iteration order
            t = n.types[k + j]
            pos = parts[0].prefix + t.index(axis)
            names = [self.b.unsqueeze(p.name, [pos]) for p in parts]
            stacked = self.b.op("Concat", names, axis=pos) if len(names) > 1 else names[0]
            carried.append(Tensor(stacked, t, parts[0].prefix))
        return carried


# ---- local functions -------------------------------------------------------------------


@dataclass
class Function:
    name: str
    proto: onnx.FunctionProto
    n_outputs: int


@dataclass
class Functions:
    """One ONNX local function per distinct body of a block class (a block lifted over a
    different number of axes is a second variant, `MLP_2`), made on first use."""

    opset: int
    fp16: bool
    protos: list[onnx.FunctionProto] = field(default_factory=list)
    memo: dict = field(default_factory=dict)
    by_body: dict = field(default_factory=dict)
    by_identity: dict = field(default_factory=dict)
    names: set = field(default_factory=set)

    def call(
        self, caller: Lowerer, callee: Graph, args: list[Tensor], path: str, pscope: str
    ) -> list[Tensor]:
        fn, formal, declared, prefixes = self._lookup(callee, args)
        b = caller.b
        weights = [caller.weights.resolve(pscope + rel, spec) for rel, spec in formal]
        for rel, spec in declared:
            caller.weights.declare(pscope + rel, spec)
        b.scope = path
        start = len(b.nodes)
        outs = b.op(
            fn.name,
            [a.name for a in args] + weights,
            outputs=fn.n_outputs,
            domain=FUNCTION_DOMAIN,
        )
        outs = [outs] if isinstance(outs, str) else outs
        names = b.name_result(outs, start)
        types = [callee.type_of(v) for _, v in callee.outputs]
        return [Tensor(name, t, p) for name, t, p in zip(names, types, prefixes)]

    def _lookup(self, callee: Graph, args: list[Tensor]):
        """The memo entry for these arguments; found by the identity of their types first,
        since hashing a type is costly and a repeat passes the same type objects each time."""
        fast = (id(callee), tuple((a.prefix, id(a.type)) for a in args))
        hit = self.by_identity.get(fast)
        if hit is None or any(t is not a.type for t, a in zip(hit[0], args)):
            key = (id(callee), tuple((a.prefix, a.type) for a in args))
            if key not in self.memo:
                self.memo[key] = self._build(callee, args)
            hit = ([a.type for a in args], self.memo[key])
            self.by_identity[fast] = hit
        return hit[1]

    def _build(self, g: Graph, args: list[Tensor]):
        """The function for this body (shared with any instance whose body is the same, e.g.
        the same block with other widths: weight shapes are not part of a body), this
        instance's weights (block-relative, in formal order) and its results' prefixes."""
        fb = Builder(self.opset, fp16=self.fp16)
        fw = W.FunctionWeights(fb)
        inputs = []
        for nid, a in zip(g.inputs, args):
            node = g.input_node(nid)
            inputs.append(
                Tensor(fb.values.fresh(node.input_name), node.type, a.rank - node.type.rank)
            )
        in_names = {t.name for t in inputs}
        fb.values.wanted |= {name for name, _ in g.outputs if name not in in_names}
        outs = Lowerer(fb, fw, self).graph(g, inputs, "", "", None)
        out_names = fb.finish_outputs(
            [(name, t.name) for (name, _), t in zip(g.outputs, outs)], in_names
        )
        formal = list(fw.formal.items())
        imports = [helper.make_opsetid("", self.opset)]
        if any(nd.domain == FUNCTION_DOMAIN for nd in fb.nodes):
            imports.append(helper.make_opsetid(FUNCTION_DOMAIN, 1))
        proto = helper.make_function(
            FUNCTION_DOMAIN,
            "",
            [t.name for t in inputs] + [f for _, (f, _) in formal],
            out_names,
            fb.nodes,
            imports,
            doc_string=g.doc or None,
        )
        weights = [(rel, spec) for rel, (_, spec) in formal]
        declared = list(fw.declared.items())
        prefixes = [t.prefix for t in outs]
        body = proto.SerializeToString()
        if body in self.by_body:
            return self.by_body[body], weights, declared, prefixes
        base = class_name(g)
        name = fresh(base, self.names, first=2)
        self.names.add(name)
        proto.name = name
        self.protos.append(proto)
        fn = Function(name, proto, len(outs))
        self.by_body[body] = fn
        return fn, weights, declared, prefixes


# ---- the model ---------------------------------------------------------------------------


@dataclass
class Lowered:
    """A model's graph before its weights are attached."""

    graph: Graph
    opset: int
    fp16: bool
    nodes: list
    inputs: list
    outputs: list
    params: dict[str, ParamSpec]
    declared: dict[str, ParamSpec]  # in the state_dict but never applied (no initializer)
    functions: list


def lower(
    spec, *, opset: int = DEFAULT_OPSET, functions: bool = False, fp16: bool = False
) -> Lowered:
    g = spec.graph
    b = Builder(opset, fp16=fp16)
    in_names = [g.node(nid).input_name for nid in g.inputs]
    b.values.taken |= set(in_names)
    b.values.wanted |= {name for name, _ in g.outputs if name not in in_names}
    fns = Functions(opset, fp16)
    weights = W.ModelWeights(b, set(in_names))
    args, inputs = [], []
    for name, nid in zip(in_names, g.inputs):
        t = g.node(nid).type
        inputs.append(value_info(name, t, ELEM[t.dtype]))
        x = Tensor(name, t, 0)
        if fp16 and t.dtype == "float32":
            b.scope = name
            x = Tensor(b.op("Cast", [name], to=TensorProto.FLOAT16), t, 0)
        args.append(x)
    outs = Lowerer(b, weights, fns if functions else None, fns).graph(g, args, "", "", None)
    results, outputs = [], []
    for (name, v), o in zip(g.outputs, outs):
        t = g.type_of(v)
        if o.rank != t.rank:
            raise InternalError(f"output {name} has rank {o.rank}, its type {t}")
        value = o.name
        if fp16 and t.dtype == "float32":
            b.scope = name
            value = b.op("Cast", [value], to=TensorProto.FLOAT)
        results.append((name, value))
    names = b.finish_outputs(results, set(in_names) | set(weights.params))
    for name, (_, v) in zip(names, g.outputs):
        t = g.type_of(v)
        outputs.append(value_info(name, t, ELEM[t.dtype]))
    declared = {k: v for k, v in weights.declared.items() if k not in weights.params}
    return Lowered(
        g,
        opset,
        fp16,
        b.nodes,
        inputs,
        outputs,
        weights.params,
        declared,
        fns.protos,
    )


PROTOBUF_LIMIT = 2**31 - 2**26  # a ModelProto is one protobuf message; keep room for the graph


def weight_bytes(low: Lowered) -> int:
    itemsize = 2 if low.fp16 else 4
    return sum(math.prod(W.shape_of(p)) for p in low.params.values()) * itemsize


def check_size(low: Lowered) -> None:
    """Refuse, before any weight is made, a model one in-memory ModelProto cannot hold."""
    size = weight_bytes(low)
    if size > PROTOBUF_LIMIT:
        raise LoweringError(
            f"the weights of {low.graph.name} take {size / 2**30:.2f} GiB; one ONNX protobuf "
            "holds at most 2 GiB: export to a file, which puts them in external data"
            " (--fp16 and --quantize int8 are limited to 2 GiB)"
        )


def assemble(low: Lowered, arrays: dict[str, np.ndarray], *, source: str = "") -> onnx.ModelProto:
    check_size(low)
    dtype = np.float16 if low.fp16 else np.float32
    inits = [numpy_helper.from_array(np.asarray(arrays[n], dtype=dtype), n) for n in low.params]
    return skeleton(low, inits, source=source)


def skeleton(low: Lowered, inits: list, *, source: str = "") -> onnx.ModelProto:
    """The model with the initializers `inits` (protos that may hold no data)."""
    g = low.graph
    graph = helper.make_graph(
        low.nodes, g.name, low.inputs, low.outputs, initializer=inits, doc_string=g.doc or None
    )
    imports = [helper.make_opsetid("", low.opset)]
    if low.functions:
        imports.append(helper.make_opsetid(FUNCTION_DOMAIN, 1))
    ir = max(8, helper.find_min_ir_version_for([helper.make_opsetid("", low.opset)]))
    from nncircuit.version import __version__

    model = helper.make_model(
        graph,
        opset_imports=imports,
        functions=low.functions,
        ir_version=ir,
        producer_name="nncircuit",
        producer_version=__version__,
    )
    meta = {"nncircuit.model": g.name}
    if source:
        meta["nncircuit.source"] = os.path.basename(source)
    for h in g.hyper:
        meta[f"nncircuit.hyper.{h.name}"] = repr(h.value.value)
    helper.set_model_props(model, meta)
    return model


def check_opset(opset: int | None) -> int:
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise LoweringError(
            f"ONNX opset {opset!r} is not supported; choose {MIN_OPSET} to {MAX_OPSET}"
        )
    return opset


def _given(weights: str | None, state_dict) -> tuple[dict | None, str]:
    if weights is not None and state_dict is not None:
        raise LoweringError("give weights either as a file or as a state_dict, not both")
    if weights is not None:
        return W.load_weights(weights), f"weights from {os.path.basename(weights)}"
    if state_dict is not None:
        return W.from_state_dict(state_dict), "weights from the state_dict"
    return None, ""


def build(
    spec,
    *,
    seed: int = 0,
    weights: str | None = None,
    state_dict=None,
    opset: int | None = None,
    functions: bool = False,
    fp16: bool = False,
) -> onnx.ModelProto:
    """The ONNX model of a loaded spec, in memory."""
    given, _ = _given(weights, state_dict)
    low = lower(spec, opset=check_opset(opset), functions=functions, fp16=fp16)
    check_size(low)
    return assemble(low, W.bind(low.params, given, seed, low.declared), source=spec.path)


def export_spec(
    spec,
    out: str,
    *,
    seed: int = 0,
    weights: str | None = None,
    opset: int | None = None,
    functions: bool = False,
    fp16: bool = False,
    quantize: str | None = None,
    state_dict=None,
    external_data: bool | None = None,
) -> str:
    """Write the ONNX model of `spec` to `out` (atomically); returns the report line(s)."""
    opset = check_opset(opset)
    if quantize not in (None, "int8"):
        raise LoweringError(f"--quantize supports 'int8', not {quantize!r}")
    if quantize and fp16:
        raise LoweringError("choose one of --fp16 and --quantize int8")
    if quantize and functions:
        raise LoweringError("--quantize int8 needs the inlined graph; drop --functions")
    if external_data and (fp16 or quantize):
        raise LoweringError("--external-data is not supported with --fp16 or --quantize int8")
    given, origin = _given(weights, state_dict)
    low = lower(spec, opset=opset, functions=functions, fp16=False)
    inputs = (*spec.program.files, weights)  # an output never overwrites one of these
    notes = []
    if fp16 or quantize:
        notes += _reduced(spec, low, given, int(seed), out, opset, functions, fp16, inputs)
    else:
        notes += stream(low, given, int(seed), out, external_data, source=spec.path, inputs=inputs)
    count = sum(math.prod(W.shape_of(p)) for p in low.params.values())
    params = spec.param_count()  # learned ones; the initializers also hold buffers
    n_nodes = len(low.nodes) + sum(len(f.node) for f in low.functions)
    what = origin or f"seeded initial weights (seed {seed})"
    head = (
        f"wrote {out}: {spec.graph.name}, ONNX opset {opset}, {params:,} parameters "
        f"({count:,} values in initializers), {what}, "
        f"{n_nodes:,} nodes"
        + (f" in {len(low.functions)} local functions and the graph" if low.functions else "")
    )
    return "\n".join([head] + notes)


def _reduced(spec, low, given, seed, out, opset, functions, fp16, inputs=()) -> list[str]:
    """--fp16 or --quantize int8: made and measured in memory (so at most 2 GiB)."""
    check_size(low)  # the float32 model is made first, also as the reference of --fp16
    arrays = W.bind(low.params, given, seed, low.declared)
    model = assemble(low, arrays, source=spec.path)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if fp16:
        half = assemble(
            lower(spec, opset=opset, functions=functions, fp16=True), arrays, source=spec.path
        )
        onnx.checker.check_model(half)
        reference, data = data, half.SerializeToString()
        note = (
            "fp16: weights and compute in float16, inputs and outputs float32; "
            + accuracy(spec, reference, data)
        )
    else:
        reference = data
        data, what = quantize_int8(model)
        note = (
            f"int8: dynamic quantization of {what} "
            f"({len(reference) / 2**20:.2f} MiB -> {len(data) / 2**20:.2f} MiB); "
            + accuracy(spec, reference, data)
        )
    write_atomic(out, data, inputs=inputs)
    return [note]


def stream_weights(low: Lowered, given: dict | None, seed: int) -> list[S.Weight]:
    """The initializers of `low` in order, each made when it is written: given weights
    checked up front, seeded ones generated one tensor at a time."""
    if given is not None:
        arrays = W.bind(low.params, given, seed, low.declared)

        def make(name, spec):
            return lambda: arrays[name]
    else:

        def make(name, spec):
            return lambda: W.init_param(name, spec, seed)

    out = []
    for name, spec in low.params.items():
        shape = W.shape_of(spec)
        n = math.prod(shape) * 4
        out.append(S.Weight(name, TensorProto.FLOAT, shape, n, make(name, spec)))
    return out


def stream(
    low: Lowered, given: dict | None, seed: int, out: str, external: bool | None, *, source: str,
    inputs=(),
) -> list[str]:
    """Check the weightless graph, then write the model with each weight's bytes streamed
    from its array to the file: inline, or as external data (`OUT.data`) when asked, when
    the weights exceed EXTERNAL_THRESHOLD, and always when one protobuf cannot hold them."""
    size = weight_bytes(low)
    if external is False and size > PROTOBUF_LIMIT:
        raise LoweringError(
            f"the weights of {low.graph.name} take {size / 2**30:.2f} GiB; one ONNX file holds "
            "at most 2 GiB: allow external data"
        )
    if external is None:
        external = size > EXTERNAL_THRESHOLD
    weights = stream_weights(low, given, seed)
    if not external:
        model = skeleton(low, [], source=source)
        onnx.checker.check_model(S.checkable(model, weights))
        write_atomic(out, S.inline_parts(model, weights), inputs=inputs)
        return []
    location = S.data_location(out)
    model = skeleton(low, S.external_layout(weights, location), source=source)
    onnx.checker.check_model(S.checkable(model, weights))
    write_atomic(os.path.join(os.path.dirname(out), location), S.data_parts(weights), inputs=inputs)
    write_atomic(out, model.SerializeToString(), inputs=inputs)
    return [f"external data: {location} beside it, {size / 2**20:,.1f} MiB of weights"]

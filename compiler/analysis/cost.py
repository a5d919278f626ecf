"""Static figures of a model read off its IR: parameter counts, and the FLOPs and
activation memory of one forward pass, per block."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nncircuit.ops import registry
from nncircuit.errors import InternalError
from nncircuit.ir.graph import BodyNode, CallNode, Graph, LoopNode, ScanNode
from nncircuit.types.tensor import TensorType


def param_count(g: Graph, *, buffers: bool = False) -> int:
    """Learned parameters (or buffers) of a graph and everything it calls, counted once per
    module: a module applied twice, or a tied weight, is not counted again."""
    total = 0
    seen: set[str] = set()
    for n in g.nodes():
        if n.module is None or n.module in seen:
            continue
        seen.add(n.module)
        if isinstance(n, (CallNode, ScanNode)):
            total += param_count(n.callee, buffers=buffers)
        elif isinstance(n, LoopNode):
            times = 1 if n.shared else int(n.count.value)
            total += times * param_count(n.callee, buffers=buffers)
        else:
            op = registry.get(n.op)
            for p in op.params(n.attrs, ()):
                if p.buffer == buffers:
                    total += p.numel
    return total


# ---- FLOPs and activation memory -------------------------------------------------------------

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "bool": 1}


@dataclass(frozen=True)
class Cost:
    """One forward pass: parameters, FLOPs (a multiply-add is 2; only matrix products,
    convolutions and attention are counted, as torch's FlopCounterMode does), activation
    bytes (every op's result, views excluded, summed), and the FLOPs of each op kind."""

    params: int = 0
    flops: int = 0
    activations: int = 0
    by_op: tuple[tuple[str, int], ...] = ()

    def __add__(self, other: Cost) -> Cost:
        ops = dict(self.by_op)
        for k, v in other.by_op:
            ops[k] = ops.get(k, 0) + v
        return Cost(
            self.params + other.params, self.flops + other.flops,
            self.activations + other.activations, tuple(sorted(ops.items())),
        )

    def flops_of(self, op: str) -> int:
        return dict(self.by_op).get(op, 0)


@dataclass(frozen=True)
class BlockCost:
    """A row of a cost table: a node that owns a module (a learned op, a block call, a
    repeat), or `(ops)` for the pure ops of one graph. Under a repeat the figures sum every
    iteration; under a lifted call, every slice of the lifted axes."""

    path: str  # scope path: h.attn.q
    depth: int  # 1 for the model's own nodes
    op: str  # Linear | call SelfAttention | repeat 12 × GPT2_h | (ops)
    cost: Cost
    output: str  # the result type with this run's sizes: [batch: 1, seq: 128, d: 768]


def costs(root: Graph, env: dict[str, int]) -> tuple[Cost, list[BlockCost]]:
    """Cost of one forward pass of `root` with its dynamic axes at the sizes `env`, and a
    row per module-owning node at every depth (parents before their children)."""
    rows: list[BlockCost] = []
    total = _graph_cost(root, env, "", 1, (), 1, 1, rows)
    return total, rows


def _graph_cost(g: Graph, env, prefix: str, depth: int, lift: tuple, mult: int, pmult: int,
                rows: list[BlockCost]) -> Cost:
    """`lift`: (axis, size) pairs the enclosing calls are lifted over; `mult`: how many times
    this graph runs (lift slices times repeat iterations); `pmult`: how many copies of its
    parameters exist (non-shared repeat iterations)."""
    total = Cost()
    loose = Cost()
    seen: set[str] = set()
    for n in g.nodes():
        if n.op == "input":
            continue
        path = f"{prefix}.{n.name}" if prefix else n.name
        first = n.module is not None and n.module not in seen
        if n.module is not None:
            seen.add(n.module)
        if isinstance(n, BodyNode):
            at = len(rows)  # the parent row goes before its children
            if isinstance(n, CallNode):
                names = n.lift
                extra = tuple((a, n.types[0].axis(a).size.evaluate(env)) for a in names)
                k = math.prod(s for _, s in extra)
                c = _graph_cost(n.callee, callee_env(g, n, env), path, depth + 1, lift + extra,
                                mult * k, pmult, rows)
                label = f"call {n.callee.name}"
            elif isinstance(n, ScanNode):
                # one run of the body per step: FLOPs and memory per step × the length
                axis = n.axis
                steps = g.type_of(n.inputs[n.scanned[0]]).axis(axis).size.evaluate(env)
                c = _graph_cost(n.callee, env, path, depth + 1, lift, mult * steps, pmult, rows)
                label = f"scan {axis} ({steps} steps) × {n.callee.name}"
            elif isinstance(n, LoopNode):
                count = int(n.count.value)
                times = 1 if n.shared else count
                c = _graph_cost(n.callee, env, path, depth + 1, lift, mult * count, pmult * times, rows)
                label = f"repeat {count} × {n.callee.name}" + (" shared" if n.shared else "")
            else:
                raise InternalError(f"{n.op} node {n.name} is neither a call nor a repeat")
            if not first:
                c = Cost(0, c.flops, c.activations, c.by_op)
            rows.insert(at, BlockCost(path, depth, label, c, _shown(n.types, lift, env)))
        else:
            op = registry.get(n.op)
            ins = tuple(g.type_of(v) for v in n.inputs)
            flops = op.flops(n.attrs, ins, n.types, env) * mult
            acts = 0 if op.is_view else sum(_bytes(t, env) for t in n.types) * mult
            params = 0
            if first:
                params = sum(p.numel for p in op.params(n.attrs, ins) if not p.buffer) * pmult
            c = Cost(params, flops, acts, ((n.op, flops),) if flops else ())
            if n.module is not None:
                rows.append(BlockCost(path, depth, n.op, c, _shown(n.types, lift, env)))
            else:
                loose = loose + c
        total = total + c
    if loose.flops or loose.activations:
        path = f"{prefix}.(ops)" if prefix else "(ops)"
        rows.append(BlockCost(path, depth, "", loose, ""))
    return total


def callee_env(g: Graph, n, env: dict[str, int]) -> dict[str, int]:
    """Sizes of a called block's dynamic axes at one call site, from the caller's sizes."""
    out: dict[str, int] = {}
    for v, nid in zip(n.inputs, n.callee.inputs):
        actual = g.type_of(v)
        for dax in n.callee.node(nid).type.axes:
            sym = dax.size.bare_symbol()
            if sym is not None and sym not in out:
                out[sym] = actual.axis(dax.name).size.evaluate(env)
    return out


def _bytes(t: TensorType, env) -> int:
    return math.prod(a.size.evaluate(env) for a in t.axes) * DTYPE_BYTES[t.dtype]


def _shown(types, lift: tuple, env) -> str:
    out = []
    for t in types:
        axes = [f"{a}: {s}" for a, s in lift] + [f"{a.name}: {a.size.evaluate(env)}" for a in t.axes]
        out.append(f"[{', '.join(axes)}]" + ("" if t.dtype == "float32" else f" {t.dtype}"))
    return ", ".join(out)

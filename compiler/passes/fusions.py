"""The fusion passes of -O2: attention (softmax(q·k)·v as one op), sibling Linears as one
matrix product, and two-operand einsums that are batched matrix products as `matmul`. The
rules of the cleanup passes (cleanup.py) hold: structural rewrites, exact types, the state_dict kept."""

from __future__ import annotations

from collections import Counter

from nncircuit.ir.graph import STRUCTURAL, Graph, Node
from nncircuit.ops import core, registry
from nncircuit.ops.nn import linear_attrs
from nncircuit.passes.base import (
    Pass,
    alive,
    erase_dead,
    exact,
    producer,
    register_pass,
    replace_node,
    single_use,
    try_add,
)
from nncircuit.ops.registry import AxisSpec, OpCall
from nncircuit.types import expr as X
from nncircuit.types.tensor import HVal


@register_pass
class FuseLinear(Pass):
    """Sibling Linears (same input, same input axes, same bias setting: q, k and v) become one
    LinearGroup: one matrix product, split. Each keeps its module, so the state_dict is
    unchanged. Tied Linears, modules applied more than once, and parts whose output axes
    would not come last are left alone."""

    name = "fuse-linear"

    def run(self, graph: Graph) -> bool:
        nodes = graph.nodes()
        uses = Counter(n.module for n in nodes if n.module is not None)
        tied = {m for n in nodes if n.op not in STRUCTURAL for m in [registry.get(n.op).ties(n.attrs)] if m is not None}
        groups: dict = {}
        for n in nodes:
            if n.op != "Linear" or n.module is None or uses[n.module] != 1 or n.module in tied:
                continue
            lin = linear_attrs(n.attrs)
            if lin.tied is not None:
                continue
            t = graph.type_of(n.inputs[0])
            ins = lin.in_axes
            kept = tuple(x for x in t.names if x not in ins)
            if n.type.names != kept + tuple(a.name for a in lin.out_axes):
                continue
            groups.setdefault((n.inputs[0], ins, lin.bias), []).append(n)
        changed = False
        for members in groups.values():
            if len(members) < 2:
                continue
            names = tuple(m.module for m in members)
            parts = tuple(OpCall("Linear", (), src=m.call.src, dst=m.call.dst, kwargs=m.call.kwargs) for m in members)
            call = OpCall("LinearGroup", (), kwargs=(("members", names), ("parts", parts)))
            first = members[0]
            fused = try_add(graph, call, [first.inputs[0]], name="_".join(names), module=names[0], span=first.span)
            if fused is None:
                continue
            if any(exact(m.type) != exact(t) for m, t in zip(members, fused.types)):
                graph.erase(fused)
                continue
            for i, m in enumerate(members):
                graph.replace_all_uses(m.out(), fused.out(i))
                graph.erase(m)
            changed = True
        return changed


@register_pass
class FuseAttention(Pass):
    """softmax(q·k [· or / a number] [causal mask], over key) · v becomes one `attention` op
    (torch: F.scaled_dot_product_attention, with is_causal for the mask)."""

    name = "fuse-attention"

    def run(self, graph: Graph) -> bool:
        changed = False
        for sm in graph.nodes():
            if sm.op == "softmax" and alive(graph, sm):
                changed |= self._match(graph, sm)
        return changed

    def _match(self, g: Graph, sm: Node) -> bool:
        key = core.softmax_axis(sm.attrs)
        if key is None:  # a softmax over several axes together is not attention's
            return False
        chain = []  # the nodes between the first einsum and the softmax
        scale = causal = None
        cur = producer(g, sm.inputs[0])
        while cur.op in ("mul", "div", "causal"):
            if not single_use(g, cur.out()):
                return False
            if cur.op == "causal":
                if causal is not None:
                    return False
                causal = cur
            else:
                found = registry.get(cur.op).scalar_operand(cur.attrs)
                if scale is not None or found is None:
                    return False
                c, side = found
                if isinstance(c.value, (bool, str)):
                    return False
                if cur.op == "div":
                    if side != "right" or c.value == 0:
                        return False
                    scale = HVal(1 / c.value, X.binop("/", X.Const(1), c.expr))
                else:
                    scale = HVal(float(c.value), c.expr) if isinstance(c.value, int) else c
            chain.append(cur)
            cur = producer(g, cur.inputs[0])
        e1 = cur
        if e1.op != "einsum" or len(e1.inputs) != 2 or not single_use(g, e1.out()):
            return False
        users = g.users(sm.out())
        if len(users) != 1 or g.is_output(sm.out()):
            return False
        e2, pos = users[0]
        if e2.op != "einsum" or len(e2.inputs) != 2 or e2.inputs[0] == e2.inputs[1]:
            return False
        v = e2.inputs[1 - pos]
        a, b = e1.inputs
        ta, tb = g.type_of(a), g.type_of(b)
        if ta.has(key) == tb.has(key):
            return False
        q, k = (b, a) if ta.has(key) else (a, b)
        tq, tk, tv = g.type_of(q), g.type_of(k), g.type_of(v)
        o1 = core.einsum_out(e1.attrs)
        contracted = [x for x in tq.names + tk.names if x not in o1]
        if len(set(contracted)) != 1 or contracted.count(contracted[0]) != 2:
            return False
        feature = contracted[0]
        queries = [x for x in o1 if x != key and not tk.has(x)]
        if len(queries) != 1:
            return False
        query = queries[0]
        if causal is not None and core.causal_axes(causal.attrs) != (query, key):
            return False
        batch = [x for x in tq.names if x not in (query, feature)]
        values = [x for x in tv.names if x != key and x not in batch]
        if len(values) != 1:
            return False
        # the second contraction must sum exactly the key axis
        if [x for x in o1 + tv.names if x not in core.einsum_out(e2.attrs)] != [key, key]:
            return False
        kwargs = (("causal", HVal.const(causal is not None)), ("scale", scale or HVal.const(1.0)))
        call = OpCall(
            "attention", (), src=(AxisSpec(feature),), dst=(AxisSpec(values[0]),),
            over=(AxisSpec(query), AxisSpec(key)), kwargs=kwargs,
        )
        fused = try_add(g, call, [q, k, v], name="attention", span=e2.span)
        if fused is None:
            return False
        if not replace_node(g, e2, fused):
            return False
        erase_dead(g, [sm, *chain, e1])
        return True


@register_pass
class EinsumToMatmul(Pass):
    """A layout choice: a two-operand einsum that is a batched matrix product (one axis
    summed, one kept from each side, the rest shared) becomes `matmul`, which torch runs as
    torch.matmul on views laid out for it instead of parsing an einsum equation."""

    name = "einsum-to-matmul"

    def run(self, graph: Graph) -> bool:
        changed = False
        for n in graph.nodes():
            if n.op != "einsum" or len(n.inputs) != 2 or n.call is None:
                continue
            call = OpCall("matmul", (), src=(), dst=n.call.dst)
            name = "matmul" if n.name.startswith("einsum") else n.name  # keep a name the spec gave
            new = try_add(graph, call, list(n.inputs), name=name, span=n.span)
            if new is not None and replace_node(graph, n, new):
                changed = True
        return changed

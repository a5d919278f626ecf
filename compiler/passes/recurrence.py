"""The parallel-scan and fuse-scan-readout passes of -O2. parallel-scan: a `scan` whose
every carried value is updated as a linear recurrence h = a * h + b (a, b computed without
the carried state) becomes `linear_scan` ops, which torch runs as a chunked scan (about 3√n steps) instead of one step at a time.

The per-step work moves out of the loop: each body op is applied once to the whole scanned
inputs (named axes make the scanned axis one more axis the op carries along), the carried
updates become `linear_scan(a, b, h0, over AXIS)`, and what the body emits from the new
states is computed from the stacked states. Every rewrite is checked op by op: each moved
op must give the body's type with the scanned axis added (an op that would reduce over it
is refused), else the scan is left as it was. Bodies with learned ops (their parameters
belong to the scan's module), random or stateful ops, a nested call or loop, a step index
that is read, or a carried value read other than by its own update stay loops.

fuse-scan-readout, after it: every linear_scan whose states are read only by a two-operand
einsum that sums some of the state's axes against another tensor (`einsum(h, c, over n)`,
the read-out of S4D and Mamba) becomes one `linear_scan_sum`, its a and b given as the factors of the products that
make them (and a's `exp`) where those have the scanned axis and are used only there: torch
then makes a, b and the read-out one chunk position at a time, and no [seq, state] tensor
(a, b, the states, their read-out) goes through memory."""

from __future__ import annotations

from dataclasses import replace

from nncircuit.ir.graph import BodyNode, Graph, Node, ScanNode, Value
from nncircuit.ops import core, registry
from nncircuit.ops.recurrence import scan_axis
from nncircuit.ops.registry import AxisSpec, OpCall
from nncircuit.passes.base import Pass, alive, erase_dead, exact, producer, register_pass, single_use, try_add
from nncircuit.types.tensor import HVal, TensorType

ONE = HVal.const(1.0)


class _Refuse(Exception):
    """The scan is not a linear recurrence the pass can move out of the loop."""


def _update(body: Graph, i: int) -> tuple[Node, Node | None, Value | HVal, Value] | None:
    """Carried value i updated as a * h + b (either order of either operation, `h + b`
    with a = 1, `h * c` or `c * h` for a number c): (the add, the mul or None, a, b)."""
    h = Value(body.inputs[i])
    if not single_use(body, h):
        return None
    users = body.users(h)
    add = producer(body, body.outputs[i][1])
    if add.op != "add" or len(add.inputs) != 2:
        return None
    for pos in (0, 1):
        term, b = add.inputs[pos], add.inputs[1 - pos]
        if term == h and b != h:
            return add, None, ONE, b
        if term.node == h.node or b == h:
            continue
        mul = producer(body, term)
        if mul.op != "mul" or users[0][0] is not mul or not single_use(body, term):
            continue
        if len(mul.inputs) == 1:
            found = registry.get("mul").scalar_operand(mul.attrs)
            if found is not None and not isinstance(found[0].value, (bool, str)):
                return add, mul, found[0], b
            continue
        a = mul.inputs[1 - users[0][1]]
        if a != h:
            return add, mul, a, b
    return None


def _whole(call: OpCall, op) -> OpCall:
    """A step's elementwise call applied to whole sequences: where one operand has the scanned
    axis and the other an axis of its own (`dt * A` with dt [seq, inner], A [inner, state]),
    the scanned axis is an outer broadcast on purpose, so the call says `outer = true`."""
    if "outer" in op.kwargs and dict(call.kwargs).get("outer") is None:
        return replace(call, kwargs=call.kwargs + (("outer", HVal.const(True)),))
    return call


def _live(body: Graph) -> set[int]:
    """The body's nodes some output depends on."""
    seen: set[int] = set()
    todo = [v.node for _, v in body.outputs]
    while todo:
        nid = todo.pop()
        if nid not in seen:
            seen.add(nid)
            todo.extend(v.node for v in body.node(nid).inputs)
    return seen


def _stepped(g: Graph, v: Value, body_t: TensorType, axis: str, stepped: bool) -> bool:
    """Whether outer value v is the body's value of type body_t for every step: the same
    type with `axis` added somewhere when the inputs were stepped, exactly the type otherwise."""
    t = g.type_of(v)
    if not stepped:
        return exact(t) == exact(body_t)
    if not t.has(axis) or t.dtype != body_t.dtype:
        return False
    return exact(t.with_axes(x for x in t.axes if x.name != axis)) == exact(body_t)


@register_pass
class ParallelScan(Pass):
    """A scan whose carried values all follow h = a * h + b becomes linear_scan ops (log
    depth in torch), the body's other work applied to whole sequences; see the module doc."""

    name = "parallel-scan"

    def run(self, graph: Graph) -> bool:
        changed = False
        for n in graph.nodes():
            if isinstance(n, ScanNode) and alive(graph, n):
                changed |= self._rewrite(graph, n)
        return changed

    def _rewrite(self, g: Graph, n: ScanNode) -> bool:
        body, k, axis = n.callee, n.carried, n.axis
        if k == 0:
            return False
        updates = {}
        for i in range(k):
            found = _update(body, i)
            if found is None:
                return False
            updates[found[0].id] = (i, *found[1:])
        skip = {mul.id for _, mul, _, _ in updates.values() if mul is not None}
        env: dict[Value, Value] = {}
        first = k + (1 if n.has_index else 0)
        for j, nid in enumerate(body.inputs[first:]):
            env[Value(nid)] = n.inputs[k + j]
        created: list[Node] = []
        final: dict[int, Value] = {}

        def add(call: OpCall, inputs, name: str, span=None) -> Node:
            node = try_add(g, call, inputs, name=name, span=span)
            if node is None:
                raise _Refuse
            created.append(node)
            return node

        try:
            live = _live(body)
            for node in body.nodes():
                if node.op == "input" or node.id not in live or node.id in skip:
                    continue
                if node.id in updates:
                    i, _, a, b = updates[node.id]
                    h0 = n.inputs[i]
                    dtype = g.type_of(h0).dtype
                    if isinstance(a, HVal):  # a number: a scalar tensor of it
                        a_out = add(OpCall("full", (), axes=(), kwargs=(("value", a), ("dtype", dtype))),
                                    [], "decay", node.span).out()
                    elif a in env:
                        a_out = env[a]
                    else:
                        raise _Refuse
                    if b not in env or not g.type_of(env[b]).has(axis):
                        raise _Refuse
                    call = OpCall("linear_scan", (), over=(AxisSpec(axis),), kwargs=(("reverse", n.reverse),))
                    ls = add(call, [a_out, env[b], h0], f"{n.name}_linear", node.span)
                    if not _stepped(g, ls.out(0), node.type, axis, True):
                        raise _Refuse
                    env[node.out()] = ls.out(0)
                    final[i] = ls.out(1)
                    continue
                op = registry.get(node.op) if node.op in registry.REGISTRY else None
                if (op is None or isinstance(node, BodyNode) or node.module is not None or node.call is None
                        or op.is_random or op.is_stateful or any(v not in env for v in node.inputs)):
                    raise _Refuse
                stepped = any(g.type_of(env[v]).has(axis) for v in node.inputs)
                new = add(_whole(node.call, op), [env[v] for v in node.inputs], node.name, node.span)
                for o, t in enumerate(node.types):
                    if not _stepped(g, new.out(o), t, axis, stepped):
                        raise _Refuse
                    env[node.out(o)] = new.out(o)
            emits = []
            for j, (_, v) in enumerate(body.outputs[k:]):
                want = n.types[k + j]
                if v not in env or not g.type_of(env[v]).has(axis):
                    raise _Refuse
                cur = env[v]
                while g.type_of(cur).names != want.names:  # move the axis where the scan stacks it
                    have = g.type_of(cur).names
                    p = next(p for p in range(len(have)) if have[p] != want.names[p])
                    swap = OpCall("transpose", (), positional=(AxisSpec(have[p]), AxisSpec(want.names[p])))
                    cur = add(swap, [cur], "transpose").out()
                if exact(g.type_of(cur)) != exact(want):
                    raise _Refuse
                emits.append(cur)
            if any(exact(g.type_of(final[i])) != exact(n.types[i]) for i in range(k)):
                raise _Refuse
        except _Refuse:
            for node in reversed(created):
                g.erase(node)
            return False
        for i in range(k):
            g.replace_all_uses(n.out(i), final[i])
        for j, v in enumerate(emits):
            g.replace_all_uses(n.out(k + j), v)
        g.erase(n)
        return True


def _factors(g: Graph, v: Value, axis: str, folded: list[Node]) -> list[Value]:
    """v as the factors of the products that make it, as far as those are two-tensor `mul`s
    with the scanned axis used only here (each appended to `folded`); v itself otherwise."""
    n = producer(g, v)
    if n.op != "mul" or len(n.inputs) != 2 or not single_use(g, v) or not g.type_of(v).has(axis):
        return [v]
    folded.append(n)
    return _factors(g, n.inputs[0], axis, folded) + _factors(g, n.inputs[1], axis, folded)


@register_pass
class FuseScanReadout(Pass):
    """linear_scan read only by einsum(states, c) summing state axes becomes linear_scan_sum,
    a and b as the factors that made them; see the module doc."""

    name = "fuse-scan-readout"

    def run(self, graph: Graph) -> bool:
        changed = False
        for n in graph.nodes():
            if n.op == "linear_scan" and alive(graph, n):
                changed |= _read_out(graph, n)
        return changed


def _read_out(g: Graph, ls: Node) -> bool:
    """linear_scan(a, b, h0) read only by einsum(states, c) that keeps the scanned axis and
    sums axes of h0 only becomes linear_scan_sum (see the module doc)."""
    hs, (axis, reverse) = ls.out(0), scan_axis(ls.attrs)
    if not single_use(g, hs):
        return False
    ein, pos = g.users(hs)[0]
    if ein.op != "einsum" or len(ein.inputs) != 2 or ein.inputs[1 - pos] == hs:
        return False
    c = ein.inputs[1 - pos]
    a, b, h0 = ls.inputs
    ht, ct, out = g.type_of(hs), g.type_of(c), tuple(core.einsum_out(ein.attrs))
    if axis not in out or any(not ht.has(x) for x in (*ct.names, *out)):
        return False
    folded: list[Node] = []
    exp_a = False
    fa = [a]
    an = producer(g, a)
    if an.op == "exp" and single_use(g, a) and g.type_of(a).has(axis):
        exp_a, fa = True, _factors(g, an.inputs[0], axis, folded)
        folded.insert(0, an)
    elif g.type_of(a).has(axis):
        fa = _factors(g, a, axis, folded)
    fb = _factors(g, b, axis, folded)
    kwargs = (("reverse", reverse), ("na", len(fa)), ("exp_a", exp_a))
    call = OpCall("linear_scan_sum", (), over=(AxisSpec(axis),), axes=tuple(AxisSpec(x) for x in out), kwargs=kwargs)
    new = try_add(g, call, [*fa, *fb, h0, c], name=f"{ls.name}_sum", span=ls.span)
    if new is None:
        return False
    if exact(g.type_of(new.out(0))) != exact(ein.types[0]) or exact(g.type_of(new.out(1))) != exact(ls.types[1]):
        g.erase(new)
        return False
    g.replace_all_uses(ein.out(0), new.out(0))
    g.replace_all_uses(ls.out(1), new.out(1))
    erase_dead(g, [ein, ls, *folded])
    return True

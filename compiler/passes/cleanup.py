"""The cleanup passes: canonicalize (local simplifications), cse (common subexpressions) and
dce (dead code)."""

from __future__ import annotations

from collections import Counter

from nncircuit.analysis import cost as analysis
from nncircuit.ops import core, registry
from nncircuit.ir.graph import BodyNode, Graph, Node
from nncircuit.ops.registry import OpCall
from nncircuit.types import expr as X
from nncircuit.types.tensor import HVal


from nncircuit.passes.base import (
    Pass,
    _is_literal,
    alive,
    erase_dead,
    producer,
    register_pass,
    replace_node,
    replace_value,
    single_use,
    try_add,
)


# ==== canonicalize ============================================================================


@register_pass
class Canonicalize(Pass):
    """Local simplifications to a fixed point: identities (x * 1, x + 0, x / 1, x ** 1,
    --x, a cast to the same dtype, dropout with p = 0), rename chains, transposes that cancel,
    flatten of an unflatten (and back), and chains of arithmetic with numbers folded into
    one (`(x / a) * b` becomes `x * (b / a)`, keeping the hyperparameter expression)."""

    name = "canonicalize"

    def run(self, graph: Graph) -> bool:
        changed = False
        progress = True
        while progress:
            progress = False
            for n in graph.nodes():
                if not alive(graph, n):  # erased by an earlier rewrite in this sweep
                    continue
                rule = getattr(self, f"_rule_{n.op}", None)
                if rule is not None and rule(graph, n):
                    progress = changed = True
        return changed

    # ---- identities
    def _forward(self, g: Graph, n: Node) -> bool:
        """Replace n by its (only) input."""
        if not replace_value(g, n.out(), n.inputs[0]):
            return False
        g.erase(n)
        return True

    def _scalar(self, n: Node):
        found = registry.get(n.op).scalar_operand(n.attrs)
        return found if found is not None else (None, None)

    def _rule_mul(self, g, n):
        c, _ = self._scalar(n)
        if c is None:
            return False
        if _is_literal(c, 1):
            return self._forward(g, n)
        return self._fold(g, n)

    def _rule_div(self, g, n):
        c, side = self._scalar(n)
        if c is None or side != "right":
            return False
        if _is_literal(c, 1):
            return self._forward(g, n)
        return self._fold(g, n)

    def _rule_add(self, g, n):
        c, _ = self._scalar(n)
        if c is None:
            return False
        if _is_literal(c, 0):
            return self._forward(g, n)
        return self._fold(g, n)

    def _rule_sub(self, g, n):
        c, side = self._scalar(n)
        if c is None or side != "right":
            return False
        if _is_literal(c, 0):
            return self._forward(g, n)
        return self._fold(g, n)

    def _rule_pow(self, g, n):
        c, side = self._scalar(n)
        return c is not None and side == "right" and _is_literal(c, 1) and self._forward(g, n)

    def _rule_neg(self, g, n):
        inner = producer(g, n.inputs[0])
        if inner.op != "neg" or not replace_value(g, n.out(), inner.inputs[0]):
            return False
        erase_dead(g, [n, inner])
        return True

    def _rule_cast(self, g, n):
        return g.type_of(n.inputs[0]).dtype == core.cast_to(n.attrs) and self._forward(g, n)

    def _rule_dropout(self, g, n):
        return _is_literal(n.call.kw("p"), 0) and self._forward(g, n)

    # ---- arithmetic with numbers: x ∘ a ∘ b -> x ∘ (a ∘ b)
    def _fold(self, g: Graph, n: Node) -> bool:
        inner = producer(g, n.inputs[0])
        if inner.op not in ("mul", "div", "add", "sub") or not single_use(g, inner.out()):
            return False
        a, a_side = self._scalar(inner)
        b, _ = self._scalar(n)
        if a is None or (inner.op in ("div", "sub") and a_side != "right"):
            return False
        if g.type_of(inner.inputs[0]).dtype not in ("float32", "float64", "float16", "bfloat16"):
            return False  # integer arithmetic rounds differently once folded
        ops = {inner.op, n.op}
        if ops <= {"mul", "div"}:
            # x * a * b, x / a / b, x / a * b, x * a / b
            if inner.op == "div" and n.op == "div":
                op, c = "div", _hv_bin(a, "*", b)
            elif inner.op == "mul" and n.op == "mul":
                op, c = "mul", _hv_bin(a, "*", b)
            elif inner.op == "div":  # x / a * b
                op, c = "mul", _hv_bin(b, "/", a)
            else:  # x * a / b
                op, c = "mul", _hv_bin(a, "/", b)
        elif ops <= {"add", "sub"}:
            if inner.op == "add" and n.op == "add":
                op, c = "add", _hv_bin(a, "+", b)
            elif inner.op == "sub" and n.op == "sub":
                op, c = "sub", _hv_bin(a, "+", b)
            elif inner.op == "sub":  # x - a + b
                op, c = "add", _hv_bin(b, "-", a)
            else:  # x + a - b
                op, c = "add", _hv_bin(a, "-", b)
        else:
            return False
        if c is None:
            return False
        call = OpCall(op, (), kwargs=(("scalar", c), ("side", "right")))
        new = try_add(g, call, [inner.inputs[0]], name=n.name, span=n.span)
        if new is None:
            return False
        if not replace_node(g, n, new):
            return False
        erase_dead(g, [inner])
        return True

    # ---- axis bookkeeping
    def _rule_rename(self, g, n):
        n_old, n_new = core.renamed(n.attrs)
        if n_old == n_new:
            return self._forward(g, n)
        inner = producer(g, n.inputs[0])
        if inner.op != "rename" or core.renamed(inner.attrs)[1] != n_old or not single_use(g, inner.out()):
            return False
        old, new = core.renamed(inner.attrs)[0], n_new
        if old == new:
            if not replace_value(g, n.out(), inner.inputs[0]):
                return False
            erase_dead(g, [n, inner])
            return True
        call = OpCall("rename", (), kwargs=(("new", new), ("old", old)))
        node = try_add(g, call, [inner.inputs[0]], name=n.name, span=n.span)
        if node is None or not replace_node(g, n, node):
            return False
        erase_dead(g, [inner])
        return True

    def _rule_transpose(self, g, n):
        a, b = core.swapped(n.attrs)
        if a == b:
            return self._forward(g, n)
        inner = producer(g, n.inputs[0])
        if inner.op != "transpose" or not replace_value(g, n.out(), inner.inputs[0]):
            return False  # only a pair that restores the layout (same names, same order)
        erase_dead(g, [n, inner])
        return True

    def _rule_unflatten(self, g, n):
        inner = producer(g, n.inputs[0])
        if inner.op != "flatten" or not replace_value(g, n.out(), inner.inputs[0]):
            return False
        erase_dead(g, [n, inner])
        return True

    def _rule_flatten(self, g, n):
        inner = producer(g, n.inputs[0])
        if inner.op != "unflatten" or not replace_value(g, n.out(), inner.inputs[0]):
            return False
        erase_dead(g, [n, inner])
        return True


def _hv_bin(a: HVal, op: str, b: HVal) -> HVal | None:
    """a op b as a hyperparameter value that keeps both expressions."""
    x, y = a.value, b.value
    if isinstance(x, (bool, str)) or isinstance(y, (bool, str)):
        return None
    if op == "/":
        if y == 0:
            return None
        value = x / y
    else:
        value = {"*": x * y, "+": x + y, "-": x - y}[op]
    if _is_literal(a) and _is_literal(b):
        return HVal.const(value)
    return HVal(value, X.binop(op, a.expr, b.expr))


# ==== common subexpressions and dead code =====================================================


def _has_trait(n: Node, traits: frozenset[str], memo: dict[tuple, bool]) -> bool:
    """Whether node `n` is an op with one of `traits` (asked of its registry entry), or calls
    a graph that holds one."""
    if not isinstance(n, BodyNode):
        return n.op not in ("input",) and bool(registry.get(n.op).traits & traits)
    key = (id(n.callee), traits)
    if key not in memo:
        memo[key] = False
        memo[key] = any(_has_trait(m, traits, memo) for m in n.callee.nodes())
    return memo[key]


# two random draws are two draws; a stateful op updates its state while training
NOT_MERGED = frozenset({"random", "stateful"})
KEPT = frozenset({"stateful"})


@register_pass
class CSE(Pass):
    """Common subexpressions: a node that does what an earlier one does (same op, inputs,
    call, module and callee) is replaced by it. Random and stateful ops (dropout, BatchNorm,
    blocks containing them) are left alone: two of them are two draws or two updates."""

    name = "cse"

    def run(self, graph: Graph) -> bool:
        seen: dict = {}
        memo: dict[tuple, bool] = {}
        changed = False
        for n in graph.nodes():
            if n.op == "input" or _has_trait(n, NOT_MERGED, memo):
                continue
            key = (
                n.op, n.inputs, n.call, n.module, id(n.callee) if isinstance(n, BodyNode) else None,
                n.attrs if n.call is None else None,
            )
            prev = seen.get(key)
            if prev is None:
                seen[key] = n
                continue
            if replace_node(graph, n, prev):
                changed = True
        return changed


@register_pass
class DCE(Pass):
    """Dead code: nodes whose results nobody uses. A node that owns parameters or buffers
    stays while no other node of its module is left, so the state_dict keeps its keys; a
    BatchNorm (or a block with one) stays too: it updates its statistics while training."""

    name = "dce"

    def run(self, graph: Graph) -> bool:
        changed = False
        memo: dict[tuple, bool] = {}
        progress = True
        while progress:
            progress = False
            modules = Counter(n.module for n in graph.nodes() if n.module is not None)
            for n in reversed(graph.nodes()):
                if n.op == "input" or any(
                    graph.users(n.out(i)) or graph.is_output(n.out(i)) for i in range(len(n.types))
                ):
                    continue
                if n.module is not None and modules[n.module] == 1 and _owns_state(graph, n):
                    continue
                if _has_trait(n, KEPT, memo):
                    continue
                if n.module is not None:
                    modules[n.module] -= 1
                graph.erase(n)
                progress = changed = True
        return changed


def _owns_state(g: Graph, n: Node) -> bool:
    if isinstance(n, BodyNode):
        return bool(analysis.param_count(n.callee) or analysis.param_count(n.callee, buffers=True))
    op = registry.get(n.op)
    return bool(op.params(n.attrs, tuple(g.type_of(v) for v in n.inputs)))

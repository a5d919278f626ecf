"""The optimizer: a pass manager that runs named passes over a model's graphs (callees first,
each shared graph once), verifies the IR after each, and can print it; and the passes.

Every rewrite is *structural*: it never depends on the value a hyperparameter has in this
instance, because all instances of a block share one generated class; and it only replaces
a value by one of exactly the same type, size codes included (the codes are how generated
code spells a size in terms of hyperparameters)."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from . import analysis, registry
from .errors import InternalError, NNError, ShapeError, did_you_mean
from .ir import Graph, Node, Value
from .irtext import all_graphs, print_ir
from .registry import OpCall
from .types import HVal, TensorType


class PipelineError(NNError, ValueError):
    """A pass pipeline names an unknown pass or optimisation level."""


# ==== the manager =============================================================================


class Pass:
    """A rewrite of one graph; `run` says whether it changed anything."""

    name: ClassVar[str] = ""

    def run(self, graph: Graph) -> bool:
        raise NotImplementedError


PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    if not cls.name or cls.name in PASSES:
        raise InternalError(f"pass {cls.__name__} has no name or a taken one")
    PASSES[cls.name] = cls
    return cls


CLEANUP = "canonicalize,cse,dce"
LEVELS = {
    0: "",
    1: CLEANUP,
    2: f"{CLEANUP},fuse-attention,fuse-linear,einsum-to-matmul,{CLEANUP}",
}


def pipeline(passes: str | None = None, opt: int | None = None) -> list[Pass]:
    """The passes named by a comma-separated list, else those of an optimisation level."""
    if passes is not None and opt is not None:
        raise PipelineError("give either a pass list or an optimisation level, not both")
    if passes is None:
        level = 0 if opt is None else opt
        if level not in LEVELS:
            raise PipelineError(f"unknown optimisation level {level}; levels: {', '.join(map(str, LEVELS))}")
        passes = LEVELS[level]
    out = []
    for name in (p.strip() for p in passes.split(",")):
        if not name:
            continue
        if name not in PASSES:
            raise PipelineError(
                f"unknown pass '{name}'{did_you_mean(name, PASSES)}; passes: {', '.join(sorted(PASSES))}"
            )
        out.append(PASSES[name]())
    return out


VERIFY_MODES = ("changed", "all")


def default_verify_mode() -> str:
    """`NNC_VERIFY=all` re-verifies every graph after every pass (the test suite sets it);
    the default verifies what a pass changed."""
    mode = os.environ.get("NNC_VERIFY", "changed")
    if mode not in VERIFY_MODES:
        raise PipelineError(f"NNC_VERIFY={mode!r}: choose one of {', '.join(VERIFY_MODES)}")
    return mode


@dataclass
class PassManager:
    """Runs passes over every graph, callees first. After each pass it verifies, in mode
    `changed`, each graph the pass changed and each graph calling one (a pass that changed
    nothing costs no verification), and in those re-derives only the types of nodes whose
    inputs or attributes are new objects (Graph.verify(incremental=True)); in mode `all`,
    every graph and every type. `verify=False` skips it."""

    passes: list[Pass]
    verify: bool = True
    # called after each pass with (pass name, whether it changed the IR, the root graph)
    after: Callable[[str, bool, Graph], None] | None = None
    log: list[tuple[str, bool]] = field(default_factory=list)
    mode: str = field(default_factory=default_verify_mode)

    def run(self, root: Graph) -> bool:
        if self.mode not in VERIFY_MODES:
            raise PipelineError(f"unknown verification mode {self.mode!r}")
        changed_any = False
        for p in self.passes:
            graphs = all_graphs(root)
            touched = [g for g in graphs if p.run(g)]
            changed = bool(touched)
            if self.verify and (changed or self.mode == "all"):
                try:
                    self._verify(root, graphs, touched)
                except NNError as e:
                    raise InternalError(f"the IR does not verify after pass '{p.name}': {e.message}") from None
            self.log.append((p.name, changed))
            changed_any |= changed
            if self.after is not None:
                self.after(p.name, changed, root)
        return changed_any

    def _verify(self, root: Graph, graphs: list[Graph], touched: list[Graph]) -> None:
        if self.mode == "all":
            root.verify()
            return
        stale = set(touched)
        for g in graphs:  # callees come first, so a caller of a caller is reached too
            if any(n.callee in stale for n in g.nodes() if n.callee is not None):
                stale.add(g)
        # a graph marked done is not re-verified when a stale caller reaches it
        done = {g for g in graphs if g not in stale}
        for g in graphs:
            if g in stale:
                g.verify(done, incremental=True)


def optimize(root: Graph, passes: str | None = None, opt: int | None = None, *, verify: bool = True) -> Graph:
    """Run a pipeline over `root` (in place) and return it."""
    PassManager(pipeline(passes, opt), verify=verify).run(root)
    return root


def run_cli_ir(spec, args) -> int:
    """`nnc ir`: print the IR, after the passes asked for (and after each, if asked)."""
    pm = PassManager(pipeline(args.passes, args.opt))
    out = sys.stdout
    if args.print_after_all:
        def after(name, changed, root):
            out.write(f"# ---- after {name}{'' if changed else ' (no change)'} ----\n")
            out.write(print_ir(root))
            out.write("\n")

        pm.after = after
    pm.run(spec.graph)
    if not (args.print_after_all and pm.passes):
        out.write(print_ir(spec.graph))
    return 0


# ==== helpers the passes share ===============================================================


def exact(t: TensorType):
    """A type with the size codes, which TensorType equality leaves out."""
    return t.dtype, tuple((a.name, a.size, a.code) for a in t.axes)


def replace_value(g: Graph, old: Value, new: Value) -> bool:
    """Make every use of `old` use `new`, when both have exactly the same type."""
    if exact(g.type_of(old)) != exact(g.type_of(new)):
        return False
    g.replace_all_uses(old, new)
    return True


def replace_node(g: Graph, old: Node, new: Node) -> bool:
    """Replace every result of `old` by the same result of `new` and erase `old`; when the
    types differ, erase `new` instead and leave the graph as it was."""
    if len(old.types) != len(new.types) or any(exact(a) != exact(b) for a, b in zip(old.types, new.types)):
        if not g.users(new.out()) and not g.is_output(new.out()):
            g.erase(new)
        return False
    for i in range(len(old.types)):
        g.replace_all_uses(old.out(i), new.out(i))
    g.erase(old)
    return True


def alive(g: Graph, n: Node) -> bool:
    try:
        return g.node(n.id) is n
    except KeyError:
        return False


def single_use(g: Graph, v: Value) -> bool:
    return len(g.users(v)) == 1 and not g.is_output(v)


def producer(g: Graph, v: Value) -> Node:
    return g.node(v.node)


def try_add(g: Graph, call: OpCall, inputs, *, name: str, module=None, span=None) -> Node | None:
    """Add a registry op, or None when its shape rule refuses these inputs."""
    try:
        return g.add_op(call, inputs, name=g.fresh_name(name), module=module, span=span)
    except ShapeError:
        return None


def erase_dead(g: Graph, nodes) -> None:
    """Erase the nodes in order as each becomes unused."""
    for n in nodes:
        if not any(g.users(n.out(i)) or g.is_output(n.out(i)) for i in range(len(n.types))):
            g.erase(n)


def wrap_expr(expr: str) -> str:
    return f"({expr})" if " " in expr and not (expr.startswith("(") and expr.endswith(")")) else expr


def _is_literal(h, value=None) -> bool:
    """A constant written in the spec (not a hyperparameter), optionally equal to `value`."""
    if not isinstance(h, HVal) or isinstance(h.value, (bool, str)) or h.expr != repr(h.value):
        return False
    return value is None or h.value == value


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
        if "scalar" in n.attrs.keys():
            return n.attrs["scalar"], n.attrs["side"]
        return None, None

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
        return g.type_of(n.inputs[0]).dtype == n.attrs["to"] and self._forward(g, n)

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
        if n.attrs["old"] == n.attrs["new"]:
            return self._forward(g, n)
        inner = producer(g, n.inputs[0])
        if inner.op != "rename" or inner.attrs["new"] != n.attrs["old"] or not single_use(g, inner.out()):
            return False
        old, new = inner.attrs["old"], n.attrs["new"]
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
        if n.attrs["a"] == n.attrs["b"]:
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
    return HVal(value, f"{wrap_expr(a.expr)} {op} {wrap_expr(b.expr)}")


# ==== common subexpressions and dead code =====================================================


RANDOM = frozenset({"dropout"})
STATEFUL = frozenset({"BatchNorm"})  # updates its running statistics while training


def _holds(g: Graph, ops: frozenset, memo: dict[int, bool]) -> bool:
    """Whether a graph, or a graph it calls, holds one of `ops`."""
    if id(g) not in memo:
        memo[id(g)] = False
        memo[id(g)] = any(n.op in ops or (n.callee is not None and _holds(n.callee, ops, memo)) for n in g.nodes())
    return memo[id(g)]


@register_pass
class CSE(Pass):
    """Common subexpressions: a node that does what an earlier one does (same op, inputs,
    call, module and callee) is replaced by it. Random and stateful ops (dropout, BatchNorm,
    blocks containing them) are left alone: two of them are two draws or two updates."""

    name = "cse"

    def run(self, graph: Graph) -> bool:
        seen: dict = {}
        memo: dict[int, bool] = {}
        changed = False
        for n in graph.nodes():
            if n.op == "input" or n.op in RANDOM | STATEFUL:
                continue
            if n.callee is not None and _holds(n.callee, RANDOM | STATEFUL, memo):
                continue
            key = (
                n.op, n.inputs, n.call, n.module, id(n.callee),
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
        memo: dict[int, bool] = {}
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
                if n.op in STATEFUL or (n.callee is not None and _holds(n.callee, STATEFUL, memo)):
                    continue
                if n.module is not None:
                    modules[n.module] -= 1
                graph.erase(n)
                progress = changed = True
        return changed


def _owns_state(g: Graph, n: Node) -> bool:
    if n.callee is not None:
        return bool(analysis.param_count(n.callee) or analysis.param_count(n.callee, buffers=True))
    op = registry.get(n.op)
    return bool(op.params(n.attrs, tuple(g.type_of(v) for v in n.inputs)))


# the fusion passes live in fusions.py; importing it registers them
from . import fusions  # noqa: E402,F401

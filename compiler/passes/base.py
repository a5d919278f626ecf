"""What every pass is built from: the `Pass` base class and its registration, and the
rewrite helpers the passes share.

Every rewrite is *structural*: it never depends on the value a hyperparameter has in this
instance, because all instances of a block share one generated class; and it only replaces
a value by one of exactly the same type, size codes included (the codes are how generated
code spells a size in terms of hyperparameters)."""

from __future__ import annotations

from typing import ClassVar

from nncircuit.errors import InternalError, NNError, ShapeError
from nncircuit.ir.graph import Graph, Node, Value
from nncircuit.ops.registry import OpCall
from nncircuit.types.tensor import HVal, TensorType


class PipelineError(NNError, ValueError):
    """A pass pipeline names an unknown pass or optimisation level."""


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


def _is_literal(h, value=None) -> bool:
    """A constant written in the spec (not a hyperparameter), optionally equal to `value`."""
    if not isinstance(h, HVal) or isinstance(h.value, (bool, str)) or not h.is_const:
        return False
    return value is None or h.value == value

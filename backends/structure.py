"""What the PyTorch and ONNX backends must agree on, so that a state_dict moves between them:
the class name of a block, when a repeat is a list of one block (its keys then have no
wrapper level), and which nodes depend on a graph's inputs."""

from __future__ import annotations

from nncircuit.ir.graph import CallNode, Graph
from nncircuit.names import pyname


def class_name(g: Graph) -> str:
    if g.kind == "repeat":
        parent, _, rep = g.name.rpartition("_")
        # GPT2_h -> GPT2H, Net_layers -> NetLayers
        return pyname(parent + "".join(p[:1].upper() + p[1:] for p in rep.split("_")))
    return pyname(g.name)


def single_call_body(body: Graph) -> CallNode | None:
    """The call node when a repeat body only applies one block to its carried values, with no
    reordering: then the repeat is a list of that block, with no wrapper class."""
    ops = [n for n in body.nodes() if n.op != "input"]
    c = ops[0] if len(ops) == 1 else None
    if not isinstance(c, CallNode):
        return None
    if [v.node for v in c.inputs] != body.inputs or any(v.index for v in c.inputs):
        return None
    if [v for _, v in body.outputs] != [c.out(i) for i in range(len(c.types))]:
        return None
    for v, decl in zip(c.inputs, c.callee.inputs):
        if body.type_of(v).names != tuple(c.lift) + c.callee.node(decl).type.names:
            return None
    return c


def input_dependent(g: Graph) -> set[int]:
    """Ids of the nodes of g that some input reaches (the ONNX backend's test; the torch
    backend uses the stricter `_lifted` of its codegen)."""
    dep = set(g.inputs)
    for n in g.nodes():
        if any(v.node in dep for v in n.inputs):
            dep.add(n.id)
    return dep

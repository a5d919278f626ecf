"""IR node kinds are types: `Graph.add` (and so the elaborator and the IR parser) makes an
`InputNode`, `CallNode`, `LoopNode` (repeat) or `OpNode` from the op name, and only the two
`BodyNode` kinds carry a callee graph. The elaborator's not-yet-applied functions are an
`OpFn` (with its registry entry) or a `BlockFn` (with its definition) in the same way."""

import os

import pytest
from conftest import SPECS

import nncircuit
from nncircuit.errors import InternalError, ShapeError
from nncircuit.ir.graph import BodyNode, CallNode, Graph, InputNode, LoopNode, OpNode
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import all_graphs, print_ir
from nncircuit.lang.elaborate import BlockFn, OpFn
from nncircuit.ops import registry
from nncircuit.ops.registry import STD_NORMAL, AxisSpec, OpCall, init_of
from nncircuit.types.sizes import Size
from nncircuit.types.tensor import Axis, HVal, TensorType

KIND = {"input": InputNode, "call": CallNode, "repeat": LoopNode}


@pytest.fixture(scope="module")
def gpt2():
    return nncircuit.load(os.path.join(SPECS, "transformer.nn"), "GPT2", vocab=97, ctx=32, d=64,
                          heads=4, layers=2).graph


def _check_kinds(root: Graph) -> set[type]:
    seen = set()
    for g in all_graphs(root):
        for n in g.nodes():
            kind = KIND.get(n.op, OpNode)
            assert type(n) is kind, (n.op, type(n))
            assert isinstance(n, BodyNode) == (n.op in ("call", "repeat"))
            if isinstance(n, BodyNode):
                assert isinstance(n.callee, Graph)
            else:
                assert not hasattr(n, "callee")
            seen.add(kind)
    return seen


def test_elaborated_nodes_have_the_kind_their_op_names(gpt2):
    assert _check_kinds(gpt2) == {InputNode, CallNode, LoopNode, OpNode}


def test_parsed_ir_nodes_have_the_kind_their_op_names(gpt2):
    back = parse_ir(print_ir(gpt2))
    assert _check_kinds(back) == {InputNode, CallNode, LoopNode, OpNode}
    back.verify()


def _small_graph() -> tuple[Graph, int]:
    g = Graph("t", "model")
    t = TensorType((Axis("d", Size.of(4)),), "float32")
    x = g.add("input", attrs={"name": "x"}, types=(t,), name="x")
    g.inputs.append(x.id)
    return g, x.id


def test_add_refuses_a_body_node_without_its_graph():
    g, _ = _small_graph()
    with pytest.raises(InternalError, match="has no callee"):
        g.add("call", name="c", attrs={})
    with pytest.raises(InternalError, match="has no callee"):
        g.add("repeat", name="r", attrs={})


def test_add_refuses_a_callee_on_other_kinds():
    g, x = _small_graph()
    body, _ = _small_graph()
    relu = OpCall("relu", ())
    with pytest.raises(InternalError, match="cannot have a callee"):
        g.add("relu", [g.node(x).out()], call=relu, name="y", callee=body)
    with pytest.raises(InternalError, match="cannot have a callee"):
        g.add_body("relu", [g.node(x).out()], call=relu, name="y2", callee=body, attrs={},
                   types=(g.node(x).type,))


def test_op_nodes_are_op_nodes():
    g, x = _small_graph()
    y = g.add_op(OpCall("relu", ()), [g.node(x).out()], name="y")
    assert type(y) is OpNode and y.types == g.node(x).types
    g.outputs.append(("y", y.out()))
    g.verify()


def test_fn_kinds_carry_their_definition():
    fn = OpFn("relu", opdef=registry.get("relu"))
    assert fn.kind == "op" and fn.opdef.name == "relu"
    with pytest.raises(TypeError):
        OpFn("relu")  # an op function without its registry entry cannot be made
    with pytest.raises(TypeError):
        BlockFn("Mlp")  # nor a block function without its definition
    assert BlockFn.kind == "block"


def test_init_text_shows_its_arguments():
    # it raised TypeError (joining expressions, not text) for any init with arguments
    assert str(STD_NORMAL) == "normal(1.0, 0.0)"
    assert str(init_of("Param", "init", "kaiming_normal", ndim=2)) == "kaiming_normal(0.0)"


def test_axis_positional_arguments_must_be_axes():
    t = TensorType((Axis("a", Size.of(2)), Axis("b", Size.of(3))), "float32")
    bad = OpCall("transpose", (t,), positional=(HVal.const(1), AxisSpec("b")))
    with pytest.raises(ShapeError, match="expects axis names"):
        registry.get("transpose").check(bad)
    ok = OpCall("transpose", (t,), positional=(AxisSpec("a"), AxisSpec("b")))
    _, (out,) = registry.get("transpose").check(ok)
    assert out.names == ("b", "a")

"""Typed op attributes: every op declares its attribute schema (`OpDef.attrs`, a tuple of
`AttrSpec`), a node's attributes are checked against it and completed with its defaults
where the node is built (`Graph.add`, and so the elaborator, the passes and the IR parser)
and again by `Graph.verify`; outside an op's own entry and its lowerings nothing reads an
attribute by its string key (the source scan below), asking the registry entry instead."""

import os
import re

import pytest
from conftest import OVER_BUDGET, ROOT, SPECS

import nncircuit
from nncircuit.errors import NNError
from nncircuit.ir.graph import CallNode, Graph, InputNode, LoopNode
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import all_graphs, print_ir
from nncircuit.ops import registry
from nncircuit.ops.registry import (
    ATTR_KINDS,
    REQUIRED,
    STRUCTURAL_ATTRS,
    AttrError,
    Attrs,
    AttrSpec,
    AxisSpec,
    OpCall,
    OpDef,
    checked_attrs,
)
from nncircuit.types import expr as X
from nncircuit.types.sizes import Size
from nncircuit.types.tensor import Axis, HVal, TensorType

D4 = TensorType((Axis("d", Size.of(4)),), "float32")


def _graph() -> tuple[Graph, object]:
    g = Graph("t", "model")
    x = g.add("input", attrs={"name": "x"}, types=(D4,), name="x")
    g.inputs.append(x.id)
    return g, x.out()


# ---- the schema is declared, for every op ----------------------------------------------------


def test_every_op_declares_its_schema():
    for name, op in registry.all_ops().items():
        assert op.attrs is not None, name
        for spec in op.attrs:
            assert isinstance(spec, AttrSpec) and spec.kind in ATTR_KINDS, (name, spec)
        assert len({s.name for s in op.attrs}) == len(op.attrs), name
    # the structural nodes too
    assert set(STRUCTURAL_ATTRS) == {"input", "call", "repeat", "scan"}


def test_register_refuses_an_op_without_a_schema():
    op = OpDef(name="no_schema_op", doc="", check=lambda call: ({}, call.inputs), arity=1)
    with pytest.raises(ValueError, match="op no_schema_op: declare its attribute schema"):
        registry.register(op)
    assert "no_schema_op" not in registry.REGISTRY


def test_attrspec_refuses_an_unknown_kind_and_a_none_default_that_is_not_optional():
    with pytest.raises(ValueError, match="unknown kind 'integer'"):
        AttrSpec("n", "integer")
    with pytest.raises(ValueError, match="needs optional=True"):
        AttrSpec("n", "int", default=None)
    assert AttrSpec("n", "int").default is REQUIRED


def test_an_attribute_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        OpDef(name="twice", doc="", check=lambda c: ({}, ()), arity=1,
              attrs=(AttrSpec("a", "int"), AttrSpec("a", "int")))


# ---- enforced where a node is built ------------------------------------------------------------


def test_defaults_are_filled_so_attrs_are_complete():
    g, x = _graph()
    # a sum of two tensors: the scalar operand's keys are there, None
    s = g.add("add", [x, x], call=OpCall("add", ()), name="s")
    assert s.attrs.keys() == ("scalar", "side")
    assert s.attrs["scalar"] is None and s.attrs["side"] is None
    assert registry.get("add").scalar_operand(s.attrs) is None
    # with a number: the keys carry it
    m = g.add("mul", [x], call=OpCall("mul", (), kwargs=(("scalar", HVal.const(2)), ("side", "left"))), name="m")
    assert registry.get("mul").scalar_operand(m.attrs) == (HVal.const(2), "left")
    # a Linear without tie or init: None, filled
    lin = g.add_op(OpCall("Linear", (), src=(AxisSpec("d"),), dst=(AxisSpec("e", HVal.const(3)),)), [x], name="l")
    assert lin.attrs["tied"] is None and lin.attrs["init"] is None and lin.attrs["bias"] is True
    g.verify()


@pytest.mark.parametrize("attrs, message", [
    ({"name": "x", "colour": 1}, r"op input: unknown attribute 'colour' \(its schema declares: name\)"),
    ({"name": 3}, r"op input: attribute 'name' must be str, found 3 \(int\)"),
    ({}, r"op input: attribute 'name' \(str\) is required but missing"),
])
def test_graph_add_refuses_attrs_that_disagree_with_the_schema(attrs, message):
    g = Graph("t", "model")
    with pytest.raises(AttrError, match=message):
        g.add("input", attrs=attrs, types=(D4,), name="x")


def test_a_repeat_needs_an_hval_count():
    g, x = _graph()
    body, _ = _graph()
    body.outputs.append(("y", body.node(body.inputs[0]).out()))
    with pytest.raises(AttrError, match=r"op repeat: attribute 'count' must be hval, found 2 \(int\)"):
        g.add_body("repeat", [x], callee=body, attrs={"count": 2, "shared": False, "carried": 1},
                   types=(D4,), name="r")
    r = g.add_body("repeat", [x], callee=body, attrs={"count": HVal.const(2), "carried": 1}, types=(D4,), name="r")
    assert isinstance(r, LoopNode) and r.shared is False and r.count.value == 2 and r.carried == 1


def test_a_shape_rule_that_returns_an_undeclared_key_is_an_internal_error():
    bad = OpDef(name="bad_rule", doc="", arity=1, attrs=(AttrSpec("axis", "axis"),),
                check=lambda call: ({"axis": "d", "extra": 1}, call.inputs))
    registry.REGISTRY["bad_rule"] = bad  # registered by hand: removed below
    try:
        g, x = _graph()
        with pytest.raises(AttrError, match="op bad_rule: unknown attribute 'extra'"):
            g.add_op(OpCall("bad_rule", ()), [x], name="b")
        wrong = OpDef(name="bad_rule", doc="", arity=1, attrs=(AttrSpec("axis", "axis"),),
                      check=lambda call: ({"axis": ("d",)}, call.inputs))
        registry.REGISTRY["bad_rule"] = wrong
        with pytest.raises(AttrError, match=r"op bad_rule: attribute 'axis' must be axis, found \('d',\)"):
            g.add_op(OpCall("bad_rule", ()), [x], name="b")
    finally:
        del registry.REGISTRY["bad_rule"]


def test_verify_refuses_attrs_changed_behind_the_graphs_back():
    g, x = _graph()
    n = g.add_op(OpCall("softmax", (), over=(AxisSpec("d"),)), [x], name="p")
    g.outputs.append(("y", n.out()))
    g.verify()
    n.attrs = Attrs.of({"axes": 5})
    with pytest.raises(AttrError, match=r"op softmax: attribute 'axes' must be axes, found 5"):
        g.verify()
    n.attrs = Attrs()  # missing
    with pytest.raises(AttrError, match="op softmax: attribute 'axes'"):
        g.verify()
    inp = g.node(g.inputs[0])
    n.attrs = Attrs.of({"axes": ("d",)})
    g.verify()
    inp.attrs = Attrs.of({"name": "x", "extra": True})
    with pytest.raises(AttrError, match="op input: unknown attribute 'extra'"):
        g.verify()


def test_a_value_outside_the_choices_is_refused():
    g, x = _graph()
    call = OpCall("mul", (), kwargs=(("scalar", HVal.const(2)), ("side", "up")))
    with pytest.raises(AttrError, match=r"op mul: attribute 'side' must be 'left' or 'right' or None, found 'up'"):
        g.add_op(call, [x], name="m")


def test_hand_written_ir_with_a_bad_attribute_is_a_positioned_error():
    spec = nncircuit.load("m.nn", "M", text="model M(d = 4) {\n  in x: [b, d]\n  y = x * 2\n  out y\n}\n")
    text = print_ir(spec.graph)
    assert 'side = right' in text
    parse_ir(text).verify()
    with pytest.raises(NNError) as err:
        parse_ir(text.replace("side = right", "side = up"), "m.ir")
    assert err.value.span is not None and err.value.span.line == text.splitlines().index(
        next(line for line in text.splitlines() if "side = right" in line)) + 1
    assert "attribute 'side' must be 'left' or 'right'" in err.value.render()


def test_a_float_attribute_is_a_number_or_an_hval():
    spec = registry.get("dropout").attrs[0]
    assert spec.accepts(0.5) and spec.accepts(0) and spec.accepts(HVal(0.5, X.Ref("p")))
    assert not spec.accepts(True) and not spec.accepts("0.5") and not spec.accepts(None)


def test_verify_refuses_attrs_without_their_defaults():
    g, x = _graph()
    n = g.add("add", [x, x], call=OpCall("add", ()), name="s")
    g.outputs.append(("y", n.out()))
    n.attrs = Attrs()  # valid keys only, but not completed
    with pytest.raises(AttrError, match="lacks the defaults"):
        g.verify()


def _complete(root: Graph):
    count = 0
    for g in all_graphs(root):
        for n in g.nodes():
            assert checked_attrs(n.op, n.attrs) is n.attrs, (n.name, n.op, n.attrs)
            assert n.attrs.keys() == tuple(sorted(s.name for s in registry.schema_of(n.op))), n.op
            count += 1
    return count


def test_every_node_of_every_zoo_model_has_complete_attrs_and_so_does_its_parsed_ir():
    for f in sorted(os.listdir(SPECS)):
        if not f.endswith(".nn"):
            continue
        path = os.path.join(SPECS, f)
        for model in nncircuit.models(path):
            spec = nncircuit.load(path, model, opt=2, max_params=10**12 if f in OVER_BUDGET else 2 * 10**9)
            assert _complete(spec.graph) > 0
            back = parse_ir(print_ir(spec.graph))
            assert _complete(back) > 0
            back.verify()


def test_the_ir_parser_yields_typed_structural_attrs():
    spec = nncircuit.load(os.path.join(SPECS, "transformer.nn"), "GPT2", vocab=97, ctx=32, d=64, heads=4, layers=2)
    back = parse_ir(print_ir(spec.graph))
    kinds = {type(n) for g in all_graphs(back) for n in g.nodes()}
    assert {InputNode, CallNode, LoopNode} <= kinds
    for g in all_graphs(back):
        for n in g.nodes():
            if isinstance(n, InputNode):
                assert isinstance(n.input_name, str)
            elif isinstance(n, CallNode):
                assert isinstance(n.block, str) and all(isinstance(v, HVal) for _, v in n.args)
            elif isinstance(n, LoopNode):
                assert isinstance(n.count, HVal) and isinstance(n.shared, bool) and isinstance(n.carried, int)


# ---- the questions an OpDef answers ----------------------------------------------------------


def test_opdef_answers_ties_notes_labels_axes_and_hyperparameters():
    t = TensorType((Axis("c", Size.of(8)), Axis("h", Size.of(16)), Axis("w", Size.of(16))), "float32")
    g = Graph("t", "model")
    x = g.add("input", attrs={"name": "x"}, types=(t,), name="x")
    g.inputs.append(x.id)
    k = HVal(3, X.Ref("k"))
    conv = g.add_op(OpCall("Conv", (), src=(AxisSpec("c"),), dst=(AxisSpec("c", HVal.const(8)),),
                           over=(AxisSpec("h"), AxisSpec("w")),
                           kwargs=(("kernel", k), ("stride", HVal.const(2)), ("groups", HVal.const(8)))),
                    [x.out()], name="conv")
    op = registry.get("Conv")
    assert op.note(conv.attrs) == "3×3 /2 dw"
    assert op.hyper_refs(conv.attrs) == {"k"}
    assert set(op.axes_named(conv.attrs)) == {"c", "h", "w"}
    assert op.ties(conv.attrs) is None and op.label(conv.attrs) == ""
    sel = g.add_op(OpCall("select", (), kwargs=(("axis", "h"), ("index", HVal(0, X.Ref("i"))))), [x.out()], name="s")
    assert registry.get("select").label(sel.attrs) == "[h = i]"
    lin = registry.get("Linear")
    a = lin.make_attrs({"in_axes": ("c",), "out_axes": (Axis("v", Size.of(5)),), "in_features": HVal.const(8),
                        "out_features": HVal.const(5), "out_sizes": (HVal.const(5),), "bias": False, "tied": "wte"})
    assert lin.ties(a) == "wte" and lin.note(a) == "tied to wte"
    assert [s.value for s in lin.tied_shape(a)] == [5, 8]
    assert lin.axes_named(a) == ("c", "v")


# ---- no string-keyed attribute lookups outside an op's entry and its lowerings -----------------

ALLOWED = ("compiler/ops/", "backends/torch/ops.py", "backends/onnx/ops.py", "backends/onnx/fused.py")
LOOKUP = re.compile(r"""attrs\s*\[|attrs\.get\(|\.attrs\.items\b|attrs\.keys\(|repr\([^)]*attrs|\bAttrs\.of\(.*\)\[""")


def _violations(text: str) -> list[int]:
    return [i for i, line in enumerate(text.splitlines(), 1) if LOOKUP.search(line)]


def test_the_scan_sees_each_kind_of_lookup():
    for line in ('n.attrs["tied"]', "node.attrs.get('scalar')", "for k, v in n.attrs.items:",
                 "n.attrs.keys()", "_words(repr(n.attrs))", "attrs ['x']"):
        assert _violations(line) == [1], line
    assert _violations("n.block; n.args; op.ties(n.attrs); op.make_attrs(attrs)") == []


def test_no_string_keyed_attribute_lookups_outside_the_ops_and_their_lowerings():
    found = []
    for top in ("compiler", "backends"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT).replace(os.sep, "/")
                if rel.startswith(ALLOWED):
                    continue
                with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
                    found += [f"{rel}:{line}" for line in _violations(fh.read())]
    assert found == [], "read attributes through the OpDef or a typed accessor: " + ", ".join(found)

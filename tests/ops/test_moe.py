"""scatter, scatter_add, index_add and the sparse mixture of experts (MoE): torch against a
direct computation, onnxruntime against torch (duplicate indices and other run-time sizes
included), the sparse MoE against the dense gather form and transformers' Mixtral block,
the FLOPs `nnc summary` counts, and the errors."""

import os
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

import nncircuit
from conftest import HERE
from nncircuit.analysis.cost import costs
from nncircuit.backends.onnx.export import build
from nncircuit.errors import NNError
from nncircuit.ops.routing import moe_flops

SCATTER = """
model Scatter(e = 5) {
    in  x: [batch, seq: ~4, expert: e], idx: [batch, seq, slot: 3] int64, v: [batch, seq, slot]
    i = idx rename slot -> expert
    w = v rename slot -> expert
    out scatter(x, i, w, over expert), scatter_add(x, i, w, over expert),
        scatter_add(x, i[batch = 0], w[batch = 0], over expert)
}

model IndexAdd(d = 6) {
    in  x: [batch, tok: ~5, d], idx: [row: 7] int64, v: [batch, row, d], u: [row, d]
    out index_add(x, idx, v, over tok), index_add(x, idx, u, over tok)
}

model Layout(d = 6) {
    in  x: [d, seq: ~5], g: [seq, d]
    a = MoE(x, over d, experts = 4, k = 2, hidden = 8)
    b = MoE(g, over d, experts = 3, k = 3, hidden = 5)
    out a, b
}

block Expert(d) {
    in  x: [seq, d]
    out MoE(x, over d, experts = 4, k = 1, hidden = 2 * d)
}

model Lifted(d = 6) {
    in  x: [batch, heads: 2, seq: ~5, d]
    out Expert(d)(x)
}
"""

MOE = """
model Sparse(d = 16, e = 8, k = 2, hidden = 24) {
    in  x: [batch, seq: ~6, d]
    moe = MoE(x, over d, experts = e, k = k, hidden = hidden)
    out moe
}

## The same layer written densely with the language's own routing ops: every expert runs on
## every token, and the top-k outputs are gathered and summed with renormalised weights.
model Dense(d = 16, e = 8, k = 2, hidden = 24) {
    in  x: [batch, seq: ~6, d]
    w1 = Param([expert: e, hidden, d])
    w3 = Param([expert: e, hidden, d])
    w2 = Param([expert: e, o: d, hidden])
    probs = softmax(Linear(x, d -> expert: e, bias = false), over expert)
    vals, idx = top_k(probs, over expert, k = k)
    w = vals / sum(vals, over expert)
    h = silu(einsum(x, w1, over d)) * einsum(x, w3, over d)
    y = einsum(h, w2, over hidden)
    out sum(gather(y, idx, over expert) * w, over expert) rename o -> d
}
"""


def session(spec, module):
    model = build(spec, state_dict=module.state_dict())
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_scatter_and_scatter_add_match_torch_with_repeated_indices():
    spec = nncircuit.load("s.nn", "Scatter", text=SCATTER)
    module = spec.module(seed=0)
    sess = session(spec, module)
    for b, s in [(2, 4), (3, 7)]:
        x = torch.randn(b, s, 5)
        idx = torch.randint(0, 5, (b, s, 3))
        idx[..., 1] = idx[..., 0]  # a repeated index in every row
        v = torch.randn(b, s, 3)
        got = module(x, idx, v)
        assert torch.equal(got[0], x.scatter(-1, idx, v))
        want = x.clone()
        for i in np.ndindex(b, s):
            for j in range(3):
                want[i][idx[i][j]] += v[i][j]
        torch.testing.assert_close(got[1], want)
        # indices and values of batch 0 only: broadcast over the batch
        torch.testing.assert_close(got[2], x.scatter_add(-1, idx[:1].expand(b, s, 3), v[:1].expand(b, s, 3)))
        onnx = sess.run(None, {"x": x.numpy(), "idx": idx.numpy(), "v": v.numpy()})
        np.testing.assert_allclose(onnx[1], got[1].numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(onnx[2], got[2].numpy(), rtol=1e-6, atol=1e-6)
        # plain scatter with a repeated index: either value may win there; elsewhere exact
        written = torch.zeros(b, s, 5, dtype=torch.bool).scatter(-1, idx, True)
        np.testing.assert_array_equal(onnx[0][~written.numpy()], x[~written].numpy())
        unique = (idx[..., 2] != idx[..., 0]).numpy()
        np.testing.assert_array_equal(np.take_along_axis(onnx[0], idx[..., 2:].numpy(), -1)[unique],
                                      v[..., 2:].numpy()[unique])


def test_index_add_matches_torch_with_repeated_indices():
    spec = nncircuit.load("s.nn", "IndexAdd", text=SCATTER)
    module = spec.module(seed=0)
    sess = session(spec, module)
    for b, t in [(2, 5), (1, 9)]:
        x = torch.randn(b, t, 6)
        idx = torch.tensor([0, 3, 3, 1, 0, 4, 3])
        v, u = torch.randn(b, 7, 6), torch.randn(7, 6)
        got = module(x, idx, v, u)
        want = x.clone()
        for j in range(7):
            want[:, idx[j]] += v[:, j]
        torch.testing.assert_close(got[0], want)
        torch.testing.assert_close(got[1], x.index_add(1, idx, u.expand(b, 7, 6)))
        onnx = sess.run(None, {"x": x.numpy(), "idx": idx.numpy(), "v": v.numpy(), "u": u.numpy()})
        for o, g in zip(onnx, got):
            np.testing.assert_allclose(o, g.numpy(), rtol=1e-5, atol=1e-6)


def _dense_state(sparse_state, hidden: int) -> dict:
    gu = sparse_state["moe.experts.gate_up_proj"]
    return {
        "linear.weight": sparse_state["moe.gate.weight"],
        "w1": gu[:, :hidden], "w3": gu[:, hidden:], "w2": sparse_state["moe.experts.down_proj"],
    }


def test_sparse_moe_equals_the_dense_gather_form():
    sparse = nncircuit.load("m.nn", "Sparse", text=MOE)
    dense = nncircuit.load("m.nn", "Dense", text=MOE)
    sm = sparse.module(seed=0)
    dm = dense.module(seed=1)
    assert sorted(sm.state_dict()) == ["moe.experts.down_proj", "moe.experts.gate_up_proj", "moe.gate.weight"]
    dm.load_state_dict(_dense_state(sm.state_dict(), 24), strict=True)
    x = torch.randn(3, 11, 16)
    with torch.no_grad():
        torch.testing.assert_close(sm(x), dm(x), rtol=1e-5, atol=1e-6)
    # the same parameters, other hyperparameters: the generated class keeps the expressions
    cls = sparse.torch_class()
    other = cls(e=6, k=3, hidden=10)
    assert other.moe.experts.gate_up_proj.shape == (6, 20, 16)
    dense6 = nncircuit.load("m.nn", "Dense", text=MOE, e=6, k=3, hidden=10).module(seed=0)
    dense6.load_state_dict(_dense_state(other.state_dict(), 10))
    with torch.no_grad():
        torch.testing.assert_close(other(x), dense6(x), rtol=1e-5, atol=1e-6)


def test_moe_onnx_matches_torch_at_other_sizes():
    spec = nncircuit.load("m.nn", "Sparse", text=MOE)
    module = spec.module(seed=0)
    sess = session(spec, module)
    for shape in [(1, 6, 16), (4, 33, 16)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = module(x).numpy()
        np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["Layout", "Lifted"])
def test_moe_in_other_layouts_and_lifted(model):
    spec = nncircuit.load("s.nn", model, text=SCATTER)
    module = spec.module(seed=0)
    sess = session(spec, module)
    inputs = [torch.randn(*(5 if a.name == "seq" else 2 if a.name == "batch" else a.size.value for a in t.axes))
              for _, t in spec.inputs()]
    with torch.no_grad():
        ref = module(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = sess.run(None, {name: x.numpy() for (name, _), x in zip(spec.inputs(), inputs)})
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-4, atol=1e-5)
    if model == "Layout":  # k = all the experts: the plain dense mixture, weights summing to 1
        m = module.b
        g = inputs[1]
        probs = torch.softmax(g @ m.gate.weight.T, -1)
        gu = torch.einsum("sd,efd->sef", g, m.experts.gate_up_proj)
        h = torch.nn.functional.silu(gu[..., :5]) * gu[..., 5:]
        want = torch.einsum("sef,edf,se->sd", h, m.experts.down_proj, probs)
        torch.testing.assert_close(ref[1], want, rtol=1e-4, atol=1e-5)


def test_a_transformers_mixtral_block_loads_strictly_and_agrees():
    tr = pytest.importorskip("transformers")
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = tr.MixtralConfig(hidden_size=16, intermediate_size=24, num_local_experts=8,
                              num_experts_per_tok=2)
    torch.manual_seed(0)
    block = MixtralSparseMoeBlock(config).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    module = nncircuit.load("m.nn", "Sparse", text=MOE).module(seed=0)
    module.moe.load_state_dict(block.state_dict(), strict=True)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        out = block(x)
        out = out[0] if isinstance(out, tuple) else out
        torch.testing.assert_close(module(x), out, rtol=1e-5, atol=1e-6)


def test_summary_counts_the_chosen_experts_only():
    spec = nncircuit.load("m.nn", "Sparse", text=MOE)
    c, _ = costs(spec.graph, {"batch": 1, "seq": 10})
    node = next(n for n in spec.graph.nodes() if n.op == "MoE")
    d, e, h, k, tokens = 16, 8, 24, 2, 10
    routing = tokens * (2 * d * e + 5 * e + 2 * k)
    per_expert = tokens * (2 * d * 2 * h + 2 * h * d + 4 * h + 2 * d)
    assert c.flops_of("MoE") == routing + k * per_expert
    ins = (spec.graph.type_of(node.inputs[0]),)
    dense = moe_flops(node.attrs, ins, node.types, {"batch": 1, "seq": 10}, dense=True)
    assert dense == routing + e * per_expert
    assert (c.flops_of("MoE") - routing) * e == (dense - routing) * k


ERRORS = [
    ("in x: [b, e: 4], i: [b, e: 2], v: [b, e: 2]\n  out scatter(x, i, v, over e)", r"scatter: indices must be integers"),
    ("in x: [b, e: 4], i: [b, f: 2] int64, v: [b, f: 2]\n  out scatter(x, i, v, over e)",
     r"scatter: the indices \[b, f: 2\] int64 must have the axis 'e' they write along"),
    ("in x: [b, e: 4], i: [b, e: 2] int64, v: [b, e: 2, g: 3]\n  out scatter_add(x, i, v, over e)",
     r"scatter_add: the values \[b, e: 2, g: 3\] must have the axes of the indices"),
    ("in x: [b, e: 4], i: [b, e: 2, g: 3] int64, v: [b, e: 2, g: 3]\n  out scatter_add(x, i, v, over e)",
     r"scatter_add: the indices .* has an axis 'g' that the target \[b, e: 4\] lacks"),
    ("in x: [b, e: 4], i: [b, e: 2] int64, v: [b, e: 3]\n  out scatter(x, i, v, over e)",
     r"scatter: axis 'e' has size 3 in the values"),
    ("in x: [b, t: 4, d: 2], i: [r: 3, s: 2] int64, v: [b, r: 3, d: 2]\n  out index_add(x, i, v, over t)",
     r"index_add: the indices must have exactly one axis"),
    ("in x: [b, t: 4, d: 2], i: [r: 3] int64, v: [b, t: 3, d: 2]\n  out index_add(x, i, v, over t)",
     r"index_add: the values \[b, t: 3, d: 2\] must have the axis 'r' of the indices"),
    ("in x: [b, t: 4, d: 2], i: [r: 3] int64, v: [b, r: 3, t: 4, d: 2]\n  out index_add(x, i, v, over t)",
     r"index_add: the values .* have both the indices' axis 'r' and the target axis 't'"),
    ("in x: [b, t: 4, r: 3], i: [r: 3] int64, v: [b, r: 3]\n  out index_add(x, i, v, over t)",
     r"index_add: the indices' axis 'r' is also an axis of the target"),
    ("in x: [b, t: 4, d: 2]\n  out MoE(x, over d, experts = 4, k = 5, hidden = 8)",
     r"MoE: k = 5 is more than the 4 experts"),
    ("in x: [b, t: 4, d: 2]\n  out MoE(x, over d, experts = 4, hidden = 8)", r"MoE needs 'k = N'"),
    ("in x: [b, t: 4, d]\n  out MoE(x, over d, experts = 4, k = 1, hidden = 8)",
     r"MoE needs a fixed size for its feature axis 'd'"),
    ("in x: [b, t: 4, d: 2]\n  out MoE(x, over e, experts = 4, k = 1, hidden = 8)", r"MoE expects an axis 'e'"),
]


@pytest.mark.parametrize("body, message", ERRORS)
def test_errors_point_at_the_call(body, message):
    text = "model M() {\n  " + body + "\n}\n"
    with pytest.raises(NNError, match=message) as info:
        nncircuit.load("bad.nn", text=text)
    rendered = str(info.value)
    assert rendered.startswith("bad.nn:3:7: error:"), rendered
    assert "^" in rendered


def test_the_target_is_not_broadcast_to_the_indices():
    text = "model M() {\n  in x: [b: 1, e: 4], i: [b: 3, e: 2] int64, v: [b: 3, e: 2]\n  out scatter_add(x, i, v, over e)\n}\n"
    with pytest.raises(NNError, match=r"axis 'b' has size 3 in the indices .* and 1 in the target"):
        nncircuit.load("bad.nn", text=text)


def test_the_circuit_diagram_draws_routing():
    from nncircuit.backends.diagram import render

    # test_render lives in tests/backends/diagram/, on sys.path only once pytest collected it
    diagram_tests = os.path.join(HERE, "backends", "diagram")
    if diagram_tests not in sys.path:
        sys.path.insert(0, diagram_tests)
    from test_render import geometry_problems

    spec = nncircuit.load("m.nn", "Sparse", text=MOE)
    svg = render.svg(spec, render.options("circuit", None, (), False), engine="python")
    for text in (">router<", ">top-2<", ">Σ<", ">E1<", ">E2<", ">⋮<", ">E8<", ">2 of 8 run<"):
        assert text in svg, text
    assert ">MoE<" not in svg  # the figure, not a box with the op's name
    assert geometry_problems(svg) == []


@pytest.mark.parametrize("bad", [9, -1])
def test_an_index_outside_the_axis_fails_in_both_backends(bad):
    spec = nncircuit.load("s.nn", "IndexAdd", text=SCATTER)
    module = spec.module(seed=0)
    sess = session(spec, module)
    x, idx = torch.randn(1, 5, 6), torch.tensor([0, 1, 2, 3, 4, 0, bad])
    v, u = torch.randn(1, 7, 6), torch.randn(7, 6)
    with pytest.raises((IndexError, RuntimeError)):
        module(x, idx, v, u)
    with pytest.raises(Exception, match="out of data bounds"):
        sess.run(None, {"x": x.numpy(), "idx": idx.numpy(), "v": v.numpy(), "u": u.numpy()})
    spec = nncircuit.load("s.nn", "Scatter", text=SCATTER)
    module = spec.module(seed=0)
    sess = session(spec, module)
    x, i, v = torch.randn(1, 2, 5), torch.zeros(1, 2, 3, dtype=torch.int64), torch.randn(1, 2, 3)
    i[0, 1, 2] = bad
    with pytest.raises((IndexError, RuntimeError)):
        module(x, i, v)
    with pytest.raises(Exception, match="out of data bounds"):
        sess.run(None, {"x": x.numpy(), "idx": i.numpy(), "v": v.numpy()})


@pytest.mark.parametrize("model", ["Scatter", "IndexAdd", "Layout", "Lifted"])
def test_ir_text_round_trips(model):
    from nncircuit.backends.torch.codegen import generate
    from nncircuit.ir.parser import parse_ir
    from nncircuit.ir.printer import print_ir

    g = nncircuit.load("s.nn", model, text=SCATTER).graph
    text = print_ir(g)
    assert print_ir(parse_ir(text)) == text
    assert generate(parse_ir(text), "s.nn") == generate(g, "s.nn")


def test_the_generated_class_refuses_what_the_checker_refuses():
    cls = nncircuit.load("m.nn", "Sparse", text=MOE).torch_class()
    with pytest.raises(ValueError, match="MoE: k = 3 is more than the 2 experts"):
        cls(e=2, k=3)
    with pytest.raises(ValueError, match="hidden must be at least 1"):
        cls(hidden=0)


def test_gradients_equal_the_dense_form():
    sparse = nncircuit.load("m.nn", "Sparse", text=MOE).module(seed=0)
    dense = nncircuit.load("m.nn", "Dense", text=MOE).module(seed=1)
    dense.load_state_dict(_dense_state(sparse.state_dict(), 24))
    x = torch.randn(2, 7, 16)
    (sparse(x) ** 2).sum().backward()
    (dense(x) ** 2).sum().backward()
    gu = sparse.moe.experts.gate_up_proj.grad
    torch.testing.assert_close(gu[:, :24], dense.w1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gu[:, 24:], dense.w3.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sparse.moe.experts.down_proj.grad, dense.w2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sparse.moe.gate.weight.grad, dense.linear.weight.grad, rtol=1e-4, atol=1e-6)


def test_the_add_forms_need_opset_16():
    from nncircuit.errors import LoweringError

    spec = nncircuit.load("s.nn", "IndexAdd", text=SCATTER)
    with pytest.raises(LoweringError, match=r"index_add needs ONNX opset 16 or newer .* the chosen opset is 15"):
        build(spec, opset=15)
    build(nncircuit.load("m.nn", "Sparse", text=MOE), opset=13)  # MoE's dense graph needs no more


def test_index_add_in_a_block_lifted_over_an_axis_before_the_rows():
    """The 300-seed differential run after merging found index_add inside a block lifted
    over `p` with its target axis after `batch`: torch expanded the lifted indices [p, 1]
    against [p, batch, 1] from the right, and ONNX did the same. Each slice of the lifted
    call must be the block's result on that slice, in torch and in onnxruntime."""
    text = (
        "block B(k) {\n    in  x: [batch, v: k]\n    vals, idx = top_k(x, over v, k = 1)\n"
        "    out index_add(x, max(idx, over [batch]), vals, over v)\n}\n\n"
        "model Lifted() {\n    in  x: [batch, p: 3, v: 4]\n    out B(4)(x)\n}\n\n"
        "model Single() {\n    in  x: [batch, v: 4]\n    out B(4)(x)\n}\n"
    )
    lifted = nncircuit.load("lift.nn", "Lifted", text=text)
    single = nncircuit.load("lift.nn", "Single", text=text).module(seed=0).eval()
    module = lifted.module(seed=0).eval()
    x = torch.randn(2, 3, 4)
    with torch.no_grad():
        got = module(x)
        want = torch.stack([single(x[:, p]) for p in range(3)])  # the lifted axis leads
    assert torch.equal(got, want)
    out = session(lifted, module).run(None, {"x": x.numpy()})[0]
    assert np.allclose(out, want.numpy(), atol=1e-6)

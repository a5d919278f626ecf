"""The Experts op (a SwiGLU expert bank run sparsely on a routing the spec computes, as
DeepSeek-V3's routed experts): torch against the dense form written with the language's own
ops, onnxruntime against torch at other run-time sizes and in other layouts, the parameter
names, the FLOPs `nnc summary` counts, and the positioned errors."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

import nncircuit
from nncircuit.analysis.cost import costs
from nncircuit.backends.onnx.export import build
from nncircuit.errors import NNError

TEXT = """
model Sparse(d = 10, e = 6, k = 2, hidden = 7) {
    in  x: [batch, seq: ~5, d]
    w, idx = top_k(sigmoid(Linear(x, d -> expert: e, bias = false)), over expert, k = k)
    experts = Experts(x, w, idx, over d, experts = e, hidden = hidden)
    out experts
}

## The same with every expert run on every token: a scatter of the weights into a vector
## over the experts sums their outputs.
model Dense(d = 10, e = 6, k = 2, hidden = 7) {
    in  x: [batch, seq: ~5, d]
    w, idx = top_k(sigmoid(Linear(x, d -> expert: e, bias = false)), over expert, k = k)
    gate_up_proj = Param([expert: e, gu: 2 * hidden, d])
    down_proj = Param([expert: e, o: d, i: hidden])
    gate, up = split(einsum(x, gate_up_proj, over d), over gu, (hidden, hidden))
    y = einsum(silu(gate) * up rename gu -> i, down_proj, over i)
    combine = scatter(zeros([batch, seq, expert: e]), idx, w, over expert)
    out einsum(y, combine, over expert) rename o -> d
}

## Tokens in another order, the choices first, and a lifted call.
block Bank(d, e) {
    in  x: [d], w: [c: 2], idx: [c: 2] int64
    out Experts(x, w, idx, over d, experts = e, hidden = 3)
}
model Layout(d = 4, e = 5) {
    in  x: [d, seq: ~5, batch], w: [c: 2, batch, seq], idx: [c: 2, seq, batch] int64
    out Experts(x, w, idx, over d, experts = e, hidden = 3), Bank(d, e)(x, w, idx)
}
"""


def dense_state(sparse: dict) -> dict:
    return {"linear.weight": sparse["linear.weight"], "gate_up_proj": sparse["experts.gate_up_proj"],
            "down_proj": sparse["experts.down_proj"]}


def test_sparse_equals_dense_and_onnxruntime_equals_torch():
    sparse = nncircuit.load("x.nn", "Sparse", text=TEXT)
    sm = sparse.module(seed=0)
    assert sorted(sm.state_dict()) == ["experts.down_proj", "experts.gate_up_proj", "linear.weight"]
    assert sm.state_dict()["experts.gate_up_proj"].shape == (6, 14, 10)
    dm = nncircuit.load("x.nn", "Dense", text=TEXT).module(seed=1)
    dm.load_state_dict(dense_state(sm.state_dict()), strict=True)
    sess = ort.InferenceSession(build(sparse, state_dict=sm.state_dict()).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    for shape in [(2, 5, 10), (3, 17, 10)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            got = sm(x)
            torch.testing.assert_close(got, dm(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], got.numpy(), rtol=1e-5, atol=1e-5)
    assert "_RoutedExperts" in sparse.torch_source()


def test_layouts_and_lifting_agree_in_both_backends():
    spec = nncircuit.load("x.nn", "Layout", text=TEXT)
    module = spec.module(seed=0)
    module.bank.experts.load_state_dict(module.experts.state_dict())
    x = torch.randn(4, 5, 2)
    w = torch.rand(2, 2, 5)
    idx = torch.randint(0, 5, (2, 5, 2))
    with torch.no_grad():
        a, b = module(x, w, idx)
    torch.testing.assert_close(a, b.permute(2, 0, 1))  # the lifted call's axes come first: [seq, batch, d]
    # a direct computation: token (s, n) runs experts idx[:, s, n] weighted by w[:, n, s]
    gu, down = module.experts.gate_up_proj, module.experts.down_proj
    want = torch.zeros(4, 5, 2)
    for s in range(5):
        for n in range(2):
            for c in range(2):
                e = idx[c, s, n]
                h = gu[e] @ x[:, s, n]
                want[:, s, n] += w[c, n, s] * (down[e] @ (torch.nn.functional.silu(h[:3]) * h[3:]))
    torch.testing.assert_close(a, want.detach(), rtol=1e-5, atol=1e-6)
    sess = ort.InferenceSession(build(spec, state_dict=module.state_dict()).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy(), "w": w.numpy(), "idx": idx.numpy()})
    for g, r in zip(got, (a, b)):
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-5, atol=1e-6)


def test_summary_counts_the_chosen_experts_only():
    spec = nncircuit.load("x.nn", "Sparse", text=TEXT)
    c, _ = costs(spec.graph, {"batch": 1, "seq": 10})
    d, h, k, tokens = 10, 7, 2, 10
    assert c.flops_of("Experts") == tokens * k * (2 * d * 2 * h + 2 * h * d + 4 * h + 2 * d)


ERRORS = [
    ("in x: [b, d: 4], w: [b, c: 2], i: [b, c: 2]\n  out Experts(x, w, i, over d, experts = 3, hidden = 2)",
     r"Experts: the expert indices must be integers"),
    ("in x: [b, d: 4], w: [b, c: 2], i: [b, c: 3] int64\n  out Experts(x, w, i, over d, experts = 3, hidden = 2)",
     r"Experts: axis 'c' has size 2 in the weights"),
    ("in x: [b, d: 4], w: [b, g: 2], i: [b, c: 2] int64\n  out Experts(x, w, i, over d, experts = 3, hidden = 2)",
     r"Experts: the weights \[b, g: 2\] must have the axes of the indices"),
    ("in x: [b, t: 3, d: 4], w: [b, c: 2], i: [b, c: 2] int64\n  out Experts(x, w, i, over d, experts = 3, hidden = 2)",
     r"Experts: the indices \[b, c: 2\] int64 must have the token axes"),
    ("in x: [b, d: 4], w: [b, c: 2], i: [b, c: 2] int64\n  out Experts(x, w, i, over d, hidden = 2)",
     r"Experts needs 'experts = N'"),
    ("in x: [b, d], w: [b, c: 2], i: [b, c: 2] int64\n  out Experts(x, w, i, over d, experts = 3, hidden = 2)",
     r"Experts needs a fixed size for its feature axis 'd'"),
    ("in x: [b, d: 4], w: [b, c], i: [b, c] int64\n  out Experts(x, w, i, over d, experts = 3, hidden = 2)",
     r"Experts needs a fixed number of choices per token"),
]


@pytest.mark.parametrize("body, message", ERRORS)
def test_errors_point_at_the_call(body, message):
    text = "model M() {\n  " + body + "\n}\n"
    with pytest.raises(NNError, match=message) as info:
        nncircuit.load("bad.nn", text=text)
    rendered = str(info.value)
    assert rendered.startswith("bad.nn:3:7: error:"), rendered
    assert "^" in rendered


def test_ir_text_round_trips():
    from nncircuit.backends.torch.codegen import generate
    from nncircuit.ir.parser import parse_ir
    from nncircuit.ir.printer import print_ir

    for model in ("Sparse", "Layout"):
        g = nncircuit.load("x.nn", model, text=TEXT).graph
        text = print_ir(g)
        assert print_ir(parse_ir(text)) == text
        assert generate(parse_ir(text), "x.nn") == generate(g, "x.nn")

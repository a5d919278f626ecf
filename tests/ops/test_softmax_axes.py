"""softmax and log_softmax over several axes together (`over [kh, kw]`): torch against a
hand computation in float64 (the axes last, adjacent, apart, named in another order, three of
them, inside a lifted block), onnxruntime against torch at two run-time sizes, gradients,
the masked and causal forms, -O2 leaving a multi-axis softmax unfused, the diagram's
triangle across every axis, the IR text, and the positioned errors."""

import re

import numpy as np
import onnxruntime as ort
import pytest
import torch

import nncircuit
from helpers import assert_positioned_error
from nncircuit.backends.diagram import render as R
from nncircuit.backends.onnx.export import build
from nncircuit.errors import NNError
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import print_ir

SPEC = """
model Axes(c = 3) {
    in  x: [batch, kh: ~4, c, kw: ~5]
    last = softmax(x, over [c, kw])
    apart = softmax(x, over [kh, kw])
    turned = log_softmax(x, over [kw, kh])
    three = softmax(x, over [kh, c, kw])
    out last, apart, turned, three
}

block Pool() {
    in  s: [kh, kw]
    out softmax(s, over [kh, kw])
}

model Lifted() {
    in  x: [batch, heads: 2, kh: ~4, kw: ~3]
    out Pool()(x)
}

## DDPM's spatial attention: every query position attends over every key position (kh, kw).
model Spatial(d = 4) {
    in  q: [batch, h: ~3, w: ~2, d], k: [batch, kh: ~3, kw: ~2, d], v: [batch, kh, kw, e: 5]
    p = softmax(einsum(q, k -> [batch, h, w, kh, kw]) / sqrt(d), over [kh, kw])
    out einsum(p, v, over [kh, kw])
}

model Masked() {
    in  s: [batch, kh: ~4, kw: ~3], keep: [batch, kh, kw] bool
    out softmax(where(keep, s, -inf), over [kh, kw])
}

model Causal(d = 4) {
    in  q: [batch, seq: ~5, d], k: [batch, key: ~5, d]
    out softmax(causal(einsum(q, k -> [batch, seq, key]), over [seq, key]), over key)
}
"""


def load(model, **kw):
    return nncircuit.load("axes.nn", model, text=SPEC, **kw)


def joint(x: torch.Tensor, dims, log=False) -> torch.Tensor:
    """softmax over `dims` together, by hand in float64: exp(x - max) / sum over those dims."""
    x = x.double()
    e = torch.exp(x - x.amax(dim=dims, keepdim=True))
    p = e / e.sum(dim=dims, keepdim=True)
    return torch.log(p) if log else p


def test_torch_equals_a_hand_computation_over_several_axes():
    m = load("Axes").module(seed=0)
    for shape in [(2, 4, 3, 5), (3, 1, 3, 7)]:
        x = torch.randn(*shape) * 6
        last, apart, turned, three = m(x)
        for got, dims, log in [(last, (2, 3), False), (apart, (1, 3), False), (turned, (1, 3), True),
                               (three, (1, 2, 3), False)]:
            assert got.shape == x.shape and got.dtype == torch.float32
            torch.testing.assert_close(got.double(), joint(x, dims, log), rtol=1e-6, atol=2e-6)
        # each distribution sums to one over its axes, and only over them
        torch.testing.assert_close(apart.sum(dim=(1, 3)), torch.ones(shape[0], 3))
        if shape[1] > 1:
            assert not torch.allclose(apart.sum(dim=3), torch.ones(shape[0], shape[1], 3))


def test_torch_source_flattens_the_axes_and_keeps_one_axis_softmax_as_it_was():
    src = load("Axes").torch_source()
    assert "torch.softmax(x.flatten(-2), dim=-1).view_as(x)" in src  # [c, kw]: already last
    assert ".movedim((-3, -1), (-2, -1)).flatten(-2), dim=-1).unflatten(-1, (x.shape[-3], x.shape[-1]))" in src
    assert re.search(r"torch\.softmax\(\w+, dim=-1\)", load("Causal").torch_source())


def test_lifted_block_normalises_each_head_separately():
    m = load("Lifted").module(seed=0)
    x = torch.randn(2, 2, 4, 3)
    torch.testing.assert_close(m(x).double(), joint(x, (2, 3)), rtol=1e-6, atol=1e-7)


def test_spatial_attention_equals_the_flattened_reference():
    m = load("Spatial").module(seed=0)
    q, k, v = torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 5)
    # the reference's way: positions flattened to one key axis
    s = q.flatten(1, 2) @ k.flatten(1, 2).transpose(1, 2) / 2.0
    want = (torch.softmax(s, -1) @ v.flatten(1, 2)).unflatten(1, (3, 2))
    torch.testing.assert_close(m(q, k, v), want, rtol=1e-5, atol=1e-6)


def session(spec, module):
    model = build(spec, state_dict=module.state_dict())
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("model", ["Axes", "Lifted"])
def test_onnx_equals_torch_at_two_run_time_sizes(model):
    spec = load(model)
    m = spec.module(seed=0)
    sess = session(spec, m)
    shapes = {"Axes": [(2, 4, 3, 5), (1, 7, 3, 2)], "Lifted": [(2, 2, 4, 3), (3, 2, 1, 6)]}[model]
    for shape in shapes:
        x = torch.randn(*shape) * 4
        got = m(x)
        got = got if isinstance(got, tuple) else (got,)
        outs = sess.run(None, {"x": x.numpy()})
        assert len(outs) == len(got)
        for o, g in zip(outs, got):
            assert o.shape == tuple(g.shape)
            np.testing.assert_allclose(o, g.numpy(), rtol=1e-5, atol=1e-6)


def test_onnx_spatial_and_masked_forms_equal_torch():
    spec = load("Spatial")
    m = spec.module(seed=0)
    sess = session(spec, m)
    for h, w in [(3, 2), (2, 5)]:
        q, k, v = torch.randn(2, h, w, 4), torch.randn(2, h, w, 4), torch.randn(2, h, w, 5)
        (o,) = sess.run(None, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()})
        np.testing.assert_allclose(o, m(q, k, v).numpy(), rtol=1e-5, atol=1e-6)
    spec = load("Masked")
    m = spec.module(seed=0)
    sess = session(spec, m)
    for kh, kw in [(4, 3), (2, 6)]:
        s = torch.randn(2, kh, kw)
        keep = torch.rand(2, kh, kw) > 0.4
        keep[:, 0, 0] = True  # no distribution is wholly masked
        got = m(s, keep)
        want = joint(s.masked_fill(~keep, float("-inf")), (1, 2))
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)
        assert torch.all(got[~keep] == 0)
        (o,) = sess.run(None, {"s": s.numpy(), "keep": keep.numpy()})
        np.testing.assert_allclose(o, got.numpy(), rtol=1e-5, atol=1e-6)


def test_causal_softmax_over_the_key_still_works():
    spec = load("Causal")
    m = spec.module(seed=0)
    q, k = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    s = (q @ k.transpose(1, 2)).masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(m(q, k), torch.softmax(s, -1))
    (o,) = session(spec, m).run(None, {"q": q.numpy(), "k": k.numpy()})
    np.testing.assert_allclose(o, m(q, k).numpy(), rtol=1e-5, atol=1e-6)


def test_gradients_equal_the_hand_computation():
    m = load("Axes").module(seed=0)
    x = (torch.randn(2, 4, 3, 5) * 3).requires_grad_()
    xr = x.detach().double().requires_grad_()
    weights = [torch.randn(2, 4, 3, 5) for _ in range(4)]
    got = m(x)
    sum(((g * w).sum() for g, w in zip(got, weights))).backward()
    want = [joint(xr, (2, 3)), joint(xr, (1, 3)), joint(xr, (1, 3), log=True), joint(xr, (1, 2, 3))]
    sum(((g * w.double()).sum() for g, w in zip(want, weights))).backward()
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)


def test_o2_leaves_a_multi_axis_softmax_unfused():
    spec = load("Spatial", opt=2)
    ops = [n.op for n in spec.graph.nodes()]
    assert "softmax" in ops and "attention" not in ops
    ins = torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 5)
    torch.testing.assert_close(spec.module(seed=0)(*ins), load("Spatial").module(seed=0)(*ins))


def test_ir_text_round_trips():
    ir = print_ir(load("Axes").graph)
    assert "softmax(%x, over [kh, kw])" in ir and "log_softmax(%x, over [kw, kh])" in ir
    assert print_ir(parse_ir(ir)) == ir


def _triangles(svg: str) -> dict[str, float]:
    """Each softmax's triangle: its height, by the op's id."""
    out = {}
    for m in re.finditer(r'<g id="([^"]+)" class="op"[^>]*data-op="softmax">(.*?)</g>', svg, re.S):
        pts = re.search(r'<polygon points="([^"]+)"', m.group(2)).group(1)
        ys = [float(p.split(",")[1]) for p in pts.split()]
        out[m.group(1)] = max(ys) - min(ys)
    return out


def test_diagram_triangle_spans_every_axis():
    text = """
model D() {
    in  x: [batch, kh: ~4, c: 3, kw: ~5]
    both = softmax(x, over [kh, kw])
    one = softmax(x, over kw)
    out both, one
}
"""
    spec = nncircuit.load("d.nn", "D", text=text)
    svg = R.svg(spec, R.options("circuit", None, (), False), engine="python")
    tri = _triangles(svg)
    assert tri["one"] == 14  # as before: a triangle on its one wire
    g = re.search(r'<g id="both".*?</g>', svg, re.S).group(0)
    wires = [float(y) for y in re.findall(r'<path d="M[\d.]+ ([\d.]+) L', g)]
    kh, kw = wires[1], wires[3]  # batch, kh, c, kw
    pts = [float(p.split(",")[1]) for p in re.search(r'<polygon points="([^"]+)"', g).group(1).split()]
    assert min(pts) < kh and max(pts) > kw  # its back covers the kh and kw wires


ERRORS = [
    ("model M() {\n  in x: [batch, kh: ~4, kw: 3]\n  out softmax(x, over [kh, e])\n}",
     r"softmax expects an axis 'e' but the input is \[batch, kh, kw: 3\]", 3, 7),
    ("model M() {\n  in x: [batch, kh: ~4, kw: 3]\n  out log_softmax(x, over [kw, kh, kw])\n}",
     r"axis 'kw' is named twice", 3, 28),
    ("model M() {\n  in x: [batch, kh: ~4, kw: 3]\n  out softmax(x, over [])\n}",
     r"softmax needs at least one axis in 'over', found 'over \[\]'", 3, 7),
    ("model M() {\n  in x: [batch, kh: ~4, kw: 3] int64\n  out softmax(x, over [kh, kw])\n}",
     r"softmax", 3, 7),
]


@pytest.mark.parametrize("text,msg,line,col", ERRORS)
def test_positioned_errors(text, msg, line, col):
    assert_positioned_error(lambda t: nncircuit.load("e.nn", "M", text=t), text, msg, line, col)


def test_ir_text_refuses_an_axis_named_twice():
    ir = print_ir(load("Axes").graph).replace("over [kw, kh]", "over [kw, kw]")
    with pytest.raises(NNError, match="named twice"):
        parse_ir(ir)

"""The `linear_scan` op (compiler/ops/recurrence.py): h_t = a_t * h_{t-1} + b_t along an axis,
against a plain loop in torch (forward and reverse, lengths 0 to 40, negative and zero
decays, a decay without the stepped or the batch axis, a layout where the axis is not first,
inside a lifted block) and in onnxruntime; its errors point at the spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nncircuit
from helpers import assert_error_on_line, onnxruntime_outputs

SPEC = """
model Scans(d = 3) {
    in  a: [batch, seq, d], b: [batch, seq, d], h0: [batch, d], g: [d, seq], k: [d]
    hs, last = linear_scan(a, b, h0, over seq)
    rs, rlast = linear_scan(a, b, h0, over seq, reverse = true)
    cs, clast = linear_scan(k, b, h0, over seq)
    ts, tlast = linear_scan(g, b, h0, over seq)
    out hs, last, rs, rlast, cs, clast, ts, tlast
}
"""

LIFTED = """
block Step(d = 3) {
    in  a: [seq, d], b: [seq, d]
    hs, last = linear_scan(a, b, zeros([d]), over seq)
    out hs, last
}
model Lifted(d = 3) {
    in  a: [batch, heads: 2, seq, d], b: [batch, heads: 2, seq, d]
    hs, last = Step(d)(a, b)
    out hs, last
}
"""


def loop(a, b, h, reverse=False):
    """a, b: [..., seq, d] (a broadcast to b), h: [..., d]."""
    a = a.expand_as(b)
    n = b.shape[-2]
    hs = [None] * n
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        h = a[..., t, :] * h + b[..., t, :]
        hs[t] = h
    return (torch.stack(hs, -2) if n else b.clone()), h + 0 * b.sum(-2)


def _inputs(n, g):
    a = torch.rand(2, n, 3, generator=g) * 2.4 - 1.2  # negative, above 1 in size, near 0
    a[0, :: 3, 0] = 0.0
    return (a, torch.randn(2, n, 3, generator=g), torch.randn(2, 3, generator=g),
            torch.rand(3, n, generator=g), torch.rand(3, generator=g) * 2 - 1)


def _want(a, b, h0, gt, k):
    return [*loop(a, b, h0), *loop(a, b, h0, True), *loop(k[None, :], b, h0), *loop(gt.t(), b, h0)]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13, 40])
def test_equals_the_loop_in_torch_and_onnxruntime(n, tmp_path):
    spec = nncircuit.load("scans.nn", text=SPEC)
    xs = _inputs(n, torch.Generator().manual_seed(n))
    want = _want(*xs)
    got = spec.module(seed=0)(*xs)
    onnx_got = onnxruntime_outputs(spec, xs, tmp_path)
    for w, g, o in zip(want, got, onnx_got):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(o, w.numpy(), rtol=1e-5, atol=1e-5)


def test_gradients_equal_the_loops():
    m = nncircuit.load("scans.nn", text=SPEC).module(seed=0)
    xs = [x.requires_grad_() for x in _inputs(11, torch.Generator().manual_seed(1))]
    w = torch.linspace(-1, 1, 400)
    grads = [torch.autograd.grad(sum((o * w[: o.numel()].view(o.shape)).sum() for o in outs), xs)
             for outs in (m(*xs), _want(*xs))]
    for g, r in zip(*grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_inside_a_lifted_block(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load("lifted.nn", text=LIFTED)
    a, b = torch.rand(2, 2, 9, 3) - 0.5, torch.randn(2, 2, 9, 3)
    want = loop(a, b, torch.zeros(3))
    got = spec.module(seed=0)(a, b)
    out = str(tmp_path / "lifted.onnx")
    spec.write(out)
    onnx_got = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"a": a.numpy(), "b": b.numpy()})
    for w, g, o in zip(want, got, onnx_got):
        torch.testing.assert_close(g, w.expand_as(g), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(o, w.expand_as(g).numpy(), rtol=1e-5, atol=1e-5)


ERRORS = [
    ("linear_scan(a, b, h0)", "linear_scan needs 'over AXIS'"),
    ("linear_scan(a, b, h0, over [seq, d])", "linear_scan steps along exactly one axis"),
    ("linear_scan(a, b, b, over seq)", "the initial state h0 is one step's state and must not have 'seq'"),
    ("linear_scan(a, h0, h0, over seq)", "b must have the axis 'seq'"),
    ("linear_scan(a, b, k, over seq)", "b without 'seq' must have the axes of h0"),
    ("linear_scan(e, b, h0, over seq)", "a has the axis 'e' that b lacks"),
    ("linear_scan(a, b, h0, over seq, reverse = 2)", "reverse must be true or false"),
    ("linear_scan(a, b, i, over seq)", "linear_scan needs floating-point tensors"),
]


@pytest.mark.parametrize("call, message", ERRORS)
def test_positioned_errors(call, message):
    text = ("model M() {\n    in  a: [batch, seq, d: 3], b: [batch, seq, d: 3], h0: [batch, d: 3], k: [d: 3], "
            "e: [e: 2], i: [batch, d: 3] int64\n"
            f"    hs, last = {call}\n    out hs\n}}\n")
    assert_error_on_line(text, message, 3)

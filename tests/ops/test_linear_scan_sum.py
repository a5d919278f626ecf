"""The `linear_scan_sum` op (compiler/ops/recurrence.py): linear_scan with a and b given as
products of factors (a optionally under exp) and the states read out as Σ c ⊙ h over some
axes of h0, against a plain loop in torch (forward and reverse, lengths 0 to 33 and across
chunk boundaries, a decay and a read-out without the stepped axis, no summed axis, a result
whose axes are in another order, inside a lifted block), its gradients against the loop's,
and onnxruntime; its errors point at the spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nncircuit
from helpers import assert_error_on_line, onnxruntime_outputs

SPEC = """
model Sums(d = 3, n = 4) {
    in  dt: [batch, seq, d], x: [batch, seq, d], bb: [batch, seq, n], cc: [batch, seq, n]
    in  alog: [d, n], h0: [batch, d, n], k: [d, n]
    ma, mlast = linear_scan_sum(dt, -exp(alog), x, bb, h0, cc, over seq, [batch, seq, d], na = 2, exp_a = true)
    ra, rlast = linear_scan_sum(dt, -exp(alog), x, bb, h0, cc, over seq, [seq, d, batch], na = 2, exp_a = true, reverse = true)
    sa, slast = linear_scan_sum(k, x, bb, h0, k, over seq, [batch, seq, d])
    wa, wlast = linear_scan_sum(sigmoid(x), bb, h0, cc, over seq, [batch, d, seq, n], reverse = true)
    out ma, mlast, ra, rlast, sa, slast, wa, wlast
}
"""

LIFTED = """
block Step(d = 3, n = 2) {
    in  a: [seq, d], x: [seq, d], c: [seq, n]
    y, last = linear_scan_sum(a, x, c, zeros([d, n]), c, over seq, [seq, d])
    out y, last
}
model Lifted(d = 3, n = 2) {
    in  a: [batch, heads: 2, seq, d], x: [batch, heads: 2, seq, d], c: [batch, heads: 2, seq, n]
    y, last = Step(d, n)(a, x, c)
    out y, last
}
"""


def loop(a, b, h0, c, dims, reverse=False):
    """The recurrence one step at a time: a, b, c [seq, ...] (size 1: every step), h0 [...];
    y_t = (c_t h_t) summed over dims; returns y [seq, ...] and the last state."""
    n = b.shape[0]
    h, ys = h0, [None] * n
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        h = a[t if a.shape[0] > 1 else 0] * h + b[t]
        y = h * c[t if c.shape[0] > 1 else 0]
        ys[t] = y.sum(dims) if dims else y
    shape = torch.broadcast_shapes(h0.shape, a.shape[1:], b.shape[1:])
    if n == 0:
        y = (h0.expand(shape)[None][:0] * c[:1])
        return (y.sum(dims) if dims else y), h0.expand(shape)
    return torch.stack(ys), h.expand(shape)


def _inputs(n, g):
    dt = torch.rand(2, n, 3, generator=g)
    dt[0, ::3] = 0.0
    return (dt, torch.randn(2, n, 3, generator=g), torch.randn(2, n, 4, generator=g), torch.randn(2, n, 4, generator=g),
            torch.rand(3, 4, generator=g) * 2 - 1, torch.randn(2, 3, 4, generator=g), torch.rand(3, 4, generator=g) * 2.4 - 1.2)


def _want(dt, x, bb, cc, alog, h0, k):
    """The four calls of SPEC as loops over seq (moved first)."""
    s = lambda v: v.movedim(1, 0)  # noqa: E731
    a = torch.exp(s(dt)[..., None] * -torch.exp(alog))
    b = s(x)[..., None] * s(bb)[..., None, :]
    c = s(cc)[..., None, :]
    my, ml = loop(a, b, h0, c, (-1,))
    ry, rl = loop(a, b, h0, c, (-1,), True)
    sy, sl = loop(k[None], b, h0, k[None], (-1,))
    wy, wl = loop(torch.sigmoid(s(x))[..., None], s(bb)[..., None, :], h0, c, (), True)
    return [my.movedim(0, 1), ml, ry.permute(0, 2, 1), rl, sy.movedim(0, 1), sl, wy.permute(1, 2, 0, 3), wl]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 9, 16, 33])
def test_equals_the_loop_in_torch_and_onnxruntime(n, tmp_path):
    spec = nncircuit.load("sums.nn", text=SPEC)
    xs = _inputs(n, torch.Generator().manual_seed(n))
    want = _want(*xs)
    got = spec.module(seed=0)(*xs)
    onnx_got = onnxruntime_outputs(spec, xs, tmp_path)
    assert len(got) == len(want) == len(onnx_got) == 8
    for w, g, o in zip(want, got, onnx_got):
        assert g.shape == w.shape and o.shape == tuple(w.shape), (g.shape, w.shape, o.shape)
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(o, w.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 7, 33])
def test_gradients_equal_the_loops(n):
    m = nncircuit.load("sums.nn", text=SPEC).module(seed=0)
    xs = [x.double().requires_grad_() for x in _inputs(n, torch.Generator().manual_seed(1))]
    w = torch.linspace(-1, 1, 2000, dtype=torch.float64)
    grads = [torch.autograd.grad(sum((o * w[: o.numel()].view(o.shape)).sum() for o in outs), xs)
             for outs in (m.double()(*xs), _want(*xs))]
    for g, r in zip(*grads):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_inside_a_lifted_block(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load("lifted.nn", text=LIFTED)
    a, x, c = torch.rand(2, 2, 9, 3) - 0.5, torch.randn(2, 2, 9, 3), torch.randn(2, 2, 9, 2)
    s = lambda v: v.movedim(2, 0)  # noqa: E731
    y, last = loop(s(a)[..., None], s(x)[..., None] * s(c)[..., None, :], torch.zeros(3, 2), s(c)[..., None, :], (-1,))
    want = [y.movedim(0, 2), last]
    got = spec.module(seed=0)(a, x, c)
    out = str(tmp_path / "lifted.onnx")
    spec.write(out)
    onnx_got = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(
        None, {"a": a.numpy(), "x": x.numpy(), "c": c.numpy()})
    for w, g, o in zip(want, got, onnx_got):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(o, w.numpy(), rtol=1e-5, atol=1e-5)


def test_no_whole_sequence_of_states_is_made():
    """The point of the op: a, b and the states exist one chunk position at a time, so the
    largest tensor the torch lowering allocates is far smaller than [seq, d, n]."""
    text = "\n".join(line for line in SPEC.replace("d = 3, n = 4", "d = 16, n = 16").splitlines()
                     if not line.lstrip().startswith(("ra,", "sa,", "wa,", "out")))
    spec = nncircuit.load("sums.nn", text=text.replace("\n}", "\n    out ma, mlast\n}", 1))
    m = spec.module(seed=0)
    n = 400
    g = torch.Generator().manual_seed(0)
    xs = (torch.rand(1, n, 16, generator=g), torch.randn(1, n, 16, generator=g), torch.randn(1, n, 16, generator=g),
          torch.randn(1, n, 16, generator=g), torch.rand(16, 16, generator=g), torch.randn(1, 16, 16, generator=g),
          torch.rand(16, 16, generator=g))
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        most = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            r = func(*args, **(kwargs or {}))
            for t in r if isinstance(r, (tuple, list)) else (r,):
                if isinstance(t, torch.Tensor):
                    Largest.most = max(Largest.most, t.numel())
            return r

    with torch.no_grad(), Largest():
        m(*xs)
    whole = n * 16 * 16
    assert 0 < Largest.most <= whole // 8, (Largest.most, whole)


ERRORS = [
    ("linear_scan_sum(a, x, h0, c, [seq, d])", "linear_scan_sum needs 'over AXIS'"),
    ("linear_scan_sum(a, x, h0, c, over [seq, d], [seq, d])", "linear_scan_sum steps along exactly one axis"),
    ("linear_scan_sum(a, x, h0, c, over seq)", "needs the axes of its result y"),
    ("linear_scan_sum(a, x, h0, over seq, [seq, d])", "at least 4 tensors"),
    ("linear_scan_sum(a, x, x, c, over seq, [seq, d])", "the initial state h0 is one step's state and must not have 'seq'"),
    ("linear_scan_sum(a, k, h0, c, over seq, [seq, d])", "a factor of b must have the axis 'seq'"),
    ("linear_scan_sum(a, x, h0, e, over seq, [seq, d])", "c [e: 2] has the axis 'e' that h0"),
    ("linear_scan_sum(a, x, h0, c, over seq, [seq, e])", "the result's axis 'e' is not an axis of h0"),
    ("linear_scan_sum(a, x, h0, c, over seq, [d])", "must name 'seq' and each axis once"),
    ("linear_scan_sum(a, x, h0, c, over seq, [seq, d], na = 0)", "'na' (how many factors make a)"),
    ("linear_scan_sum(a, x, h0, c, over seq, [seq, d], exp_a = 2)", "exp_a must be true or false"),
    ("linear_scan_sum(a, x, i, c, over seq, [seq, d])", "linear_scan_sum needs floating-point tensors"),
    ("linear_scan_sum(a, x, h0, y, over seq, [seq, d])", "axis 'seq' has size 5 in c but"),
]


@pytest.mark.parametrize("call, message", ERRORS)
def test_positioned_errors(call, message):
    text = ("model M() {\n    in  a: [seq, d: 3], x: [seq, d: 3], c: [seq, n: 2], h0: [d: 3, n: 2], k: [d: 3], "
            "e: [e: 2], i: [d: 3, n: 2] int64, y: [seq: 5, n: 2]\n"
            f"    ys, last = {call}\n    out ys\n}}\n")
    assert_error_on_line(text, message, 3)


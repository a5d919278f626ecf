"""torch's runtime for `linear_scan` (backends/torch/ops.py, HELPERS["linear_scan"]): the
chunked scan, called directly, against a plain loop at lengths on both sides of the chunk
boundaries (a whole number of chunks, one step more or less, a short tail), forward and
reverse, with zero and negative decays and a decay the same at every step; its gradients;
the no-gradient path (written straight into the result) against the gradient path; and the
result dtype when h0 is wider than a and b."""

from __future__ import annotations

import pytest
import torch

from nncircuit.backends.torch.ops import HELPERS

NS: dict = {"torch": torch}
exec(HELPERS["linear_scan"], NS)
linear_scan = NS["_linear_scan"]

LENGTHS = [1, 2, 3, 4, 5, 8, 9, 10, 15, 16, 17, 24, 25, 26, 63, 64, 65, 100, 257]


def loop(a, b, h, reverse):
    """a broadcast to b [batch, seq, d]; h [batch, d]."""
    a = a.expand_as(b)
    hs = [None] * b.shape[1]
    for t in (range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])):
        h = a[:, t] * h + b[:, t]
        hs[t] = h
    return torch.stack(hs, 1), h


def _inputs(n, seed, steps=True):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(2, n if steps else 1, 3, generator=g) * 2 - 1  # negative and positive
    a[0, ::4, 1] = 0.0
    return a, torch.randn(2, n, 3, generator=g), torch.randn(2, 3, generator=g)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps", [True, False], ids=["a-per-step", "a-shared"])
@pytest.mark.parametrize("n", LENGTHS)
def test_equals_the_loop(n, steps, reverse):
    a, b, h0 = _inputs(n, n, steps)
    hs, last = linear_scan(a, b, h0, -2, reverse)
    want_hs, want_last = loop(a, b, h0, reverse)
    torch.testing.assert_close(hs, want_hs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, want_last, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("n", [7, 36, 50])
def test_gradients_equal_the_loops(n, reverse):
    a, b, h0 = _inputs(n, 100 + n)
    w = torch.randn(2, n, 3)
    grads = []
    for fn in (lambda *x: linear_scan(*x, -2, reverse), lambda *x: loop(*x, reverse)):
        xs = [t.clone().requires_grad_() for t in (a, b, h0)]
        hs, last = fn(*xs)
        ((hs * w).sum() + last.sum()).backward()
        grads.append([x.grad for x in xs])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
def test_without_gradients_equals_with_them(reverse):
    a, b, h0 = _inputs(50, 7)
    with torch.no_grad():
        plain = linear_scan(a, b, h0, -2, reverse)
    tracked = linear_scan(a, b, h0.clone().requires_grad_(), -2, reverse)
    assert tracked[0].requires_grad and not plain[0].requires_grad
    torch.testing.assert_close(plain[0], tracked[0].detach(), rtol=0, atol=0)


def test_a_wider_h0_widens_the_result():
    a, b, h0 = _inputs(30, 3)
    hs, last = linear_scan(a.bfloat16(), b.bfloat16(), h0, -2, False)
    want_hs, _ = loop(a.bfloat16().float(), b.bfloat16().float(), h0, False)
    assert hs.dtype == last.dtype == torch.float32
    torch.testing.assert_close(hs, want_hs, rtol=1e-5, atol=1e-5)

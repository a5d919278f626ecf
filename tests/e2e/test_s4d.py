"""specs/s4d.nn (S4D-Real, ZOH) against a straightforward PyTorch loop
(bench/reference/s4d.py, weights copied by state_dict) at -O0 (the loop) and -O2 (the
parallel-scan pass: linear_scan), gradients included; onnxruntime equals torch at two lengths."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nncircuit
from bench.reference.s4d import S4D as Reference
from conftest import SPECS

SPEC = os.path.join(SPECS, "s4d.nn")


@pytest.mark.parametrize("opt", [0, 2])
def test_s4d_equals_the_reference_loop(opt):
    spec = nncircuit.load(SPEC, opt=opt, d=6, n=5)
    ops = [n.op for _, g in spec.graph.walk() for n in g.nodes()]
    assert ("linear_scan_sum" in ops) == (opt == 2) and ("scan" in ops) == (opt == 0)  # states read by an einsum
    torch.manual_seed(0)
    ref = Reference(d=6, n=5)
    m = spec.module(seed=1)
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 17, 6, requires_grad=True)
    (y, h), (ry, rh) = m(x), ref(x)
    torch.testing.assert_close(y, ry, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, rh, rtol=1e-5, atol=1e-5)
    g = torch.autograd.grad((y * y).sum() + h.sum(), [x, *m.parameters()])
    rg = torch.autograd.grad((ry * ry).sum() + rh.sum(), [x, *ref.parameters()])
    for a, b in zip(g, rg):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_s4d_parameter_count():
    assert nncircuit.load(SPEC).param_count() == 8 * 16 * 3 + 8 * 2  # log_a, b, c; log_dt, D
    assert nncircuit.load(SPEC, d=64, n=64).param_count() == sum(
        p.numel() for p in Reference(64, 64).parameters())


@pytest.mark.parametrize("opt", [0, 2])
def test_s4d_onnx_equals_torch_at_two_lengths(opt, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load(SPEC, opt=opt, d=6, n=5)
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "s4d.onnx")
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    for seq in (5, 23):
        x = torch.randn(2, seq, 6)
        with torch.no_grad():
            want = m(x)
        got = sess.run(None, {"x": x.numpy()})
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)

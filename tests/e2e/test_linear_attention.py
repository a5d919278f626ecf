"""specs/linear_attention.nn: causal linear attention as a scan (state S = Σ k vᵀ, z = Σ k)
equals a hand-written PyTorch reference and the parallel (masked q kᵀ) form, in torch and in
onnxruntime at two sequence lengths."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nncircuit

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "specs", "linear_attention.nn")

HEADS = """
from "zoo:linear_attention.nn" import RecurrentHead, ParallelHead
model Heads(dk = 8) {
    in  q: [batch, heads: 2, seq, dk], k: [batch, heads: 2, seq, dk], v: [batch, heads: 2, seq, dv: 5]
    out r = RecurrentHead(dk)(q, k, v), p = ParallelHead(dk)(q, k, v)
}
"""


def reference(q, k, v):
    """Causal linear attention, written out: φ(q_t)·Σ_{s<=t} φ(k_s) v_sᵀ / φ(q_t)·Σ_{s<=t} φ(k_s)."""
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    out = []
    state = torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1])
    norm = torch.zeros(*q.shape[:-2], q.shape[-1])
    for t in range(q.shape[-2]):
        state = state + fk[..., t, :, None] * v[..., t, None, :]
        norm = norm + fk[..., t, :]
        num = (fq[..., t, :, None] * state).sum(-2)
        out.append(num / (fq[..., t, :] * norm).sum(-1, keepdim=True))
    return torch.stack(out, -2)


def test_recurrent_and_parallel_heads_equal_the_reference():
    m = nncircuit.load("heads.nn", text=HEADS).module(seed=0)
    q, k, v = torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 5)
    r, p = m(q, k, v)
    want = reference(q, k, v)
    torch.testing.assert_close(r, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(p, want, rtol=1e-5, atol=1e-5)


def test_models_agree_with_one_state_dict():
    par = nncircuit.load(SPEC, "ParallelLinearAttention").module(seed=0)
    rec = nncircuit.load(SPEC, "LinearAttention").module(seed=1)
    rec.load_state_dict(par.state_dict(), strict=True)
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        torch.testing.assert_close(rec(x), par(x), rtol=1e-5, atol=1e-5)


def test_recurrent_onnx_equals_torch_at_two_lengths(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load(SPEC, "LinearAttention")
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "la.onnx")
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out)
    for seq in (4, 13):
        x = torch.randn(2, seq, 32)
        with torch.no_grad():
            want = m(x)
        np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], want.numpy(), rtol=1e-5, atol=1e-5)

"""specs/linear_attention.nn: multi-head causal linear attention, recurrent (a scan carrying
S = Σ φ(k) vᵀ and z = Σ φ(k)) and parallel (φ(q) φ(k)ᵀ masked to the lower triangle), against a
hand-written PyTorch module with the same weights: its state_dict loads strictly into both
forms, the outputs agree at -O0 and -O2, and onnxruntime agrees with torch at two lengths."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nncircuit

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "specs", "linear_attention.nn")


class LinearAttention(nn.Module):
    """Causal linear attention (Katharopoulos et al. 2020), φ(x) = elu(x) + 1, written plainly:
    the recurrent form loops over positions carrying S and z, the parallel one masks φ(q) φ(k)ᵀ."""

    def __init__(self, d=32, heads=4, parallel=False):
        super().__init__()
        self.heads, self.parallel = heads, parallel
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (f(x).view(b, n, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        fq, fk = F.elu(q) + 1, F.elu(k) + 1
        if self.parallel:
            a = (fq @ fk.transpose(-1, -2)).tril()
            y = a @ v / a.sum(-1, keepdim=True)
        else:
            state = x.new_zeros(b, self.heads, q.shape[-1], v.shape[-1])
            norm = x.new_zeros(b, self.heads, q.shape[-1])
            ys = []
            for t in range(n):
                state = state + fk[:, :, t, :, None] * v[:, :, t, None, :]
                norm = norm + fk[:, :, t]
                ys.append((fq[:, :, t, :, None] * state).sum(-2) / (fq[:, :, t] * norm).sum(-1, keepdim=True))
            y = torch.stack(ys, 2)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


def _reference(parallel=False, seed=0):
    torch.manual_seed(seed)
    return LinearAttention(parallel=parallel).eval()


def _inputs(seq, seed=1):
    return torch.randn(2, seq, 32, generator=torch.Generator().manual_seed(seed))


def test_the_reference_forms_agree():
    rec, par = _reference(False), _reference(True)
    x = _inputs(9)
    with torch.no_grad():
        torch.testing.assert_close(rec(x), par(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("parallel", [False, True], ids=["recurrent", "parallel"])
@pytest.mark.parametrize("opt", [0, 2])
def test_loads_the_reference_strictly_and_computes_its_outputs(parallel, opt):
    ref = _reference(parallel)
    module = nncircuit.load(SPEC, "LinearAttention", opt=opt, parallel=parallel).module(seed=5).eval()
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for seq in (1, 7):
        x = _inputs(seq)
        with torch.no_grad():
            torch.testing.assert_close(module(x), ref(x), rtol=1e-5, atol=1e-5)
    back = module.load_state_dict(module.state_dict(), strict=True)  # its own names load back
    assert not back.missing_keys and not back.unexpected_keys


def test_parallel_form_is_the_static_if():
    rec = nncircuit.load(SPEC, "LinearAttention")
    par = nncircuit.load(SPEC, "LinearAttention", parallel=True)
    assert "scan" in {n.op for _, g in rec.graph.walk() for n in g.nodes()}
    assert "scan" not in {n.op for _, g in par.graph.walk() for n in g.nodes()}
    assert rec.param_count() == par.param_count() == sum(p.numel() for p in _reference().parameters())


@pytest.mark.parametrize("parallel", [False, True], ids=["recurrent", "parallel"])
def test_onnx_equals_torch_at_two_lengths(tmp_path, parallel):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load(SPEC, "LinearAttention", parallel=parallel)
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "la.onnx")
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out)
    for seq in (4, 13):
        x = torch.randn(2, seq, 32)
        with torch.no_grad():
            want = m(x)
        np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], want.numpy(), rtol=1e-5, atol=1e-5)

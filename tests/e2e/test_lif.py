"""specs/lif.nn: leaky integrate-and-fire neurons as a scan equal a hand-written PyTorch module
(its state_dict loaded strictly), in torch and in onnxruntime at two sequence lengths."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

import nncircuit

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "specs", "lif.nn")


class LIF(nn.Module):
    """A layer of leaky integrate-and-fire neurons (snnTorch's Leaky, subtractive reset), a loop."""

    def __init__(self, d=16, hidden=32, beta=0.9, threshold=1.0):
        super().__init__()
        self.current = nn.Linear(d, hidden)
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        current = self.current(x)
        v = x.new_zeros(x.shape[0], current.shape[-1])
        spikes = []
        for t in range(x.shape[1]):
            v = self.beta * v + current[:, t]
            s = (v > self.threshold).float()
            v = v - s * self.threshold
            spikes.append(s)
        return torch.stack(spikes, 1), v


def _loaded(ref, **params):
    """The spec's module with the reference's state_dict, loaded strictly."""
    m = nncircuit.load(SPEC, **params).module(seed=0).eval()
    result = m.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return m


def test_lif_equals_a_hand_written_loop():
    torch.manual_seed(3)
    ref = LIF().eval()
    m = _loaded(ref)
    x = torch.randn(3, 20, 16, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        spikes, v = m(x)
        want_s, want_v = ref(x)
    assert 0 < spikes.sum() < spikes.numel()  # some neurons fire, not all
    assert torch.equal(spikes, want_s)
    torch.testing.assert_close(v, want_v, rtol=0, atol=1e-5)


def test_other_beta_and_threshold():
    ref = LIF(beta=0.5, threshold=0.25).eval()
    m = nncircuit.load(SPEC).torch_class()(beta=0.5, threshold=0.25)
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        spikes, v = m(x)
        want_s, want_v = ref(x)
    assert torch.equal(spikes, want_s)
    torch.testing.assert_close(v, want_v, rtol=0, atol=1e-5)


def test_onnx_equals_torch_at_two_lengths(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load(SPEC)
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "lif.onnx")
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out)
    torch.manual_seed(0)  # fixed inputs: a potential within rounding of the threshold could flip a spike
    for seq in (5, 17):
        x = torch.randn(2, seq, 16) * 2
        with torch.no_grad():
            want = m(x)
        got = sess.run(None, {"x": x.numpy()})
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)

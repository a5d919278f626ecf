"""specs/lif.nn: leaky integrate-and-fire neurons as a scan equal a hand-written PyTorch loop,
in torch and in onnxruntime at two sequence lengths."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nncircuit

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "specs", "lif.nn")


def reference(linear: torch.nn.Linear, x, beta=0.9, threshold=1.0):
    current = linear(x)
    v = torch.zeros(x.shape[0], current.shape[-1])
    spikes = []
    for t in range(x.shape[1]):
        v = beta * v + current[:, t]
        s = (v > threshold).float()
        v = v - s * threshold
        spikes.append(s)
    return torch.stack(spikes, 1), v


def test_lif_equals_a_hand_written_loop():
    m = nncircuit.load(SPEC).module(seed=0)
    x = torch.randn(3, 20, 16, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        spikes, v = m(x)
        want_s, want_v = reference(m.current, x)
    assert 0 < spikes.sum() < spikes.numel()  # some neurons fire, not all
    assert torch.equal(spikes, want_s)
    torch.testing.assert_close(v, want_v, rtol=0, atol=1e-5)


def test_other_beta_and_threshold():
    m = nncircuit.load(SPEC).torch_class()(beta=0.5, threshold=0.25)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        spikes, v = m(x)
        want_s, want_v = reference(m.current, x, 0.5, 0.25)
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

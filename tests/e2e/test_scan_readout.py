"""The S4D layer (specs/s4d.nn) and the Mamba mixer of bench/mamba_mixer.nn at -O2, where the
parallel-scan pass makes their scans linear_scan_sum: outputs equal onnxruntime's running the
ONNX export of the same weights, and the -O0 loop's outputs and gradients (inputs and every
parameter), forward and at lengths that leave chunk remainders (7 = 3 chunks of 2 and 1
left, 33 = 5 of 6 and 3 left)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nncircuit
from conftest import SPECS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = {
    "s4d": (os.path.join(SPECS, "s4d.nn"), dict(d=6, n=5), 6, (0, 1, 2, 7, 33)),
    # the mixer's `shift` has no ONNX form for a length of 0 (a modulo by the length)
    "mamba": (os.path.join(ROOT, "bench", "mamba_mixer.nn"), dict(d=16, di=24, n=4, r=3), 16, (1, 2, 7, 33)),
}


def _outs(o):
    return o if isinstance(o, tuple) else (o,)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_o2_equals_onnxruntime(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path, size, d, lengths = MODELS[model]
    spec = nncircuit.load(path, opt=2, **size)
    assert "linear_scan_sum" in [n.op for _, g in spec.graph.walk() for n in g.nodes()]
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "m.onnx")
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    for length in lengths:
        x = torch.randn(2, length, d, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            want = _outs(m(x))
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        assert len(got) == len(want)
        for w, g in zip(want, got):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [1, 7, 33])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_o2_gradients_equal_the_loops(model, length):
    path, size, d, _ = MODELS[model]
    m0 = nncircuit.load(path, opt=0, **size).module(seed=0)
    m2 = nncircuit.load(path, opt=2, **size).module(seed=1)
    m2.load_state_dict(m0.state_dict(), strict=True)
    x = torch.randn(2, length, d, generator=torch.Generator().manual_seed(length), requires_grad=True)
    grads = []
    for m in (m0, m2):
        outs = _outs(m(x))
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outs)
        params = dict(sorted(m.named_parameters()))  # by name: -O2 builds its modules in another order
        grads.append((outs, torch.autograd.grad(loss, [x, *params.values()])))
    (o0, g0), (o2, g2) = grads
    for w, g in zip(o0, o2):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert len(g0) == len(g2) > 1
    for w, g in zip(g0, g2):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)

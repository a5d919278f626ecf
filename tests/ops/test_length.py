"""`length(AXIS)`: an axis's size as an int64 scalar (a run-time one read when the module
runs, 0 for an empty axis), in torch, the generated file and onnxruntime; and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nncircuit
from nncircuit.errors import NNError

SPEC = """
model L(d = 4) {
    in  x: [batch, past, d], y: [batch, seq, d]
    pos = positions(seq) + length(past)
    out p = pos, n = length(d), f = y * cast(pos, to = "float32")
}
"""


def load(text: str = SPEC, **kw):
    return nncircuit.load("length.nn", "L", text=text, **kw)


def test_types():
    spec = load()
    types = [str(t) for _, t in spec.outputs()]
    assert types[:2] == ["[seq] int64", "[] int64"], types


@pytest.mark.parametrize("past", [0, 3])
def test_torch_reads_the_run_time_size(past):
    m = load().module(seed=0)
    y = torch.randn(2, 5, 4)
    p, n, f = m(torch.randn(2, past, 4), y)
    assert p.tolist() == list(range(past, past + 5)) and p.dtype == torch.int64
    assert n.item() == 4 and n.dim() == 0
    torch.testing.assert_close(f, y * torch.arange(past, past + 5).float()[:, None])


def test_static_size_follows_the_generated_class(tmp_path):
    import importlib.util

    out = tmp_path / "length_mod.py"
    load().write(str(out))
    spec = importlib.util.spec_from_file_location("length_mod", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _, n, _ = mod.L(d=6)(torch.randn(1, 2, 6), torch.randn(1, 3, 6))
    assert n.item() == 6


def test_onnxruntime_equals_torch_at_two_cache_lengths(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = load()
    path = tmp_path / "length.onnx"
    spec.write(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    m = spec.module(seed=0)
    for past in (0, 5):
        x, y = torch.randn(2, past, 4), torch.randn(2, 3, 4)
        got = sess.run(None, {"x": x.numpy(), "y": y.numpy()})
        want = m(x, y)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("call,message", [
    ("length(nope)", "length: 'nope' is not an axis of any tensor in scope"),
    ("length(y)", "length: 'y' is not an axis of any tensor in scope"),
])
def test_errors_point_at_the_call(call, message):
    text = SPEC.replace("length(past)", call, 1)
    with pytest.raises(NNError) as info:
        load(text)
    assert message in str(info.value) and "length.nn:4:" in str(info.value) and "^" in str(info.value)

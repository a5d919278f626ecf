"""`arange([i: n], start, step, dtype)`: numerics against torch.arange, onnxruntime against
torch at two run-time sizes, the generated class under other hyperparameters, the rotary
inv_freq written with it in a Buffer, and the positioned errors."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import nncircuit
from helpers import assert_positioned_error

SPEC = """
model A(dh = 8, s0 = 1.5, st = 0.25, theta = 10000.0) {
    in  x: [batch, d: 3]
    inv_freq = Buffer(1.0 / theta ** (arange([i: dh / 2], step = 2) / dh), persistent = false)
    out a = arange([batch], start = s0, step = st),
        b = arange([j: dh], start = 2, step = -3, dtype = "int64"),
        c = arange([k: dh]),
        f = inv_freq,
        y = x * sum(arange([d], start = 0.1, step = 0.3), over d)
}
"""


def load(text: str = SPEC, **kw):
    return nncircuit.load("arange.nn", None, text=text, **kw)


def reference(batch: int, dh: int, s0: float, st: float, theta: float, x):
    return (
        torch.arange(s0, s0 + batch * st, st)[:batch],
        torch.arange(2, 2 - 3 * dh, -3, dtype=torch.int64),
        torch.arange(dh, dtype=torch.float32),
        1.0 / theta ** (torch.arange(0, dh, 2).float() / dh),
        x * torch.arange(0.1, 0.1 + 3 * 0.3, 0.3)[:3].sum(),
    )


def check(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = torch.as_tensor(g)
        assert g.dtype == w.dtype and g.shape == w.shape, (g, w)
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


def test_numerics_equal_torch_arange():
    m = load().module(seed=0)
    x = torch.randn(5, 3)
    got = m(x)
    check(got, reference(5, 8, 1.5, 0.25, 10000.0, x))
    assert got[1].tolist() == [2, -1, -4, -7, -10, -13, -16, -19]
    assert got[0].tolist() == [1.5, 1.75, 2.0, 2.25, 2.5]  # batch follows the input


def test_generated_class_keeps_hyperparameter_expressions():
    spec = load()
    src = spec.torch_source()
    assert "self.s0" in src and "self.st" in src and "torch.arange(dh // 2" in src
    cls = spec.torch_class()
    x = torch.randn(3, 3)
    m = cls(dh=4, s0=-2.0, st=0.5, theta=100.0)
    check(m(x), reference(3, 4, -2.0, 0.5, 100.0, x))
    assert dict(m.named_buffers())["inv_freq"].tolist() == pytest.approx([1.0, 0.1])


def test_rotary_inv_freq_matches_the_positions_spelling():
    text = """
model R(dh = 16, theta = 10000.0) {
    in  x: [batch, d: 2]
    a = Buffer(1.0 / theta ** (arange([i: dh / 2], step = 2) / dh), persistent = false)
    b = Buffer(1.0 / theta ** (positions(i) * 2.0 / dh), persistent = false)
    out a, b
}
"""
    m = load(text).module(seed=0)
    a, b = m(torch.randn(1, 2))
    torch.testing.assert_close(a, b)
    assert "a" not in dict(m.state_dict())  # persistent = false
    assert "arange" not in m.__class__.forward.__code__.co_names  # made once, in __init__


def test_onnx_equals_torch_at_two_runtime_sizes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    spec = load()
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "a.onnx")
    spec.write(out, state_dict=m.state_dict())
    kinds = [n.op_type for n in onnx.load(out).graph.node]
    assert "Range" in kinds and "Cast" in kinds
    sess = ort.InferenceSession(out)
    for batch in (2, 7):
        x = torch.randn(batch, 3)
        with torch.no_grad():
            want = m(x)
        got = sess.run(None, {"x": x.numpy()})
        assert got[0].shape == (batch,)
        assert got[1].dtype == np.int64
        check([torch.from_numpy(g) for g in got], list(want))


def test_int32_and_float64_dtypes():
    text = """
model D(n = 4) {
    in  x: [batch]
    out a = arange([i: n], start = 3, dtype = "int32"), b = arange([i: n], step = 0.1, dtype = "float64")
}
"""
    a, b = load(text).module(seed=0)(torch.randn(2))
    assert a.dtype == torch.int32 and a.tolist() == [3, 4, 5, 6]
    torch.testing.assert_close(b, torch.arange(0, 0.4, 0.1, dtype=torch.float64)[:4])


ERRORS = [
    ("model M() {\n  in x: [batch, d: 3]\n  out arange([batch, d])\n}",
     r"arange makes one axis, found 2 \(\[batch, d\]\)", 3, 7),
    ("model M(s = 0) {\n  in x: [batch, d: 3]\n  out x + arange([d], step = s)\n}",
     r"arange: step is 0", 3, 11),
    ("model M() {\n  in x: [batch, d: 3]\n  out arange([e])\n}",
     r"arange: the size of axis 'e' is unknown: no tensor in scope has it", 3, 7),
    ("model M() {\n  in x: [batch, d: 3]\n  out arange([d], step = 0.5, dtype = \"int64\")\n}",
     r"arange: dtype \"int64\" counts in whole numbers", 3, 7),
    ("model M() {\n  in x: [batch, d: 3]\n  out arange([d], start = \"a\")\n}",
     r"arange: start must be a number", 3, 7),
]


@pytest.mark.parametrize("text,msg,line,col", ERRORS)
def test_positioned_errors(text, msg, line, col):
    assert_positioned_error(load, text, msg, line, col)


def test_ir_text_round_trips_with_start_and_step():
    from nncircuit.ir.parser import parse_ir
    from nncircuit.ir.printer import print_ir

    ir = print_ir(load().graph)
    assert "start = 1.5@s0" in ir and "step = -3" in ir
    assert print_ir(parse_ir(ir)) == ir

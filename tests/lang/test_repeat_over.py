"""`repeat N as h, i over AXIS`: the iteration index bound as `i`, values carrying AXIS seen
one slice per iteration (a per-layer key/value cache), and `emit`ted values stacked along AXIS
after the loop; the torch module against a hand-written loop, onnxruntime against torch."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import nncircuit
from nncircuit.errors import NNError
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import print_ir

KV = """
model KV(layers = 3, d = 4) {
    in  x: [batch, seq, d], cache: [layer: layers, batch, d]
    repeat layers as h, i over layer {
        k = Linear(x, d -> d) + cache
        x = x + k * cast(i, to = "float32")
        emit kv = mean(k, over seq)
    }
    out x, kv
}
"""

SHARED = """
model Steps(d = 4) {
    in  x: [batch, d]
    repeat 3 shared as blocks, i over step {
        x = x + cast(i, to = "float32")
        emit xs = x
    }
    out x, xs
}
"""


def load(text, **kw):
    return nncircuit.load("r.nn", text=text, **kw)


def test_types():
    outs = dict(load(KV).outputs())
    assert outs["kv"].names == ("layer", "batch", "d")
    outs = dict(load(SHARED).outputs())
    assert outs["xs"].names == ("step", "batch", "d") and outs["xs"].axes[0].size.value == 3


def test_torch_equals_a_hand_written_loop():
    spec = load(KV)
    m = spec.module(seed=0)
    x, cache = torch.randn(2, 5, 4), torch.randn(3, 2, 4)
    y, kv = m(x, cache)
    ks = []
    for i, layer in enumerate(m.h):
        k = layer.linear(x) + cache[i][:, None, :]
        x = x + k * i
        ks.append(k.mean(1))
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)
    torch.testing.assert_close(kv, torch.stack(ks), rtol=0, atol=1e-6)
    assert "for _i, _layer in enumerate(self.h):" in spec.torch_source()


def test_shared_with_index_and_stacked_output():
    m = load(SHARED).module(seed=0)
    x, xs = m(torch.zeros(2, 4))
    assert (x == 3).all()
    assert [float(v) for v in xs[:, 0, 0]] == [0.0, 1.0, 3.0]


@pytest.mark.parametrize("text", [KV, SHARED])
def test_onnx_equals_torch(tmp_path, text):
    ort = pytest.importorskip("onnxruntime")
    spec = load(text)
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "m.onnx")
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out)
    for seq in (3, 6):
        xs = [torch.randn(*[a.size.value if a.size.is_static else (2 if a.name == "batch" else seq) for a in t.axes])
              for _, t in spec.inputs()]
        with torch.no_grad():
            ref = m(*xs)
        got = sess.run(None, {n: x.numpy() for (n, _), x in zip(spec.inputs(), xs)})
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g, r.numpy(), rtol=1e-5, atol=1e-5)


def test_ir_text_round_trips():
    for text in (KV, SHARED):
        ir = print_ir(load(text).graph)
        assert print_ir(parse_ir(ir)) == ir


@pytest.mark.parametrize("text,msg,line,col", [
    ("model M(d = 4) {\n  in x: [batch, d], c: [layer: 2, batch, d]\n  repeat 3 as h over layer {\n    x = x + c\n  }\n  out x\n}",
     r"repeat 3 over 'layer': a value read in the body has 'layer' of size 2, not one slice per iteration", 3, 3),
    ("model M(d = 4) {\n  in x: [batch, d]\n  repeat 2 as h {\n    x = x * 2\n    emit y = x\n  }\n  out x\n}",
     r"'emit' belongs directly in the body of a scan or of a 'repeat N over AXIS'", 5, 5),
    ("model M(d = 4) {\n  in x: [batch, d]\n  repeat 0 as h over r {\n    x = x * 2\n    emit y = x\n  }\n  out x\n}",
     r"repeat 0 emits values but runs no iteration to stack", 3, 3),
])
def test_errors(text, msg, line, col):
    with pytest.raises(NNError) as info:
        load(text)
    assert re.search(msg, info.value.message), info.value.message
    assert (info.value.span.line, info.value.span.col) == (line, col)


def test_onnx_stacks_emitted_values_along_their_axis_in_a_lifted_block(tmp_path):
    """Differential seed 151: the emitted values were concatenated on axis 0, not on the
    stacked axis, when the block was lifted."""
    ort = pytest.importorskip("onnxruntime")
    spec = load("""
block B(k0) {
    in  x0: [q: k0]
    t = x0 * 2
    repeat 2 over rep {
        t = t + x0
        emit e = t * 0.5
    }
    out einsum(e, x0 -> [q, rep])
}
model Net() {
    in  x1: [batch, q: 4, n: ~4]
    out y = B(4)(x1)
}
""")
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "m.onnx")
    spec.write(out, state_dict=m.state_dict())
    x = torch.randn(2, 4, 3)
    got = ort.InferenceSession(out).run(None, {"x1": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, m(x).numpy(), rtol=1e-5, atol=1e-5)

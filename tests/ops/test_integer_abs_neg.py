"""`abs` and `neg` on integer tensors (T5's bucketed relative distances): exact in torch and
onnxruntime, the dtype kept; the other elementwise maps and a bool input are still refused with
a positioned error."""

import numpy as np
import pytest
import torch

import nncircuit
from nncircuit.errors import NNError

SPEC = """model M() {
    in  k: [n: ~5] int64
    out a = abs(k), b = neg(k), c = -k
}
"""


def test_abs_and_neg_of_int64_in_torch_and_onnx(tmp_path):
    path = tmp_path / "m.nn"
    path.write_text(SPEC)
    spec = nncircuit.load(str(path))
    assert [t.dtype for _, t in spec.outputs()] == ["int64"] * 3
    k = torch.tensor([-7, -1, 0, 2, 2**40], dtype=torch.int64)
    a, b, c = spec.module().eval()(k)
    assert a.dtype == torch.int64 and torch.equal(a, k.abs()) and torch.equal(b, -k) and torch.equal(c, -k)
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "m.onnx"
    nncircuit.export_onnx(str(path), str(onnx_path))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"k": k.numpy()})
    assert all(g.dtype == np.int64 for g in got)
    assert np.array_equal(got[0], a.numpy()) and np.array_equal(got[1], b.numpy())


@pytest.mark.parametrize("body, message", [
    ("out exp(k)", "exp needs a floating-point tensor"),
    ("out abs(k > 0)", "abs needs a floating-point tensor"),
    ("out neg(k > 0)", "neg needs a floating-point tensor"),
])
def test_other_maps_and_bool_are_refused(body, message, tmp_path):
    path = tmp_path / "m.nn"
    path.write_text("model M() {\n    in  k: [n: ~5] int64\n    " + body + "\n}\n")
    with pytest.raises(NNError) as info:
        nncircuit.load(str(path))
    assert message in str(info.value)
    assert info.value.span is not None and info.value.span.line == 3

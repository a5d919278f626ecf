"""Blocks that compose like real code: inputs shared across the axes a call is lifted over,
axis parameters of blocks, run-time axes declared equal, and static `if`/`for` resolved at
elaboration (numerics against hand-written torch and onnxruntime, state_dict names, errors,
and what a generated class does with other hyperparameters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nncircuit
from nncircuit.api import generated_module
from nncircuit.editor.fmt import format_text
from nncircuit.errors import NNError


def _load(tmp_path, text, name="m.nn", **params):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return nncircuit.load(str(f), **params), str(f)


def _ort(path_onnx, feeds):
    import onnxruntime as ort

    s = ort.InferenceSession(path_onnx, providers=["CPUExecutionProvider"])
    return s.run(None, {k: v.numpy() for k, v in feeds.items()})


def _errors(tmp_path, text):
    with pytest.raises(NNError) as e:
        _load(tmp_path, text)
    return e.value


# ---- a. an input shared across the lifted axes ----------------------------------------------

SHARED = """
block Head(dh) {
    in  q: [seq, dh], k: [key, dh], mask: [seq, key] bool, scale: [dh]
    s = where(mask, einsum(q * scale, k -> [seq, key]), -inf)
    out softmax(s, over key)
}
model M(d = 8, heads = 2, dh = d / heads) {
    in  x: [batch, seq: ~5, d], mask: [seq, key: =seq] bool
    q = Linear(x, d -> [heads, dh])
    k = Linear(x, d -> [heads, dh]) rename seq -> key
    out Head(dh)(q, k, mask, Param([dh], init = ones))
}
"""


def test_an_input_shared_by_every_head(tmp_path):
    spec, path = _load(tmp_path, SHARED)
    (_, out), = spec.outputs()
    assert [a.name for a in out.axes] == ["batch", "heads", "seq", "key"]
    m = spec.module(seed=0).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    got = m(x, mask)
    q = m.q(x).reshape(2, 5, 2, 4).transpose(1, 2)
    k = m.k(x).reshape(2, 5, 2, 4).transpose(1, 2)
    s = torch.einsum("bhsd,bhkd->bhsk", q, k).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(got, torch.softmax(s, -1))
    out = str(tmp_path / "m.onnx")
    nncircuit.export_onnx(path, out, state_dict=m.state_dict())
    for b, n in [(2, 5), (3, 7)]:  # other run-time sizes too
        x, mask = torch.randn(b, n, 8), torch.rand(n, n) > 0.3
        mask |= torch.eye(n, dtype=torch.bool)
        np.testing.assert_allclose(_ort(out, {"x": x, "mask": mask})[0], m(x, mask).detach().numpy(), atol=1e-6)


def test_inputs_with_different_extra_axes_are_still_refused(tmp_path):
    text = """
block B() {
    in  a: [d: 2], b: [d: 2]
    out a + b
}
model M() {
    in  x: [heads: 3, d: 2], y: [batch, d: 2]
    out B()(x, y)
}
"""
    e = _errors(tmp_path, text)
    assert "every input must carry the extra axes the call is lifted over, or some of them" in str(e)
    assert "found [heads] and [batch]" in str(e) and e.span.line == 8


# ---- b. axis parameters ----------------------------------------------------------------------

ROTATE = """
block RotateHalf(half, axis dh) {
    in  x: [dh: 2 * half]
    y = x |> unflatten(dh -> [two: 2, hh: half])
    out concat(-y[two = 1], y[two = 0], over hh) rename hh -> dh
}
model M(d = 8) {
    in  x: [batch, seq: ~4, rope: d]
    out x + RotateHalf(d / 2, dh = rope)(x)
}
"""


def test_axis_parameter_names_the_callers_axis(tmp_path):
    spec, path = _load(tmp_path, ROTATE)
    (_, out), = spec.outputs()
    assert out.names == ("batch", "seq", "rope")
    m = spec.module(seed=0)
    x = torch.randn(2, 3, 8)
    a, b = x[..., :4], x[..., 4:]
    torch.testing.assert_close(m(x), x + torch.cat([-b, a], -1))
    onnx_out = str(tmp_path / "m.onnx")
    nncircuit.export_onnx(path, onnx_out)
    np.testing.assert_allclose(_ort(onnx_out, {"x": x})[0], m(x).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "call, message, line",
    [
        ("RotateHalf(d / 2, dh = 3)(x)", "axis parameter 'dh' of block RotateHalf takes an axis name", 9),
        ("RotateHalf(d / 2, dh = rope, dh = rope)(x)", "axis parameter 'dh' given twice", 9),
        ("RotateHalf(d / 2, dh = seq)(x rename rope -> dh)", "already has an axis 'dh'", 9),
    ],
)
def test_axis_parameter_errors(tmp_path, call, message, line):
    e = _errors(tmp_path, ROTATE.replace("RotateHalf(d / 2, dh = rope)(x)", call))
    assert message in str(e) and e.span.line == line


def test_axis_parameter_syntax_errors(tmp_path):
    e = _errors(tmp_path, "block B(size dh) {\n    in  x: [dh]\n    out x\n}\n")
    assert "an axis parameter is written 'axis NAME'" in str(e) and (e.span.line, e.span.col) == (1, 14)
    e = _errors(tmp_path, "model M(axis dh) {\n    in  x: [dh]\n    out x\n}\n")
    assert "a model's axes come from its inputs" in str(e)


def test_fmt_keeps_axis_parameters_and_static_statements():
    text = ROTATE + STAGES + GRAPH
    once = format_text(text)
    assert "block RotateHalf(half, axis dh) {" in once
    assert "in  adj: [batch, node, nbr: =node], h: [batch, node, d]" in once
    assert "    for (t, c, s) in [(1, 8, 1), (6, 12, 2), (6, 12, 1)] {" in once
    assert format_text(once) == once


# ---- c. run-time axes declared equal ------------------------------------------------------

GRAPH = """
model G(d = 4) {
    in  adj: [batch, node, nbr: =node], h: [batch, node, d]
    out einsum(adj, h rename node -> nbr, over nbr)
}
"""


def test_equal_axes_type_check_and_are_checked_at_run_time(tmp_path):
    spec, path = _load(tmp_path, GRAPH)
    m = spec.module(seed=0)
    adj, h = torch.rand(2, 5, 5), torch.randn(2, 5, 4)
    torch.testing.assert_close(m(adj, h), adj @ h)
    with pytest.raises(ValueError, match="input 'adj' axis 'nbr' must equal axis 'node' of input 'adj'"):
        m(torch.rand(2, 5, 6), torch.randn(2, 5, 4))
    out = str(tmp_path / "g.onnx")
    nncircuit.export_onnx(path, out)
    import onnx

    (adj_in, _) = onnx.load(out).graph.input
    assert [d.dim_param for d in adj_in.type.tensor_type.shape.dim] == ["batch", "node", "node"]
    adj, h = torch.rand(3, 7, 7), torch.randn(3, 7, 4)
    np.testing.assert_allclose(_ort(out, {"adj": adj, "h": h})[0], (adj @ h).numpy(), atol=1e-5)


def test_without_the_declaration_the_sizes_differ(tmp_path):
    e = _errors(tmp_path, GRAPH.replace("nbr: =node", "nbr"))
    assert "nbr" in str(e) and e.span.line == 4


def test_equal_axis_needs_an_earlier_axis(tmp_path):
    e = _errors(tmp_path, GRAPH.replace("nbr: =node", "nbr: =other"))
    assert "axis 'nbr: =other' needs 'other' to be an axis declared before it" in str(e)
    assert e.span.line == 3


# ---- d. static if and for ---------------------------------------------------------------------

STAGES = """
block InvertedResidual(cin, cout, stride, expand) {
    in  x: [c: cin, h, w]
    hidden = cin * expand
    y = x
    if expand != 1 {
        y = Conv(y, c -> c: hidden, kernel = 1, bias = false, over [h, w]) |> relu6
    }
    y = Conv(y, c -> c: hidden, kernel = 3, stride = stride, padding = 1, groups = hidden, bias = false, over [h, w]) |> relu6
    y = Conv(y, c -> c: cout, kernel = 1, bias = false, over [h, w])
    if stride == 1 and cin == cout {
        y = x + y
    } else if stride == 1 {
        y = y * 1.0
    } else {
        y = y * 1.0
    }
    out y
}
model MobileNet(width = 8, classes = 10) {
    in  image: [batch, c: 3, h: ~32, w: ~32]
    x = Conv(image, c -> c: width, kernel = 3, stride = 2, padding = 1, over [h, w]) |> relu6
    cin = width
    for (t, c, s) in [(1, 8, 1), (6, 12, 2), (6, 12, 1)] {
        x = InvertedResidual(cin, c, s, t)(x)
        cin = c
    }
    out Linear(mean(x, over [h, w]), c -> classes)
}
"""


def test_static_structure_and_its_state_dict_names(tmp_path):
    spec, _ = _load(tmp_path, STAGES)
    keys = list(spec.module(seed=0).state_dict())
    # the unrolled calls are named in order, as if written out: name, name_1, name_2
    assert keys == [
        "conv.weight", "conv.bias",
        "inverted_residual.conv.weight", "inverted_residual.conv_1.weight",  # expand 1: no 1x1
        "inverted_residual_1.conv.weight", "inverted_residual_1.conv_1.weight", "inverted_residual_1.conv_2.weight",
        "inverted_residual_2.conv.weight", "inverted_residual_2.conv_1.weight", "inverted_residual_2.conv_2.weight",
        "linear.weight", "linear.bias",
    ]
    ops = {n.op for _, g in spec.graph.walk() for n in g.nodes()}
    assert "add" in ops  # the residual of the stride-1 blocks with cin == cout


def test_static_structure_numerics_and_onnx(tmp_path):
    spec, path = _load(tmp_path, STAGES)
    m = spec.module(seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    ir = m.inverted_residual
    y = torch.nn.functional.relu6(m.conv(x))
    want = y + ir.conv_1(torch.nn.functional.relu6(ir.conv(y)))  # expand 1, stride 1, 8 -> 8: a residual
    got = generated_module(spec.torch_source(), "stages").InvertedResidual(8, 8, 1, 1)
    got.load_state_dict(ir.state_dict())
    torch.testing.assert_close(got(y), want)
    out = str(tmp_path / "m.onnx")
    nncircuit.export_onnx(path, out, state_dict=m.state_dict())
    for shape in [(2, 3, 32, 32), (1, 3, 40, 24)]:
        x = torch.randn(*shape)
        np.testing.assert_allclose(_ort(out, {"image": x})[0], m(x).detach().numpy(), atol=1e-5)


def test_generated_class_refuses_a_structural_hyperparameter(tmp_path):
    spec, _ = _load(tmp_path, STAGES)
    mod = generated_module(spec.torch_source(), "stages2")
    assert mod.MobileNet(classes=3)(torch.randn(1, 3, 32, 32)).shape == (1, 3)  # not structural
    with pytest.raises(ValueError, match=r"`if \(stride == 1\) and \(cin == cout\)` was compiled "
                                         r"for it being true: the structure of a compiled module is fixed"):
        mod.MobileNet(width=16)  # the first stage would lose its residual
    # compiled for that value, it has the other structure
    other, _ = _load(tmp_path, STAGES, width=16)
    assert other.module(seed=0)(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert other.param_count() != spec.param_count()


def test_for_rows_keep_hyperparameter_expressions(tmp_path):
    text = """
model Rows(d = 4) {
    in  x: [batch, e: d]
    for (k, m) in [(d, 2 * d), (2 * d, d)] {
        x = Linear(x, e -> e: m)
    }
    out x
}
"""
    spec, _ = _load(tmp_path, text)
    assert list(spec.module(seed=0).state_dict()) == ["linear.weight", "linear.bias", "linear_1.weight", "linear_1.bias"]
    cls = generated_module(spec.torch_source(), "rows").Rows
    m = cls(d=3)
    assert m(torch.randn(2, 3)).shape == (2, 3) and m.linear.weight.shape == (6, 3)


@pytest.mark.parametrize(
    "stmt, message",
    [
        ("if x > 0 { y = x }", "a condition (`if`, `a if c else b`, `scan ... reverse =`) is resolved when the model is built, so it compares hyperparameters; found a tensor"),
        ("if d { y = x }", "a condition (`if`, `a if c else b`, `scan ... reverse =`) must be true or false, found 4"),
        ("for (a, b) in [(1, 2), 3] { y = x }", "for (a, b): each row must be a tuple of 2 values, found the value 3"),
        ("for a in [x] { y = x }", "for: a row holds numbers, strings or booleans (static values), found a tensor"),
        ("if d < \"big\" { y = x }", "cannot compare 4 < 'big'"),
    ],
)
def test_static_statement_errors(tmp_path, stmt, message):
    text = "model E(d = 4) {\n    in  x: [batch, e: d]\n    y = x\n    " + stmt + "\n    out y\n}\n"
    e = _errors(tmp_path, text)
    assert message in str(e) and e.span.line == 4


def test_if_picks_the_branch_with_p_overrides(tmp_path):
    text = """
model P(act = "relu", deep = false) {
    in  x: [batch, e: 4]
    if act == "relu" {
        x = relu(x)
    } else {
        x = gelu(x)
    }
    if deep {
        x = Linear(x, e -> e: 4)
    }
    out x
}
"""
    spec, _ = _load(tmp_path, text)
    assert [n.op for n in spec.graph.nodes() if n.op != "input"] == ["relu"]
    spec2, _ = _load(tmp_path, text, act="gelu", deep=True)
    assert [n.op for n in spec2.graph.nodes() if n.op != "input"] == ["gelu", "Linear"]

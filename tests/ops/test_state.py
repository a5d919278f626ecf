"""Buffers (state that is not a parameter) and random ops: state_dict names, values that
follow the hyperparameters, torch against onnxruntime, seeded draws, eval semantics, and the
errors a spec gets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nncircuit
from nncircuit.errors import NNError
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import print_ir

ROPE = """
block Rotary(dh, theta = 10000.0) {
    in  x: [seq, dh]
    zero = Buffer([i: dh / 2], init = zeros, persistent = false)
    inv_freq = Buffer(1.0 / theta ** (positions(i) * 2.0 / dh) + zero, persistent = false)
    bias = Buffer([dh], init = constant(0.5))
    ids = Buffer(positions(i))
    out x * sum(inv_freq, over i) + bias + sum(cast(ids, to = "float32"), over i)
}
model M(d = 8, heads = 2, theta = 10000.0) {
    in  x: [batch, seq: ~5, d]
    q = Linear(x, d -> [heads, dh: d / heads])
    r = Rotary(d / heads, theta)(q)
    out Linear(r, [heads, dh] -> d)
}
"""


def _load(tmp_path, text, name="m.nn", **params):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return nncircuit.load(str(f), **params), str(f)


def _source_module(spec, name="M"):
    from nncircuit.api import generated_module

    return getattr(generated_module(spec.torch_source(), "state_test"), name)


def test_buffer_state_dict_names_and_persistence(tmp_path):
    spec, _ = _load(tmp_path, ROPE)
    m = spec.module(seed=0)
    # persistent buffers are state_dict entries named like a Param: the module path and the name
    assert list(m.state_dict()) == ["q.weight", "q.bias", "r.bias", "r.ids", "linear.weight", "linear.bias"]
    names = dict(m.named_buffers())
    assert set(names) == {"r.zero", "r.inv_freq", "r.bias", "r.ids"}
    assert not any("inv_freq" in k or "zero" in k for k, _ in m.named_parameters())
    assert names["r.ids"].dtype == torch.int64 and names["r.ids"].tolist() == [0, 1]
    assert torch.equal(names["r.bias"], torch.full((4,), 0.5))
    want = 1.0 / 10000.0 ** (torch.arange(2) * 2.0 / 4)
    assert torch.allclose(names["r.inv_freq"], want)


def test_buffer_follows_the_hyperparameters_of_the_generated_class(tmp_path):
    spec, _ = _load(tmp_path, ROPE)
    cls = _source_module(spec)
    m = cls(d=16, heads=2, theta=100.0)
    inv = dict(m.named_buffers())["r.inv_freq"]
    dh = 8
    assert torch.allclose(inv, 1.0 / 100.0 ** (torch.arange(dh // 2) * 2.0 / dh))
    assert m(torch.randn(2, 3, 16)).shape == (2, 3, 16)
    # the expression runs in the constructor, not in forward
    src = spec.torch_source()
    forward = src[src.index("class Rotary"):].split("def forward", 1)[1].split("class ", 1)[0]
    assert "arange" not in forward and "register_buffer('inv_freq'" in src


def test_buffers_are_counted_apart_from_parameters(tmp_path):
    spec, path = _load(tmp_path, ROPE)
    assert spec.param_count() == 8 * 8 + 8 + 8 * 8 + 8  # the two Linears only
    text = str(spec.summary())
    assert "buffers: 10 (" in text  # zero 2 + inv_freq 2 + bias 4 + ids 2


def test_buffer_ir_round_trips(tmp_path):
    spec, _ = _load(tmp_path, ROPE)
    text = print_ir(spec.graph)
    assert "Buffer(axes [i: 2@\"dh / 2\"], init = zeros, persistent = false)" in text
    assert print_ir(parse_ir(text)) == text


def _ort(path_onnx, x):
    import onnxruntime as ort

    s = ort.InferenceSession(path_onnx, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x.numpy()})[0]


def test_onnx_matches_torch_with_a_changed_persistent_buffer(tmp_path):
    spec, path = _load(tmp_path, ROPE)
    m = spec.module(seed=0).eval()
    with torch.no_grad():
        m.r.bias.copy_(torch.tensor([1.0, -2.0, 3.0, 0.25]))  # a trained correction bias
    out = str(tmp_path / "m.onnx")
    nncircuit.export_onnx(path, out, state_dict=m.state_dict())
    for shape in [(2, 5, 8), (3, 7, 8)]:  # other run-time sizes too
        x = torch.randn(*shape)
        np.testing.assert_allclose(_ort(out, x), m(x).detach().numpy(), atol=1e-5)


def test_onnx_without_weights_computes_the_buffers(tmp_path):
    text = """
model B(d = 4, theta = 100.0) {
    in  x: [batch, d]
    inv = Buffer(1.0 / theta ** (cast(positions(d), to = "float32") / d))
    out x * inv + Buffer([d], init = ones)
}
"""
    spec, path = _load(tmp_path, text)
    out = str(tmp_path / "b.onnx")
    nncircuit.export_onnx(path, out)
    x = torch.ones(2, 4)
    np.testing.assert_allclose(_ort(out, x)[0], 1.0 / 100.0 ** (np.arange(4) / 4) + 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "body, message",
    [
        ("out Buffer(x)", "Buffer is made when the module is built, so its initial value cannot read the input 'x'"),
        ("out x + Buffer(Linear(cast(positions(d), to = \"float32\"), d -> d))",
         "cannot read the learned op Linear ('linear')"),
        ("out x + Buffer(normal_like(x))", "cannot read the random op normal_like"),
        ("out x + Buffer([d], init = normal(1))", "Buffer: init must be a constant (zeros, ones, constant), found normal"),
        ("out x + Buffer(cast(positions(s), to = \"float32\"))", "axis 's' has the run-time size"),
        ("out x + Buffer([d], init = zeros, dtype = \"int8\")", "Buffer: unknown dtype 'int8'"),
        ("out x + Buffer(cast(positions(d), to = \"float32\"), init = ones)", "init and dtype go with the axes form"),
        ("out x + Buffer([d], persistent = 3)", "persistent must be true or false"),
    ],
)
def test_buffer_errors_point_at_the_spec(tmp_path, body, message):
    text = "model E(d = 4) {\n    in  x: [s, d]\n    " + body + "\n}\n"
    with pytest.raises(NNError) as e:
        _load(tmp_path, text)
    assert message in str(e.value)
    assert e.value.span is not None and e.value.span.line == 3


RANDOM = """
model R(d = 4, p = 0.5) {
    in  x: [batch, seq: ~3, d]
    a = drop_path(x, p = p, over batch)
    b = dropout(x, p = p)
    c = normal_like(x)
    e = normal_like(x)
    u = uniform_like(x, low = -2.0, high = 3.0)
    k = bernoulli(sigmoid(x) * 0.0 + 0.5)
    out a, b, c, e, u, k
}
"""


def test_random_ops_are_reproducible_with_a_seed(tmp_path):
    spec, _ = _load(tmp_path, RANDOM)
    cls = _source_module(spec, "R")
    m = cls().train()
    x = torch.randn(64, 3, 4)
    first = m.seed_random(7)(x)
    again = m.seed_random(7)(x)
    other = m.seed_random(8)(x)
    for f, g in zip(first, again):
        assert torch.equal(f, g)
    assert not torch.equal(first[2], other[2])
    assert not torch.equal(first[2], first[3])  # two draws, never merged


def test_random_ops_in_eval_mode(tmp_path):
    spec, _ = _load(tmp_path, RANDOM)
    m = spec.module(seed=0).eval()
    x = torch.randn(8, 3, 4)
    a, b, c, e, u, k = m(x)
    assert torch.equal(a, x) and torch.equal(b, x)  # drop_path and dropout: identity
    assert c.shape == x.shape and c.std() > 0.3  # normal_like still draws
    assert u.min() >= -2.0 and u.max() <= 3.0 and u.std() > 0.3
    assert set(k.unique().tolist()) <= {0.0, 1.0}


def test_drop_path_draws_once_per_sample(tmp_path):
    spec, _ = _load(tmp_path, RANDOM)
    m = spec.module(seed=0).train()
    m.seed_random(1)
    x = torch.ones(400, 3, 4)
    a = m(x)[0]
    per_sample = a.reshape(400, -1)
    # every sample is all zero or all 1 / (1 - p)
    assert all(len(set(row.tolist())) == 1 for row in per_sample)
    assert set(per_sample[:, 0].tolist()) == {0.0, 2.0}
    kept = (per_sample[:, 0] > 0).float().mean().item()
    assert 0.4 < kept < 0.6
    assert math.isclose(a.mean().item(), 1.0, abs_tol=0.15)  # unbiased


def test_the_optimizer_never_merges_two_draws(tmp_path):
    text = """
model T() {
    in  x: [batch, d: 4]
    out normal_like(x) - normal_like(x)
}
"""
    spec, _ = _load(tmp_path, text, opt=2)
    ops = [n.op for n in spec.graph.nodes()]
    assert ops.count("normal_like") == 2
    m = spec.module(seed=0)
    assert m(torch.zeros(3, 4)).abs().sum() > 0


def test_onnx_draws_where_a_draw_is_meant(tmp_path):
    spec, path = _load(tmp_path, RANDOM)
    out = str(tmp_path / "r.onnx")
    nncircuit.export_onnx(path, out)
    import onnx

    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert {"RandomNormalLike", "RandomUniformLike"} <= ops
    import onnxruntime as ort

    s = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((16, 3, 4)).astype(np.float32)
    a, b, c, e, u, k = s.run(None, {"x": x})
    np.testing.assert_array_equal(a, x)  # inference: drop_path is the identity
    np.testing.assert_array_equal(b, x)
    assert c.std() > 0.3 and u.min() >= -2.0 and u.max() <= 3.0
    assert set(np.unique(k).tolist()) <= {0.0, 1.0} and 0.3 < k.mean() < 0.7


def test_bernoulli_in_onnx_at_the_extremes(tmp_path):
    text = """
model K() {
    in  x: [batch, d: 4]
    out bernoulli(x)
}
"""
    spec, path = _load(tmp_path, text)
    out = str(tmp_path / "k.onnx")
    nncircuit.export_onnx(path, out)
    import onnxruntime as ort

    s = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = np.array([[0, 0, 1, 1]] * 50, dtype=np.float32)
    (k,) = s.run(None, {"x": x})
    np.testing.assert_array_equal(k, x)  # p = 0 never, p = 1 always, as torch.bernoulli


@pytest.mark.parametrize(
    "body, message",
    [
        ("out drop_path(x, p = 0.5)", "drop_path needs 'over AXES'"),
        ("out drop_path(x, p = 1.0, over batch)", "drop_path: p must be in [0, 1), found 1.0"),
        ("out uniform_like(x, low = 2.0, high = 1.0)", "uniform_like: low must not exceed high"),
        ("out normal_like(cast(x, to = \"int64\"))", "normal_like needs a floating-point tensor"),
    ],
)
def test_random_op_errors(tmp_path, body, message):
    text = "model E(d = 4) {\n    in  x: [batch, d]\n    " + body + "\n}\n"
    with pytest.raises(NNError) as e:
        _load(tmp_path, text)
    assert message in str(e.value)
    assert e.value.span is not None and e.value.span.line == 3

"""The ONNX backend: every model of the zoo (and a spec exercising every op) checks with
onnx's full checker and computes in onnxruntime what the torch module computes, at several
run-time sizes; names, weights, determinism, precision options and errors."""

import os
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import nncircuit
from conftest import ROOT, SMALL, SPECS
from helpers import random_inputs
from nncircuit.backends.onnx.export import MAX_OPSET, build, export_spec
from nncircuit.backends.onnx.table import ONNX_LOWERINGS
from nncircuit.errors import LoweringError

# Two run-time sizes per model (dynamic axes by name; the first also takes batch 2).
SIZES = {
    "MLP": [{"batch": 1}, {"batch": 4}],
    "GPT2": [{"batch": 1, "seq": 7}, {"batch": 3, "seq": 32}],
    "ViT": [{"batch": 1}, {"batch": 3}],
    "ResNet18": [{"batch": 2, "h": 32, "w": 32}, {"batch": 1, "h": 40, "w": 36}],
    "ResNet50": [{"batch": 2, "h": 32, "w": 32}, {"batch": 1, "h": 40, "w": 36}],
    "UNet": [{"batch": 2, "h": 32, "w": 32}, {"batch": 1, "h": 37, "w": 45}],
    "ConvNet": [{"batch": 2, "h": 32, "w": 32}, {"batch": 1, "h": 40, "w": 36}],
    "TextCNN": [{"batch": 2, "seq": 12}, {"batch": 3, "seq": 32}],
    "Llama": [{"batch": 1, "seq": 7}, {"batch": 2, "seq": 20}],
    "Bert": [{"batch": 1, "seq": 7}, {"batch": 2, "seq": 20}],
    "LSTM": [{"batch": 2, "seq": 5}, {"batch": 3, "seq": 11}],
    "GRU": [{"batch": 2, "seq": 5}, {"batch": 3, "seq": 11}],
    "RNN": [{"batch": 2, "seq": 5}, {"batch": 3, "seq": 11}],
    "LinearAttention": [{"batch": 2, "seq": 5}, {"batch": 3, "seq": 11}],
    "LIF": [{"batch": 2, "seq": 5}, {"batch": 3, "seq": 11}],
    "Mamba": [{"batch": 1, "seq": 7}, {"batch": 2, "seq": 20}],
    "T5": [{"batch": 1, "seq": 7, "tgt": 5}, {"batch": 2, "seq": 30, "tgt": 23}],
    "LlamaDecode": [{"batch": 1, "seq": 4, "past": 0}, {"batch": 2, "seq": 1, "past": 5}],
    "S4D": [{"batch": 2, "seq": 5}, {"batch": 3, "seq": 11}],
    "Mixtral": [{"batch": 1, "seq": 7}, {"batch": 2, "seq": 20}],
    "DeepseekV3": [{"batch": 1, "seq": 7}, {"batch": 2, "seq": 20}],
    "LTC": [{"batch": 2, "seq": 5}, {"batch": 3, "seq": 11}],
    "Pointer": [{"batch": 2, "pos": 5}, {"batch": 3, "pos": 11}],
}

# A spec that exercises every op in unusual layouts: channels last, extra leading axes,
# lifted blocks with constants, broadcasting by name, shared and multi-value repeats.
ZOO = """
model Elementwise(d = 6) {
    in  x: [batch, seq: ~5, d], y: [d], t: [batch, seq] int64
    a = relu(x) + gelu(x) - silu(x) * sigmoid(y) + gelu_tanh(x)
    b = tanh(x) / (abs(y) + 1) + exp(-abs(x)) + dropout(x, p = 0.5)
    c = log(abs(x) + 1) + sqrt(abs(x)) + x ** 2 + (abs(y) + 1) ** y + 2 - x + 1 / (abs(x) + 1)
    n = cast(t, to = "float32") + t / 2 + t * 3
    out a, b, c, n, sum(x, over seq), mean(x, over [seq, d]), max(x, over d), min(x, over seq),
        softmax(x, over seq), log_softmax(x, over d)
}

model Select(d = 6) {
    in  x: [batch, seq: ~5, d], y: [d], t: [batch, seq] int64
    m = x > 0 and not (y <= 0.5) or x == y
    w = where(m, x, -inf) |> maximum(-30)
    r = floor(x) + ceil(x) + round(x) + sign(x) + clamp(x, min = -1, max = 1) + minimum(x, y)
    f = sin(x) + cos(x) + relu6(x) + hardswish(x) + hardsigmoid(x) + mish(x) + softplus(x)
        + elu(x) + leaky_relu(x) + hardtanh(x)
    out w, r, f, x != y, x < y, x >= y, logical_or(x > 1, x < -1), PReLU(x, over d), PReLU(x)
}

model Layout(d = 6) {
    in  x: [batch, seq: ~5, d], cls: [d], row: [batch, d]
    tr = transpose(x, seq, d)
    fl = x |> flatten([seq, d] -> f)
    un = x |> unflatten(d -> [a: 2, b: 3]) |> transpose(a, seq)
    last = x[seq = -1]
    cat = concat(cls, x, row, over seq)
    summed = einsum(x -> [d, batch], over seq)
    k = x rename seq -> key
    sc = causal(einsum(x, k -> [batch, key, seq]), over [seq, key])
    att = attention(x, k, k rename d -> e, d -> e, over [seq, key], causal = true)
    out tr, fl, un, last, cat, summed, sc, concat(x, x, over d), att
}

model Pad() {
    in  x: [batch, c: 2, h, w], ref: [batch, c: 2, h: ?, w: ?], s: [batch, h: 5], big: [batch, h: 8]
    out pad_to(x, ref, over [h, w]), pad_to(s, big, over h), pad_to(big, s, over h)
}

model Learned(vocab = 11, d = 6) {
    in  t: [batch, seq: ~4] int32, x: [batch, seq, h: 2, d]
    emb = Embedding(vocab -> d)
    e = emb(t)
    m = Linear(x, [h, d] -> [p: 3, q: 4])
    w = Linear(x, h -> r: 5) |> transpose(r, seq)
    head = Linear(e, d -> vocab, tied = emb)
    ln = LayerNorm(x, over [h, d])
    ln2 = LayerNorm(x, over h, affine = false)
    ln3 = LayerNorm(x, over d, bias = false)
    rms = RMSNorm(x, over d)
    bn = BatchNorm(e, d)
    scale = Param([d], init = "ones")
    out m, w, head, ln, ln2, ln3, rms, bn, x * scale
}

model Spatial(c = 4) {
    in  img: [batch, h: ~9, w: ~7, c], vid: [batch, t: 2, c, h, w], seq: [batch, c, l: ~11],
        vol: [batch, c, x: 5, y: 6, z: 4]
    a = Conv(img, c -> c: 6, kernel = 3, padding = 1, over [h, w]) |> maxpool(kernel = 2, over [h, w])
    b = Conv(vid, c -> k: 8, kernel = 3, stride = 2, padding = 1, over [h, w]) |> BatchNorm(k)
    p = avgpool(vid, kernel = 3, stride = 2, padding = 1, over [h, w])
    s = Conv(seq, c -> c: 8, kernel = 3, dilation = 2, groups = 4, over l)
        |> maxpool(kernel = 3, stride = 2, padding = 1, over l)
    u = ConvTranspose(seq, c -> c: 3, kernel = 3, stride = 2, padding = 1, output_padding = 1, over l)
    v = Conv(vol, c -> c: 2, kernel = (3, 1, 2), padding = (1, 0, 1), over [x, y, z])
    out a, b, p, s, u, v, maxpool(img, kernel = 2, over [h, w])
}

block Shift(d) {
    in  x: [seq, d]
    bias = Param([d], init = "zeros")
    pos = Embedding(n: 32 -> d)(positions(seq))
    out x + pos + bias
}

block Route(experts) {
    in  scores: [experts]
    vals, idx = top_k(scores, over experts, k = 2, into = chosen)
    out vals, idx, gather(scores, idx rename chosen -> experts, over experts)
}

block Ramp() {
    in  x: [seq]
    out cast(positions(seq) + length(seq), to = "float32")
}

model Lifted(d = 4, experts = 5) {
    in  x: [batch, heads: 3, seq: ~6, d]
    y = Shift(d)(x)
    vals, idx, picked = Route(experts)(Linear(y, d -> experts))
    out y, vals, idx, picked, Ramp()(x)
}

model Routing(d = 4, experts = 5) {
    in  x: [batch, seq: ~6, d], rows: [r: 3] int64, u: [r: 3, d], hits: [seq, d: 3] int64, w: [seq, d: 3]
    vals, idx = top_k(x, over d, k = 2)
    out scatter(x, idx, vals * 2.0, over d), scatter_add(x, hits, w, over d),
        index_add(x, rows, u, over seq), MoE(x, over d, experts = experts, k = 2, hidden = 3)
}

model RoutedExperts(d = 4, experts = 5) {
    in  x: [batch, seq: ~6, d]
    w, idx = top_k(sigmoid(Linear(x, d -> e: experts, bias = false)), over e, k = 2)
    out Experts(x, w, idx, over d, experts = experts, hidden = 3)
}

model Loop(d = 4) {
    in  x: [batch, d], bias: [d]
    y = x
    repeat 2 shared as blocks {
        x = Linear(x, d -> d) + bias
        y = y * 0.5 + x
    }
    repeat 3 as more { x = relu(Linear(x, d -> d)) }
    repeat 0 shared as never { x = Linear(x, d -> d) }
    out x, y
}

block Cut(c) {
    in  x: [seq, c]
    p, q = split(x, over c, (1, c - 1))
    u, v = chunk(x, 2, over c)
    out x[seq = 1:], p, q, u, v, roll(x, 2, over seq), shift(x, -1, over seq, fill = 0.5),
        reverse(x, over seq), cumsum(x, over seq), cumprod(tanh(x), over seq),
        stack(x, relu(x), over k), InstanceNorm(x, over seq)
}

model Surgery(c = 4) {
    in  x: [batch, seq, c], img: [batch, c, h, w]
    out Cut(c)(x), GroupNorm(img, 2, over c), upsample(img, 2, over [h, w], mode = bilinear),
        InstanceNorm(img, over [h, w], affine = true, channel = c), upsample(img, 2, over [h, w]),
        flatten(img, [w, c] -> m), LayerNorm(x, over seq, affine = false), einsum(x, relu(x) -> [batch, seq])
}

model State(d = 4, theta = 100.0) {
    in  x: [batch, seq: ~5, d]
    bias = Buffer([d], init = constant(0.5))
    steps = Buffer([i: d / 2], init = ones, persistent = false)
    inv_freq = Buffer(1.0 / theta ** (positions(i) * 2.0 / d), persistent = false)
    y = x * bias + drop_path(x, p = 0.5, over batch) + sum(inv_freq * steps, over i)
    out y + normal_like(x) * 0.0 + uniform_like(x, low = 1.0, high = 1.0) + bernoulli(sigmoid(x) * 0.0)
}

model Recurrent(d = 4) {
    in  x: [batch, seq: ~6, d]
    h = zeros([batch, d])
    c = ones([batch, d]) + full([d], value = 0.5) + arange([batch], start = 1, step = 0.5)
    scan seq reverse as t {
        h = tanh(Linear(x, d -> d) + Linear(h, d -> d)) * c
        emit ys = h + cast(t, to = "float32")
    }
    out h, ys
}

model Cells(d = 4) {
    in  x: [batch, seq: ~6, d]
    h = zeros([batch, hidden: 3])
    c = zeros([batch, hidden: 3])
    scan seq {
        h, c = LSTMCell(x, h, c, d -> hidden)
        g = GRUCell(x, h, d -> hidden)
        emit ys = RNNCell(x, g, d -> hidden, nonlinearity = "relu")
    }
    out h, c, ys
}
"""
ZOO_SIZES = [{}, {"batch": 3, "seq": 7, "h": 10, "w": 5, "l": 9}]


def load_small(key):
    file, model = key
    return nncircuit.load(os.path.join(SPECS, file), model, **SMALL[key])


def load_zoo(model):
    return nncircuit.load("zoo.nn", model, text=ZOO)


def feeds(spec, inputs) -> dict:
    return {
        name: x.to(getattr(torch, t.dtype)).numpy() for (name, t), x in zip(spec.inputs(), inputs)
    }


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def assert_matches_torch(spec, module, model, sizes_list, rtol=1e-4, atol=1e-5):
    sess = session(model)
    for sizes in sizes_list:
        inputs = random_inputs(spec, sizes)
        inputs = [x.to(getattr(torch, t.dtype)) for x, (_, t) in zip(inputs, spec.inputs())]
        with torch.no_grad():
            ref = module(*inputs)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = sess.run(None, feeds(spec, inputs))
        assert len(got) == len(ref)
        for (name, _), r, g in zip(spec.outputs(), ref, got):
            r = r.numpy()
            assert g.shape == r.shape and g.dtype == r.dtype, (name, sizes, g.shape, r.shape)
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, err_msg=f"{name} at {sizes}")


# ---- every model computes what the torch module computes -------------------------------


def test_small_settings_cover_every_model_of_every_spec():
    files = sorted(f for f in os.listdir(SPECS) if f.endswith(".nn"))
    every = {(f, m) for f in files for m in nncircuit.models(os.path.join(SPECS, f))}
    assert every == set(SMALL) and {m for _, m in every} == set(SIZES)


@pytest.mark.parametrize("key", sorted(SMALL), ids=lambda k: k[1])
def test_zoo_model_checks_and_matches_torch(key):
    spec = load_small(key)
    module = spec.module(seed=0).eval()
    model = build(spec, state_dict=module.state_dict())
    onnx.checker.check_model(model, full_check=True)
    assert_matches_torch(spec, module, model, SIZES[key[1]])


@pytest.mark.parametrize(
    "key",
    [k for k in sorted(SMALL) if k[1] in ("GPT2", "ResNet18", "UNet", "ViT")],
    ids=lambda k: k[1],
)
def test_functions_model_checks_and_matches_torch(key):
    spec = load_small(key)
    module = spec.module(seed=0).eval()
    model = build(spec, state_dict=module.state_dict(), functions=True)
    onnx.checker.check_model(model, full_check=True)
    assert model.functions and {n.domain for n in model.graph.node} >= {"nncircuit"}
    assert_matches_torch(spec, module, model, SIZES[key[1]][:1])


@pytest.mark.parametrize("model_name", nncircuit.models("zoo.nn", text=ZOO))
@pytest.mark.parametrize("functions", [False, True], ids=["inline", "functions"])
def test_every_op_matches_torch(model_name, functions):
    spec = load_zoo(model_name)
    module = spec.module(seed=0).eval()
    for opset in (17, 20):  # 20 has a Gelu op; below it, the Erf / Tanh formulas
        model = build(spec, state_dict=module.state_dict(), functions=functions, opset=opset)
        onnx.checker.check_model(model, full_check=True)
        assert_matches_torch(spec, module, model, ZOO_SIZES)


# The optimizer's fused ops (lowered in onnx_fused.py) through the same harness.
OPTIMIZED = [
    ("GPT2", {"opt": 2}),
    ("GPT2", {"passes": "canonicalize,einsum-to-matmul"}),
    ("ViT", {"opt": 2}),
    ("S4D", {"opt": 2}),  # parallel-scan and fuse-scan-readout: linear_scan_sum
    ("S4D", {"passes": "parallel-scan"}),  # linear_scan
]


def load_optimized(model, how):
    from nncircuit.passes import optimize

    key = next(k for k in SMALL if k[1] == model)
    spec = load_small(key)
    optimize(spec.graph, **how)
    return spec


@pytest.mark.parametrize(
    "model_name, how",
    OPTIMIZED,
    ids=lambda x: x if isinstance(x, str) else "-".join(map(str, x.values())),
)
@pytest.mark.parametrize("functions", [False, True], ids=["inline", "functions"])
def test_optimized_models_match_torch(model_name, how, functions):
    spec = load_optimized(model_name, how)
    module = spec.module(seed=0).eval()
    model = build(spec, state_dict=module.state_dict(), functions=functions)
    onnx.checker.check_model(model, full_check=True)
    assert_matches_torch(spec, module, model, SIZES[model_name])


def test_the_tests_use_every_registry_op():
    specs = [load_zoo(m) for m in nncircuit.models("zoo.nn", text=ZOO)]
    specs += [load_optimized(m, how) for m, how in OPTIMIZED]
    used = {n.op for spec in specs for _, g in spec.graph.walk() for n in g.nodes()}
    assert set(nncircuit.ops.registry.all_ops()) <= used


@pytest.mark.parametrize("opset", [13, 15, 18, MAX_OPSET])
def test_other_opsets(opset):
    spec = load_small(("conv.nn", "ConvNet"))
    module = spec.module(seed=0).eval()
    model = build(spec, state_dict=module.state_dict(), opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    assert_matches_torch(spec, module, model, SIZES["ConvNet"])


def test_pad_to_pads_and_crops_like_torch():
    spec = load_zoo("Pad")
    module = spec.module(seed=0).eval()
    sess = session(build(spec))
    for h, w, h2, w2 in [(5, 7, 8, 4), (9, 3, 4, 10), (4, 4, 7, 1)]:
        inputs = [
            torch.randn(2, 2, h, w),
            torch.randn(2, 2, h2, w2),
            torch.randn(2, 5),
            torch.randn(2, 8),
        ]
        for r, g in zip(module(*inputs), sess.run(None, feeds(spec, inputs))):
            assert np.array_equal(r.numpy(), g)


# ---- the lowering table ------------------------------------------------------------------


def test_every_registry_op_has_an_onnx_lowering():
    ops = set(nncircuit.ops.registry.all_ops())
    assert ops - set(ONNX_LOWERINGS) == set()
    assert set(ONNX_LOWERINGS) - ops == set()  # no entry for an op that is gone


def test_docs_list_every_lowering():
    with open(os.path.join(ROOT, "docs", "onnx.md"), encoding="utf-8") as f:
        doc = f.read()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", doc, re.M))
    assert set(rows) == set(ONNX_LOWERINGS)


# ---- names, dynamic axes, weights --------------------------------------------------------


def test_dynamic_axes_keep_their_spec_names():
    model = build(load_small(("transformer.nn", "GPT2")))

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    assert [(v.name, dims(v)) for v in model.graph.input] == [("tokens", ["batch", "seq"])]
    assert [(v.name, dims(v)) for v in model.graph.output] == [("logits", ["batch", "seq", 97])]
    unet = build(load_small(("unet.nn", "UNet")))
    assert dims(unet.graph.input[0]) == ["batch", 1, "h", "w"]
    assert dims(unet.graph.output[0]) == ["batch", 2, "h", "w"]


def test_node_names_carry_the_scope_path():
    model = build(load_small(("transformer.nn", "GPT2")))
    names = {n.name for n in model.graph.node}
    assert {
        "wte",
        "h.0.ln1",
        "h.1.attn.q",
        "h.1.attn.causal_attention.softmax",
        "h.1.mlp.linear_1",
    } <= names
    assert all(n.name for n in model.graph.node) and len(names) == len(model.graph.node)
    fn = build(load_small(("transformer.nn", "GPT2")), functions=True)
    calls = {n.name: n.op_type for n in fn.graph.node if n.domain == "nncircuit"}
    assert calls == {"h.0": "GPT2H", "h.1": "GPT2H"}
    assert {f.name for f in fn.functions} == {"GPT2H", "SelfAttention", "CausalAttention", "MLP"}


@pytest.mark.parametrize(
    "key",
    [("transformer.nn", "GPT2"), ("resnet.nn", "ResNet18"), ("vit.nn", "ViT")],
    ids=lambda k: k[1],
)
def test_initializers_are_the_state_dict(key):
    spec = load_small(key)
    sd = spec.module(seed=1).state_dict()
    model = build(spec, state_dict=sd)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert set(inits) == {k for k in sd if not k.endswith("num_batches_tracked")}
    for k, v in inits.items():
        assert np.array_equal(v, sd[k].numpy()), k


def test_export_onnx_with_a_state_dict(tmp_path):
    path = os.path.join(SPECS, "transformer.nn")
    hp = SMALL[("transformer.nn", "GPT2")]
    module = nncircuit.compile(path, seed=5, **hp).eval()
    out = tmp_path / "gpt2.onnx"
    report = nncircuit.export_onnx(path, str(out), state_dict=module.state_dict(), **hp)
    assert "weights from the state_dict" in report
    spec = nncircuit.load(path, **hp)
    assert_matches_torch(spec, module, onnx.load(str(out)), SIZES["GPT2"][:1])


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_weights_files(tmp_path, fmt):
    spec = load_small(("resnet.nn", "ResNet18"))
    module = spec.module(seed=2).eval()
    with torch.no_grad():  # non-trivial batch statistics
        for name, buf in module.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buf.normal_()
    w = tmp_path / f"w.{fmt}"
    if fmt == "pt":
        torch.save(module.state_dict(), w)
    else:
        from safetensors.torch import save_file

        save_file(module.state_dict(), str(w))
    out = tmp_path / "r.onnx"
    report = export_spec(spec, str(out), weights=str(w))
    assert f"weights from w.{fmt}" in report
    assert_matches_torch(spec, module, onnx.load(str(out)), SIZES["ResNet18"][:1])


def _no_files_left(d) -> None:
    """Only the weights files the test wrote: no model, no temporary file."""
    assert all(name.startswith("w.") for name in os.listdir(d)), os.listdir(d)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda sd: sd.pop("h.1.attn.q.bias"), r"missing 'h\.1\.attn\.q\.bias'"),
        (
            lambda sd: sd.update({"h.0.mlp.linear.weight": torch.zeros(3, 3)}),
            r"'h\.0\.mlp\.linear\.weight' has shape \[3, 3\] but the spec needs \[256, 64\]",
        ),
        (
            lambda sd: sd.update({"h.0.extra.weight": torch.zeros(2)}),
            r"unexpected 'h\.0\.extra\.weight'",
        ),
    ],
)
def test_bad_weights_are_a_lowering_error_and_leave_no_file(tmp_path, change, message):
    spec = load_small(("transformer.nn", "GPT2"))
    sd = spec.module(seed=0).state_dict()
    change(sd)
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(LoweringError, match=message):
        export_spec(spec, str(tmp_path / "m.onnx"), weights=str(tmp_path / "w.pt"))
    _no_files_left(tmp_path)


def test_weights_are_never_unpickled(tmp_path):
    spec = load_small(("mlp.nn", "MLP"))
    torch.save({"linear.weight": torch.zeros(2), "code": _Evil()}, tmp_path / "w.pt")
    with pytest.raises(LoweringError, match="cannot read weights"):
        export_spec(spec, str(tmp_path / "m.onnx"), weights=str(tmp_path / "w.pt"))
    _no_files_left(tmp_path)
    (tmp_path / "w.pkl").write_bytes((tmp_path / "w.pt").read_bytes())
    with pytest.raises(LoweringError, match="expected a .safetensors or .pt file, found '.pkl'"):
        export_spec(spec, str(tmp_path / "m.onnx"), weights=str(tmp_path / "w.pkl"))


class _Evil:
    pass


def test_a_model_over_two_gigabytes_is_refused_before_weights_are_made(tmp_path):
    spec = nncircuit.load(
        "big.nn",
        text="model Big(d = 24000) { in x: [batch, d] out Linear(x, d -> d) }",
        max_params=None,
    )
    # a file export puts them in external data (tests/backends/onnx/test_onnx_scale.py); one protobuf,
    # in memory or in one file, cannot hold them
    with pytest.raises(
        LoweringError, match=r"weights of Big take 2\.15 GiB; one ONNX file holds at most 2 GiB"
    ):
        export_spec(spec, str(tmp_path / "m.onnx"), external_data=False)
    with pytest.raises(
        LoweringError, match=r"weights of Big take 2\.15 GiB; one ONNX protobuf holds at most"
    ):
        export_spec(spec, str(tmp_path / "m.onnx"), fp16=True)
    _no_files_left(tmp_path)


def test_opset_errors_name_the_op_and_leave_no_file(tmp_path):
    spec = load_small(("transformer.nn", "GPT2"))
    with pytest.raises(LoweringError, match="LayerNorm needs ONNX opset 17 or newer") as e:
        export_spec(spec, str(tmp_path / "m.onnx"), opset=13)
    assert e.value.span is not None and e.value.span.file.endswith("transformer.nn")
    with pytest.raises(LoweringError, match="opset 12 is not supported"):
        export_spec(spec, str(tmp_path / "m.onnx"), opset=12)
    _no_files_left(tmp_path)


# ---- determinism, precision, the command line, no torch ----------------------------------


def test_reexport_is_byte_identical(tmp_path):
    spec = load_small(("transformer.nn", "GPT2"))
    for name, kw in [
        ("a", {}),
        ("b", {}),
        ("c", {"seed": 1}),
        ("fa", {"functions": True}),
        ("fb", {"functions": True}),
        ("qa", {"quantize": "int8"}),
        ("qb", {"quantize": "int8"}),
    ]:
        export_spec(spec, str(tmp_path / f"{name}.onnx"), **kw)
    data = {p.stem: p.read_bytes() for p in tmp_path.iterdir()}
    assert data["a"] == data["b"] and data["fa"] == data["fb"] and data["qa"] == data["qb"]
    assert data["a"] != data["c"]


def test_fp16_and_int8_report_their_accuracy(tmp_path):
    spec = load_small(("transformer.nn", "GPT2"))
    reports = {}
    for name, kw in [("f32", {}), ("f16", {"fp16": True}), ("i8", {"quantize": "int8"})]:
        reports[name] = export_spec(spec, str(tmp_path / f"{name}.onnx"), **kw)
    pattern = r"max abs error ([0-9.e+-]+), relative ([0-9.e+-]+) vs float32"
    errors = {
        k: tuple(map(float, re.search(pattern, r).groups()))
        for k, r in reports.items()
        if k != "f32"
    }
    assert 0 < errors["f16"][1] < 0.01 and 0 < errors["i8"][1] < 0.05
    half = onnx.load(str(tmp_path / "f16.onnx"))
    assert {t.data_type for t in half.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    sizes = {k: (tmp_path / f"{k}.onnx").stat().st_size for k in reports}
    assert sizes["f16"] < 0.6 * sizes["f32"] and sizes["i8"] < 0.45 * sizes["f32"]
    inputs = random_inputs(spec, {"batch": 2, "seq": 9})
    ref = session(onnx.load(str(tmp_path / "f32.onnx"))).run(None, feeds(spec, inputs))[0]
    for k in ("f16", "i8"):
        got = session(onnx.load(str(tmp_path / f"{k}.onnx"))).run(None, feeds(spec, inputs))[0]
        assert got.dtype == np.float32
        assert np.max(np.abs(got - ref)) <= 10 * errors[k][0] + 1e-3


def test_reduced_precision_convolutions(tmp_path):
    spec = load_small(("unet.nn", "UNet"))
    ref = session(build(spec))
    (x,) = random_inputs(spec, {"batch": 1, "h": 37, "w": 45})
    a = ref.run(None, {"image": x.numpy()})[0]
    report = export_spec(spec, str(tmp_path / "q.onnx"), quantize="int8")
    assert "int8: dynamic quantization of 19 Conv (" in report
    for model in (build(spec, fp16=True), onnx.load(str(tmp_path / "q.onnx"))):
        b = session(model).run(None, {"image": x.numpy()})[0]
        assert b.shape == a.shape and np.max(np.abs(a - b)) < 5e-2 * np.max(np.abs(a))


def test_incompatible_options(tmp_path):
    spec = load_small(("mlp.nn", "MLP"))
    with pytest.raises(LoweringError, match="choose one of --fp16 and --quantize"):
        export_spec(spec, str(tmp_path / "m.onnx"), fp16=True, quantize="int8")
    with pytest.raises(LoweringError, match="drop --functions"):
        export_spec(spec, str(tmp_path / "m.onnx"), functions=True, quantize="int8")
    _no_files_left(tmp_path)


def test_cli_compiles_to_onnx(tmp_path, capsys):
    from nncircuit.cli import main

    out = tmp_path / "vit.onnx"
    args = ["compile", os.path.join(SPECS, "vit.nn"), "--to", "onnx", "-o", str(out), "--seed", "3"]
    for k, v in SMALL[("vit.nn", "ViT")].items():
        args += ["-p", f"{k}={v}"]
    assert main(args) == 0
    assert re.match(
        r"wrote .*vit\.onnx: ViT, ONNX opset 17, [0-9,]+ parameters \([0-9,]+ values in initializers\), seeded",
        capsys.readouterr().out,
    )
    onnx.checker.check_model(str(out), full_check=True)
    assert main(args + ["--opset", "99"]) == 1
    assert "error: ONNX opset 99 is not supported" in capsys.readouterr().err


def test_export_works_without_torch(tmp_path):
    code = f"""
import sys
sys.modules["torch"] = None
import numpy as np, onnxruntime as ort, nncircuit
from nncircuit.cli import main
spec = {os.path.join(SPECS, "transformer.nn")!r}
print(nncircuit.export_onnx(spec, "gpt2.onnx", fp16=True, d=64, heads=4, layers=2, vocab=97, ctx=32))
assert main(["compile", {os.path.join(SPECS, "unet.nn")!r}, "--to", "onnx", "-o", "unet.onnx",
             "-p", "width=4", "--quantize", "int8"]) == 0
s = ort.InferenceSession("gpt2.onnx", providers=["CPUExecutionProvider"])
print(s.run(None, {{"tokens": np.zeros((2, 5), dtype=np.int64)}})[0].shape)
s = ort.InferenceSession("unet.onnx", providers=["CPUExecutionProvider"])
print(s.run(None, {{"image": np.zeros((1, 1, 37, 45), dtype=np.float32)}})[0].shape)
print(sorted(m for m in sys.modules if m.startswith("torch")))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-3:] == ["(2, 5, 97)", "(1, 2, 37, 45)", "['torch']"]

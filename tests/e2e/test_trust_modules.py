"""Trust in generated modules: initialisation the spec controls (and both backends honour),
backends that agree on ties and bad ids, and forward passes that check their inputs."""

import math
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import nncircuit
from conftest import SPECS
from nncircuit.backends.onnx.export import build
from nncircuit.errors import NNError


def load(text: str, model: str | None = None, **params):
    return nncircuit.load("trust.nn", model, text=text, **params)


def session(spec, seed: int = 0) -> ort.InferenceSession:
    return ort.InferenceSession(build(spec, seed=seed).SerializeToString(), providers=["CPUExecutionProvider"])


def onnx_weights(spec, seed: int = 0) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in build(spec, seed=seed).graph.initializer}


# ---- 8. initialisation ----------------------------------------------------------------------


def gpt2_small():
    return nncircuit.load(
        os.path.join(SPECS, "transformer.nn"), "GPT2", vocab=1000, ctx=64, d=128, heads=4, layers=2
    )


def _initial_loss(module, vocab: int) -> float:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (8, 64), generator=g)
    with torch.no_grad():
        logits = module(tokens)
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), tokens[:, 1:].reshape(-1)).item()


def test_gpt2_starts_at_chance_level():
    """Issue 8: with N(0, 1) embeddings tied to the head the loss started near 85."""
    loss = _initial_loss(gpt2_small().module(seed=0), 1000)
    assert abs(loss - math.log(1000)) < 0.5, loss


def test_gpt2_starts_where_hugging_face_gpt2_starts():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=1000, n_positions=64, n_embd=128, n_layer=2, n_head=4)
    torch.manual_seed(0)
    ref = transformers.GPT2LMHeadModel(cfg).eval()
    ref_loss = _initial_loss(lambda t: ref(t).logits, 1000)
    loss = _initial_loss(gpt2_small().module(seed=0), 1000)
    assert abs(loss - ref_loss) < 0.1, (loss, ref_loss)


def test_gpt2_residual_projections_use_the_scaled_std():
    spec = gpt2_small()
    m = spec.module(seed=0)
    sd = m.state_dict()
    proj = 0.02 / math.sqrt(2 * 2)
    assert abs(sd["h.0.attn.proj.weight"].std().item() - proj) < 0.1 * proj
    assert abs(sd["h.1.mlp.linear_1.weight"].std().item() - proj) < 0.1 * proj
    assert abs(sd["h.0.attn.q.weight"].std().item() - 0.02) < 0.002
    assert abs(sd["wte.weight"].std().item() - 0.02) < 0.002
    assert sd["h.0.attn.q.bias"].abs().max().item() == 0
    w = onnx_weights(spec)
    assert abs(w["h.0.attn.proj.weight"].std() - proj) < 0.1 * proj
    assert abs(w["wte.weight"].std() - 0.02) < 0.002
    assert np.abs(w["h.0.mlp.linear.bias"]).max() == 0


INITS = """
model Inits(d = 256, e = 128) {
    in  x: [batch, d]
    a = Linear(x, d -> e, init = normal(0.05), bias_init = constant(0.5))
    b = Linear(x, d -> e, init = uniform(-0.3, 0.1), bias_init = uniform(0.2))
    c = Linear(x, d -> e, init = xavier_uniform(2), bias_init = ones)
    f = Linear(x, d -> e, init = xavier_normal)
    g = Linear(x, d -> e, init = kaiming_normal(mode = fan_out))
    h = Linear(x, d -> e, init = kaiming_uniform(a = 1))
    k = Linear(x, d -> e)
    p = Param([d, e], init = normal(0.1, 1.5))
    q = Param([e, d], std = 0.3)
    r = Param([e, d], init = xavier_normal)
    n = LayerNorm(x, over d, init = normal(0.2), bias_init = zeros)
    out a + b + c + f + g + h + k + einsum(x, p -> [batch, e]) + einsum(x, q -> [batch, e])
        + einsum(x, r -> [batch, e]), n
}
"""

_U = 1 / math.sqrt(3)  # the std of uniform(-1, 1)
# parameter -> (mean, std) its initialisation has (fan_in 256, fan_out 128)
EXPECTED = {
    "a.weight": (0.0, 0.05),
    "a.bias": (0.5, 0.0),
    "b.weight": (-0.1, 0.2 * _U),
    "b.bias": (0.0, 0.2 * _U),
    "c.weight": (0.0, 2 * math.sqrt(2 / 384)),
    "c.bias": (1.0, 0.0),
    "f.weight": (0.0, math.sqrt(2 / 384)),
    "g.weight": (0.0, math.sqrt(2 / 128)),
    "h.weight": (0.0, math.sqrt(1 / 256)),
    "k.weight": (0.0, _U / math.sqrt(256)),  # PyTorch's default: uniform(±1/sqrt(fan_in))
    "k.bias": (0.0, _U / math.sqrt(256)),
    "p": (1.5, 0.1),
    "q": (0.0, 0.3),
    "r": (0.0, math.sqrt(2 / (128 + 256))),
    "n.weight": (0.0, 0.2),
    "n.bias": (0.0, 0.0),
}


def _close(name: str, arr: np.ndarray, where: str):
    mean, std = EXPECTED[name]
    n = arr.size
    tol_mean = 4 * max(std, 1e-9) / math.sqrt(n) + 1e-6
    assert abs(arr.mean() - mean) < tol_mean, (where, name, arr.mean(), mean)
    # five standard errors of a sample std (the draws are seeded: the test is deterministic)
    assert abs(arr.std() - std) < 5 * std / math.sqrt(2 * n) + 1e-6, (where, name, arr.std(), std)


@pytest.mark.parametrize("opt", [0, 2])
def test_both_backends_draw_from_the_spec_distributions(opt):
    """The torch module (seeded by torch.manual_seed) and the ONNX export (numpy, seeded) draw
    different numbers from the same distributions."""
    spec = load(INITS, opt=opt)
    sd = {k: v.numpy() for k, v in spec.module(seed=0).state_dict().items()}
    ox = onnx_weights(spec)
    for name in EXPECTED:
        _close(name, sd[name], "torch")
        _close(name, ox[name], "onnx")
    assert not np.allclose(sd["a.weight"], ox["a.weight"])


def test_fused_linears_keep_their_own_init():
    spec = nncircuit.load(os.path.join(SPECS, "transformer.nn"), "GPT2", opt=2, vocab=97, ctx=32, d=64, heads=4, layers=2)
    src = spec.torch_source()
    assert "nn.init.normal_(self.q.weight, std=0.02)" in src
    assert "nn.init.normal_(self.proj.weight, std=proj_std)" in src


def test_generated_init_is_parametric():
    src = load(INITS).torch_source()
    assert "nn.init.kaiming_normal_(self.g.weight, mode=\"fan_out\")" in src
    gpt = gpt2_small().torch_source()
    assert "proj_std=0.02 / math.sqrt(2 * layers)" in gpt  # from the hyperparameter, not 0.01


def test_defaults_stay_pytorchs():
    """Without init, ops keep what torch's modules do, in both backends."""
    spec = load("""
model D(d = 64) {
    in  t: [batch] int64, x: [batch, d]
    out Embedding(t, n: 50 -> d), Linear(x, d -> d), LayerNorm(x, over d)
}
""")
    src = spec.torch_source()
    assert "nn.init" not in src
    ox = onnx_weights(spec)
    assert abs(ox["embedding.weight"].std() - 1.0) < 0.05
    assert np.abs(ox["linear.weight"]).max() <= 1 / 8 and np.abs(ox["linear.weight"]).max() > 0.12
    assert (ox["layer_norm.weight"] == 1).all() and (ox["layer_norm.bias"] == 0).all()


def test_init_round_trips_through_the_ir_text():
    from nncircuit.ir.parser import parse_ir
    from nncircuit.ir.printer import print_ir

    spec = load(INITS)
    text = print_ir(spec.graph)
    assert "init = kaiming_normal(mode = fan_out)" in text
    assert "init = normal(0.1, 1.5)" in text
    assert print_ir(parse_ir(text)) == text


@pytest.mark.parametrize(
    "call, message",
    [
        ("Linear(x, d -> e, init = normall(0.1))", "unknown initialisation 'normall' (did you mean 'normal'?)"),
        ("Linear(x, d -> e, init = gaussian)", "unknown initialisation 'gaussian'"),
        ("Linear(x, d -> e, bias_init = kaiming_normal)", "needs a parameter of at least two axes"),
        ("Linear(x, d -> e, bias = false, bias_init = zeros)", "bias_init given but bias = false"),
        ("Linear(x, d -> e, init = normal(-1))", "must not be negative"),
        ("Linear(x, d -> e, init = uniform)", "uniform needs its argument 'low'"),
        ("Linear(x, d -> e, init = normal(0.1, 0, 3))", "normal takes at most 2 argument(s)"),
        ("Linear(x, d -> e, init = kaiming_normal(mode = fan_up))", "must be fan_in or fan_out"),
        ("Linear(x, d -> e, init = xavier_normal(gain = \"big\"))", "must be a number"),
        ("Param([d, e], init = zeros, std = 0.1)", "std goes with init = normal"),
        ("Linear(x, d -> e, init = normal(x))", "the arguments of normal are numbers, found"),
        ("Linear(x, d -> e, init = d)", "init names an initialisation"),
    ],
)
def test_bad_init_is_an_error_at_the_call(call, message):
    text = f"model M(d = 4, e = 3) {{\n    in x: [d]\n    out {call}\n}}\n"
    with pytest.raises(NNError) as err:
        load(text)
    shown = err.value.render()
    assert message in shown, shown
    assert shown.startswith("trust.nn:3:"), shown


# ---- 7. backends that agree -----------------------------------------------------------------

TIES = """
model Router(experts = 8) {
    in  scores: [batch, experts]
    vals, idx = top_k(scores, over experts, k = 2, into = chosen)
    out vals, idx
}
"""


def test_top_k_breaks_ties_by_the_lower_index_in_both_backends():
    """Issue 7: torch.topk picked experts [6, 5] of eight tied scores, onnxruntime [0, 1]."""
    spec = load(TIES)
    scores = torch.tensor([[0.5] * 8, [1, 3, 3, 0, 3, 2, 2, 3.0], [0.0] * 7 + [1.0]])
    m = spec.module(seed=0)
    tv, ti = m(scores)
    ov, oi = session(spec).run(None, {"scores": scores.numpy()})
    assert ti.tolist() == [[0, 1], [1, 2], [7, 0]]
    assert oi.tolist() == ti.tolist()
    np.testing.assert_allclose(ov, tv.numpy())


EMB = """
model Lookup(n = 5, d = 3) {
    in  ids: [batch] int64
    out Embedding(ids, n -> d)
}
"""


@pytest.mark.parametrize("bad", [-1, -5, 5])
def test_embedding_refuses_ids_outside_the_table_in_both_backends(bad):
    """Issue 7: id -1 raised in torch and returned the last row in onnxruntime."""
    spec = load(EMB)
    ids = np.array([0, bad], dtype=np.int64)
    with pytest.raises(IndexError):
        spec.module(seed=0)(torch.from_numpy(ids))
    with pytest.raises(Exception, match="out of data bounds|out of bounds|invalid"):
        session(spec).run(None, {"ids": ids})


def test_embedding_in_range_ids_agree():
    spec = load(EMB)
    m = spec.module(seed=0)
    ids = np.array([0, 4, 2], dtype=np.int64)
    sess = ort.InferenceSession(
        build(spec, state_dict=m.state_dict()).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (got,) = sess.run(None, {"ids": ids})
    np.testing.assert_allclose(got, m(torch.from_numpy(ids)).detach().numpy())


# ---- 6. generated modules check their inputs --------------------------------------------------

ATT = """
model Att(d = 8, heads = 2, dh = d / heads) {
    in  q: [batch, seq, heads, dh], k: [batch, key, heads, dh], v: [batch, key, heads, dh]
    w = softmax(einsum(q, k -> [batch, heads, seq, key]), over key)
    out einsum(w, v -> [batch, seq, heads, dh], over key)
}

model Padded(d = 4) {
    in  x: [batch, seq: ~16 % 8, d], ids: [batch] int64, mask: [batch, seq] bool
    out Linear(x, d -> d) + Embedding(ids, n: 3 -> d) + cast(mask, to = "float32")
}
"""


def _att_inputs(**shapes):
    s = {"q": (2, 5, 2, 4), "k": (2, 7, 2, 4), "v": (2, 7, 2, 4)} | shapes
    return [torch.randn(*s[n]) for n in ("q", "k", "v")]


def test_valid_inputs_still_run():
    m = load(ATT, "Att").module(seed=0)
    assert tuple(m(*_att_inputs()).shape) == (2, 5, 2, 4)


@pytest.mark.parametrize(
    "shapes, message",
    [
        # a static axis of the wrong size: dh 8 where the spec says 4 (= d / heads)
        ({"q": (2, 5, 2, 8)}, "Att: input 'q' axis 'dh' must be 4; got shape [2, 5, 2, 8]"),
        # a shared run-time axis: `key` 7 in k but 1 in v would broadcast
        ({"v": (2, 1, 2, 4)}, "Att: input 'v' axis 'key' must equal axis 'key' of input 'k' (7); got shape [2, 1, 2, 4]"),
        ({"k": (3, 7, 2, 4)}, "Att: input 'k' axis 'batch' must equal axis 'batch' of input 'q' (2)"),
        # an extra leading axis, which the einsums would carry through
        ({"q": (3, 2, 5, 2, 4)}, "Att: input 'q' must have 4 axes [batch, seq, heads, dh]; got shape [3, 2, 5, 2, 4]"),
    ],
)
def test_forward_refuses_inputs_the_spec_forbids(shapes, message):
    """Issue 6: these ran and returned a result."""
    m = load(ATT, "Att").module(seed=0)
    with pytest.raises(ValueError) as err:
        m(*_att_inputs(**shapes))
    assert message in str(err.value)


def test_forward_checks_dtypes_multiples_and_hyperparameters():
    spec = load(ATT, "Padded")
    m = spec.module(seed=0)
    x, ids, mask = torch.randn(2, 8, 4), torch.tensor([0, 2]), torch.ones(2, 8, dtype=torch.bool)
    assert tuple(m(x, ids, mask).shape) == (2, 8, 4)
    assert tuple(m(x.half().float(), ids.int(), mask).shape) == (2, 8, 4)  # int32 ids are ids too
    with pytest.raises(TypeError, match="Padded: input 'ids' \\[batch\\] must be an integer tensor"):
        m(x, ids.float(), mask)
    with pytest.raises(TypeError, match="input 'mask' \\[batch, seq\\] must be a bool tensor"):
        m(x, ids, mask.float())
    with pytest.raises(TypeError, match="input 'x' \\[batch, seq, d\\] must be a floating-point tensor"):
        m(x.long(), ids, mask)
    with pytest.raises(ValueError, match="input 'x' axis 'seq' must be a multiple of 8"):
        m(torch.randn(2, 6, 4), ids, mask[:, :6])
    with pytest.raises(ValueError, match="input 'mask' axis 'seq' must equal axis 'seq' of input 'x'"):
        m(x, ids, torch.ones(2, 16, dtype=torch.bool))
    wide = spec.torch_class()(d=6)  # the check follows the hyperparameter, not the spec's 4
    assert tuple(wide(torch.randn(2, 8, 6), ids, mask).shape) == (2, 8, 6)
    with pytest.raises(ValueError, match="input 'x' axis 'd' must be 6"):
        wide(x, ids, mask)


def test_gpt2_names_its_input_and_axis():
    m = nncircuit.load(os.path.join(SPECS, "transformer.nn"), "GPT2", vocab=97, ctx=32, d=64, heads=4, layers=2).module(seed=0)
    with pytest.raises(ValueError, match=r"GPT2: input 'tokens' must have 2 axes \[batch, seq\]; got shape \[2, 7, 3\]"):
        m(torch.zeros(2, 7, 3, dtype=torch.long))


def _tiny_gpt2():
    spec = nncircuit.load(os.path.join(SPECS, "transformer.nn"), "GPT2", vocab=50, ctx=32, d=16, heads=2, layers=1)
    return spec.module(seed=0).eval()


def test_checks_keep_torch_export_with_dynamic_batch_and_seq():
    from torch.export import Dim, export

    m = _tiny_gpt2()
    tokens = torch.randint(0, 50, (2, 8))
    ep = export(m, (tokens,), dynamic_shapes={"tokens": {0: Dim("batch"), 1: Dim("seq", max=32)}})
    other = torch.randint(0, 50, (3, 11))
    torch.testing.assert_close(ep.module()(other), m(other))


def test_checks_keep_torch_compile_fullgraph():
    """fullgraph=True fails on any graph break; the checks become guards, not graph ops
    (the eager backend keeps the test fast: capture is what the checks could break)."""
    torch._dynamo.reset()
    m = _tiny_gpt2()
    c = torch.compile(m, fullgraph=True, dynamic=True, backend="eager")
    for shape in [(2, 8), (3, 11)]:
        tokens = torch.randint(0, 50, shape)
        torch.testing.assert_close(c(tokens), m(tokens))
    with pytest.raises(Exception, match="must have 2 axes"):
        c(torch.randint(0, 50, (3, 11, 2)))
    torch._dynamo.reset()

"""specs/t5.nn against transformers' T5ForConditionalGeneration (eval, fp32): the reference's
state_dict loads strictly (the checkpoint section), the logits agree at two (seq, tgt) size
pairs, at -O0 and -O2, for T5's ReLU and T5 v1.1's gated-GELU feed-forward; onnxruntime
agrees with torch; the parameter count at t5-small's config; the decoder is causal."""

import os

import pytest
import torch

import nncircuit
from conftest import SPECS

transformers = pytest.importorskip("transformers")

PATH = os.path.join(SPECS, "t5.nn")
TOL = 1e-5
# max_distance 20 puts the long pair's distances past it, so every bucket rule is used
SMALL = dict(vocab_size=97, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3, num_heads=4,
             relative_attention_num_buckets=32, relative_attention_max_distance=20)
V11 = dict(SMALL, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
SIZES = ((7, 5), (30, 23))


def reference(hp):
    torch.manual_seed(0)
    return transformers.T5ForConditionalGeneration(transformers.T5Config(**hp, dropout_rate=0.0)).eval()


def ids(hp, seq, tgt):
    g = torch.Generator().manual_seed(seq * 100 + tgt)
    return (torch.randint(0, hp["vocab_size"], (2, seq), generator=g),
            torch.randint(0, hp["vocab_size"], (2, tgt), generator=g))


def loaded(hp, ref, opt):
    module = nncircuit.load(PATH, "T5", opt=opt, **hp).module(seed=3).eval()
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return module


@pytest.mark.parametrize("opt", [0, 2])
def test_loads_t5_strictly_and_computes_its_logits(opt):
    ref = reference(SMALL)
    module = loaded(SMALL, ref, opt)
    for seq, tgt in SIZES:
        x, y = ids(SMALL, seq, tgt)
        with torch.no_grad():
            want = ref(input_ids=x, decoder_input_ids=y).logits
            got = module(x, y)
        assert got.shape == (2, tgt, SMALL["vocab_size"])
        assert (got - want).abs().max().item() <= TOL


def test_v1_1_gated_gelu_without_output_scaling():
    ref = reference(V11)
    assert ref.config.is_gated_act and not ref.config.scale_decoder_outputs
    module = loaded(V11, ref, 0)
    assert {k for k in module.state_dict() if ".wi_" in k}  # the gated branch was taken
    for seq, tgt in SIZES:
        x, y = ids(V11, seq, tgt)
        with torch.no_grad():
            want = ref(input_ids=x, decoder_input_ids=y).logits
            got = module(x, y)
        # unscaled logits reach ~30: float32 rounding of gelu_tanh, relative to their size
        assert (got - want).abs().max().item() <= TOL * max(1.0, want.abs().max().item())


def test_own_state_dict_round_trips():
    ref = reference(SMALL)
    module = loaded(SMALL, ref, 0)
    again = nncircuit.load(PATH, "T5", **SMALL).module(seed=9).eval()
    again.load_state_dict(module.state_dict(), strict=True)
    x, y = ids(SMALL, 6, 4)
    with torch.no_grad():
        assert torch.equal(again(x, y), module(x, y))


def meta_count(**config):
    with torch.device("meta"):
        ref = transformers.T5ForConditionalGeneration(transformers.T5Config(**config))
    return sum(p.numel() for p in ref.parameters())


def test_t5_small_parameter_count():
    assert nncircuit.load(PATH, "T5").param_count() == 60_506_624 == meta_count()


def test_v1_1_small_parameter_count():
    # google/t5-v1_1-small's config; transformers 5 ties its head to the embedding too
    v11 = dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6,
               feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    assert nncircuit.load(PATH, "T5", **v11).param_count() == meta_count(**v11)


def test_decoder_is_causal_and_encoder_is_not():
    module = nncircuit.load(PATH, "T5", **SMALL).module(seed=0).eval()
    x, y = ids(SMALL, 8, 6)
    y2, x2 = y.clone(), x.clone()
    y2[:, 4] = (y2[:, 4] + 1) % SMALL["vocab_size"]
    x2[:, 7] = (x2[:, 7] + 1) % SMALL["vocab_size"]
    with torch.no_grad():
        a, b, c = module(x, y), module(x, y2), module(x2, y)
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:], b[:, 4:])
    assert not torch.allclose(a[:, 0], c[:, 0])  # the first target sees the last source token


def test_onnxruntime_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ref = reference(SMALL)
    module = loaded(SMALL, ref, 0)
    out = tmp_path / "t5.onnx"
    nncircuit.export_onnx(PATH, str(out), "T5", state_dict=module.state_dict(), **SMALL)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for seq, tgt in ((9, 4), (41, 33)):
        x, y = ids(SMALL, seq, tgt)
        with torch.no_grad():
            want = module(x, y).numpy()
        (got,) = sess.run(None, {"input_ids": x.numpy(), "decoder_input_ids": y.numpy()})
        assert abs(got - want).max() <= TOL

"""specs/llama_decode.nn : LlamaDecode against transformers' LlamaForCausalLM run with a
DynamicCache: a prefill at cache length 0, then decode steps that feed the returned cache
back; logits and every layer's keys and values equal the reference's within 1e-5, for the
Llama 3 configuration (tied head, Llama 3 RoPE) and the TinyLlama one (untied, plain RoPE).
One ONNX file (run-time past and seq) equals torch at cache lengths 0 and 5."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, SPECS

sys.path.insert(0, ROOT)
from bench import zoo  # noqa: E402

import nncircuit  # noqa: E402

transformers = pytest.importorskip("transformers")

TOL = 1e-5
SPEC = os.path.join(SPECS, "llama_decode.nn")
CASES = ["Llama", "TinyLlama"]  # the zoo's two Llama configurations (bench/zoo.py)


def decode_module(case, opt=0):
    return nncircuit.load(SPEC, "LlamaDecode", opt=opt, **case.small).module(seed=3).eval()


def empty_cache(case, batch):
    s = case.small
    shape = (s["num_hidden_layers"], batch, s["num_key_value_heads"], 0, s["head_dim"])
    return torch.zeros(shape), torch.zeros(shape)


def stacked(cache):
    """A DynamicCache's keys and values as [layer, batch, kv, past, dh]."""
    return (torch.stack([layer.keys for layer in cache.layers]),
            torch.stack([layer.values for layer in cache.layers]))


def run_reference(ref, ids, cache):
    out = ref(ids, cache=cache, use_cache=True)
    return out.logits


@pytest.mark.parametrize("name", CASES)
def test_prefill_then_decode_steps_equal_the_reference_cache(name):
    check_decode(name, 0)


@pytest.mark.parametrize("name", CASES)
def test_decode_steps_at_O2_equal_the_reference_cache(name):
    check_decode(name, 2)


def check_decode(name, opt):
    case = zoo.BY_MODEL[name]
    ref = zoo.reference(case)
    module = decode_module(case, opt)
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    gen = torch.Generator().manual_seed(4)
    cache = transformers.DynamicCache(config=ref.config)
    past_key, past_value = empty_cache(case, 2)
    # the prefill (5 tokens at cache 0), three one-token steps, then two tokens at once
    for length in (5, 1, 1, 1, 2):
        ids = torch.randint(0, 97, (2, length), generator=gen)
        with torch.no_grad():
            want = run_reference(ref, ids, cache)
            logits, past_key, past_value = module(ids, past_key, past_value)
        keys, values = stacked(cache)
        assert past_key.shape == keys.shape and past_value.shape == values.shape
        for what, got, exp in (("logits", logits, want), ("keys", past_key, keys), ("values", past_value, values)):
            diff = float((got - exp).abs().max())
            assert diff <= TOL, f"{name} -O{opt} after {keys.shape[3]} positions: {what} differ by {diff:.3g}"
    assert past_key.shape[3] == 10


@pytest.mark.parametrize("name", CASES)
def test_prefill_logits_equal_the_full_model(name):
    """At cache length 0 the decode step is llama.nn's Llama (one state_dict fits both)."""
    case = zoo.BY_MODEL[name]
    full = nncircuit.load(zoo.spec_path(case), "Llama", **case.small).module(seed=1).eval()
    step = decode_module(case)
    step.load_state_dict(full.state_dict(), strict=True)
    ids = torch.randint(0, 97, (3, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, key, _ = step(ids, *empty_cache(case, 3))
        want = full(ids)
    assert key.shape[3] == 7
    assert float((logits - want).abs().max()) <= TOL


def test_published_parameter_count_and_cache_types():
    spec = nncircuit.load(SPEC, "LlamaDecode")
    assert spec.param_count() == 1_235_814_400  # Llama 3.2 1B, as llama.nn's Llama
    types = dict((n, str(t)) for n, t in spec.outputs())
    assert types["present_key"] == "[layer: 16, batch, kv: 8, key: past + seq, dh: 64]"


def test_onnx_equals_torch_at_cache_lengths_0_and_5(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    case = zoo.BY_MODEL["Llama"]
    spec = nncircuit.load(SPEC, "LlamaDecode", opt=0, **case.small)
    module = spec.module(seed=3).eval()
    path = tmp_path / "decode.onnx"
    nncircuit.export_onnx(SPEC, str(path), "LlamaDecode", state_dict=module.state_dict(), **case.small)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    gen = torch.Generator().manual_seed(5)
    s = case.small
    for past, seq in ((0, 4), (5, 1), (5, 3)):
        shape = (s["num_hidden_layers"], 2, s["num_key_value_heads"], past, s["head_dim"])
        x = (torch.randint(0, 97, (2, seq), generator=gen), torch.randn(shape, generator=gen),
             torch.randn(shape, generator=gen))
        with torch.no_grad():
            want = module(*x)
        got = sess.run(None, dict(zip(names, (t.numpy() for t in x))))
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=TOL, err_msg=f"past {past}, seq {seq}")


def test_library_rotary_blocks_equal_llama_rotary_at_positions():
    """rotary.nn's Rotary and Llama3Rotary (positions 0 ..) equal llama.nn's LlamaRotary given
    those positions, for both rope types; a shifted start shifts the rotation."""
    text = """
from "zoo:lib/rotary.nn" import Rotary, Llama3Rotary
from "zoo:llama.nn" import LlamaRotary
model R(dh = 8) {
    in  x: [batch, seq: ~6, heads: 2, dh]
    pos = positions(seq)
    out a = Llama3Rotary(dh, 10000.0, 8.0, 1.0, 4.0, 8)(x),
        b = LlamaRotary(dh, 10000.0, "llama3", 8.0, 1.0, 4.0, 8)(x, pos),
        c = Rotary(dh, 10000.0)(x),
        d = LlamaRotary(dh, 10000.0, "default", 8.0, 1.0, 4.0, 8)(x, pos),
        e = LlamaRotary(dh, 10000.0, "default", 8.0, 1.0, 4.0, 8)(x, pos + 3)
}
"""
    m = nncircuit.load("rot.nn", "R", text=text).module(seed=0)
    x = torch.randn(2, 3, 2, 8).repeat(1, 3, 1, 1)  # period 3 along seq: x[3:] is x[:6]
    a, b, c, d, e = m(x)  # [batch, heads, seq, dh]
    assert torch.equal(a, b) and torch.equal(c, d)
    assert not torch.allclose(a, c)  # the Llama 3 scaling changes the low frequencies
    torch.testing.assert_close(e[:, :, :6], c[:, :, 3:])  # x[:6] at positions 3.. is x[3:] there

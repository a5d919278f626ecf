"""specs/mixtral.nn against transformers' MixtralForCausalLM (fp32, eval): the reference's
state_dict loads strictly (its fused 3-D expert tensors included), the logits agree within
1e-5 at two sequence lengths, in memory and at -O2, onnxruntime agrees with torch, and the
default configuration has Mixtral 8x7B's parameter count."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nncircuit
from helpers import onnxruntime_against_torch, token_batches
from conftest import SPECS

tr = pytest.importorskip("transformers")

SPEC = os.path.join(SPECS, "mixtral.nn")
SMALL = dict(vocab_size=97, hidden_size=32, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2, rms_norm_eps=1e-5,
             rope_theta=10000.0)
TOL = 1e-5


def reference(seed: int = 0):
    cfg = tr.MixtralConfig(**{k: v for k, v in SMALL.items() if k != "rope_theta"},
                           rope_parameters=dict(rope_theta=SMALL["rope_theta"], rope_type="default"),
                           max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(seed)
    ref = tr.MixtralForCausalLM(cfg).eval()
    with torch.no_grad():  # transformers initialises with std 0.02: spread the router's choices
        for name, p in ref.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.2)
    return ref


def test_the_reference_state_dict_has_the_fused_expert_layout():
    sd = reference().state_dict()
    assert sd["model.layers.0.mlp.experts.gate_up_proj"].shape == (8, 48, 32)
    assert sd["model.layers.0.mlp.experts.down_proj"].shape == (8, 32, 24)
    assert sd["model.layers.0.mlp.gate.weight"].shape == (8, 32)


@pytest.mark.parametrize("opt", [0, 2])
def test_loads_the_reference_strictly_and_computes_its_logits(opt):
    ref = reference()
    module = nncircuit.load(SPEC, "Mixtral", opt=opt, **SMALL).module(seed=3).eval()
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for seq in (7, 16):
        ids = torch.randint(0, 97, (2, seq), generator=torch.Generator().manual_seed(seq))
        with torch.no_grad():
            got, want = module(ids), ref(ids).logits
        assert float((got - want).abs().max()) <= TOL
    # the module's own state_dict (its own names) round-trips
    again = nncircuit.load(SPEC, "Mixtral", opt=opt, **SMALL).module(seed=4).eval()
    again.load_state_dict(module.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(again(ids), module(ids))


def test_experts_run_sparsely_and_every_expert_is_used():
    """The sparse path runs only chosen experts; with these weights the tokens of the test
    spread over all eight, so a wrong expert layout could not pass the logits test."""
    ref = reference()
    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(16))
    hits = torch.zeros(8)

    def count(module, inputs, outputs):  # the router returns (logits, weights, indices)
        hits.index_add_(0, outputs[2].reshape(-1), torch.ones(outputs[2].numel()))

    hook = ref.model.layers[0].mlp.gate.register_forward_hook(count)
    with torch.no_grad():
        ref(ids)
    hook.remove()
    assert (hits > 0).all()
    src = nncircuit.load(SPEC, "Mixtral", **SMALL).torch_source()
    assert "_SparseMoE" in src


def test_onnxruntime_equals_torch(tmp_path):
    ref = reference()
    module = nncircuit.load(SPEC, "Mixtral", **SMALL).module().eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    for want, got in onnxruntime_against_torch(SPEC, "Mixtral", module, SMALL, token_batches((5, 12)), tmp_path):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_mixtral_8x7b_parameter_count():
    spec = nncircuit.load(SPEC, "Mixtral", max_params=10**11)  # the defaults are Mixtral 8x7B's
    assert spec.param_count() == 46_702_792_704
    with torch.device("meta"):
        ref = tr.MixtralForCausalLM(tr.MixtralConfig())
    assert sum(p.numel() for p in ref.parameters()) == 46_702_792_704


@pytest.mark.parametrize("window", [1, 3, 5])
def test_sliding_window_hides_keys_as_transformers_does(window):
    # MixtralConfig(sliding_window=w): a query sees the w latest keys (its own included); at
    # 16 tokens the window cuts in, and the full causal model's logits differ
    cfg = dict(SMALL, sliding_window=window)
    torch.manual_seed(0)
    ref = tr.MixtralForCausalLM(tr.MixtralConfig(
        **{k: v for k, v in cfg.items() if k != "rope_theta"},
        rope_parameters=dict(rope_theta=SMALL["rope_theta"], rope_type="default"),
        max_position_embeddings=64, attn_implementation="eager")).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.2)
    module = nncircuit.load(SPEC, "Mixtral", **cfg).module(seed=3).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    full = nncircuit.load(SPEC, "Mixtral", **SMALL).module(seed=3).eval()
    full.load_state_dict(ref.state_dict(), strict=True)
    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        got, want = module(ids), ref(ids).logits
        assert float((got - want).abs().max()) <= TOL
        assert float((full(ids) - want).abs().max()) > 1e-2  # the window mattered
        # within the window's reach the first tokens see everything they would without it
        assert float((full(ids)[:, :window] - want[:, :window]).abs().max()) <= TOL


def test_sliding_window_is_a_structural_choice_of_the_class():
    cls = nncircuit.load(SPEC, "Mixtral", **SMALL).torch_class()
    with pytest.raises(ValueError, match=r"`if sliding_window != none` was compiled for it being false"):
        cls(sliding_window=4)
    windowed = nncircuit.load(SPEC, "Mixtral", **SMALL, sliding_window=4).torch_class()
    windowed(sliding_window=8)  # another window: the same structure


def test_sliding_window_at_O2_and_in_onnxruntime(tmp_path):
    cfg = dict(SMALL, sliding_window=3)
    module = nncircuit.load(SPEC, "Mixtral", **cfg).module(seed=1).eval()
    fast = nncircuit.load(SPEC, "Mixtral", opt=2, **cfg).module(seed=1).eval()
    fast.load_state_dict(module.state_dict(), strict=True)
    batches = token_batches((2, 9))
    for (ids,), (want, got) in zip(batches, onnxruntime_against_torch(SPEC, "Mixtral", module, cfg, batches, tmp_path)):
        with torch.no_grad():
            assert float((fast(ids) - torch.from_numpy(want)).abs().max()) <= TOL
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)

"""specs/deepseek_v3.nn against transformers' DeepseekV3ForCausalLM (fp32, eval): the
reference's state_dict (the router's e_score_correction_bias buffer included) loads strictly,
the logits agree within 1e-5 at two sequence lengths with group-limited routing that the
bias changes, with YaRN-scaled RoPE (the published rope_scaling's kind, at a small original
context so that the interpolation ramp is crossed) and plain RoPE, in both rotary layouts,
onnxruntime agrees with torch, and the default configuration has the published model's
parameter count."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nncircuit
from helpers import onnxruntime_against_torch, token_batches
from conftest import SPECS

tr = pytest.importorskip("transformers")

SPEC = os.path.join(SPECS, "deepseek_v3.nn")
# 3 dense layers (the published split; the checkpoint section follows any), 2 MoE layers
SMALL = dict(vocab_size=97, hidden_size=32, intermediate_size=48, moe_intermediate_size=12, num_hidden_layers=5,
             num_attention_heads=4, n_shared_experts=1, n_routed_experts=16, routed_scaling_factor=2.5,
             kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, v_head_dim=12, qk_nope_head_dim=6, n_group=4,
             topk_group=2, num_experts_per_tok=3, first_k_dense_replace=3, norm_topk_prob=True, rms_norm_eps=1e-6,
             rope_theta=10000.0, rope_type="yarn", factor=4.0, beta_fast=32.0, beta_slow=1.0, mscale=0.8,
             mscale_all_dim=1.0, original_max_position_embeddings=16)
ROPE = ("rope_theta", "rope_type", "factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim",
        "original_max_position_embeddings")
TOL = 1e-5


def reference(seed: int = 0, **over):
    hp = dict(SMALL, **over)
    rope = {k: hp[k] for k in ROPE} if hp["rope_type"] == "yarn" else dict(rope_theta=hp["rope_theta"], rope_type="default")
    cfg = tr.DeepseekV3Config(**{k: v for k, v in hp.items() if k not in ROPE + ("rope_interleave",)},
                              num_key_value_heads=hp["num_attention_heads"], rope_interleave=hp.get("rope_interleave", True),
                              rope_parameters=rope,
                              max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(seed)
    ref = tr.DeepseekV3ForCausalLM(cfg).eval()
    with torch.no_grad():  # transformers' init (std 0.02, zero bias) routes almost uniformly
        for name, p in ref.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.2)
        for name, b in ref.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.normal_(0, 0.3)  # large enough to change which experts are chosen
    return ref


def compiled(opt=0, **over):
    return nncircuit.load(SPEC, "DeepseekV3", opt=opt, **dict(SMALL, **over))


def logits_agree(module, ref):
    for seq in (7, 16):
        ids = torch.randint(0, 97, (2, seq), generator=torch.Generator().manual_seed(seq))
        with torch.no_grad():
            got, want = module(ids), ref(ids).logits
        diff = float((got - want).abs().max())
        assert diff <= TOL, diff
    return ids


@pytest.mark.parametrize("opt", [0, 2])
def test_loads_the_reference_strictly_and_computes_its_logits(opt):
    ref = reference()
    module = compiled(opt).module(seed=3).eval()
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    bias = ref.state_dict()["model.layers.4.mlp.gate.e_score_correction_bias"]
    assert torch.equal(module.state_dict()["sparse.1.mlp.gate.e_score_correction_bias"], bias)
    ids = logits_agree(module, ref)
    again = compiled(opt).module(seed=4).eval()
    again.load_state_dict(module.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(again(ids), module(ids))


def test_the_correction_bias_selects_but_does_not_weigh():
    """With the bias zeroed the reference routes differently, and the spec follows it; a spec
    that weighed the experts by the biased scores, or ignored the bias, fails one of the two."""
    ref = reference()
    module = compiled().module(seed=3).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        before = ref(ids).logits
        for layer in ref.model.layers[3:]:
            layer.mlp.gate.e_score_correction_bias.zero_()
        after = ref(ids).logits
    assert float((before - after).abs().max()) > 1e-2
    module.load_state_dict(ref.state_dict(), strict=True)
    logits_agree(module, ref)


@pytest.mark.parametrize("over", [dict(rope_interleave=False), dict(rope_type="default"),
                                  dict(rope_type="default", rope_interleave=False, mscale_all_dim=0.0),
                                  dict(norm_topk_prob=False, n_group=1, topk_group=1, mscale=0.0)])
def test_other_rope_layout_and_routing(over):
    ref = reference(**over)
    module = compiled(**over).module(seed=3).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    logits_agree(module, ref)


def test_onnxruntime_equals_torch(tmp_path):
    ref = reference()
    module = compiled().module().eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    for want, got in onnxruntime_against_torch(SPEC, "DeepseekV3", module, SMALL, token_batches((5, 12)), tmp_path):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_published_parameter_count():
    spec = nncircuit.load(SPEC, "DeepseekV3", max_params=10**12)  # the defaults are the published config
    assert spec.param_count() == 671_026_404_352
    hp = {h.name: h.value.value for h in spec.graph.hyper}
    assert (hp["rope_type"], hp["factor"], hp["original_max_position_embeddings"]) == ("yarn", 40.0, 4096)
    with torch.device("meta"):
        ref = tr.DeepseekV3ForCausalLM(tr.DeepseekV3Config())
    assert sum(p.numel() for p in ref.parameters()) == 671_026_404_352


@pytest.mark.parametrize("first_k_dense_replace", [1, 2])
def test_any_dense_split_loads_strictly(first_k_dense_replace):
    """The section's `"model.layers.*" = "sparse.*-first_k_dense_replace"` follows the
    configuration (it named the published 3 before), and the generated class compiled at the
    default split maps with the split it is built with."""
    over = dict(first_k_dense_replace=first_k_dense_replace)
    ref = reference(**over)
    module = compiled(**over).module(seed=3).eval()
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    last = SMALL["num_hidden_layers"] - 1
    bias = ref.state_dict()[f"model.layers.{last}.mlp.gate.e_score_correction_bias"]
    own = module.state_dict()
    assert torch.equal(own[f"sparse.{last - first_k_dense_replace}.mlp.gate.e_score_correction_bias"], bias)
    assert torch.equal(own[f"dense.{first_k_dense_replace - 1}.mlp.gate_proj.weight"],
                       ref.state_dict()[f"model.layers.{first_k_dense_replace - 1}.mlp.gate_proj.weight"])
    logits_agree(module, ref)
    built = compiled().torch_class()(**over).eval()  # compiled at 3 (the defaults SMALL), built at 1 or 2
    built.load_state_dict(ref.state_dict(), strict=True)
    logits_agree(built, ref)


def test_q_lora_rank_none_projects_queries_directly():
    # DeepSeek-V2-Lite's form: q_proj instead of q_a_proj / q_a_layernorm / q_b_proj
    ref = reference(q_lora_rank=None)
    assert hasattr(ref.model.layers[0].self_attn, "q_proj")
    module = compiled(q_lora_rank=None).module(seed=3).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    logits_agree(module, ref)
    assert compiled(q_lora_rank=None).param_count() == sum(p.numel() for p in ref.parameters())


def test_yarn_ramp_ends_that_meet_are_moved_apart():
    # original context 4: both correction dims are below 0, so low = high = 0 and transformers'
    # linear_ramp_factor adds 0.001 to high (without it the ramp divides by zero)
    over = dict(original_max_position_embeddings=4)
    import math
    dim = SMALL["qk_rope_head_dim"]
    ends = [math.floor(dim * math.log(4 / (b * 2 * math.pi)) / (2 * math.log(10000.0))) for b in (32.0, 1.0)]
    assert max(ends[0], 0) == min(math.ceil(dim * math.log(4 / (2 * math.pi)) / (2 * math.log(10000.0))), dim - 1) == 0
    ref = reference(**over)
    module = compiled(**over).module(seed=3).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    logits = logits_agree(module, ref)
    with torch.no_grad():
        assert torch.isfinite(module(logits)).all()

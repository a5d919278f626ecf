"""The zoo's exact models and the implementations they are checked against: for each, the
reference module at a small configuration, its published configuration's parameter count
(instantiated on the meta device: no memory, no weights), inputs, and how to read its
outputs. tests/test_zoo.py asserts on these; scripts/zoo_table.py measures them for
docs/zoo.md."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from collections.abc import Callable

from .env import REPO, SPECS


@dataclass(frozen=True)
class ZooCase:
    family: str
    spec: str  # file in specs/
    model: str
    small: dict  # hyperparameters of the small configuration
    reference: Callable[[], object]  # the reference at the small configuration
    published: int  # the published parameter count of the default configuration
    reference_published: Callable[[], object]  # the reference at it (called on the meta device)
    inputs: Callable[[object], tuple]  # torch.Generator -> inputs of the spec, in order
    outputs: Callable[[object, tuple], tuple]  # (reference, inputs) -> its outputs, the spec's order
    reference_name: str
    pytorch_files: tuple[str, ...] = field(default=())  # what "PyTorch lines" counts
    pytorch_note: str = ""
    published_params: dict = field(default_factory=dict)  # hyperparameters of the published config besides the spec's defaults
    max_params: int = 2_000_000_000  # the budget the published configuration loads under
    name: str = ""  # the case's own name where two cases compile one model (else the model's)

    @property
    def id(self) -> str:
        return self.name or self.model


def _hf(name: str):
    import transformers

    return getattr(transformers, name)


# ---- GPT-2 -----------------------------------------------------------------------------------

GPT2_SMALL = dict(vocab=97, ctx=32, d=64, heads=4, layers=2)


def _gpt2(small: bool):
    cfg = _hf("GPT2Config")(vocab_size=97, n_positions=32, n_embd=64, n_head=4, n_layer=2) if small \
        else _hf("GPT2Config")()
    return _hf("GPT2LMHeadModel")(cfg)


# ---- Llama -----------------------------------------------------------------------------------

LLAMA_SMALL = dict(vocab_size=97, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=6, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5)
# Llama 3's scaling at a small original context, so that all three frequency bands occur
LLAMA3_ROPE = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8)
# TinyLlama (and Llama 1, 2) in llama.nn's Llama: plain RoPE, an untied head
TINYLLAMA_CHOICES = dict(rope_type="default", tie_word_embeddings=False)


def _llama(small: bool, tied: bool):
    if small:
        rope = dict(rope_type="llama3", **LLAMA3_ROPE) if tied else dict(rope_type="default")
        cfg = _hf("LlamaConfig")(**LLAMA_SMALL, tie_word_embeddings=tied, max_position_embeddings=64,
                                 rope_parameters=dict(rope_theta=10000.0, **rope))
    elif tied:  # Llama 3.2 1B
        cfg = _hf("LlamaConfig")(
            vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
            num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True, rms_norm_eps=1e-5,
            max_position_embeddings=131072,
            rope_parameters=dict(rope_theta=500000.0, rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                 high_freq_factor=4.0, original_max_position_embeddings=8192))
    else:  # TinyLlama 1.1B
        cfg = _hf("LlamaConfig")(
            vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
            num_attention_heads=32, num_key_value_heads=4, tie_word_embeddings=False, rms_norm_eps=1e-5,
            max_position_embeddings=2048, rope_parameters=dict(rope_theta=10000.0, rope_type="default"))
    return _hf("LlamaForCausalLM")(cfg)


# ---- BERT ------------------------------------------------------------------------------------

BERT_SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)


def _bert(small: bool):
    cfg = _hf("BertConfig")(**(BERT_SMALL if small else {}), attn_implementation="eager")
    return _hf("BertModel")(cfg, add_pooling_layer=True)


def _bert_inputs(gen):
    import torch

    ids = torch.randint(0, 99, (2, 16), generator=gen)
    types = torch.randint(0, 2, (2, 16), generator=gen)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 11:] = 0  # padding at the end of the second sequence
    return ids, types, mask


def _bert_out(ref, x):
    r = ref(input_ids=x[0], token_type_ids=x[1], attention_mask=x[2])
    return r.last_hidden_state, r.pooler_output


# ---- Mamba -----------------------------------------------------------------------------------

# time_step_rank as MambaConfig's "auto" gives it: ceil(hidden_size / 16)
MAMBA_SMALL = dict(vocab_size=97, hidden_size=32, state_size=8, num_hidden_layers=2, conv_kernel=4,
                   expand=2, time_step_rank=2)


def _mamba(small: bool):
    cfg = _hf("MambaConfig")(**MAMBA_SMALL) if small else _hf("MambaConfig")(  # state-spaces/mamba-130m-hf
        vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=24, conv_kernel=4, expand=2,
        time_step_rank=48, tie_word_embeddings=True)
    return _hf("MambaForCausalLM")(cfg)


# ---- torchvision-layout references -------------------------------------------------------------


# ---- Mixtral and DeepSeek-V3: mixtures of experts ----------------------------------------------

MIXTRAL_SMALL = dict(vocab_size=97, hidden_size=32, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2, rope_theta=10000.0)


def _mixtral(small: bool):
    if small:
        hp = {k: v for k, v in MIXTRAL_SMALL.items() if k != "rope_theta"}
        cfg = _hf("MixtralConfig")(**hp, max_position_embeddings=64,
                                   rope_parameters=dict(rope_theta=10000.0, rope_type="default"))
    else:  # Mixtral 8x7B: transformers' defaults
        cfg = _hf("MixtralConfig")()
    return _hf("MixtralForCausalLM")(cfg)


# 3 dense layers (the split the spec's checkpoint section names), then 2 with experts
DEEPSEEK_SMALL = dict(vocab_size=97, hidden_size=32, intermediate_size=48, moe_intermediate_size=12, num_hidden_layers=5,
                      num_attention_heads=4, n_routed_experts=16, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8,
                      v_head_dim=12, qk_nope_head_dim=6, n_group=4, topk_group=2, num_experts_per_tok=3,
                      rope_theta=10000.0, rope_type="yarn", factor=4.0, original_max_position_embeddings=16)
# YaRN as the published rope_scaling has it, the small one at a small original context
DEEPSEEK_YARN = dict(rope_type="yarn", rope_theta=10000.0, factor=40.0, beta_fast=32.0, beta_slow=1.0, mscale=1.0,
                     mscale_all_dim=1.0, original_max_position_embeddings=4096)


def _deepseek_v3(small: bool):
    if small:
        rope = dict(DEEPSEEK_YARN, factor=4.0, original_max_position_embeddings=16)
        hp = {k: v for k, v in DEEPSEEK_SMALL.items() if k not in rope}
        cfg = _hf("DeepseekV3Config")(**hp, num_key_value_heads=4, max_position_embeddings=64, rope_parameters=rope)
    else:  # the published 671B configuration (transformers' defaults with the checkpoint's YaRN)
        cfg = _hf("DeepseekV3Config")(max_position_embeddings=163840, rope_parameters=dict(DEEPSEEK_YARN))
    return _hf("DeepseekV3ForCausalLM")(cfg)


def _resnet(which: str, classes: int):
    from .reference import resnet

    return (resnet.resnet18 if which == "ResNet18" else resnet.resnet50)(classes)


VIT_SMALL = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10)


def _vit(small: bool):
    from .reference import vit

    return vit.ViT(**VIT_SMALL) if small else vit.ViT()


def _tokens(vocab: int):
    def make(gen):
        import torch

        return (torch.randint(0, vocab, (2, 16), generator=gen),)

    return make


def _images(size: int):
    def make(gen):
        import torch

        return (torch.randn(2, 3, size, size, generator=gen),)

    return make


def _logits(ref, x):
    return (ref(*x).logits,)


def _plain(ref, x):
    return (ref(*x),)


def _transformers_file(name: str) -> str:
    import transformers

    return os.path.join(os.path.dirname(transformers.__file__), "models", name, f"modeling_{name}.py")


CASES = [
    ZooCase("GPT-2", "transformer.nn", "GPT2", GPT2_SMALL, lambda: _gpt2(True), 124_439_808,
            lambda: _gpt2(False), _tokens(97), _logits, "transformers GPT2LMHeadModel",
            ("hf:gpt2", "bench/reference/gpt2.py"),
            "Hugging Face modeling_gpt2.py (every head, caching, attention back-ends); nanoGPT-style GPT-2 in bench/reference/gpt2.py"),
    ZooCase("Llama 3.2 1B", "llama.nn", "Llama", dict(LLAMA_SMALL, rope_theta=10000.0, **LLAMA3_ROPE),
            lambda: _llama(True, True), 1_235_814_400, lambda: _llama(False, True), _tokens(97), _logits,
            "transformers LlamaForCausalLM (tied, Llama 3 RoPE)", ("hf:llama",),
            "Hugging Face modeling_llama.py (every head, caching, attention back-ends)"),
    ZooCase("TinyLlama 1.1B", "llama.nn", "Llama", dict(LLAMA_SMALL, rope_theta=10000.0, **TINYLLAMA_CHOICES),
            lambda: _llama(True, False), 1_100_048_384, lambda: _llama(False, False), _tokens(97), _logits,
            "transformers LlamaForCausalLM (untied, plain RoPE)", ("hf:llama",),
            published_params=dict(TINYLLAMA_CHOICES, vocab_size=32000, intermediate_size=5632, num_hidden_layers=22,
                                  num_key_value_heads=4, rope_theta=10000.0),
            name="TinyLlama"),
    ZooCase("BERT-base", "bert.nn", "Bert", BERT_SMALL, lambda: _bert(True), 109_482_240,
            lambda: _bert(False), _bert_inputs, _bert_out, "transformers BertModel (with pooler)",
            ("hf:bert",), "Hugging Face modeling_bert.py (every head, caching, attention back-ends)"),
    ZooCase("ResNet-18", "resnet.nn", "ResNet18", dict(num_classes=10), lambda: _resnet("ResNet18", 10),
            11_689_512, lambda: _resnet("ResNet18", 1000), _images(32), _plain,
            "torchvision resnet18 names (bench/reference/resnet.py)", ("bench/reference/resnet.py",),
            "bench/reference/resnet.py (torchvision's layout and names, both depths)"),
    ZooCase("ResNet-50", "resnet.nn", "ResNet50", dict(num_classes=10), lambda: _resnet("ResNet50", 10),
            25_557_032, lambda: _resnet("ResNet50", 1000), _images(32), _plain,
            "torchvision resnet50 names (bench/reference/resnet.py)", ("bench/reference/resnet.py",)),
    ZooCase("ViT-B/16", "vit.nn", "ViT", VIT_SMALL, lambda: _vit(True), 86_567_656, lambda: _vit(False),
            _images(32), _plain, "torchvision vit_b_16 names (bench/reference/vit.py)",
            ("bench/reference/vit.py",), "bench/reference/vit.py (torchvision's layout and names)"),
    ZooCase("Mamba-130m", "mamba.nn", "Mamba", MAMBA_SMALL, lambda: _mamba(True), 129_135_360,
            lambda: _mamba(False), _tokens(97), _logits, "transformers MambaForCausalLM (torch path, tied)",
            ("hf:mamba",), "Hugging Face modeling_mamba.py (caching, the CUDA-kernel and torch paths)"),
    ZooCase("Mixtral 8x7B", "mixtral.nn", "Mixtral", MIXTRAL_SMALL, lambda: _mixtral(True), 46_702_792_704,
            lambda: _mixtral(False), _tokens(97), _logits, "transformers MixtralForCausalLM (sparse top-2 of 8 experts)",
            ("hf:mixtral",), "Hugging Face modeling_mixtral.py", max_params=10**11),
    ZooCase("DeepSeek-V3", "deepseek_v3.nn", "DeepseekV3", DEEPSEEK_SMALL, lambda: _deepseek_v3(True),
            671_026_404_352, lambda: _deepseek_v3(False), _tokens(97), _logits,
            "transformers DeepseekV3ForCausalLM (MLA, group-limited routing, YaRN RoPE)",
            ("hf:deepseek_v3",), "Hugging Face modeling_deepseek_v3.py", max_params=10**12),
]


# ---- mobile networks (torchvision-layout references) --------------------------------------------


def _mobile(which: str, **kw):
    from .reference import efficientnet, mobilenet_v2, shufflenet

    return {"MobileNetV2": mobilenet_v2.MobileNetV2, "EfficientNetB0": efficientnet.EfficientNet,
            "ShuffleNetV2": shufflenet.ShuffleNetV2}[which](**kw)


CASES += [
    ZooCase("MobileNetV2", "vision/mobilenet_v2.nn", "MobileNetV2", dict(num_classes=10),
            lambda: _mobile("MobileNetV2", num_classes=10), 3_504_872, lambda: _mobile("MobileNetV2"),
            _images(32), _plain, "torchvision mobilenet_v2 names (bench/reference/mobilenet_v2.py)",
            ("bench/reference/mobilenet_v2.py",), "bench/reference/mobilenet_v2.py (torchvision's layout and names)"),
    ZooCase("EfficientNet-B0", "vision/efficientnet.nn", "EfficientNetB0", dict(num_classes=10),
            lambda: _mobile("EfficientNetB0", num_classes=10), 5_288_548, lambda: _mobile("EfficientNetB0"),
            _images(32), _plain, "torchvision efficientnet_b0 names (bench/reference/efficientnet.py)",
            ("bench/reference/efficientnet.py", "bench/reference/ops.py"),
            "bench/reference/efficientnet.py (torchvision's layout and names; its _make_divisible is mobilenet_v2.py's) "
            "with StochasticDepth from bench/reference/ops.py (torchvision.ops)"),
    ZooCase("ShuffleNetV2 x1.0", "vision/shufflenet.nn", "ShuffleNetV2", dict(num_classes=10),
            lambda: _mobile("ShuffleNetV2", num_classes=10), 2_278_604, lambda: _mobile("ShuffleNetV2"),
            _images(32), _plain, "torchvision shufflenet_v2_x1_0 names (bench/reference/shufflenet.py)",
            ("bench/reference/shufflenet.py",), "bench/reference/shufflenet.py (torchvision's layout and names)"),
]
BY_MODEL = {c.id: c for c in CASES}  # by id: "TinyLlama" is the model Llama at other hyperparameters


def spec_path(case: ZooCase) -> str:
    return os.path.join(SPECS, case.spec)


def reference(case: ZooCase, seed: int = 0):
    """The reference at the small configuration in eval mode, with seeded random weights;
    BatchNorm statistics are randomised too, so that loading them is checked."""
    import torch

    torch.manual_seed(seed)
    return move_norm_statistics(case.reference().eval())


def move_norm_statistics(module):
    """BatchNorm running means drawn from N(0, 0.1) and variances from U(0.5, 1.5), off their
    initial zeros and ones, so that loading them into the spec is checked; returns module."""
    import torch

    with torch.no_grad():
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.1)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return module


def published_reference_count(case: ZooCase) -> int:
    """Parameters of the reference at its published configuration, built on the meta device
    (tied weights counted once, as module.parameters() does)."""
    import torch

    with torch.device("meta"):
        ref = case.reference_published()
    return sum(p.numel() for p in ref.parameters())


def max_difference(a: tuple, b: tuple) -> float:
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))


# ---- line counts -----------------------------------------------------------------------------


def code_lines(path: str) -> int:
    """Non-blank lines that are not only a comment (`#` in Python, `#`/`##` in .nn)."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.strip().startswith("#"))


def spec_files(case: ZooCase) -> list[str]:
    """The spec file and the library files it imports (one level: the zoo's are flat)."""
    import re

    path = spec_path(case)
    with open(path, encoding="utf-8") as f:
        imports = re.findall(r'^(?:from|import)\s+"([^"]+)"', f.read(), flags=re.M)
    return [path] + [os.path.join(os.path.dirname(path), p) for p in imports]


def pytorch_files(case: ZooCase) -> list[str]:
    return [_transformers_file(p[3:]) if p.startswith("hf:") else os.path.join(REPO, p)
            for p in case.pytorch_files]

"""specs/mamba.nn : Mamba against transformers' MambaForCausalLM (eval, fp32, its pure-torch
path): the compiled module loads the reference's state_dict strictly and computes its logits
within 1e-5 at two sequence lengths, at the small configuration and at one with other
hyperparameters (in memory and from the generated class), its own state_dict round-trips,
onnxruntime (one Loop over seq, not unrolled) equals torch, the parameter count at the
published 130m configuration equals the reference's built on the meta device, the selective
scan is a `scan seq` carrying h: [.., inner, state], and `nnc render` draws the spec."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import nncircuit
from conftest import ROOT, SPECS
from nncircuit.api import generated_module
from nncircuit.ir.graph import BodyNode, ScanNode

transformers = pytest.importorskip("transformers")

SPEC = os.path.join(SPECS, "mamba.nn")
TOL = 1e-5
SMALL = dict(vocab_size=97, hidden_size=32, state_size=8, num_hidden_layers=2, conv_kernel=4, expand=2,
             time_step_rank=2)
# other values of every hyperparameter the forward reads, the biases the other way round
OTHER = dict(vocab_size=53, hidden_size=24, state_size=5, num_hidden_layers=3, conv_kernel=3, expand=3,
             time_step_rank=7, layer_norm_epsilon=1e-3)
OTHER_BIAS = dict(OTHER, use_conv_bias=False, use_bias=True)
PUBLISHED = dict(vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=24, conv_kernel=4,
                 expand=2, time_step_rank=48)  # state-spaces/mamba-130m-hf


def reference(params: dict, seed: int = 0):
    """MambaForCausalLM at these MambaConfig fields, eval mode, with every parameter drawn at
    random (HF's init makes D all ones and A_log the same in every row, which would hide a
    miswired D or A)."""
    torch.manual_seed(seed)
    ref = transformers.MambaForCausalLM(transformers.MambaConfig(**params)).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.rand_like(p).mul(3.0).add(0.1).log())
            else:
                p.normal_(0.0, 0.3)
    return ref


def ids(vocab: int, seq: int):
    return torch.randint(0, vocab, (2, seq), generator=torch.Generator().manual_seed(seq))


def assert_logits_match(module, ref, vocab: int, seqs=(1, 9)):
    for seq in seqs:
        x = ids(vocab, seq)
        with torch.no_grad():
            got, want = module(x), ref(x, use_cache=False).logits
        assert got.shape == want.shape
        diff = float((got - want).abs().max())
        assert diff <= TOL, f"seq {seq}: max difference {diff:.3g}"


@pytest.mark.parametrize("opt", [0, 2])
def test_loads_transformers_state_dict_strictly_and_computes_its_logits(opt):
    ref = reference(SMALL)
    spec = nncircuit.load(SPEC, "Mamba", opt=opt, **SMALL)
    module = spec.module(seed=3).eval()
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert_logits_match(module, ref, SMALL["vocab_size"])
    # its own state_dict (its own names, no lm_head) round-trips into a fresh module
    own = module.state_dict()
    assert "embeddings.weight" in own and not any(k.startswith(("backbone.", "lm_head")) for k in own)
    again = spec.module(seed=4).eval()
    again.load_state_dict(own, strict=True)
    x = ids(SMALL["vocab_size"], 6)
    with torch.no_grad():
        assert torch.equal(again(x), module(x))


def test_other_hyperparameters_in_memory():
    for params in (OTHER, OTHER_BIAS):
        ref = reference(params, seed=1)
        module = nncircuit.load(SPEC, "Mamba", **params).module(seed=0).eval()
        module.load_state_dict(ref.state_dict(), strict=True)
        assert_logits_match(module, ref, params["vocab_size"], seqs=(2, 11))


def test_other_hyperparameters_from_the_generated_class():
    # compiled at the small configuration, built with other sizes by the class's constructor
    cls = generated_module(nncircuit.load(SPEC, "Mamba", **SMALL).torch_source(), "mamba_small").Mamba
    ref = reference(OTHER, seed=2)
    module = cls(**OTHER).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    assert_logits_match(module, ref, OTHER["vocab_size"], seqs=(2, 11))
    # the biases choose the structure: that class refuses them, one compiled for them builds them
    with pytest.raises(ValueError, match="`bias = use_bias` was compiled for it being false"):
        cls(**OTHER_BIAS)
    cls = generated_module(nncircuit.load(SPEC, "Mamba", **OTHER_BIAS).torch_source(), "mamba_bias").Mamba
    ref = reference(OTHER_BIAS, seed=3)
    module = cls(**OTHER_BIAS).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    assert_logits_match(module, ref, OTHER_BIAS["vocab_size"], seqs=(4,))


def _ops(graph) -> list[str]:
    out = []
    for n in graph.node:
        out.append(n.op_type)
        for a in n.attribute:
            if a.g is not None:
                out += _ops(a.g)
    return out


def test_onnxruntime_equals_torch_with_one_loop(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    ref = reference(SMALL)
    module = nncircuit.load(SPEC, "Mamba", **SMALL).module().eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    out = str(tmp_path / "mamba.onnx")
    nncircuit.export_onnx(SPEC, out, "Mamba", state_dict=module.state_dict(), **SMALL)
    ops = _ops(onnx.load(out).graph)
    assert ops.count("Loop") == SMALL["num_hidden_layers"]  # one scan per layer, never unrolled
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    for seq in (3, 17):
        x = ids(SMALL["vocab_size"], seq)
        with torch.no_grad():
            want = module(x).numpy()
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        assert got.shape == want.shape and abs(got - want).max() <= TOL


def test_published_parameter_count_equals_the_reference_on_the_meta_device():
    spec = nncircuit.load(SPEC, "Mamba")  # the defaults are the published configuration
    with torch.device("meta"):
        ref = transformers.MambaForCausalLM(transformers.MambaConfig(**PUBLISHED))
    assert spec.param_count() == sum(p.numel() for p in ref.parameters()) == 129_135_360
    assert nncircuit.load(SPEC, "Mamba", **PUBLISHED).param_count() == spec.param_count()


def _scans(graph):
    for node in graph.nodes():
        if isinstance(node, ScanNode):
            yield node
        if isinstance(node, BodyNode):
            yield from _scans(node.callee)


def test_the_selective_scan_is_a_recurrence_over_seq():
    spec = nncircuit.load(SPEC, "Mamba", **SMALL)
    scans = list(_scans(spec.graph))
    assert len(scans) == 1  # one mixer body, shared by the layers' loop
    (scan,) = scans
    assert scan.axis == "seq" and scan.carried == 1
    # the carried state h: [inner, state] (the block is lifted over batch), not a closed form
    assert [a.name for a in scan.types[0].axes] == ["inner", "state"]
    assert [(a.name, a.size.evaluate({})) for a in scan.types[0].axes] == [("inner", 64), ("state", 8)]
    assert "exp" in {n.op for n in scan.callee.nodes()}


def test_nnc_render_draws_the_spec(tmp_path):
    out = tmp_path / "mamba.svg"
    cmd = [sys.executable, "-m", "nncircuit.cli", "render", SPEC, "-o", str(out)]
    for k, v in SMALL.items():
        cmd += ["-p", f"{k}={v}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    svg = out.read_text()
    assert svg.startswith("<svg") or "<svg" in svg[:200]
    assert "MambaMixer" in svg and "seq" in svg


@pytest.mark.parametrize("hidden_size", [40, 768])
def test_time_step_rank_defaults_to_the_configs_auto(hidden_size):
    # MambaConfig's time_step_rank="auto" is ceil(hidden_size / 16): the spec's default, in the
    # checked spec and in the generated class built with another hidden_size
    want = transformers.MambaConfig(hidden_size=hidden_size).time_step_rank
    spec = nncircuit.load(os.path.join(SPECS, "mamba.nn"), "Mamba", hidden_size=hidden_size)
    assert {h.name: h.value.value for h in spec.graph.hyper}["time_step_rank"] == want
    small = nncircuit.load(os.path.join(SPECS, "mamba.nn"), "Mamba", vocab_size=97, num_hidden_layers=1)
    cls = generated_module(small.torch_source(), "mamba_auto").Mamba
    module = cls(vocab_size=97, num_hidden_layers=1, hidden_size=40)
    ref = reference(dict(vocab_size=97, num_hidden_layers=1, hidden_size=40))
    module.load_state_dict(ref.state_dict(), strict=True)  # x_proj and dt_proj sized by the rank 3
    assert_logits_match(module.eval(), ref, 97)

"""`nnc summary` and Spec.summary(): parameters agree with the compiled module's
sum(p.numel()), FLOPs with torch's FlopCounterMode (on the ops it counts) for every model in
specs/ at -O0 and -O2, the table's rows add up, and the CLI reads its options."""

import os

import pytest
import torch
from conftest import SMALL, SPECS
from torch.utils.flop_counter import FlopCounterMode

import nncircuit
from nncircuit import cli
from nncircuit.errors import HyperparameterError

MODELS = sorted(SMALL)
# GPT2's positions must fit its small ctx (32); ResNets and UNet at 32×32
SIZES = {"GPT2": dict(seq=32), "ResNet18": dict(h=32, w=32), "ResNet50": dict(h=32, w=32), "UNet": dict(h=32, w=32)}


def _load(key, **kw):
    f, model = key
    return nncircuit.load(os.path.join(SPECS, f), model, **SMALL[key], **kw)


def _inputs(spec, env):
    out = []
    for _, t in spec.inputs():
        shape = [a.size.evaluate(env) for a in t.axes]
        out.append(torch.randint(0, 10, shape) if t.dtype == "int64" else torch.randn(*shape))
    return out


@pytest.mark.parametrize("key", MODELS, ids=[m for _, m in MODELS])
@pytest.mark.parametrize("opt", [0, 2])
def test_figures_agree_with_torch(key, opt):
    spec = _load(key, opt=opt)
    summary = spec.summary(SIZES.get(key[1]))
    module = spec.module(seed=0).eval()
    assert summary.params == sum(p.numel() for p in module.parameters())
    assert summary.buffers == sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))
    # SDPA's math kernel: its matmuls are counted (the CPU's fused kernel is not, and which
    # kernel runs depends on the mask: a decode step's bottom-right mask takes the math one)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        module(*_inputs(spec, dict(summary.sizes)))
    counted = counter.get_total_flops()
    ours = summary.flops
    if (key[1], opt) == ("S4D", 2):  # linear_scan_sum reads its states out by mul and sum: no matmul is left
        assert counted == ours == 0
    else:
        assert counted > 0
    assert abs(ours - counted) <= 0.05 * counted, (ours, counted)


def test_O2_does_not_change_the_figures():
    for key in [("transformer.nn", "GPT2"), ("vit.nn", "ViT")]:
        a, b = _load(key).summary(), _load(key, opt=2).summary()
        assert (a.params, a.flops) == (b.params, b.flops)
        assert b.total.flops_of("attention") > 0 and b.total.flops_of("LinearGroup") > 0


def test_rows_add_up():
    s = _load(("transformer.nn", "GPT2")).summary()
    rows = {r.path: r for r in s.rows}
    for r in s.rows:
        children = [c for c in s.rows if c.path.rsplit(".", 1)[0] == r.path and c.depth == r.depth + 1]
        if children:
            for field in ("flops", "activations"):
                assert sum(getattr(c.cost, field) for c in children) == getattr(r.cost, field), (r.path, field)
    top = [r for r in s.rows if r.depth == 1]
    assert sum(r.cost.params for r in top) == s.params == 108_352
    assert sum(r.cost.flops for r in top) == s.flops
    # a repeat sums its iterations; a lifted call its slices
    assert rows["h"].op == "repeat 2 × GPT2_h"
    assert rows["h.attn.causal_attention"].output == "[batch: 1, heads: 4, seq: 128, dv: 16]"


def test_mlp_by_hand():
    s = _load(("mlp.nn", "MLP")).summary()
    assert dict(s.sizes) == {"batch": 1}
    assert s.params == 669_706
    assert s.flops == 2 * (784 * 512 + 512 * 512 + 512 * 10)
    # Linear, relu, Linear, relu (512 floats each), Linear and softmax (10 each)
    assert s.activations == 4 * (4 * 512 + 2 * 10)
    assert s.flops_by_op() == {"Linear": s.flops}


def test_sizes_default_and_given():
    spec = _load(("transformer.nn", "GPT2"))
    assert dict(spec.summary().sizes) == {"batch": 1, "seq": 128}
    assert dict(spec.summary({"seq": 16, "batch": 4}).sizes) == {"batch": 4, "seq": 16}
    assert spec.summary({"seq": 64}).flops < spec.summary().flops
    with pytest.raises(HyperparameterError, match="no dynamic axis 'sq' \\(did you mean 'seq'\\?\\)"):
        spec.summary({"sq": 16})
    text = "model M() {\n in x: [batch, n, d: 4]\n out x |> Linear(d -> e: 2)\n}\n"
    bare = nncircuit.load("m.nn", text=text)
    with pytest.raises(HyperparameterError, match="axis 'n' of model M has no typical size"):
        bare.summary()
    assert bare.summary({"n": 5}).flops == 2 * 5 * 4 * 2


def test_cli_summary(capsys):
    path = os.path.join(SPECS, "transformer.nn")
    small = ["-p", "vocab=97", "-p", "ctx=32", "-p", "d=64", "-p", "heads=4", "-p", "layers=2"]
    assert cli.main(["summary", path, *small]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "GPT2 (transformer.nn), batch = 1, seq = 128"
    assert lines[1].split() == ["block", "op", "params", "FLOPs", "activations", "output"]
    total = next(line for line in lines if line.startswith("total"))
    s = _load(("transformer.nn", "GPT2")).summary()
    assert total.split()[1] == f"{s.params:,}" == "108,352"
    assert "h   " in out and "  attn" not in out  # depth 1
    assert cli.main(["summary", path, *small, "--depth", "3"]) == 0
    deep = capsys.readouterr().out
    assert "      causal_attention" not in deep and "    causal_attention" in deep
    assert cli.main(["summary", path, *small, "--input", "seq=16", "--input", "batch=2"]) == 0
    assert "batch = 2, seq = 16" in capsys.readouterr().out
    assert cli.main(["summary", path, *small, "--input", "tokens=3x8"]) == 0
    assert "batch = 3, seq = 8" in capsys.readouterr().out
    assert cli.main(["summary", path, *small, "--input", "tokens=3"]) == 1
    assert "input 'tokens' has 2 axes" in capsys.readouterr().err
    assert cli.main(["summary", path, *small, "--input", "seq=many"]) == 1
    assert "sizes must be integers" in capsys.readouterr().err


def test_cli_summary_of_a_resnet_at_32(capsys):
    assert cli.main(["summary", os.path.join(SPECS, "resnet.nn"), "--input", "image=1x3x32x32"]) == 0
    out = capsys.readouterr().out
    assert "11,689,512" in out and "buffers: 9,600" in out
    assert "batch = 1, h = 32, w = 32" in out

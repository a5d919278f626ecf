"""MobileNetV2, EfficientNet-B0 and ShuffleNetV2 x1.0 (specs/vision) against hand-written
references in torchvision's layout and names (bench/reference/): torchvision's state_dict
loads strictly through each spec's checkpoint section and the module's own state_dict loads
back, the outputs agree to 1e-5 (fp32, eval, random BatchNorm statistics) at two image
sizes, onnxruntime agrees with torch at two sizes, EfficientNet's stochastic depth grows as
torchvision's, MobileNetV2 trains like the reference (dropout included), and the diagrams
render. The published parameter counts are asserted by tests/e2e/test_zoo.py (bench/zoo.py)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, ROOT)
from bench import zoo  # noqa: E402

import nncircuit  # noqa: E402

TOL = 1e-5
MODELS = ["MobileNetV2", "EfficientNetB0", "ShuffleNetV2"]
SIZES = (32, 64)


def _reference(model):
    return zoo.reference(zoo.BY_MODEL[model])  # num_classes = 10, random BatchNorm statistics


def _compiled(model, opt=0, **params):
    case = zoo.BY_MODEL[model]
    return nncircuit.load(zoo.spec_path(case), model, opt=opt, **{**case.small, **params})


def _images(size, seed=1):
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _max_diff(module, ref):
    worst = 0.0
    for size in SIZES:
        x = _images(size)
        with torch.no_grad():
            got, want = module(x), ref(x)
        assert got.shape == want.shape == (2, 10)
        worst = max(worst, float((got - want).abs().max()))
    return worst


@pytest.mark.parametrize("model", MODELS)
def test_torchvision_state_dict_loads_strictly_and_outputs_agree(model):
    ref = _reference(model)
    spec = _compiled(model)
    module = spec.module(seed=5).eval()
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert _max_diff(module, ref) <= TOL
    # its own names load back into a fresh module and compute the same
    again = spec.module(seed=6).eval()
    again.load_state_dict(module.state_dict(), strict=True)
    x = _images(32, seed=2)
    with torch.no_grad():
        assert torch.equal(again(x), module(x))
    # every reference tensor landed somewhere: a fresh module differs before loading
    fresh = spec.module(seed=7).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), module(x))


@pytest.mark.parametrize("model", MODELS)
def test_optimized_module_agrees_too(model):
    ref = _reference(model)
    module = _compiled(model, opt=2).module(seed=5).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    assert _max_diff(module, ref) <= TOL


@pytest.mark.parametrize("model", MODELS)
def test_onnxruntime_matches_torch_at_two_sizes(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ref = _reference(model)
    module = _compiled(model).module().eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    out = tmp_path / "m.onnx"
    case = zoo.BY_MODEL[model]
    nncircuit.export_onnx(zoo.spec_path(case), str(out), model, state_dict=module.state_dict(), **case.small)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for size in SIZES:
        x = _images(size, seed=size)
        with torch.no_grad():
            want = module(x).numpy()
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        assert abs(want).max() > 1e-3  # reference weights: outputs of a real size
        assert abs(got - want).max() <= TOL


def test_efficientnet_stochastic_depth_grows_like_torchvision():
    from bench.reference import efficientnet

    ref = efficientnet.EfficientNet(num_classes=10, stochastic_depth_prob=0.3)
    want = [m.stochastic_depth.p for m in ref.modules() if isinstance(m, efficientnet.MBConv)]
    module = _compiled("EfficientNetB0", stochastic_depth_prob=0.3).module(seed=0)
    got = [m.p for m in module.modules() if type(m).__name__.startswith("MBConv")]
    assert len(want) == 16 and got == pytest.approx(want)  # block i of 16: 0.3 * i / 16
    assert got[1] == pytest.approx(0.3 * 1 / 16) and got[-1] == pytest.approx(0.3 * 15 / 16)


def test_efficientnet_drops_whole_samples_while_training():
    module = _compiled("EfficientNetB0", stochastic_depth_prob=0.9, dropout=0.0).module(seed=0)
    ref = _reference("EfficientNetB0")
    module.load_state_dict(ref.state_dict(), strict=True)
    module.train()
    x = _images(32).repeat(4, 1, 1, 1)  # eight copies of two images
    torch.manual_seed(0)
    outs = {tuple(module(x)[i].detach().round(decimals=3).tolist()) for i in range(0, 8, 2)}
    assert len(outs) > 1  # identical inputs, different residual paths dropped per sample


def test_mobilenet_trains_like_the_reference():
    ref = _reference("MobileNetV2").train()
    module = _compiled("MobileNetV2", dropout=0.5).module(seed=0).train()
    ref.classifier[0].p = 0.5
    module.load_state_dict(ref.state_dict(), strict=True)
    x = _images(32)
    torch.manual_seed(3)
    want = ref(x)
    torch.manual_seed(3)
    got = module(x)
    assert float((got - want).detach().abs().max()) <= TOL
    want.square().sum().backward()
    got.square().sum().backward()
    g_ref = ref.features[0][0].weight.grad
    g_own = module.stem.conv.weight.grad
    assert float((g_ref - g_own).abs().max()) <= 1e-4 * float(g_ref.abs().max())


@pytest.mark.parametrize("model", MODELS)
def test_diagram_renders(model):
    from nncircuit.backends.diagram import render as R

    svg = R.svg(_compiled(model), R.options())
    assert svg.lstrip().startswith("<") and "</svg>" in svg and model in svg


def test_generated_file_loads_torchvision_names(tmp_path):
    import importlib.util

    out = tmp_path / "shufflenet.py"
    _compiled("ShuffleNetV2").write(str(out))
    spec = importlib.util.spec_from_file_location("gen_shufflenet", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module = mod.ShuffleNetV2().eval()
    ref = _reference("ShuffleNetV2")
    module.load_state_dict(ref.state_dict(), strict=True)
    assert _max_diff(module, ref) <= TOL


def test_specs_follow_the_paper_tables():
    """The stage tables are static `for` loops over the published rows, not written-out blocks."""
    for name in ("mobilenet_v2.nn", "efficientnet.nn", "shufflenet.nn"):
        with open(os.path.join(ROOT, "specs", "vision", name), encoding="utf-8") as f:
            assert "    for (" in f.read()


@pytest.mark.parametrize("width_mult", [0.5, 1.4])
def test_mobilenet_width_mult_matches_the_reference(width_mult):
    # torchvision's _make_divisible widths: 0.5 gives a 16-channel stem, 1.4 a 48-channel one and
    # a 1792-channel last convolution; the counts are the reference's (1,968,680 and 6,108,776)
    from bench.reference.mobilenet_v2 import MobileNetV2

    torch.manual_seed(0)
    ref = zoo.move_norm_statistics(MobileNetV2(num_classes=10, width_mult=width_mult).eval())
    spec = _compiled("MobileNetV2", width_mult=width_mult)
    assert spec.param_count() == sum(p.numel() for p in ref.parameters())
    assert nncircuit.load(zoo.spec_path(zoo.BY_MODEL["MobileNetV2"]), width_mult=width_mult).param_count() == {
        0.5: 1_968_680, 1.4: 6_108_776}[width_mult]
    module = spec.module(seed=5).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    assert _max_diff(module, ref) <= TOL


def test_mobilenet_class_computes_widths_it_was_not_compiled_for():
    # the widths are expressions of width_mult (the block count is not): the class built at 1.0
    # takes 0.75 and has the reference's parameters
    from bench.reference.mobilenet_v2 import MobileNetV2

    cls = _compiled("MobileNetV2").torch_class()
    module = cls(width_mult=0.75)
    ref = MobileNetV2(num_classes=10, width_mult=0.75)
    assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in ref.parameters())


def test_efficientnet_b1_matches_the_reference():
    # torchvision's efficientnet_b1: width 1.0, depth 1.1 (23 blocks), dropout 0.2; 7,794,184
    # parameters at 1000 classes, and B4 (1.4, 1.8) 19,341,616
    from bench.reference.efficientnet import EfficientNet, MBConv

    path = zoo.spec_path(zoo.BY_MODEL["EfficientNetB0"])
    assert nncircuit.load(path, depth_mult=1.1).param_count() == 7_794_184
    assert nncircuit.load(path, width_mult=1.4, depth_mult=1.8, dropout=0.4).param_count() == 19_341_616
    torch.manual_seed(0)
    ref = zoo.move_norm_statistics(EfficientNet(num_classes=10, depth_mult=1.1, stochastic_depth_prob=0.2).eval())
    spec = _compiled("EfficientNetB0", depth_mult=1.1)
    assert spec.param_count() == sum(p.numel() for p in ref.parameters())
    module = spec.module(seed=5).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    assert _max_diff(module, ref) <= TOL
    want = [m.stochastic_depth.p for m in ref.modules() if isinstance(m, MBConv)]
    got = [m.p for m in module.modules() if type(m).__name__.startswith("MBConv")]
    assert len(want) == 23 and got == pytest.approx(want)


def test_efficientnet_b5_normalisation_matches_the_reference():
    # torchvision's efficientnet_b5..b7 build every BatchNorm with eps 1e-3 and momentum 0.01
    # (norm_layer=partial(nn.BatchNorm2d, ...)): B5 is (1.6, 2.2, 0.4), 30,389,784 parameters
    from functools import partial

    from bench.reference.efficientnet import EfficientNet

    path = zoo.spec_path(zoo.BY_MODEL["EfficientNetB0"])
    b5 = dict(width_mult=1.6, depth_mult=2.2, dropout=0.4, norm_eps=1e-3, norm_momentum=0.01)
    assert nncircuit.load(path, **b5).param_count() == 30_389_784
    norm = partial(torch.nn.BatchNorm2d, eps=1e-3, momentum=0.01)
    torch.manual_seed(0)
    # no stochastic depth: the training step below draws nothing, so both see the same batches
    ref = zoo.move_norm_statistics(EfficientNet(num_classes=10, stochastic_depth_prob=0.0, norm_layer=norm).eval())
    module = _compiled("EfficientNetB0", norm_eps=1e-3, norm_momentum=0.01, stochastic_depth_prob=0.0).module(seed=5).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    assert _max_diff(module, ref) <= TOL
    plain = _compiled("EfficientNetB0", stochastic_depth_prob=0.0).module(seed=5).eval()
    plain.load_state_dict(ref.state_dict(), strict=True)
    assert _max_diff(plain, ref) > 10 * TOL  # the eps is seen
    # one training step moves the running statistics by the same momentum
    module.train(), ref.train()
    x = _images(32)
    with torch.no_grad():
        module(x), ref(x)
    def means(m):  # the running means, by value (the two name them differently)
        return sorted(float(v.double().sum()) for k, v in m.state_dict().items() if k.endswith("running_mean"))

    assert len(means(ref)) == 49 and means(module) == pytest.approx(means(ref), abs=1e-5)
    assert means(plain) != pytest.approx(means(ref), abs=1e-5)  # untouched in eval mode

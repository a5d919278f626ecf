"""Zoo models whose list-valued configurations are tuple hyperparameters named like the
references' constructors (issue 13): at a NON-default list, the compiled spec and the reference
built with the same lists agree on the parameter count, load each other's weights strictly and
give the same outputs; the published counts of the other family members."""

from __future__ import annotations

import os

import pytest
import torch

import nncircuit
import zoo_reference as R
from conftest import SPECS


def _spec(*parts: str) -> str:
    return os.path.join(SPECS, *parts)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_count(cls, **kw) -> int:
    with torch.device("meta"):
        return _count(cls(**kw))


def _perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return module.eval()


# ---- ConvNeXt: timm's ConvNeXt(depths, dims) -------------------------------------------------

CONVNEXT_TO_REF = ((r"^stem_conv\.", "stem.0."), (r"^stem_norm\.", "stem.1."),
                   (r"^stages_(\d+)\.", r"stages.\1."), (r"^stages\.(?!\d)", "stages.0."),
                   (r"\.downsample_norm\.", ".downsample.0."), (r"\.downsample_conv\.", ".downsample.1."))


def test_convnext_three_stages_match_the_reference():
    """Three stages instead of four: the loop over zip(depths, dims) follows the tuples' length."""
    hp = dict(in_chans=2, num_classes=5, depths=(1, 2, 1), dims=(8, 12, 16), ls_init_value=0.5)
    torch.manual_seed(0)
    ref = _perturbed(R.ConvNeXt(**hp), seed=1)
    module = nncircuit.compile(_spec("vision", "convnext.nn"), "ConvNeXt", seed=3, **hp).eval()
    assert _count(module) == _count(ref)
    assert sorted(R.renamed(module.state_dict(), CONVNEXT_TO_REF)) == sorted(ref.state_dict())
    assert not any(k.startswith("stages_3") for k in module.state_dict())
    x = torch.randn(2, 2, 40, 36, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = module(x)
        module.load_state_dict(ref.state_dict(), strict=True)
        want, got = ref(x), module(x)
    assert got.shape == want.shape == (2, 5)
    assert (got - want).abs().max().item() <= 1e-5
    assert (before - want).abs().max().item() > 1e-3  # the load mattered


def test_convnext_ls_init_value_is_the_layer_scale_init():
    module = nncircuit.compile(_spec("vision", "convnext.nn"), "ConvNeXt", depths=(1, 1), dims=(4, 8),
                               ls_init_value=0.25)
    gammas = {k: v for k, v in module.state_dict().items() if k.endswith("gamma")}
    assert len(gammas) == 2 and all(torch.all(v == 0.25) for v in gammas.values())


def test_convnext_small_published_count():
    """ConvNeXt-S is ConvNeXt-T with depths (3, 3, 27, 3): 50,223,688 parameters."""
    depths = (3, 3, 27, 3)
    spec_count = nncircuit.load(_spec("vision", "convnext.nn"), "ConvNeXt", depths=depths).param_count()
    assert spec_count == _meta_count(R.ConvNeXt, depths=depths) == 50_223_688


# ---- ShuffleNetV2: torchvision's ShuffleNetV2(stages_repeats, stages_out_channels) ------------


def test_convnext_dims_shorter_than_depths_is_a_positioned_error():
    # timm indexes dims by stage; a zip would have dropped the last stage silently
    from nncircuit.errors import NNError

    with pytest.raises(NNError) as info:
        nncircuit.load(_spec("vision", "convnext.nn"), "ConvNeXt", dims=(96, 192, 384))
    assert "index 3 is out of range for a tuple of 3" in info.value.message and info.value.span.line > 1

def _shufflenet_ref():
    import sys
    from conftest import ROOT
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from bench.reference.shufflenet import ShuffleNetV2
    return ShuffleNetV2


def _with_random_statistics(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return module


def test_shufflenet_other_stage_lists_match_the_reference():
    """Other repeats and widths for the three stages (torchvision takes three) and conv5."""
    ShuffleNetV2 = _shufflenet_ref()
    hp = dict(stages_repeats=(2, 1, 3), stages_out_channels=(8, 12, 20, 16, 24), num_classes=6)
    torch.manual_seed(0)
    ref = _with_random_statistics(_perturbed(ShuffleNetV2(**hp), seed=1), seed=2)
    module = nncircuit.compile(_spec("vision", "shufflenet.nn"), "ShuffleNetV2", seed=3, **hp).eval()
    assert _count(module) == _count(ref)
    x = torch.randn(2, 3, 48, 40, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = module(x)
        module.load_state_dict(ref.state_dict(), strict=True)
        want, got = ref(x), module(x)
    assert got.shape == want.shape == (2, 6)
    assert (got - want).abs().max().item() <= 1e-5
    assert (before - want).abs().max().item() > 1e-3


@pytest.mark.parametrize("channels, published", [
    ((24, 48, 96, 192, 1024), 1_366_792),     # x0.5
    ((24, 116, 232, 464, 1024), 2_278_604),   # x1.0
    ((24, 176, 352, 704, 1024), 3_503_624),   # x1.5
    ((24, 244, 488, 976, 2048), 7_393_996),   # x2.0
])
def test_shufflenet_published_widths(channels, published):
    spec_count = nncircuit.load(_spec("vision", "shufflenet.nn"), "ShuffleNetV2",
                                stages_out_channels=channels).param_count()
    assert spec_count == _meta_count(_shufflenet_ref(), stages_out_channels=channels) == published


# ---- ResNet: torchvision's ResNet(block, layers, num_classes) ---------------------------------

def _resnet_ref():
    import sys
    from conftest import ROOT
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from bench.reference import resnet
    return resnet



def test_shufflenet_widths_one_short_is_a_positioned_error():
    # torchvision refuses a stages_out_channels that is not one longer than the stages plus the
    # last convolution; so does the spec, where the last convolution reads its width
    from nncircuit.errors import NNError

    with pytest.raises(NNError) as info:
        nncircuit.load(_spec("vision", "shufflenet.nn"), "ShuffleNetV2", stages_out_channels=(48, 96, 192, 1024))
    err = info.value
    assert "index 4 is out of range for a tuple of 4" in err.message and err.span.line > 1


@pytest.mark.parametrize("model, block, layers", [("ResNet18", "BasicBlock", (1, 2, 1, 3)),
                                                  ("ResNet50", "Bottleneck", (2, 1, 1, 2))])
def test_resnet_other_layers_match_the_reference(model, block, layers):
    resnet = _resnet_ref()
    torch.manual_seed(0)
    ref = _with_random_statistics(resnet.ResNet(getattr(resnet, block), layers, 7), seed=2).eval()
    with torch.no_grad():  # BatchNorm's affine away from ones and zeros (the convolutions keep their
        for name, p in ref.named_parameters():  # init, so that the activations stay of order 1)
            if ".bn" in name or name.startswith("bn") or "downsample.1" in name:
                p.add_(0.1 * torch.randn_like(p))
    module = nncircuit.compile(_spec("resnet.nn"), model, seed=3, layers=layers, num_classes=7).eval()
    assert _count(module) == _count(ref)
    x = torch.randn(2, 3, 40, 36, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = module(x)
        module.load_state_dict(ref.state_dict(), strict=True)
        want, got = ref(x), module(x)
    assert got.shape == want.shape == (2, 7)
    assert 1e-2 < want.abs().max().item() < 1e3
    assert (got - want).abs().max().item() <= 1e-5
    assert (before - want).abs().max().item() > 1e-3
    # and its own names load back
    again = nncircuit.compile(_spec("resnet.nn"), model, seed=5, layers=layers, num_classes=7).eval()
    again.load_state_dict(module.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(again(x), got)


@pytest.mark.parametrize("model, block, layers, published", [
    ("ResNet18", "BasicBlock", (3, 4, 6, 3), 21_797_672),    # ResNet-34
    ("ResNet50", "Bottleneck", (3, 4, 23, 3), 44_549_160),   # ResNet-101
])
def test_resnet_family_published_counts(model, block, layers, published):
    resnet = _resnet_ref()
    spec_count = nncircuit.load(_spec("resnet.nn"), model, layers=layers).param_count()
    with torch.device("meta"):
        ref = resnet.ResNet(getattr(resnet, block), layers)
    assert spec_count == _count(ref) == published


# ---- KAN: efficient-kan's KAN(layers_hidden, grid_size, spline_order, grid_range) -------------

def test_kan_three_layers_match_the_reference():
    """Four widths (three KANLinear layers) and another grid range, against efficient-kan's KAN."""
    hp = dict(layers_hidden=(5, 4, 6, 3), grid_size=4, spline_order=2, grid_range=(-2.0, 1.5))
    torch.manual_seed(0)
    ref = _perturbed(R.KAN(**hp), seed=1)
    module = nncircuit.compile(_spec("scientific", "kan.nn"), "KAN", seed=3, **hp).eval()
    assert _count(module) == _count(ref)
    assert sorted(R.renamed(module.state_dict(), ((r"^layers_(\d+)\.", r"layers.\1."),
                                                 (r"^layers\.(?!\d)", "layers.0.")))) == sorted(ref.state_dict())
    x = 1.5 * torch.randn(7, 5, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = module(x)
        module.load_state_dict(ref.state_dict(), strict=True)
        want, got = ref(x), module(x)
    assert got.shape == want.shape == (7, 3)
    assert (got - want).abs().max().item() <= 1e-5
    assert (before - want).abs().max().item() > 1e-3


# ---- DDPM U-Net: UNet2DModel's block_out_channels, attention placement ------------------------

def _ddpm_ref():
    import sys
    from conftest import ROOT
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from bench.reference.ddpm_unet import DDPMUNet
    return DDPMUNet


def test_ddpm_unet_other_widths_and_attention_match_the_reference():
    """Other widths and attention at the first and last levels (the way up mirrored)."""
    DDPMUNet = _ddpm_ref()
    widths, attention = (8, 16, 24, 16), (True, False, False, True)
    torch.manual_seed(0)
    ref = DDPMUNet(block_out_channels=widths, attention=attention, norm_num_groups=4).eval()
    with torch.no_grad():  # norms away from their ones/zeros start, as tests/e2e/test_ddpm_unet.py
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    module = nncircuit.compile(_spec("vision", "ddpm_unet.nn"), "DDPMUNet", seed=3, block_out_channels=widths,
                               attention=attention, norm_num_groups=4).eval()
    assert _count(module) == _count(ref)
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([5, 700])
    with torch.no_grad():
        before = module(x, t)
        module.load_state_dict(ref.state_dict(), strict=True)
        want, got = ref(x, t), module(x, t)
    assert got.shape == want.shape == (2, 3, 16, 24)
    assert (got - want).abs().max().item() <= 1e-5
    assert (before - want).abs().max().item() > 1e-3
    assert any(".attention0." in k for k in module.state_dict() if k.startswith("down3."))
    assert not any(".attention" in k for k in module.state_dict() if k.startswith("down1."))


def test_ddpm_unet_takes_four_levels():
    from nncircuit.errors import NNError
    with pytest.raises(NNError, match=r"index 3 is out of range for a tuple of 3") as e:
        nncircuit.load(_spec("vision", "ddpm_unet.nn"), "DDPMUNet", block_out_channels=(8, 8, 16))
    assert "ddpm_unet.nn:" in str(e.value)


# ---- onnxruntime at the non-default lists ----------------------------------------------------

@pytest.mark.parametrize("path, model, hp, shape", [
    (("vision", "convnext.nn"), "ConvNeXt", dict(in_chans=2, num_classes=5, depths=(1, 2, 1), dims=(8, 12, 16)),
     (2, 2, 40, 36)),
    (("scientific", "kan.nn"), "KAN", dict(layers_hidden=(5, 4, 6, 3), grid_size=4, spline_order=2,
                                           grid_range=(-2.0, 1.5)), (7, 5)),
    (("resnet.nn",), "ResNet18", dict(layers=(1, 2, 1, 3), num_classes=7), (2, 3, 40, 36)),
    (("vision", "shufflenet.nn"), "ShuffleNetV2", dict(stages_repeats=(2, 1, 3), stages_out_channels=(8, 12, 20, 16, 24),
                                                       num_classes=6), (2, 3, 48, 40)),
])
def test_onnxruntime_matches_torch_at_other_lists(path, model, hp, shape, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    module = nncircuit.compile(_spec(*path), model, seed=2, **hp).eval()
    out = tmp_path / f"{model}.onnx"
    nncircuit.export_onnx(_spec(*path), str(out), model, state_dict=module.state_dict(), **hp)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want = module(x).numpy()
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert got.shape == want.shape
    assert abs(got - want).max() <= 1e-4

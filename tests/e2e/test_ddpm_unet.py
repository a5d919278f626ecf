"""specs/vision/ddpm_unet.nn against the hand-written reference in diffusers' UNet2DModel layout
(bench/reference/ddpm_unet.py): its state_dict loads strictly (the checkpoint section), the
outputs agree within 1e-5 (fp32, eval) at two image sizes, at -O0 and -O2; onnxruntime agrees
with torch at two other sizes; the parameter count of DDPM's CIFAR-10 configuration."""

import os
import sys

import pytest
import torch

import nncircuit
from conftest import ROOT, SPECS

sys.path.insert(0, ROOT)
from bench.reference.ddpm_unet import DDPMUNet  # noqa: E402

PATH = os.path.join(SPECS, "vision", "ddpm_unet.nn")
TOL = 1e-5
SMALL = dict(block_out_channels=(16, 32, 32, 48), norm_num_groups=4)


def reference():
    torch.manual_seed(0)
    ref = DDPMUNet(block_out_channels=(16, 32, 32, 48), norm_num_groups=4).eval()
    with torch.no_grad():  # norms away from their ones/zeros start, so a mixed-up one shows
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return ref


def inputs(h, w):
    g = torch.Generator().manual_seed(h * 100 + w)
    return torch.randn(2, 3, h, w, generator=g), torch.tensor([3, 917])


def loaded(ref, opt):
    module = nncircuit.load(PATH, "DDPMUNet", opt=opt, **SMALL).module(seed=3).eval()
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return module


@pytest.mark.parametrize("opt", [0, 2])
def test_loads_the_reference_strictly_and_computes_its_outputs(opt):
    ref = reference()
    module = loaded(ref, opt)
    for h, w in ((16, 16), (24, 40)):
        x, t = inputs(h, w)
        with torch.no_grad():
            want, got = ref(x, t), module(x, t)
        assert got.shape == (2, 3, h, w)
        assert (got - want).abs().max().item() <= TOL


def test_own_state_dict_round_trips_and_the_timestep_matters():
    module = loaded(reference(), 0)
    again = nncircuit.load(PATH, "DDPMUNet", **SMALL).module(seed=9).eval()
    again.load_state_dict(module.state_dict(), strict=True)
    x, t = inputs(8, 16)
    with torch.no_grad():
        out = module(x, t)
        assert torch.equal(again(x, t), out)
        assert not torch.allclose(module(x, t + 1), out)


def test_ddpm_cifar10_parameter_count():
    assert nncircuit.load(PATH, "DDPMUNet").param_count() == 35_746_307
    assert sum(p.numel() for p in DDPMUNet().parameters()) == 35_746_307


def test_image_sides_must_be_multiples_of_8():
    module = nncircuit.load(PATH, "DDPMUNet", **SMALL).module(seed=0).eval()
    with pytest.raises(ValueError, match="multiple of 8"):
        module(torch.zeros(1, 3, 12, 16), torch.tensor([1]))


def test_onnxruntime_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    module = loaded(reference(), 0)
    out = tmp_path / "ddpm.onnx"
    nncircuit.export_onnx(PATH, str(out), "DDPMUNet", state_dict=module.state_dict(), **SMALL)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for h, w in ((8, 8), (32, 24)):
        x, t = inputs(h, w)
        with torch.no_grad():
            want = module(x, t).numpy()
        (got,) = sess.run(None, {"sample": x.numpy(), "timestep": t.numpy()})
        assert abs(got - want).max() <= TOL

"""specs/vision/vae.nn : VAE against bench/reference/vae.py (the same network in plain
PyTorch): the reference's state_dict loads strictly; with torch's global generator seeded
alike, the reparameterised sample, the reconstruction, mu and logvar agree to 1e-5 at -O0,
-O2 and from the generated file, and so do the gradients; seed_random makes the draw
repeatable; onnxruntime agrees with torch at two image sizes (the noise made irrelevant by
a pinned log-variance, since ONNX draws anew on every run)."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

import nncircuit
from conftest import ROOT, SPECS

sys.path.insert(0, ROOT)
from bench.reference.vae import VAE  # noqa: E402

SPEC = os.path.join(SPECS, "vision", "vae.nn")
TOL = 1e-5
CONFIGS = {  # MNIST-sized (the default) and 32×32 colour
    "mnist": dict(image=28, channels=1, width=32, latent=16),
    "colour": dict(image=32, channels=3, width=8, latent=4),
}


def pair(hp, opt=0):
    torch.manual_seed(0)
    ref = VAE(**hp)
    module = nncircuit.load(SPEC, "VAE", opt=opt, **hp).module(seed=1)
    result = module.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return module, ref


def images(hp, batch=3, seed=2):
    return torch.rand(batch, hp["channels"], hp["image"], hp["image"], generator=torch.Generator().manual_seed(seed))


def seeded(module, x, seed=7):
    torch.manual_seed(seed)
    return module(x)


def max_diff(a, b):
    return max(float((p - q).abs().max()) for p, q in zip(a, b))


@pytest.mark.parametrize("opt", [0, 2])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_outputs_equal_the_reference_with_the_same_draw(config, opt):
    hp = CONFIGS[config]
    module, ref = pair(hp, opt)
    x = images(hp)
    for mode in ("train", "eval"):  # the sample is drawn in eval mode too
        getattr(module, mode)(), getattr(ref, mode)()
        with torch.no_grad():
            got, want = seeded(module, x), seeded(ref, x)
        assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in want]
        assert max_diff(got, want) <= TOL, (config, opt, mode)
    # another draw gives another reconstruction from the same mu and logvar
    with torch.no_grad():
        other = seeded(module, x, seed=8)
    assert float((other[0] - got[0]).abs().max()) > 1e-4
    assert torch.equal(other[1], got[1]) and torch.equal(other[2], got[2])


def test_gradients_equal_the_reference():
    hp = CONFIGS["colour"]
    module, ref = pair(hp)
    x = images(hp)
    losses = []
    for m in (module, ref):
        recon, mu, logvar = seeded(m, x)
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp())
        loss = torch.nn.functional.binary_cross_entropy(recon, x, reduction="sum") + kl
        loss.backward()
        losses.append(loss)
    assert abs((losses[0] - losses[1]).item()) <= 1e-3
    ours, theirs = dict(module.named_parameters()), dict(ref.named_parameters())
    for name, p in theirs.items():
        torch.testing.assert_close(ours[name].grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    assert float(ours["encoder.logvar.weight"].grad.abs().max()) > 0  # through the sample


def test_seed_random_repeats_the_draw():
    hp = CONFIGS["mnist"]
    module, _ = pair(hp)
    x = images(hp)
    with torch.no_grad():
        module.seed_random(11)
        a = module(x)
        torch.randn(5)  # the global generator moves; the module's own does not care
        module.seed_random(11)
        b = module(x)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_generated_file_equals_the_reference(tmp_path):
    hp = CONFIGS["mnist"]
    out = tmp_path / "vae_gen.py"
    nncircuit.load(SPEC, "VAE", opt=2).write(str(out))
    spec = importlib.util.spec_from_file_location("vae_gen", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    ref = VAE(**hp).eval()
    module = mod.VAE().eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    x = images(hp)
    with torch.no_grad():
        assert max_diff(seeded(module, x), seeded(ref, x)) <= TOL


def test_parameter_count_equals_the_reference():
    for hp in CONFIGS.values():
        spec = nncircuit.load(SPEC, "VAE", **hp)
        assert spec.param_count() == sum(p.numel() for p in VAE(**hp).parameters())
    assert nncircuit.load(SPEC, "VAE").param_count() == 220_385


def test_image_size_must_divide_by_four():
    with pytest.raises(nncircuit.NNError, match="not divisible by 4") as info:
        nncircuit.load(SPEC, "VAE", image=30)
    assert "vae.nn:" in str(info.value)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_onnxruntime_equals_torch(config, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    hp = CONFIGS[config]
    module, _ = pair(hp)
    module.eval()
    with torch.no_grad():  # logvar pinned far below zero: z = mu to float precision
        module.encoder.logvar.weight.zero_()
        module.encoder.logvar.bias.fill_(-80.0)
    path = tmp_path / "vae.onnx"
    nncircuit.export_onnx(SPEC, str(path), "VAE", state_dict=module.state_dict(), **hp)
    import onnx

    assert "RandomNormalLike" in {n.op_type for n in onnx.load(str(path)).graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = images(hp, batch)
        with torch.no_grad():
            want = module(x)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=TOL)

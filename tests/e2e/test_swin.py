"""specs/vision/swin.nn: Swin-T as torchvision's swin_t. The hand-written reference in
torchvision's structure and names (bench/reference/swin.py) loads strictly into the compiled
module, the outputs agree to 1e-5 at small configurations (shifted windows, a window covering
the map, padding to a multiple of the window, odd maps in patch merging, window 4), onnxruntime
agrees with torch, and the parameter count is the published 28,288,354."""

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
from bench.reference.swin import SwinTransformer, swin_t  # noqa: E402

SPEC = os.path.join(SPECS, "vision", "swin.nn")
TOL = 1e-5
SMALL = dict(embed_dim=24, num_classes=10)  # heads (3, 6, 12, 24): 8 channels per head


def reference(seed: int, **hp) -> SwinTransformer:
    torch.manual_seed(seed)
    ref = swin_t(embed_dim=hp["embed_dim"], num_classes=hp["num_classes"],
                 window_size=hp.get("window_size", 7)).eval()
    with torch.no_grad():  # away from the initial values, so that norms, biases and the table count
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return ref


def pixels(image: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, image, image, generator=torch.Generator().manual_seed(seed))


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


# image 56: maps 14 (two windows a side, shifted), 7 (the window covers it: no shift), 4 and 2
# (padded to 7); image 64: 16 and 8 (padded to 21 and 14, shifted, masks on the padded map);
# image 200: 50, then an odd 25 that patch merging pads; window 4 at 64: 16, 8, 4, 2
CONFIGS = [dict(image=56), dict(image=64), dict(image=200), dict(image=64, window_size=4)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_reference_loads_strictly_and_outputs_match(config):
    hp = {**SMALL, **config}
    module = nncircuit.compile(SPEC, "SwinT", seed=1, **hp).eval()
    ref = reference(3, **hp)
    x = pixels(hp["image"])
    with torch.no_grad():
        before = module(x)
    result = module.load_state_dict(ref.state_dict(), strict=True)  # torchvision's names as they are
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        got, want = module(x), ref(x)
    assert got.shape == want.shape == (2, 10)
    assert max_diff(got, want) <= TOL
    assert max_diff(before, want) > 1e-3  # the load mattered
    # the module's own state_dict (its own names) loads into a fresh one
    again = nncircuit.compile(SPEC, "SwinT", seed=2, **hp).eval()
    again.load_state_dict(module.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(again(x), got)


def test_unoptimised_module_matches_too():
    hp = {**SMALL, "image": 64}
    module = nncircuit.load(SPEC, "SwinT", opt=0, **hp).module(seed=0).eval()
    ref = reference(7, **hp)
    module.load_state_dict(ref.state_dict(), strict=True)
    x = pixels(64)
    with torch.no_grad():
        assert max_diff(module(x), ref(x)) <= TOL


def test_relative_position_index_is_torchvisions_persistent_buffer():
    module = nncircuit.compile(SPEC, "SwinT", seed=0, image=56, **SMALL)
    ref = reference(0, image=56, **SMALL)
    own = module.state_dict()
    for name, _ in ref.named_buffers():
        assert name.endswith("relative_position_index")
    want = ref.state_dict()["features.5.3.attn.relative_position_index"]
    got = own["swin_transformer_block_7.attn.relative_position_index"]
    assert got.dtype == torch.int64 and torch.equal(got, want)
    assert "swin_transformer_block_7.attn.relative_position_index" not in dict(module.named_parameters())


def test_onnxruntime_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    hp = {**SMALL, "image": 64}
    module = nncircuit.compile(SPEC, "SwinT", seed=4, **hp).eval()
    module.load_state_dict(reference(5, **hp).state_dict(), strict=True)
    out = tmp_path / "swin.onnx"
    nncircuit.export_onnx(SPEC, str(out), "SwinT", state_dict=module.state_dict(), **hp)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # the batch is a run-time axis
        x = pixels(64, batch, seed=batch)
        with torch.no_grad():
            want = module(x).numpy()
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=TOL)


def test_generated_file_loads_torchvision_names(tmp_path):
    hp = {**SMALL, "image": 56}
    out = tmp_path / "swin.py"
    nncircuit.load(SPEC, "SwinT", **hp).write(str(out))
    spec = importlib.util.spec_from_file_location("gen_swin", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module = mod.SwinT().eval()
    ref = reference(6, **hp)
    module.load_state_dict(ref.state_dict(), strict=True)
    x = pixels(56)
    with torch.no_grad():
        assert max_diff(module(x), ref(x)) <= TOL


def test_stochastic_depth_draws_only_in_training():
    hp = {**SMALL, "image": 56, "stochastic_depth_prob": 0.9}
    module = nncircuit.compile(SPEC, "SwinT", seed=0, **hp)
    x = pixels(56, batch=4)
    torch.manual_seed(0)
    with torch.no_grad():
        a, b = module.train()(x), module(x)
        e1, e2 = module.eval()(x), module(x)
    assert not torch.equal(a, b) and torch.equal(e1, e2)


def test_published_parameter_count():
    assert nncircuit.load(SPEC, "SwinT").param_count() == 28_288_354
    with torch.device("meta"):
        ref = swin_t()
    assert sum(p.numel() for p in ref.parameters()) == 28_288_354


def test_an_image_size_that_does_not_divide_by_the_patch_is_refused():
    with pytest.raises(nncircuit.NNError, match="not divisible"):
        nncircuit.load(SPEC, "SwinT", image=226, **SMALL)


def test_swin_s_parameter_count_from_depths():
    # torchvision's swin_s: depths (2, 2, 18, 2), the rest as swin_t; 49,606,258 published
    assert nncircuit.load(SPEC, "SwinT", depths=(2, 2, 18, 2)).param_count() == 49_606_258
    with torch.device("meta"):
        ref = SwinTransformer(depths=(2, 2, 18, 2))
    assert sum(p.numel() for p in ref.parameters()) == 49_606_258


def test_other_depths_and_heads_load_strictly_and_match():
    # odd depths (a stage of 3: shifted, unshifted, shifted) and other heads per stage
    hp = dict(embed_dim=16, num_classes=10, depths=(1, 3, 1, 2), num_heads=(2, 4, 4, 8), image=64)
    module = nncircuit.compile(SPEC, "SwinT", seed=1, **hp).eval()
    torch.manual_seed(2)
    ref = SwinTransformer(embed_dim=16, num_classes=10, depths=(1, 3, 1, 2), num_heads=(2, 4, 4, 8)).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
    module.load_state_dict(ref.state_dict(), strict=True)
    x = pixels(64)
    with torch.no_grad():
        assert max_diff(module(x), ref(x)) <= TOL


def test_the_generated_class_takes_heads_and_refuses_other_depths():
    cls = nncircuit.load(SPEC, "SwinT", **SMALL, image=56).torch_class()
    assert cls(num_heads=[2, 4, 8, 8]).num_heads == (2, 4, 8, 8)  # sizes follow the heads
    with pytest.raises(ValueError, match=r"`for j in range\(depths\[2\]\)` was compiled for 6 rows, found 18"):
        cls(depths=(2, 2, 18, 2))

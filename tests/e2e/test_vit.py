"""specs/vit.nn under torchvision's VisionTransformer argument names (issue 13): the generated
class takes `image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, dropout,
num_classes` with vit_b_16's values as defaults, as the hand reference
(bench/reference/vit.py) does, and `dropout` drops where torchvision's does (after the
positions, after attention, twice in the MLP): in train mode, from the same seed, the spec
and the reference draw the same masks and compute the same outputs."""

import inspect
import os
import sys

import pytest
import torch

from conftest import ROOT, SPECS

sys.path.insert(0, ROOT)
from bench.reference import vit  # noqa: E402

import nncircuit  # noqa: E402

PATH = os.path.join(SPECS, "vit.nn")
# torchvision.models.VisionTransformer's first arguments, in order, with vit_b_16's values
# (torchvision's attention_dropout, the dropout inside nn.MultiheadAttention, is not in the spec)
TORCHVISION = dict(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
                   mlp_dim=3072, dropout=0.0, num_classes=1000)
SMALL = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
             num_classes=10)


def _defaults(fn) -> dict:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if n != "self"}


def test_hyperparameters_are_torchvisions_names_with_the_published_defaults():
    spec = nncircuit.load(PATH, "ViT")
    assert _defaults(spec.torch_class().__init__) == TORCHVISION
    assert list(_defaults(spec.torch_class().__init__)) == list(TORCHVISION)
    assert spec.param_count() == 86_567_656
    ref = _defaults(vit.ViT.__init__)
    assert ref == {**TORCHVISION, "attention_dropout": 0.0}
    assert list(ref)[:7] == list(TORCHVISION)[:7]  # torchvision's order: attention_dropout, num_classes


def test_the_old_short_names_are_refused():
    with pytest.raises(nncircuit.NNError, match="no hyperparameter 'image' \\(did you mean 'image_size'\\?\\)"):
        nncircuit.load(PATH, "ViT", image=32, patch=8)


@pytest.mark.parametrize("opt", [0, 2])
def test_dropout_draws_where_torchvision_draws(opt):
    torch.manual_seed(0)
    ref = vit.ViT(**SMALL, dropout=0.25).train()
    spec = nncircuit.load(PATH, "ViT", opt=opt, **SMALL, dropout=0.25)
    module = spec.module().train()  # unseeded: its dropout draws from torch's global generator
    module.load_state_dict(ref.state_dict(), strict=True)
    # one image: nn.MultiheadAttention (batch_first) returns its output transposed, and dropout
    # draws its mask in memory order, which at batch 1 is the spec's order too
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.manual_seed(3)
        want = ref(x)
        torch.manual_seed(3)
        got = module(x)
        torch.manual_seed(4)
        other = module(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (other - got).abs().max() > 1e-3  # the masks are drawn: another seed, other outputs
    # eval mode drops nothing
    ref.eval()
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref(x), rtol=1e-5, atol=1e-5)

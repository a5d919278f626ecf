"""The compiled zoo computes what hand-written PyTorch of the same configuration computes:
the references in bench/reference/ (nanoGPT-style GPT-2, torchvision-style ViT and ResNets)
load the compiled module's weights through a name mapping and must give the same outputs,
at -O0 and -O2, in eval and train mode."""

import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, ROOT)
from bench import models  # noqa: E402

CASES = {
    "gpt2": lambda: models.gpt2_case(vocab=97, ctx=32, d=64, heads=4, layers=2, batch=2, seq=16),
    "vit": lambda: models.vit_case(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64,
                                   mlp_dim=128, num_classes=10, batch=2),
    # 64×64 takes every stride-2 stage down to 2×2: a stage that lost its stride (as a shared
    # class baking in its first instance's values once did) changes the output
    "resnet18": lambda: models.resnet_case("ResNet18", classes=10, image=64, batch=2),
    "resnet50": lambda: models.resnet_case("ResNet50", classes=10, image=64, batch=2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_equals_hand_written_reference(name):
    case = CASES[name]()
    compiled, ref, notes = models.build(case, [0, 2])
    assert set(compiled) == {0, 2}, notes
    x = case.make_input(torch.Generator().manual_seed(0), case.batch)
    errors = models.check_outputs(case, compiled, ref, x, tol=1e-5)
    assert errors and all(e <= 1e-5 for e in errors.values()), errors

"""Shared test configuration: the --update-goldens switch and small model settings."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = os.path.join(ROOT, "specs")

# The optimizer verifies every graph after every pass under test (by default it verifies
# only what a pass changed); subprocesses the tests start inherit it.
os.environ["NNC_VERIFY"] = "all"


def pytest_addoption(parser):
    parser.addoption(
        "--update-goldens", action="store_true", default=False,
        help="rewrite golden files from the current output instead of comparing",
    )


@pytest.fixture
def update_goldens(request) -> bool:
    return request.config.getoption("--update-goldens") or os.environ.get("NNC_UPDATE_GOLDENS") == "1"


# Small settings at which every model in specs/ compiles and runs fast.
SMALL = {
    ("mlp.nn", "MLP"): {},
    ("transformer.nn", "GPT2"): dict(vocab=97, ctx=32, d=64, heads=4, layers=2),
    ("vit.nn", "ViT"): dict(image=32, patch=8, d=64, heads=4, layers=2, hidden=128, classes=10),
    ("resnet.nn", "ResNet18"): dict(classes=10),
    ("resnet.nn", "ResNet50"): dict(classes=10),
    ("unet.nn", "UNet"): dict(width=8),
    ("conv.nn", "ConvNet"): {},
    ("conv.nn", "TextCNN"): {},
}

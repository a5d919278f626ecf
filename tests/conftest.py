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


# ---- the fast tier: `pytest -m "not slow"` is the inner loop; CI runs everything ----------

# end-to-end, fuzzing and differential modules, whole
SLOW_MODULES = {
    "test_differential.py", "test_fuzz.py", "test_references.py", "test_packaging.py", "test_lsp.py",
}
# single slow tests (by function name, any parameters) in otherwise fast modules
SLOW_TESTS = {
    "test_hostile.py": {"test_outputs_identical_across_hash_seeds", "test_bombs_allocate_nothing"},
    "test_onnx.py": {
        "test_export_works_without_torch", "test_zoo_model_checks_and_matches_torch",
        "test_functions_model_checks_and_matches_torch", "test_weights_files", "test_other_opsets",
        "test_optimized_models_match_torch", "test_fp16_and_int8_report_their_accuracy",
    },
    "test_passes.py": {"test_O2_matches_O0", "test_every_pass_keeps_random_specs_valid", "test_O2_trains_like_O0"},
    "test_specs.py": {"test_generated_file_runs_without_nncircuit", "test_dynamic_image_sizes"},
    "test_render.py": {"test_rendering_does_not_depend_on_the_hash_seed", "test_cli_writes_every_format"},
    "test_distributed.py": {"test_two_processes_train_like_one"},  # two gloo processes, all runs once
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end, fuzz, differential or long tests (skip with -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = os.path.basename(str(item.fspath))
        if module in SLOW_MODULES or item.originalname in SLOW_TESTS.get(module, ()):
            item.add_marker(pytest.mark.slow)

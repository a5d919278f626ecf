"""Shared test configuration: the --update-goldens switch and small model settings."""

import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))  # tests/
ROOT = os.path.dirname(HERE)
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
    ("vit.nn", "ViT"): dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10),
    ("resnet.nn", "ResNet18"): dict(num_classes=10),
    ("resnet.nn", "ResNet50"): dict(num_classes=10),
    ("unet.nn", "UNet"): dict(width=8),
    ("conv.nn", "ConvNet"): {},
    ("conv.nn", "TextCNN"): {},
    # the zoo's exact models (tests/test_zoo.py compares them with their references)
    ("llama.nn", "Llama"): dict(vocab_size=97, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=6, num_key_value_heads=2, head_dim=8, rope_theta=10000.0,
                                factor=8.0, original_max_position_embeddings=8),
    ("bert.nn", "Bert"): dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=128, type_vocab_size=16),
    ("lstm.nn", "LSTM"): {},
    ("lstm.nn", "GRU"): {},
    ("lstm.nn", "RNN"): {},
    ("linear_attention.nn", "LinearAttention"): {},
    ("lif.nn", "LIF"): {},
    ("mamba.nn", "Mamba"): dict(vocab_size=97, hidden_size=32, state_size=8, num_hidden_layers=2, time_step_rank=2),
    ("t5.nn", "T5"): dict(vocab_size=97, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                          num_heads=4, relative_attention_max_distance=20),
    ("llama_decode.nn", "LlamaDecode"): dict(vocab_size=97, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=6, num_key_value_heads=2, head_dim=8,
                                             rope_theta=10000.0, factor=8.0, original_max_position_embeddings=8),
    ("s4d.nn", "S4D"): dict(d=6, n=5),
    ("mixtral.nn", "Mixtral"): dict(vocab_size=97, hidden_size=32, intermediate_size=24, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0),
    ("deepseek_v3.nn", "DeepseekV3"): dict(vocab_size=97, hidden_size=32, intermediate_size=48, moe_intermediate_size=12,
                                           num_hidden_layers=4, num_attention_heads=4, n_routed_experts=16,
                                           kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, v_head_dim=12,
                                           qk_nope_head_dim=6, n_group=4, topk_group=2, num_experts_per_tok=3),
    ("ltc.nn", "LTC"): {},
    ("pointer.nn", "Pointer"): {},
}
# published configurations over the default parameter budget (2e9): tests that load every
# spec at its defaults raise the budget for these
OVER_BUDGET = {"mixtral.nn", "deepseek_v3.nn"}


# ---- the fast tier: `pytest -m "not slow"` is the inner loop; CI runs everything ----------

# end-to-end, fuzzing and differential modules, whole
SLOW_MODULES = {
    "e2e/test_differential.py", "e2e/test_fuzz.py", "e2e/test_references.py", "e2e/test_packaging.py",
    "editor/test_lsp.py", "test_typecheck.py",
}
# single slow tests (by function name, any parameters) in otherwise fast modules; both
# tables name a module by its path under tests/
SLOW_TESTS = {
    "e2e/test_hostile.py": {"test_outputs_identical_across_hash_seeds", "test_bombs_allocate_nothing"},
    "backends/onnx/test_onnx.py": {
        "test_export_works_without_torch", "test_zoo_model_checks_and_matches_torch",
        "test_functions_model_checks_and_matches_torch", "test_weights_files", "test_other_opsets",
        "test_optimized_models_match_torch", "test_fp16_and_int8_report_their_accuracy",
    },
    "passes/test_passes.py": {
        "test_O2_matches_O0", "test_every_pass_keeps_random_specs_valid", "test_O2_trains_like_O0",
    },
    "e2e/test_specs.py": {"test_generated_file_runs_without_nncircuit", "test_dynamic_image_sizes"},
    "backends/diagram/test_render.py": {
        "test_rendering_does_not_depend_on_the_hash_seed", "test_cli_writes_every_format",
    },
    "backends/torch/test_distributed.py": {"test_two_processes_train_like_one"},  # two gloo processes, all runs once
    "backends/torch/test_hyperparams.py": {
        "test_generated_class_matches_compile_for_random_hyperparameters",
    },
    "editor/test_fmt.py": {"test_cli_check_rewrite_and_stdin", "test_cli_syntax_error_leaves_the_file_alone"},
    "e2e/test_trust_modules.py": {
        "test_checks_keep_torch_export_with_dynamic_batch_and_seq", "test_checks_keep_torch_compile_fullgraph",
    },
    "backends/diagram/test_diagram_paper.py": {"test_png_scale_and_printed_width"},
    "backends/diagram/test_diagram_routing.py": {"test_routing_problems_do_not_grow"},
    "ops/test_moe.py": {"test_a_transformers_mixtral_block_loads_strictly_and_agrees"},  # imports transformers
    "e2e/test_deepseek_v3.py": {"test_the_correction_bias_selects_but_does_not_weigh",
                                "test_other_rope_layout_and_routing", "test_onnxruntime_equals_torch"},
    "e2e/test_zoo.py": {"test_heavier_variants_load_the_reference_strictly",
                        "test_onnx_with_reference_weights_matches_torch"},
    "e2e/test_install.py": {"test_torch_free_commands_do_not_import_torch"},
    "e2e/test_swin.py": {  # each compiles Swin-T (about 10 s); the parameter count stays fast
        "test_reference_loads_strictly_and_outputs_match", "test_relative_position_index_is_torchvisions_persistent_buffer",
        "test_onnxruntime_matches_torch", "test_generated_file_loads_torchvision_names",
        "test_stochastic_depth_draws_only_in_training", "test_unoptimised_module_matches_too",
    },
    "backends/onnx/test_onnx_scale.py": {
        "test_external_data_from_the_command_line",
        "test_fused_qkv_trains_like_separate_layers_without_joining_per_call",
    },
    "e2e/test_notebook.py": {"test_compiled_module_scripts"},
    "editor/test_highlight.py": {"test_lexer_is_an_entry_point_by_name_and_filename"},
    "passes/test_pass_files.py": {"test_nnc_opt_reads_textual_ir"},
    "e2e/test_ddpm_unet.py": {"test_loads_the_reference_strictly_and_computes_its_outputs",
                              "test_own_state_dict_round_trips_and_the_timestep_matters",
                              "test_onnxruntime_matches_torch"},
    "e2e/test_mobile_zoo.py": {
        "test_optimized_module_agrees_too", "test_onnxruntime_matches_torch_at_two_sizes",
        "test_efficientnet_drops_whole_samples_while_training", "test_generated_file_loads_torchvision_names",
        "test_mobilenet_trains_like_the_reference",
    },
    "e2e/test_llama_decode.py": {"test_decode_steps_at_O2_equal_the_reference_cache",
                                 "test_onnx_equals_torch_at_cache_lengths_0_and_5"},
    "e2e/test_scan_bench_models.py": {"test_the_bench_runs_and_checks_its_outputs"},  # S4D and Mamba at bench sizes
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end, fuzz, differential or long tests (skip with -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = os.path.relpath(str(item.fspath), HERE).replace(os.sep, "/")
        if module in SLOW_MODULES or item.originalname in SLOW_TESTS.get(module, ()):
            item.add_marker(pytest.mark.slow)

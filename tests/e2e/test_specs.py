"""The architecture zoo: reference parameter counts at canonical settings, and a forward
pass at small settings whose output has the type the checker promised."""

import os
import subprocess
import sys

import pytest
import torch

import nncircuit
from conftest import OVER_BUDGET, SMALL, SPECS
from helpers import random_inputs

# Canonical defaults must equal the reference implementations exactly.
REFERENCE_PARAMS = [
    ("mlp.nn", "MLP", 669_706),  # 784-512-512-10 MLP
    ("transformer.nn", "GPT2", 124_439_808),  # Hugging Face GPT2LMHeadModel
    ("vit.nn", "ViT", 86_567_656),  # torchvision vit_b_16
    ("resnet.nn", "ResNet18", 11_689_512),  # torchvision resnet18
    ("resnet.nn", "ResNet50", 25_557_032),  # torchvision resnet50
    ("unet.nn", "UNet", 31_030_658),  # Ronneberger U-Net, padded convs
]


@pytest.mark.parametrize("file,model,expected", REFERENCE_PARAMS)
def test_reference_parameter_counts(file, model, expected):
    spec = nncircuit.load(os.path.join(SPECS, file), model)
    assert spec.param_count() == expected


@pytest.mark.parametrize("file,model,expected", [r for r in REFERENCE_PARAMS if r[2] < 40_000_000])
def test_built_module_has_reference_parameter_count(file, model, expected):
    module = nncircuit.compile(os.path.join(SPECS, file), model)
    assert sum(p.numel() for p in module.parameters()) == expected


def _concrete_shape(spec, t, inputs):
    """The shape the checker promises for type t, given the actual inputs' dynamic sizes."""
    env = {}
    for (_, it), x in zip(spec.inputs(), inputs):
        for ax, n in zip(it.axes, x.shape):
            sym = ax.size.bare_symbol()
            if sym is not None:
                env[sym] = n
    return tuple(ax.size.evaluate(env) for ax in t.axes)


# models whose outputs hold -inf on purpose: the pointer network's logits at chosen positions
MASKED = {("pointer.nn", "Pointer")}


@pytest.mark.parametrize("key", sorted(SMALL), ids=lambda k: f"{k[0]}:{k[1]}")
def test_forward_at_small_settings_matches_checked_type(key):
    file, model = key
    spec = nncircuit.load(os.path.join(SPECS, file), model, **SMALL[key])
    module = spec.module(seed=0).eval()
    assert sum(p.numel() for p in module.parameters()) == spec.param_count()
    for sizes in ({}, {"batch": 3}):
        inputs = random_inputs(spec, sizes)
        with torch.no_grad():
            out = module(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        for o, (_, t) in zip(outs, spec.outputs()):
            assert tuple(o.shape) == _concrete_shape(spec, t, inputs)
            if key in MASKED and o.is_floating_point():
                o = o.masked_fill(o == float("-inf"), 0.0)
            assert torch.isfinite(o).all()


def test_dynamic_image_sizes():
    spec = nncircuit.load(os.path.join(SPECS, "unet.nn"), width=4)
    m = spec.module(seed=0).eval()
    for hw in [(32, 32), (37, 45), (16, 70)]:
        (x,) = random_inputs(spec, {"h": hw[0], "w": hw[1]})
        assert m(x).shape == (2, 2, *hw)


def test_gpt2_is_causal():
    spec = nncircuit.load(os.path.join(SPECS, "transformer.nn"), **SMALL[("transformer.nn", "GPT2")])
    m = spec.module(seed=0).eval()
    x = torch.randint(0, 97, (1, 10))
    y = x.clone()
    y[0, 7:] = (y[0, 7:] + 1) % 97  # change only later tokens
    with torch.no_grad():
        a, b = m(x), m(y)
    assert torch.allclose(a[0, :7], b[0, :7], atol=1e-6)
    assert not torch.allclose(a[0, 7:], b[0, 7:])


def test_gpt2_output_head_is_tied():
    spec = nncircuit.load(os.path.join(SPECS, "transformer.nn"), **SMALL[("transformer.nn", "GPT2")])
    m = spec.module(seed=0)
    names = dict(m.named_parameters())
    assert "wte.weight" in names
    assert not any(k.startswith("logits") for k in names)
    with torch.no_grad():
        m.wte.weight.zero_()
    assert m(torch.randint(0, 97, (1, 4))).abs().max() == 0


def test_state_dict_names_mirror_the_spec():
    spec = nncircuit.load(os.path.join(SPECS, "transformer.nn"), **SMALL[("transformer.nn", "GPT2")])
    keys = set(spec.module(seed=0).state_dict())
    for k in ["wte.weight", "wpe.weight", "h.0.ln1.weight", "h.1.attn.q.weight",
              "h.1.attn.proj.bias", "h.0.mlp.linear.weight", "layer_norm.bias"]:
        assert k in keys, sorted(keys)


ALL_SPECS = sorted(
    os.path.relpath(os.path.join(d, f), SPECS)
    for d, _, files in os.walk(SPECS) for f in files if f.endswith(".nn")
)


@pytest.mark.parametrize("file", ALL_SPECS)
def test_nnc_check_passes_on_every_spec(file):
    from nncircuit.cli import main

    budget = ["--max-params", "1e12"] if file in OVER_BUDGET else []
    assert main(["check", os.path.join(SPECS, file), *budget]) == 0


def test_check_of_a_library_file_checks_its_blocks(tmp_path, capsys):
    from nncircuit.cli import main

    assert main(["check", os.path.join(SPECS, "lib", "attention.nn")]) == 0
    out = capsys.readouterr().out
    assert "block Attention: parsed; checked where it is used (needs dh)" in out
    lib = tmp_path / "lib.nn"
    lib.write_text("block P(d = 4) { in x: [d] out Linear(x, d -> d) }\nblock Q(n) { in x: [n] out x }\n")
    assert main(["check", str(lib)]) == 0
    assert "block P: 20 parameters; in x: [d: 4]; out out: [d: 4]" in capsys.readouterr().out
    lib.write_text("block P(d = 4) { in x: [d] out Linear(x, e -> d) }\n")
    assert main(["check", str(lib)]) == 1
    assert "Linear expects an axis 'e'" in capsys.readouterr().err


def test_lib_specs_parse_and_are_imported():
    prog = nncircuit.lang.program.load(os.path.join(SPECS, "transformer.nn"))
    assert "CausalAttention" in prog.blocks
    assert any(p.endswith(os.path.join("lib", "attention.nn")) for p in prog.files)


def test_seed_makes_weights_reproducible():
    path = os.path.join(SPECS, "mlp.nn")
    a = nncircuit.compile(path, seed=3).state_dict()
    b = nncircuit.compile(path, seed=3).state_dict()
    c = nncircuit.compile(path, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_generated_file_runs_without_nncircuit(tmp_path):
    from nncircuit.cli import main

    out = tmp_path / "gpt2.py"
    assert main(["compile", os.path.join(SPECS, "transformer.nn"), "--to", "torch", "-o", str(out),
                 "-p", "d=32", "-p", "heads=2", "-p", "layers=1", "-p", "vocab=50", "-p", "ctx=16"]) == 0
    code = (
        "import sys; sys.modules['nncircuit'] = None\n"
        "import torch, gpt2\n"
        "m = gpt2.GPT2(vocab=50, ctx=16, d=32, heads=2, layers=1)\n"
        "print(tuple(m(torch.randint(0, 50, (2, 5))).shape))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(2, 5, 50)"

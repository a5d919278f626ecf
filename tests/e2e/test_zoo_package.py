"""The zoo and spec library ship with nncircuit: `nncircuit.zoo` finds, loads and compiles
its models, a user's spec imports its blocks with "zoo:...", and the wheel carries every
.nn file of specs/ so that all of this works outside the checkout."""

import ast
import os
import subprocess
import sys
import zipfile

import pytest

import nncircuit
from conftest import ROOT, SPECS
from nncircuit.cli import main
from nncircuit.errors import NameResolutionError

USER_SPEC = (
    'from "zoo:lib/attention.nn" import Attention\n'
    "model Mine(dh = 8) {\n"
    "    in x: [batch, seq, dh]\n"
    "    k = x rename seq -> key\n"
    "    out Attention(dh)(x, k, k rename dh -> dv)\n"
    "}\n"
)


def _spec_files():
    return sorted(
        os.path.relpath(os.path.join(d, f), SPECS).replace(os.sep, "/")
        for d, _, fs in os.walk(SPECS) for f in fs if f.endswith(".nn")
    )


def test_zoo_lists_every_spec_file():
    assert nncircuit.zoo.files() == _spec_files()
    assert "lib/attention.nn" in nncircuit.zoo.files()
    assert os.path.samefile(nncircuit.zoo.root(), SPECS)


def test_zoo_path():
    assert os.path.samefile(nncircuit.zoo.path("transformer.nn"), os.path.join(SPECS, "transformer.nn"))
    assert os.path.samefile(nncircuit.zoo.path("lib/attention.nn"), os.path.join(SPECS, "lib", "attention.nn"))
    with pytest.raises(NameResolutionError, match=r"no file 'transfomer.nn' \(did you mean 'transformer.nn'\?\)"):
        nncircuit.zoo.path("transfomer.nn")


def test_zoo_models_name_their_files():
    assert nncircuit.zoo.models() == {
        "Bert": "bert.nn", "ConvNet": "conv.nn", "GPT2": "transformer.nn", "Llama": "llama.nn",
        "LlamaDecode": "llama_decode.nn", "MLP": "mlp.nn", "ResNet18": "resnet.nn",
        "ResNet50": "resnet.nn", "TextCNN": "conv.nn", "UNet": "unet.nn", "ViT": "vit.nn",
        "DIN": "recsys/din.nn", "GAT": "graph/gat.nn", "GCN": "graph/gcn.nn", "Hopfield": "memory/hopfield.nn",
        "HyperMLP": "meta/hypernet.nn", "KAN": "scientific/kan.nn", "MemN2N": "memory/memn2n.nn",
        "ConvNeXt": "vision/convnext.nn", "MlpMixer": "vision/mixer.nn",
        "NeuralODE": "scientific/neural_ode.nn",
        "LSTM": "lstm.nn", "GRU": "lstm.nn", "RNN": "lstm.nn",
        "LinearAttention": "linear_attention.nn",
        "LIF": "lif.nn", "Mamba": "mamba.nn",
        "T5": "t5.nn", "DDPMUNet": "vision/ddpm_unet.nn",
        "SwinT": "vision/swin.nn",
        "MobileNetV2": "vision/mobilenet_v2.nn", "EfficientNetB0": "vision/efficientnet.nn", "ShuffleNetV2": "vision/shufflenet.nn",
        "VAE": "vision/vae.nn",
        "S4D": "s4d.nn",
        "Mixtral": "mixtral.nn", "DeepseekV3": "deepseek_v3.nn",
        "LTC": "ltc.nn", "Pointer": "pointer.nn",
    }


def test_zoo_load_with_hyperparameters():
    spec = nncircuit.zoo.load("GPT2", d=64, heads=4, layers=2, vocab=97, ctx=32)
    assert spec.model == "GPT2"
    assert spec.params == dict(d=64, heads=4, layers=2, vocab=97, ctx=32)
    assert spec.param_count() == nncircuit.load(os.path.join(SPECS, "transformer.nn"), d=64, heads=4,
                                                layers=2, vocab=97, ctx=32).param_count()
    assert nncircuit.zoo.load("ResNet50").param_count() == 25_557_032
    with pytest.raises(NameResolutionError, match=r"no model 'GTP2' \(did you mean 'GPT2'\?\)"):
        nncircuit.zoo.load("GTP2")


def test_zoo_compile():
    import torch

    m = nncircuit.zoo.compile("MLP", seed=0)
    assert m(torch.zeros(2, 28, 28)).shape == (2, 10)


def test_user_spec_imports_a_zoo_block(tmp_path, capsys):
    f = tmp_path / "mine.nn"
    f.write_text(USER_SPEC)
    assert main(["check", str(f)]) == 0
    assert capsys.readouterr().out == "Mine: 0 parameters; in x: [batch, seq, dh: 8]; out out: [batch, seq, dv: 8]\n"


def test_zoo_import_of_a_missing_file_is_a_positioned_error(tmp_path, capsys):
    f = tmp_path / "mine.nn"
    f.write_text(USER_SPEC.replace("lib/attention.nn", "lib/atention.nn"))
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{f}:1:1: error: the zoo has no file 'lib/atention.nn' (did you mean 'lib/attention.nn'?); zoo files: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("bad", ["zoo:../README.md.nn", "zoo:lib/../../x.nn", "zoo:/etc/x.nn"])
def test_zoo_import_cannot_leave_the_zoo(tmp_path, capsys, bad):
    f = tmp_path / "mine.nn"
    f.write_text(USER_SPEC.replace("zoo:lib/attention.nn", bad))
    assert main(["check", str(f)]) == 1
    assert f"'{bad}' names a file outside the zoo" in capsys.readouterr().err


def test_a_local_folder_named_zoo_is_not_the_zoo(tmp_path, capsys):
    (tmp_path / "zoo").mkdir()
    f = tmp_path / "mine.nn"
    f.write_text(USER_SPEC.replace("zoo:lib/attention.nn", "zoo/lib.nn"))
    assert main(["check", str(f)]) == 1
    assert "imported file 'zoo/lib.nn' not found" in capsys.readouterr().err


@pytest.mark.slow
def test_wheel_ships_the_zoo_and_a_user_spec_imports_it(tmp_path):
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), ROOT],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = list(wheels.glob("nncircuit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in _spec_files():
        assert f"nncircuit/specs/{rel}" in names, rel
    assert "nncircuit/specs/lib/attention.nn" in names
    assert not any(n.startswith("specs/") for n in names), "no top-level specs folder"

    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.nn").write_text(USER_SPEC)
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r})\n"
        "import os, nncircuit\n"
        f"assert nncircuit.__file__.startswith({str(target)!r}), nncircuit.__file__\n"
        f"assert nncircuit.zoo.root().startswith({str(target)!r}), nncircuit.zoo.root()\n"
        "print(nncircuit.zoo.files())\n"
        "print(nncircuit.zoo.load('GPT2', d=64, heads=4, layers=1).param_count())\n"
        "from nncircuit.cli import main\n"
        "sys.exit(main(['check', 'mine.nn']))\n"
    )
    r = subprocess.run([sys.executable, "-I", "-c", code], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files, count, check = r.stdout.splitlines()
    assert ast.literal_eval(files) == _spec_files()
    assert int(count) == nncircuit.load(os.path.join(SPECS, "transformer.nn"), d=64, heads=4, layers=1).param_count()
    assert check.startswith("Mine: 0 parameters; in x: [batch, seq, dh: 8]")


# ---- editor support follows a zoo import --------------------------------------------------

def test_editor_goes_to_the_zoo_file_and_block(tmp_path):
    from nncircuit.editor.index import analyze

    path = str(tmp_path / "mine.nn")
    index = analyze(path, USER_SPEC)
    assert index.diagnostics == []
    at_path = index.definition(1, 10)  # inside "zoo:lib/attention.nn"
    assert at_path is not None and os.path.samefile(at_path.file, os.path.join(SPECS, "lib", "attention.nn"))
    col = USER_SPEC.splitlines()[4].index("Attention") + 1
    at_block = index.definition(5, col)
    assert os.path.samefile(at_block.file, os.path.join(SPECS, "lib", "attention.nn"))
    assert "block Attention" in index.hover(5, col)


def test_editor_shows_a_mistake_in_a_zoo_file_on_the_import(tmp_path):
    from nncircuit.editor.index import analyze

    text = USER_SPEC.replace("import Attention", "import Atention")
    index = analyze(str(tmp_path / "mine.nn"), text)
    (d,) = index.diagnostics
    assert (d.line, d.col) == (1, 1)
    assert "defines no block 'Atention' (did you mean 'Attention'?)" in d.message

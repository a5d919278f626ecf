"""A Spec in a notebook and in pickles: a one-line repr, an HTML view (diagram and summary
table), a summary object that prints and renders, and modules built in memory by
`nncircuit.compile` that torch.save/torch.load (also in a fresh process) and script."""

import html
import os
import subprocess
import sys

import pytest
import torch

import nncircuit
from conftest import SMALL, SPECS
from helpers import random_inputs
from nncircuit.cli import main


def _spec(file, model, **opts):
    return nncircuit.load(os.path.join(SPECS, file), model, **SMALL[(file, model)], **opts)


# ---- repr, HTML, summary ---------------------------------------------------------------

@pytest.mark.parametrize("file,model", sorted(SMALL))
def test_repr_is_one_short_line(file, model):
    spec = _spec(file, model)
    r = repr(spec)
    assert "\n" not in r and len(r) < 400, r
    assert r.startswith(f"<Spec {model} from {file}: ")
    assert f"{spec.param_count():,} parameters" in r
    ins = ", ".join(f"{n}: {t}" for n, t in spec.inputs())
    outs = ", ".join(f"{n}: {t}" for n, t in spec.outputs())
    assert r.endswith(f"; {ins} -> {outs}>")


def test_repr_of_the_mlp_exactly():
    spec = nncircuit.load(os.path.join(SPECS, "mlp.nn"))
    assert repr(spec) == ("<Spec MLP from mlp.nn: 669,706 parameters; "
                          "image: [batch, h: 28, w: 28] -> probs: [batch, classes: 10]>")


def test_summary_prints_the_table_nnc_summary_prints(capsys):
    path = os.path.join(SPECS, "transformer.nn")
    hp = SMALL[("transformer.nn", "GPT2")]
    main(["summary", path] + [f"-p{k}={v}" for k, v in hp.items()])
    printed = capsys.readouterr().out
    summary = nncircuit.load(path, **hp).summary()
    assert str(summary) + "\n" == printed
    print(summary)
    assert capsys.readouterr().out == printed
    assert "\n" not in repr(summary) and repr(summary).startswith("<Summary GPT2: ")


def test_summary_html_is_a_table_of_the_same_rows():
    spec = _spec("transformer.nn", "GPT2")
    s = spec.summary()
    h = s._repr_html_()
    assert h.startswith('<table class="nncircuit-summary">')
    text_rows = [ln for ln in str(s).splitlines()[2:] if ln and not ln.startswith("-")][:-1]
    # header + one row per block shown + total
    assert h.count("<tr>") == 1 + (len(text_rows) - 0)
    assert f"<th style=\"text-align:right\">{s.params:,}</th>" in h  # the total row
    for r in s.rows:
        if r.depth == 1:
            assert f"<td>{html.escape(r.path)}</td>" in h
            assert f"<td>{html.escape(r.output)}</td>" in h
    assert "<caption>GPT2 (transformer.nn), batch = 1, seq = " in h


def test_summary_html_escapes_what_comes_from_the_spec():
    spec = nncircuit.load("x.nn", text="model M(d = 3) { in x: [batch, d] out Linear(x, d -> e: 2) }\n")
    s = spec.summary()
    object.__setattr__(s, "source", "<script>a&b</script>.nn")  # a file name is the user's
    h = s._repr_html_()
    assert "<script>" not in h and "&lt;script&gt;a&amp;b&lt;/script&gt;.nn" in h


def test_spec_html_without_a_typical_size_says_why_there_is_no_table():
    spec = nncircuit.load("x.nn", text="model M(d = 3) { in x: [batch, n, d] out Linear(x, d -> e: 2) }\n")
    h = spec._repr_html_()
    assert "<svg" in h and "<table" not in h
    assert "no summary table: axis &#x27;n&#x27; of model M has no typical size" in h


def test_spec_html_shows_diagram_and_summary():
    spec = _spec("mlp.nn", "MLP")
    h = spec._repr_html_()
    assert h.startswith('<div class="nncircuit-spec">') and h.endswith("</div>")
    assert "<svg" in h and h.index("<svg") < h.index("<table")
    assert spec._repr_svg_() in h
    assert spec.summary()._repr_html_() in h
    assert "&lt;Spec" not in h and "<Spec" not in h  # the head line is the repr's text, escaped
    assert "MLP from mlp.nn: 669,706 parameters" in h


# ---- torch_source is what `nnc compile` writes at the same level ------------------------

def test_torch_source_at_o2_is_what_nnc_compile_writes(tmp_path, capsys):
    path = os.path.join(SPECS, "transformer.nn")
    hp = SMALL[("transformer.nn", "GPT2")]
    out = tmp_path / "g.py"
    assert main(["compile", path, "-o", str(out)] + [f"-p{k}={v}" for k, v in hp.items()]) == 0
    written = out.read_text(encoding="utf-8")
    assert nncircuit.load(path, opt=2, **hp).torch_source() == written
    assert nncircuit.load(path, **hp).torch_source() != written  # load() alone is -O0


# ---- pickling ---------------------------------------------------------------------------

def _roundtrip(model):
    import io

    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("file,model", [("mlp.nn", "MLP"), ("transformer.nn", "GPT2"), ("resnet.nn", "ResNet18")])
def test_compiled_module_pickles_in_process(file, model):
    m = nncircuit.compile(os.path.join(SPECS, file), model, seed=0, **SMALL[(file, model)]).eval()
    m2 = _roundtrip(m).eval()
    assert type(m2) is type(m)
    assert m2.state_dict().keys() == m.state_dict().keys()
    xs = random_inputs(_spec(file, model))
    with torch.no_grad():
        assert torch.equal(m(*xs), m2(*xs))


@pytest.mark.slow
def test_pickled_module_loads_in_a_fresh_process(tmp_path):
    path = os.path.join(SPECS, "transformer.nn")
    hp = SMALL[("transformer.nn", "GPT2")]
    m = nncircuit.compile(path, seed=3, **hp).eval()
    x = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = m(x)
    torch.save(m, tmp_path / "m.pt")
    torch.save({"x": x, "y": want}, tmp_path / "io.pt")
    code = (
        "import sys, torch\n"
        "m = torch.load('m.pt', weights_only=False).eval()\n"  # nncircuit is imported by pickle
        "d = torch.load('io.pt')\n"
        "with torch.no_grad():\n"
        "    y = m(d['x'])\n"
        "assert 'nncircuit' in sys.modules\n"
        "print(type(m).__name__, torch.equal(y, d['y']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "GPT2 True"


def test_compiled_module_deepcopies():
    import copy

    m = nncircuit.compile(os.path.join(SPECS, "mlp.nn"), seed=0)
    m2 = copy.deepcopy(m)
    assert type(m2) is type(m)
    m2.linear.weight.data.zero_()
    assert m.linear.weight.abs().sum() > 0  # a copy, not the same parameters
    x = torch.randn(2, 28, 28)
    assert not torch.equal(m(x), m2(x))


def test_same_source_is_one_module_and_class():
    path = os.path.join(SPECS, "mlp.nn")
    a, b = nncircuit.compile(path), nncircuit.compile(path)
    assert type(a) is type(b)
    assert type(a).__module__ in sys.modules
    # other hyperparameters are the generated class's defaults (nnc compile -p): another source
    assert type(nncircuit.compile(path, hidden=64)).__module__ != type(a).__module__
    assert type(nncircuit.compile(path, opt=0)).__module__.startswith("nncircuit_generated_")


# ---- torch.jit.script --------------------------------------------------------------------

# Measured over the zoo: these script at -O0 and -O2. GPT2 and ViT at -O2 do not (the fused
# Q/K/V helper `_linear_group` iterates a tuple of modules), nor ViT and UNet at any level
# (`_concat_broadcast` builds a list whose length TorchScript cannot infer).
SCRIPTS = [("mlp.nn", "MLP", 0), ("mlp.nn", "MLP", 2), ("transformer.nn", "GPT2", 0),
           ("resnet.nn", "ResNet18", 2), ("conv.nn", "ConvNet", 2), ("conv.nn", "TextCNN", 2)]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("file,model,opt", SCRIPTS)
def test_compiled_module_scripts(file, model, opt):
    m = nncircuit.compile(os.path.join(SPECS, file), model, seed=0, opt=opt, **SMALL[(file, model)]).eval()
    s = torch.jit.script(m)
    xs = random_inputs(_spec(file, model))
    with torch.no_grad():
        assert torch.allclose(s(*xs), m(*xs), atol=1e-6)


def test_a_module_built_in_memory_has_its_source():
    import inspect

    m = nncircuit.compile(os.path.join(SPECS, "mlp.nn"))
    src = inspect.getsource(type(m))
    assert src.startswith("class MLP(nn.Module):")

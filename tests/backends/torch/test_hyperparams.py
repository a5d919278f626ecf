"""Generated classes are programs: for every model in specs/, the class generated at the
spec's defaults, constructed with random hyperparameters, builds the module that
nncircuit.compile builds with them, or refuses them with the checker's message."""

import importlib.util
import os
import random
import subprocess
import sys

import pytest
import torch

import nncircuit
from nncircuit.errors import NNError

from conftest import OVER_BUDGET, SPECS

MODELS = sorted(
    (f, m)
    for f in os.listdir(SPECS)
    if f.endswith(".nn")
    for m in nncircuit.models(os.path.join(SPECS, f))
)
DRAWS = 8
# widths the draws pick from: small, with divisors and non-divisors, and a few bad values
SIZES = (1, 2, 3, 4, 6, 8, 12, 16)
POWERS = (2, 4, 8, 16)
BAD = (0, -1)
FIXED_LARGE = {"ResNet18", "ResNet50"}  # their widths are constants: build them seldom
INPUT = {"batch": 2, "seq": 5, "h": 32, "w": 32}  # UNet pools four times


def _import(source: str, path) -> object:
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _draw(rng: random.Random, spec, friendly: bool) -> dict:
    """Random values for the integer hyperparameters. A friendly draw takes powers of two
    (which mostly divide each other, so the model builds); the others any small value,
    sometimes a bad one (which the checker and the class must both refuse)."""
    hp = {}
    for h in spec.graph.hyper:
        v = h.value.value
        if not isinstance(v, int) or isinstance(v, bool):
            continue
        if rng.random() < 0.25:
            continue  # keep the default: exercises the class's own defaults
        if h.name == "layers":
            hp[h.name] = rng.choice((0, 1, 2))
        elif friendly:
            hp[h.name] = rng.choice(POWERS)
        elif rng.random() < 0.1:
            hp[h.name] = rng.choice(BAD)
        else:
            hp[h.name] = rng.choice(SIZES)
    return hp


def _inputs(spec, hp):
    """A random input for each of the model's inputs; run-time sizes small (a sequence no
    longer than the position table: `ctx` bounds it at run time, not in the checker)."""
    g = torch.Generator().manual_seed(1)
    sizes = {**INPUT, "seq": min(INPUT["seq"], hp.get("ctx", INPUT["seq"]), hp.get("max_position_embeddings", INPUT["seq"]))}
    out = []
    for _, t in spec.inputs():
        shape = []
        for a in t.axes:
            shape.append(a.size.value if a.size.is_static else sizes.get(a.name, 4))
        if t.dtype == "int64":
            out.append(torch.zeros(shape, dtype=torch.int64))
        else:
            out.append(torch.randn(shape, generator=g))
    return out


def _small_defaults(f: str, m: str, spec) -> dict:
    small = {}
    for h in spec.graph.hyper:
        v = h.value.value
        if isinstance(v, int) and not isinstance(v, bool) and v > 64:
            small[h.name] = 16 if h.name not in ("layers",) else 1
        if h.name == "layers" and type(v) is int:  # a layer count (ResNet's `layers` is a tuple)
            small[h.name] = 1
    return small


@pytest.mark.parametrize("f,m", MODELS, ids=[m for _, m in MODELS])
def test_generated_class_matches_compile_for_random_hyperparameters(f, m, tmp_path):
    path = os.path.join(SPECS, f)
    budget = {"max_params": 10**12} if f in OVER_BUDGET else {}  # Mixtral's, DeepSeek's published defaults
    spec = nncircuit.load(path, m, **budget)
    cls = getattr(_import(spec.torch_source(), tmp_path / f"gen_{m.lower()}.py"), m)
    rng = random.Random(f"{f}:{m}")
    base = _small_defaults(f, m, spec)
    draws = 2 if m in FIXED_LARGE else DRAWS
    seen = {"built": 0, "refused": 0}
    sizes = [h.name for h in spec.graph.hyper if type(h.value.value) is int and h.name != "layers"]
    for i in range(draws + 1):
        hp = {**base, **_draw(rng, spec, friendly=i % 2 == 0)}
        if i == draws:  # and one size of 0, which both must refuse
            hp[rng.choice(sizes)] = 0
        try:
            ref_spec = nncircuit.load(path, m, **hp)
            ref = ref_spec.module(seed=0)
        except NNError as e:
            with pytest.raises(ValueError) as caught:
                cls(**hp)
            if i < draws:  # the same sentence; a size of 0 may trip an expression of it first
                assert str(caught.value) == e.message, (hp, e.message)
            seen["refused"] += 1
            continue
        torch.manual_seed(0)
        try:
            mine = cls(**hp)
        except ValueError as e:  # another branch of a static `if`: the class's structure is fixed
            assert "the structure of a compiled module is fixed" in str(e), (hp, str(e))
            seen["refused"] += 1
            continue
        want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
        assert got == want, hp
        mine.load_state_dict(ref.state_dict())
        ref.eval()
        mine.eval()
        xs = _inputs(ref_spec, hp)
        with torch.no_grad():
            try:
                a = ref(*xs)
            except (IndexError, RuntimeError) as e:  # a degenerate draw (T5 with 2 buckets): both fail alike
                with pytest.raises(type(e)):
                    mine(*xs)
                seen["built"] += 1
                continue
            b = mine(*xs)
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))  # BERT: two outputs
        assert len(a) == len(b) and all(torch.allclose(x, y, atol=1e-5, equal_nan=True) for x, y in zip(a, b)), hp
        seen["built"] += 1
    assert seen["built"] + seen["refused"] == draws + 1
    assert seen["built"] >= 1 and seen["refused"] >= 1  # the draws (fixed by the seed) do both


# ---- the trust issue's cases, each one a regression test ---------------------------------


def _cls(path, model, tmp_path, **compiled_with):
    spec = nncircuit.load(path, model, **compiled_with)
    return getattr(
        _import(spec.torch_source(), tmp_path / f"gen_{model.lower()}_{len(compiled_with)}.py"),
        model,
    )


def _same(path, model, cls, x, **hp):
    ref = nncircuit.load(path, model, **hp).module(seed=0)
    mine = cls(**hp)
    mine.load_state_dict(ref.state_dict())
    ref.eval()
    mine.eval()
    with torch.no_grad():
        assert torch.allclose(ref(x), mine(x), atol=1e-5)


def test_convnet_width_out_of_a_block_call_is_not_baked(tmp_path):
    path = os.path.join(SPECS, "conv.nn")
    cls = _cls(path, "ConvNet", tmp_path)
    _same(path, "ConvNet", cls, torch.randn(2, 3, 16, 16), width=16)


def test_unet_width_is_not_baked(tmp_path):
    path = os.path.join(SPECS, "unet.nn")
    cls = _cls(path, "UNet", tmp_path)
    _same(path, "UNet", cls, torch.randn(1, 1, 16, 16), width=4)


def test_vit_sizes_out_of_a_convolution_follow_image_and_patch(tmp_path):
    path = os.path.join(SPECS, "vit.nn")
    small = dict(num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3)
    cls = _cls(path, "ViT", tmp_path, image_size=32, patch_size=8, **small)
    _same(path, "ViT", cls, torch.randn(2, 3, 24, 24), image_size=24, patch_size=6, **small)


def test_constructor_refuses_what_the_checker_refuses(tmp_path):
    path = os.path.join(SPECS, "transformer.nn")
    cls = _cls(path, "GPT2", tmp_path, vocab=50, ctx=16, d=64, heads=4, layers=1)
    hp = dict(vocab=50, ctx=16, d=66, heads=4, layers=1)
    with pytest.raises(NNError) as err:
        nncircuit.load(path, "GPT2", **hp)
    with pytest.raises(ValueError) as caught:
        cls(**hp)
    assert str(caught.value) == err.value.message
    assert "66 is not divisible by 4" in str(caught.value)


def test_constructor_refuses_a_patch_that_does_not_divide_the_image(tmp_path):
    path = os.path.join(SPECS, "vit.nn")
    small = dict(num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3)
    cls = _cls(path, "ViT", tmp_path, image_size=32, patch_size=8, **small)
    with pytest.raises(NNError) as err:
        nncircuit.load(path, "ViT", image_size=30, patch_size=8, **small)
    with pytest.raises(ValueError) as caught:
        cls(image_size=30, patch_size=8, **small)
    assert str(caught.value) == err.value.message


FLOATS = """
model Net(d = 8, eps = 1e-6, p = 0.1, n = 6) {
    in  x: [batch, seq: n, d]
    y = x |> RMSNorm(over d, eps = eps) |> dropout(p = p)
    z = Embedding(n -> d)(positions(seq))
    out y + z
}
"""


def test_float_keywords_and_static_positions_stay_parametric(tmp_path):
    f = tmp_path / "floats.nn"
    f.write_text(FLOATS)
    src = nncircuit.load(str(f), "Net").torch_source()
    assert "eps=eps)" in src and "p=self.p," in src and "torch.arange(self.n," in src
    cls = _import(src, tmp_path / "gen_floats.py").Net
    m = cls(eps=1e-2, p=0.5, n=4)
    assert m.rmsnorm.eps == 1e-2
    ref = nncircuit.load(str(f), "Net", eps=1e-2, p=0.5, n=4).module(seed=0)
    m.load_state_dict(ref.state_dict())
    m.eval()
    ref.eval()
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        assert torch.allclose(m(x), ref(x))
    with pytest.raises(ValueError, match="dropout: p must be in"):
        cls(p=1.5)


def test_compile_with_p_sets_the_generated_class_defaults(tmp_path):
    out = tmp_path / "gpt.py"
    args = ["-p", "vocab=50", "-p", "ctx=16", "-p", "d=32", "-p", "heads=2", "-p", "layers=1"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nncircuit.cli",
            "compile",
            os.path.join(SPECS, "transformer.nn"),
            *args,
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    cls = _import(out.read_text(), tmp_path / "gpt_p.py").GPT2
    m = cls()
    assert m.wte.weight.shape == (50, 32)
    assert len(m.h) == 1


SIZES_MATCHED = """
block B(n) {
    in  x: [c: n]
    out x |> relu
}
model M(a = 4, b = 4) {
    in  x: [batch, c: a], y: [batch, c: b]
    out B(4)(x) + y
}
"""


@pytest.mark.parametrize("hp", [dict(a=5), dict(b=5), dict(b=1), dict(a=0)])
def test_constructor_repeats_the_size_equalities_the_checker_made(hp, tmp_path):
    f = tmp_path / "matched.nn"
    f.write_text(SIZES_MATCHED)
    cls = _import(nncircuit.load(str(f), "M").torch_source(), tmp_path / "gen_matched.py").M
    try:
        nncircuit.load(str(f), "M", **hp)
    except NNError as e:
        with pytest.raises(ValueError) as caught:
            cls(**hp)
        assert str(caught.value) == e.message
        return
    cls(**hp)  # b = 1 broadcasts
    assert hp == dict(b=1)


@pytest.mark.parametrize("bad", [8.0, True, "8"])
def test_constructor_refuses_a_size_that_is_not_an_integer(bad, tmp_path):
    path = os.path.join(SPECS, "mlp.nn")
    cls = _cls(path, "MLP", tmp_path, hidden=8)
    with pytest.raises(NNError) as err:
        nncircuit.load(path, "MLP", hidden=bad)
    with pytest.raises(ValueError) as caught:
        cls(hidden=bad)
    assert str(caught.value) == err.value.message


def test_an_infinite_hyperparameter_in_generated_code(tmp_path):
    """`model M(low = -inf)` generated `def __init__(self, low=-inf)`, a NameError on import
    (Python has no literal for infinity), and `where(m, x, low)` baked in float("-inf"), so
    M(low=-5.0) still filled -inf. The generated class must import and use its argument."""
    text = ("model M(low = -inf) {\n    in  x: [batch, d: 4]\n    m = x > 0\n"
            "    out where(m, x, low), where(m, x, -inf), maximum(x, low)\n}\n")
    path = tmp_path / "inf_model.py"
    path.write_text(nncircuit.load("inf.nn", text=text).torch_source(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("inf_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = torch.randn(3, 4)
    for kw in ({}, {"low": -5.0}):
        want = nncircuit.load("inf.nn", text=text, **kw).module(seed=0)(x)
        got = mod.M(**kw)(x)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), kw
    assert (mod.M(low=-5.0)(x)[0] == -5.0).any() and torch.isinf(mod.M(low=-5.0)(x)[1]).any()

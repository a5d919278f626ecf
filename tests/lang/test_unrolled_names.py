"""Two things the torchvision-layout mobile networks (specs/vision) need from the language:
a checkpoint source `name_*` reaches the instances a static `for` unrolls (named `name`,
`name_1`, `name_2`: the first is the bare name), and a hyperparameter named like an op
(torchvision's `dropout`) leaves the op callable."""

import pytest
import torch

import nncircuit
from nncircuit.errors import NameResolutionError

UNROLLED = """
model M(d = 4, dropout = 0.25) {
    in  x: [batch, d]
    for k in [1, 2, 3] {
        x = Linear(x, d -> d) |> relu
    }
    out y = x |> dropout(p = dropout)
    checkpoint {
        "net.*" = "linear_*"
    }
}
"""


def _load(tmp_path, text, **params):
    path = tmp_path / "m.nn"
    path.write_text(text)
    return nncircuit.load(str(path), "M", **params)


def test_a_star_after_an_underscore_reaches_the_bare_first_instance(tmp_path):
    spec = _load(tmp_path, UNROLLED)
    own = spec.module(seed=0).state_dict()
    assert list(own) == [f"{n}.{t}" for n in ("linear", "linear_1", "linear_2") for t in ("weight", "bias")]
    ref = {f"net.{i}.{t}": own[f"{n}.{t}"] for i, n in enumerate(("linear", "linear_1", "linear_2"))
           for t in ("weight", "bias")}
    fresh = spec.module(seed=1)
    fresh.load_state_dict(ref, strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in own.items())


def test_the_generated_file_resolves_it_too(tmp_path):
    import importlib.util

    spec = _load(tmp_path, UNROLLED)
    own = spec.module(seed=0).state_dict()
    out = tmp_path / "m.py"
    spec.write(str(out))
    s = importlib.util.spec_from_file_location("gen_unrolled", out)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    m = mod.M()
    m.load_state_dict({"net.0.weight": own["linear.weight"], "net.0.bias": own["linear.bias"],
                       **{f"net.{i}.{t}": own[f"linear_{i}.{t}"] for i in (1, 2) for t in ("weight", "bias")}},
                      strict=True)
    assert torch.equal(m.linear.weight, own["linear.weight"])


def test_an_unknown_unrolled_name_is_still_a_positioned_error(tmp_path):
    with pytest.raises(NameResolutionError) as info:
        _load(tmp_path, UNROLLED.replace('"linear_*"', '"lin_*"'))
    text = str(info.value)
    assert "\"lin_*\" names no module or tensor of this model" in text and "m.nn:9:" in text and "^" in text


def test_a_hyperparameter_named_like_an_op_leaves_the_op_callable(tmp_path):
    spec = _load(tmp_path, UNROLLED, dropout=0.5)
    m = spec.module(seed=0)
    x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    e = m.eval()(x)
    y = m.train()(x)
    alive = e != 0
    assert alive.sum() > 50
    dropped = (y == 0) & alive
    assert torch.allclose(y[~dropped], 2 * e[~dropped])  # kept ones scaled by 1 / (1 - 0.5)
    assert 0.3 < dropped.sum() / alive.sum() < 0.7
    # in arithmetic the name is still the number
    text = UNROLLED.replace("|> dropout(p = dropout)", "* dropout")
    assert torch.allclose(_load(tmp_path, text).module(seed=0).eval()(x), e * 0.25)

"""A checkpoint rule's layer shift may be a hyperparameter expression
(`"layers.*" = "sparse.*-dense"`): evaluated at the model's hyperparameters by the checker,
kept parametric in the generated class's load_state_dict pre-hook (a class built with other
hyperparameters maps with its own values), and a shifted number below 0 lets the key fall to
the next, shorter rule (`"layers" = "first"`), so one section maps any split of one list of
reference layers onto two repeats."""

from __future__ import annotations

import pytest
import torch

import nncircuit
from nncircuit.errors import HyperparameterError, NameResolutionError, NNError, ShapeError
from nncircuit.ir.checkpoint import parse_source, source_text
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import print_ir

SPEC = """
model M(d = 4, layers = 5, dense = 2) {
    in  x: [batch, d]
    repeat dense as first {
        lin = Linear(d -> d)
        x = lin(x)
    }
    repeat layers - dense as rest {
        lin = Linear(d -> d, bias = false)
        x = lin(x)
    }
    out x
    checkpoint {
        "layers" = "first"
        "layers.*" = "rest.*-SHIFT"
    }
}
"""


def load(shift="dense", text=SPEC, **kw):
    return nncircuit.load("ck.nn", "M", text=text.replace("SHIFT", shift), **kw)


def reference(layers, dense, seed=0):
    """A state_dict numbering all layers in one list, `layers.i.lin`, the biased ones first."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(layers):
        sd[f"layers.{i}.lin.weight"] = torch.randn(4, 4, generator=g)
        if i < dense:
            sd[f"layers.{i}.lin.bias"] = torch.randn(4, generator=g)
    return sd


def own(sd, dense):
    out = {}
    for key, v in sd.items():
        _, i, rest = key.split(".", 2)
        out[f"first.{i}.{rest}" if int(i) < dense else f"rest.{int(i) - dense}.{rest}"] = v
    return out


@pytest.mark.parametrize("dense", [0, 1, 2, 4])
def test_any_split_loads_strictly(dense):
    m = load(dense=dense).module(seed=0)
    ref = reference(5, dense)
    m.load_state_dict(ref, strict=True)
    got = m.state_dict()
    for name, v in own(ref, dense).items():
        assert torch.equal(got[name], v), name


@pytest.mark.parametrize("shift", ["(dense)", "(layers - (layers - dense))", "(dense * 1)"])
def test_a_shift_is_an_expression_in_parentheses(shift):
    m = load(shift, dense=1).module(seed=0)
    ref = reference(5, 1)
    m.load_state_dict(ref, strict=True)
    assert torch.equal(m.state_dict()["rest.3.lin.weight"], ref["layers.4.lin.weight"])


def test_a_plus_shift_and_a_constant_expression():
    text = SPEC.replace('"layers" = "first"\n', "").replace('"rest.*-SHIFT"', '"rest.*+SHIFT"')
    text = text.replace("repeat dense as first", "repeat 1 as first").replace("layers - dense as rest", "layers as rest")
    for shift in ("dense", "(1 + 1)"):
        m = load(shift, text=text, dense=2).module(seed=0)
        ref = {"layers.0.lin.weight": torch.ones(4, 4), "layers.1.lin.weight": torch.full((4, 4), 2.0)}
        own_sd = m.state_dict()
        full = {k: v for k, v in own_sd.items() if k not in ("rest.2.lin.weight", "rest.3.lin.weight")}
        m.load_state_dict(dict(full, **ref), strict=True)
        assert torch.equal(m.state_dict()["rest.3.lin.weight"], torch.full((4, 4), 2.0))


def test_the_generated_class_keeps_the_shift_parametric():
    # the class is compiled at dense = 2; built with dense = 1 it maps with its own value
    spec = load(dense=2)
    src = spec.torch_source()
    assert "format(int(-dense), '+d')" in src
    cls = spec.torch_class()
    m = cls(dense=1)
    ref = reference(5, 1)
    m.load_state_dict(ref, strict=True)
    got = m.state_dict()
    for name, v in own(ref, 1).items():
        assert torch.equal(got[name], v), name
    # and its own names load back unchanged
    again = cls(dense=1)
    again.load_state_dict(got, strict=True)


def test_the_shift_stays_an_expression_in_the_textual_ir():
    g = load("(dense * 1)").graph
    text = print_ir(g)
    assert 'checkpoint "layers.*" "rest.*-(dense * 1)"' in text
    assert parse_ir(text).checkpoint.rules[1].source.path == "rest.*-(dense * 1)"
    assert source_text(parse_source("transpose(rest.*+(a * (b + 1)).lin)")) == "transpose(rest.*+(a * (b + 1)).lin)"


def test_an_unknown_name_is_a_positioned_error():
    with pytest.raises(NameResolutionError) as err:
        load("dence")
    text = str(err.value)
    assert "'dence'" in text and "did you mean 'dense'" in text
    line = SPEC.replace("SHIFT", "dence").split("\n").index('        "layers.*" = "rest.*-dence"') + 1
    assert err.value.span.line == line
    assert err.value.span.col == len('        "layers.*" = "rest.*-') + 1  # the caret under the name


def test_a_shift_must_be_a_whole_number():
    text = SPEC.replace("model M(", "model M(half = 0.5, ")
    with pytest.raises(HyperparameterError, match="whole number"):
        load("half", text=text)


def test_an_infinite_shift_is_a_positioned_error_not_a_crash():
    # found by scripts/fuzz.py: `*-inf` crashed converting infinity to an integer
    with pytest.raises(HyperparameterError, match="whole number") as err:
        load("inf")
    assert err.value.span is not None and err.value.span.line > 1


def test_a_shift_that_is_no_expression():
    with pytest.raises(ShapeError, match="not an expression"):
        load("(dense +)")


def test_the_cli_error_has_a_caret(tmp_path, capsys):
    from nncircuit.cli import main

    path = tmp_path / "ck.nn"
    path.write_text(SPEC.replace("SHIFT", "dence"))
    assert main(["check", str(path)]) != 0
    err = capsys.readouterr().err
    assert "ck.nn:" in err and "^" in err and "no hyperparameter" in err
    assert "Traceback" not in err


def test_without_the_fall_through_a_split_below_zero_is_unexpected():
    # no shorter rule: the first layers' keys keep their names and a strict load refuses them
    text = SPEC.replace('        "layers" = "first"\n', "")
    m = load(text=text, dense=1).module(seed=0)
    with pytest.raises(RuntimeError, match="layers.0"):
        m.load_state_dict(reference(5, 1), strict=True)


def test_errors_are_nnerrors():
    assert issubclass(HyperparameterError, NNError) and issubclass(NameResolutionError, NNError)


def test_a_missing_module_is_named_as_the_spec_writes_it():
    text = SPEC.replace('"rest.*-SHIFT"', '"rset.*-SHIFT"')
    with pytest.raises(NameResolutionError, match=r'"rset\.\*-dense" names no module.*did you mean'):
        load(text=text)

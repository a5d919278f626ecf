"""`//`: floor division of hyperparameters (Swin's padding to a multiple of the window and
its half-window shift), in sizes, in values the generated class computes, and its errors."""

from __future__ import annotations

import pytest
import torch

import nncircuit
from nncircuit.editor.fmt import format_text
from nncircuit.errors import HyperparameterError, ParseError, ShapeError

SPEC = """model M(h = 7, w = 2) {
    in  x: [batch, c: (h + 1) // w]
    out x * (h // w) + 7 // 2 * 10
}
"""


def _write(tmp_path, text):
    path = tmp_path / "m.nn"
    path.write_text(text)
    return str(path)


def test_floor_division_in_sizes_and_values(tmp_path):
    path = _write(tmp_path, SPEC)
    spec = nncircuit.load(path)
    m = spec.module(seed=0)
    assert torch.equal(m(torch.ones(2, 4)), torch.full((2, 4), 33.0))  # c: (7 + 1) // 2; 7 // 2 = 3; + 30
    with pytest.raises(ValueError, match="axis 'c' must be 4"):
        m(torch.ones(2, 3))
    # the generated class computes it for other values: (9 + 1) // 4 = 2, 9 // 4 = 2
    other = spec.torch_class()(h=9, w=4)
    assert torch.equal(other(torch.ones(1, 2)), torch.full((1, 2), 32.0))
    with pytest.raises(ValueError, match="axis 'c' must be 3"):  # (8 + 1) // 3
        nncircuit.load(path, h=8, w=3).module(seed=0)(torch.ones(1, 4))


def test_floor_division_by_zero_points_at_the_expression(tmp_path):
    path = _write(tmp_path, "model M(a = 0) {\n    in  x: [batch, c: 4 // a]\n    out x\n}\n")
    with pytest.raises(HyperparameterError, match=r"division by zero \(4 // a\)") as err:
        nncircuit.load(path)
    assert err.value.span.line == 2


def test_floor_division_of_a_tensor_is_refused(tmp_path):
    path = _write(tmp_path, "model M() {\n    in  x: [batch, c: 4]\n    out x // 2\n}\n")
    with pytest.raises(ShapeError, match=r"'//' \(floor division\) acts on hyperparameters, found a tensor") as err:
        nncircuit.load(path)
    assert (err.value.span.line, err.value.span.col) == (3, 9)


def test_floor_division_binds_like_division():
    assert format_text(SPEC) == SPEC  # `nnc fmt` keeps it, parentheses included
    assert format_text(SPEC.replace("(h + 1) // w", "h + 1 // w")).count("h + 1 // w") == 1


def test_a_lone_slash_pair_with_a_space_is_a_syntax_error(tmp_path):
    path = _write(tmp_path, "model M(a = 7 / / 2) {\n    in  x: [d]\n    out x\n}\n")
    with pytest.raises(ParseError):
        nncircuit.load(path)

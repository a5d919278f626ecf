"""A true/false argument given by a hyperparameter (`bias = use_bias`, `affine = ...`) chooses
the structure, as an `if` does: the generated class keeps the choice it was compiled with and
its constructor refuses a value that would flip it, instead of ignoring the value."""

from __future__ import annotations

import pytest
import torch

import nncircuit
from nncircuit.api import generated_module

SPEC = """
block Inner(d, with_bias) {
    in  x: [d]
    out Linear(x, d -> d, bias = with_bias)
}
model M(d = 4, use_bias = false, use_affine = true) {
    in  x: [batch, d]
    y = Inner(d, use_bias)(x)
    out LayerNorm(y, over d, affine = use_affine)
}
"""


def _load(tmp_path, **params):
    path = tmp_path / "m.nn"
    path.write_text(SPEC)
    return nncircuit.load(str(path), "M", **params)


def test_generated_class_refuses_a_flipped_bool_hyperparameter(tmp_path):
    spec = _load(tmp_path)
    cls = generated_module(spec.torch_source(), "boolhyper").M
    assert cls(d=6)(torch.randn(2, 6)).shape == (2, 6)  # a size is not structural
    with pytest.raises(ValueError, match=r"Linear: `bias = with_bias` was compiled for it being false: "
                                         r"the structure of a compiled module is fixed"):
        cls(use_bias=True)  # would silently have had no bias
    with pytest.raises(ValueError, match=r"LayerNorm: `affine = use_affine` was compiled for it being true"):
        cls(use_affine=False)


def test_compiled_for_the_other_value_it_has_the_other_structure(tmp_path):
    spec = _load(tmp_path, use_bias=True, use_affine=False)
    assert spec.param_count() == _load(tmp_path).param_count() + 4 - 8
    cls = generated_module(spec.torch_source(), "boolhyper2").M
    assert cls(use_bias=True, use_affine=False)(torch.randn(2, 4)).shape == (2, 4)
    with pytest.raises(ValueError, match="compiled for it being true"):
        cls(use_bias=False)

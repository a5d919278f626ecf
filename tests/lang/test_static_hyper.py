"""The static hyperparameter language: `for i in range(n)`, conditional expressions
`a if c else b`, tuple-valued hyperparameters (`depths[i]`, `len`, `for d in depths`, `zip`),
`none`, and `floor`/`ceil`/`int` of numbers; their positioned errors, the generated class
that refuses values changing the structure, `nnc fmt` and the textual IR."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_positioned_error

import nncircuit
from nncircuit.api import parse_param
from nncircuit.backends.torch.codegen import generate
from nncircuit.cli import main
from nncircuit.editor.fmt import format_text
from nncircuit.errors import HyperparameterError, ParseError, ResourceError, ShapeError
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import print_ir

SPEC = """block Scale(k) {
    in  x: [d]
    out x * k
}

model M(d = 4, depths = (1, 2, 3), q = none, h = 2 if d > 2 else 3, w = 1.5) {
    in  x: [batch, d]
    y = x
    for i in range(len(depths)) {
        y = Scale(depths[i])(y)
    }
    for (a, b) in zip(depths, (5, 6)) {
        y = y * a + b
    }
    for c in depths {
        y = y + c
    }
    k = (1 if q == none else q)
    out y * k * h * floor(w) * ceil(w) * int(w)
}
"""


def _write(tmp_path, text, name="m.nn"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _loader(tmp_path):
    return lambda text: nncircuit.load(_write(tmp_path, text))


def _expected(x, depths=(1, 2, 3), q=None, d=4, w=1.5):
    y = x
    for k in depths:
        y = y * k
    for a, b in zip(depths, (5, 6)):
        y = y * a + b
    for c in depths:
        y = y + c
    h = 2 if d > 2 else 3
    import math
    return y * (1 if q is None else q) * h * math.floor(w) * math.ceil(w) * int(w)


def test_the_pieces_compute_what_python_computes(tmp_path):
    spec = nncircuit.load(_write(tmp_path, SPEC))
    x = torch.randn(2, 4)
    assert torch.allclose(spec.module(seed=0)(x), _expected(x))
    # from Python: a list for a tuple, None for none; and q given
    other = nncircuit.load(_write(tmp_path, SPEC), depths=[2, 1, 3, 4], q=3, w=2.5)
    assert torch.allclose(other.module(seed=0)(x), _expected(x, (2, 1, 3, 4), 3, w=2.5))
    # three `Scale`s for three depths, four for four: the unrolled instances are named in order
    names = [n for n, _ in other.module(seed=0).named_children()]
    assert names == ["scale", "scale_1", "scale_2", "scale_3"]


def test_onnx_agrees(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load(_write(tmp_path, SPEC), depths=(2, 3), q=0.5)
    out = str(tmp_path / "m.onnx")
    spec.write(out)
    x = torch.randn(2, 4)
    got = ort.InferenceSession(out).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, _expected(x, (2, 3), 0.5).numpy(), rtol=1e-6)


def test_the_generated_class_refuses_what_changes_the_structure(tmp_path):
    cls = nncircuit.load(_write(tmp_path, SPEC)).torch_class()
    x = torch.randn(2, 4)
    m = cls(depths=[4, 5, 6])  # same length: the sizes and values follow
    assert m.depths == (4, 5, 6)
    assert torch.allclose(m(x), _expected(x, (4, 5, 6)))
    with pytest.raises(ValueError, match=r"`for i in range\(len\(depths\)\)` was compiled for 3 rows, found 2"):
        cls(depths=(1, 2))
    # a conditional expression of hyperparameters stays an expression: q = 2 and d = 1 are fine
    m = cls(q=2.0)
    assert torch.allclose(m(x), _expected(x, q=2.0))


def test_a_conditional_expression_is_computed_by_the_class(tmp_path):
    text = "model M(d = 4, h = 2 if d > 2 else 3) {\n    in  x: [batch, c: h]\n    out x\n}\n"
    cls = nncircuit.load(_write(tmp_path, text)).torch_class()
    assert cls(d=1).h == 3 and cls(d=8).h == 2


def test_a_conditional_expression_of_tensors_picks_a_branch(tmp_path):
    text = ("model M(gated = true) {\n    in  x: [batch, d: 4]\n"
            "    out (sigmoid(x) * x if gated else x)\n}\n")
    path = _write(tmp_path, text)
    x = torch.randn(2, 4)
    assert torch.allclose(nncircuit.load(path).module()(x), torch.sigmoid(x) * x)
    assert torch.equal(nncircuit.load(path, gated=False).module()(x), x)
    with pytest.raises(ValueError, match=r"`gated` \(a conditional expression's condition\) was compiled for it being true"):
        nncircuit.load(path).torch_class()(gated=False)


def test_range_with_start_and_step(tmp_path):
    text = ("model M(a = 1, b = 8) {\n    in  x: [batch, d: 4]\n    y = x\n"
            "    for i in range(a, b, 3) { y = y * i }\n    out y\n}\n")
    path = _write(tmp_path, text)
    x = torch.randn(2, 4)
    assert torch.allclose(nncircuit.load(path).module()(x), x * 1 * 4 * 7)
    cls = nncircuit.load(path).torch_class()
    assert torch.allclose(cls(a=2, b=9)(x), x * 2 * 5 * 8)  # still three rows: values follow
    with pytest.raises(ValueError, match="compiled for 3 rows, found 2"):
        cls(a=3, b=9)
    assert torch.equal(nncircuit.load(path, a=8).module()(x), x)  # no rows


def test_none_and_comparisons(tmp_path):
    text = ("model M(rank = none) {\n    in  x: [batch, d: 4]\n"
            "    if rank != none {\n        x = Linear(x, d -> r: rank) |> Linear(r -> d: 4)\n"
            "    } else {\n        x = x * 2\n    }\n    out x\n}\n")
    path = _write(tmp_path, text)
    assert nncircuit.load(path).param_count() == 0
    assert nncircuit.load(path, rank=2).param_count() == 2 * 4 + 2 + 4 * 2 + 4
    with pytest.raises(ValueError, match=r"`if rank != none` was compiled for it being false"):
        nncircuit.load(path).torch_class()(rank=2)
    src = nncircuit.load(path).torch_source()
    assert "rank=None" in src


def test_the_command_line_reads_tuples_and_none(tmp_path, capsys):
    assert parse_param("depths=2,2,18,2") == ("depths", (2, 2, 18, 2))
    assert parse_param("depths=(2, 2)") == ("depths", (2, 2))
    assert parse_param("one=3,") == ("one", (3,))
    assert parse_param("q=none") == ("q", None)
    path = _write(tmp_path, SPEC)
    out = str(tmp_path / "m.py")
    assert main(["compile", path, "-p", "depths=1,2,3,4", "-p", "q=none", "-o", out]) == 0
    text = open(out).read()
    assert "depths=(1, 2, 3, 4), q=None" in text and "self.scale_3 = Scale(k=depths[3])" in text


def test_fmt_round_trips():
    assert format_text(SPEC) == SPEC
    # a bare conditional expression in a statement gets its parentheses
    text = "model M(a = 1) {\n    in  x: [batch, d: 4]\n    out x * (2 if a > 0 else 3) + f(x, k = a if a else none)[0]\n}\n"
    assert format_text(text) == text


def test_the_textual_ir_round_trips(tmp_path):
    g = nncircuit.load(_write(tmp_path, SPEC), q=2).graph
    text = print_ir(g)
    assert 'depths = (1, 2, 3)@depths default "(1, 2, 3)"' in text
    back = parse_ir(text)
    assert print_ir(back) == text
    assert generate(back, "m.nn") == generate(g, "m.nn")


BAD = [
    # (text, error class, message, line, col)
    ("model M(n = 2.5) {\n    in  x: [d]\n    for i in range(n) { x = x }\n    out x\n}\n",
     HyperparameterError, r"range takes integers, found 2.5", 3, 20),
    ("model M() {\n    in  x: [d]\n    for i in range(x) { x = x }\n    out x\n}\n",
     ShapeError, r"range takes hyperparameters \(integers\), found a tensor", 3, 20),
    ("model M() {\n    in  x: [d]\n    for i in range(200000) { x = x }\n    out x\n}\n",
     ResourceError, r"more than the limit of 100000", 3, 14),
    ("model M() {\n    in  x: [d]\n    for i in x { x = x }\n    out x\n}\n",
     ShapeError, r"expected range\(...\), zip\(...\), enumerate\(...\), a tuple or a table", 3, 14),
    ("model M() {\n    in  x: [d]\n    y = (x if x > 0 else x)\n    out y\n}\n",
     ShapeError, r"a condition \(`if`, `a if c else b`, `scan \.\.\. reverse =`\) is resolved when the model is built.*where\(m, a, b\)", 3, 15),
    ("model M(t = (1, 2)) {\n    in  x: [d]\n    out x * t[2]\n}\n",
     HyperparameterError, r"index 2 is out of range for a tuple of 2", 3, 15),
    ("model M(t = (1, 2)) {\n    in  x: [d]\n    out x * t[0.5]\n}\n",
     HyperparameterError, r"a tuple's index must be an integer", 3, 15),
    ("model M() {\n    in  x: [d]\n    out x[0]\n}\n",
     ShapeError, r"a tensor is indexed by axis name", 3, 9),
    ("model M(t = (1, 2)) {\n    in  x: [d]\n    out x * t\n}\n",
     ShapeError, r"argument 'scalar' takes a number, string or boolean, found \(1, 2\)", 3, 9),
    ("model M(q = none) {\n    in  x: [d]\n    out x * (q + 1)\n}\n",
     HyperparameterError, r"cannot apply '\+' to none and 1; compare with `== none`", 3, 14),
    ("model M(q = none) {\n    in  x: [d]\n    out x * floor(q)\n}\n",
     HyperparameterError, r"floor needs numbers, found none", 3, 13),
    ("model M(q = 3) {\n    in  x: [d]\n    out x * len(q)\n}\n",
     HyperparameterError, r"len needs a tuple, found 3", 3, 17),
    ("model M(q = (1, 2)) {\n    in  x: [batch, d: q]\n    out x\n}\n",
     ShapeError, r"axis 'd' needs a positive integer size, found \(1, 2\)", 2, 23),
    ("model M() {\n    in  x: [d]\n    out x * len(range(3))\n}\n",
     ShapeError, r"range\(...\) gives the rows of a `for` loop", 3, 17),
]


@pytest.mark.parametrize("text,cls,msg,line,col", BAD, ids=[b[2][:30] for b in BAD])
def test_misuse_is_a_positioned_error(tmp_path, text, cls, msg, line, col):
    with pytest.raises(cls):
        _loader(tmp_path)(text)
    assert_positioned_error(_loader(tmp_path), text, msg, line, col)


def test_a_bare_conditional_expression_in_a_statement_is_a_syntax_error(tmp_path):
    # `x = a if c else b` would make `y = x` followed by `if c { ... }` ambiguous: write parentheses
    text = "model M(a = 1) {\n    in  x: [d]\n    y = x if a > 0 else x\n    out y\n}\n"
    with pytest.raises(ParseError) as err:
        _loader(tmp_path)(text)
    assert err.value.span.line == 3


def test_python_values_that_are_not_hyperparameters_are_refused(tmp_path):
    path = _write(tmp_path, SPEC)
    with pytest.raises(HyperparameterError, match="None or a non-empty tuple of them"):
        nncircuit.load(path, depths=[1, object()])


def test_a_tuple_given_to_a_block_and_hostile_ranges(tmp_path):
    text = ("block B(t) {\n    in  x: [d]\n    out x * t[1]\n}\n\n"
            "model M() {\n    in  x: [batch, d: 4]\n    out B((2, 3))(x) + B(t = (5, 7))(x)\n}\n")
    x = torch.randn(2, 4)
    assert torch.allclose(nncircuit.load(_write(tmp_path, text)).module()(x), 10 * x)
    # a range whose length does not fit in 64 bits is refused before anything is built
    huge = "model M() {\n    in  x: [d]\n    for i in range(-9223372036854775807, 9223372036854775807) { x = x }\n    out x\n}\n"
    with pytest.raises(ResourceError, match="more than the limit of 100000"):
        nncircuit.load(_write(tmp_path, huge))
    with pytest.raises(HyperparameterError, match="int needs a finite number, found inf"):
        nncircuit.load(_write(tmp_path, "model M() {\n    in  x: [d]\n    out x * int(inf)\n}\n"))
    with pytest.raises(HyperparameterError, match="a tuple needs at least one value"):
        parse_param("depths=,")
    with pytest.raises(HyperparameterError, match="non-empty tuple"):
        nncircuit.load(_write(tmp_path, SPEC), depths=())


def test_a_bare_conditional_after_assignment_says_to_parenthesise_it():
    # after `=`, `if` starts a statement until `else` shows otherwise: the error says the fix
    text = "model M(d = 4, big = true) {\n    in  x: [batch, d]\n    y = x if big else x * 2\n    out y\n}\n"
    assert_positioned_error(lambda t: nncircuit.load("m.nn", text=t), text,
                            r"unexpected 'else'.*written in parentheses: `y = \(a if c else b\)`", 3, 18)
    fixed = text.replace("x if big else x * 2", "(x if big else x * 2)")
    assert nncircuit.load("m.nn", text=fixed).param_count() == 0
    # an `else` after an if statement's block is no conditional expression: no hint there
    with pytest.raises(ParseError) as err:
        nncircuit.load("m.nn", text="model M(d = 4) {\n    in  x: [d]\n    else { x = x }\n    out x\n}\n")
    assert "parentheses" not in err.value.message

"""The tensor vocabulary's comparisons and selection, elementwise maps and syntax fixes: each op
is checked for its type rule, its positioned errors, and torch against onnxruntime (bool
outputs, ties, ±inf included)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nncircuit
from nncircuit.errors import NNError
from nncircuit.lang.parse import parse
from nncircuit.lang import tree as A


def _inputs(spec, seed=0, special=True):
    """Random inputs by declared dtype; floats include ties (repeated values, halves, zeros)
    and, where `special`, ±inf."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _, t in spec.inputs():
        shape = [a.size.value if a.size.is_static else 2 for a in t.axes]
        if t.dtype == "bool":
            out.append(torch.rand(*shape, generator=g) > 0.5)
        elif t.dtype in ("int64", "int32"):
            out.append(torch.randint(-3, 4, shape, generator=g))
        else:
            x = torch.randn(*shape, generator=g) * 3
            flat = x.view(-1)
            if flat.numel() >= 8:
                flat[0], flat[1], flat[2], flat[3] = 0.0, 0.5, -2.5, 1.5  # zero, ties of round
                flat[4] = flat[5]  # a tie for comparisons
                if special:
                    flat[6], flat[7] = math.inf, -math.inf
            out.append(x)
    return out


def _run_both(text: str, tmp_path, *, seed=0, special=True, **params):
    """Torch (eval) and onnxruntime outputs of the one model in `text`, same weights."""
    import onnxruntime as ort

    src = tmp_path / "m.nn"
    src.write_text(text, encoding="utf-8")
    spec = nncircuit.load(str(src), **params)
    module = spec.module(seed=seed).eval()
    xs = _inputs(spec, seed, special)
    with torch.no_grad():
        want = module(*xs)
    want = want if isinstance(want, tuple) else (want,)
    out = tmp_path / "m.onnx"
    nncircuit.export_onnx(str(src), str(out), state_dict=module.state_dict(), **params)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), xs)})
    return [w.numpy() for w in want], got


def _assert_same(want, got, *, rtol=1e-6, atol=1e-6):
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape, (w.dtype, w.shape, g.dtype, g.shape)
        if w.dtype == np.bool_ or w.dtype.kind in "iu":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)  # both NaN: a fully masked row


def _error(text: str, **params) -> NNError:
    with pytest.raises(NNError) as info:
        nncircuit.load("t.nn", text=text, **params)
    return info.value


# ---- torch against onnxruntime, op by op ------------------------------------------------------

HEAD = "model M() {\n    in x: [batch, c: 3, n: 8], y: [n: 8], m: [c: 3, n: 8] bool, k: [n: 8] int64\n"

CASES = [
    # comparisons: broadcast by name, numbers on either side, ties and ±inf in the inputs
    "out x < y, x <= y, x > y, x >= y, x == y, x != y",
    "out x < 0, 0.5 <= x, x > -inf, x == inf, x != 0",
    "out k < 1, k >= 0.5, k == k, x > k",
    "out m == m, m != (x > 0)",
    # logic
    "out m and (x > 0), (x < y) or m, not m, not x > 0 and m",
    # selection: masked fill has no NaN from 0 × −inf
    "out where(m, x, -inf), where(m, 0, y), where(m, x, y), where(k > 0, k, 0.5)",
    "out softmax(where(m, y, -inf), over n)",
    "out minimum(x, y), maximum(y, x), minimum(x, 0), maximum(0.5, x), maximum(k, 1)",
    "out clamp(x, min = -1, max = 1), clamp(x, min = 0), clamp(x, max = 0.5), clamp(k, min = 0)",
    # rounding: halves to even, sign(0) = 0, infinities kept
    "out floor(x), ceil(x), round(x), sign(x), round(x * 0.5)",
]
FINITE_CASES = [
    "out sin(x), cos(x), relu6(x), hardswish(x), hardsigmoid(x), mish(x)",
    "out softplus(x), softplus(x, beta = 2, threshold = 5), elu(x), elu(x, alpha = 0.5)",
    "out leaky_relu(x), leaky_relu(x, slope = 0.2), hardtanh(x), hardtanh(x, min = -2, max = 0.5)",
    "out PReLU(x), PReLU(x, over c), PReLU(x, over n, init = constant(0.1))",
]


@pytest.mark.parametrize("body", CASES)
def test_torch_matches_onnxruntime_with_infinities(body, tmp_path):
    want, got = _run_both(HEAD + "    " + body + "\n}\n", tmp_path)
    _assert_same(want, got)


@pytest.mark.parametrize("body", FINITE_CASES)
def test_elementwise_maps_torch_matches_onnxruntime(body, tmp_path):
    want, got = _run_both(HEAD + "    " + body + "\n}\n", tmp_path, special=False)
    _assert_same(want, got, rtol=1e-5, atol=1e-6)


def test_masked_fill_is_a_select_not_arithmetic(tmp_path):
    want, got = _run_both(HEAD + "    out where(m, x, -inf), (1.0 - cast(m, to = \"float32\")) * -3.4e38\n}\n",
                          tmp_path, special=False)
    filled = want[0]
    assert np.isneginf(filled).any() and not np.isnan(filled).any()
    _assert_same(want, got)


def test_types_of_the_new_ops():
    spec = nncircuit.load("t.nn", text=HEAD + "    out x < y, m and m, where(m, k, -inf), minimum(k, y), round(x)\n}\n")
    types = [str(t) for _, t in spec.outputs()]
    assert types == ["[batch, c: 3, n: 8] bool", "[c: 3, n: 8] bool", "[c: 3, n: 8]",
                     "[n: 8]", "[batch, c: 3, n: 8]"]


def test_prelu_parameters_are_named_like_torch():
    spec = nncircuit.load("t.nn", text=HEAD + "    a = PReLU(x, over c)\n    out a\n}\n")
    sd = spec.module(seed=0).state_dict()
    assert list(sd) == ["a.weight"] and sd["a.weight"].shape == (3,)
    assert torch.all(sd["a.weight"] == 0.25)


# ---- positioned errors ------------------------------------------------------------------------

ERRORS = [
    ("out x and m", "'and' needs bool tensors"),
    ("out not x", "'not' needs bool tensors"),
    ("out m or 1", "'or' joins two bool tensors"),
    ("out where(x, x, y)", "'where' needs bool tensors"),
    ("out where(m, 0, 1)", "at least one of the two values must be a tensor"),
    ("out where(m, x)", "where takes a bool condition and two values"),
    ("out clamp(x)", "clamp needs min, max or both"),
    ("out clamp(x, min = 2, max = 1)", "min = 2 is larger than max = 1"),
    ("out clamp(k, min = 0.5)", "is a float but the input"),
    ("out round(k)", "round needs a floating-point tensor"),
    ("out x < \"a\"", "cannot compare a tensor with 'a'"),
    ("out softplus(x, beta = 0)", "beta must be positive"),
    ("out PReLU(x, over [c, n])", "PReLU takes at most one axis"),
    ("out relu(x) + (2 < 3)", "'<' acts on tensors"),
]


@pytest.mark.parametrize("body, message", ERRORS)
def test_positioned_errors(body, message):
    err = _error(HEAD + "    " + body + "\n}\n")
    assert message in str(err)
    assert err.span is not None and err.span.line == 3, err.span


def test_comparisons_do_not_chain():
    err = _error(HEAD + "    out x < y < x\n}\n")
    assert "unexpected '<'" in str(err) and err.span.line == 3


# ---- syntax friction --------------------------------------------------------------------------


def _value(text: str):
    (block,) = parse("model M() { out " + text + " }").blocks
    return block.body[0].items[0].value


def test_rename_takes_the_whole_product():
    e = _value("(1.0 - m) * -3.4e38 rename seq -> key")
    assert isinstance(e, A.Rename) and isinstance(e.operand, A.BinOp) and e.operand.op == "*"
    spec = nncircuit.load("t.nn", text="model M() { in m: [seq: 4]\n out (1.0 - m) * -3.4e38 rename seq -> key }")
    assert [str(t) for _, t in spec.outputs()] == ["[key: 4]"]


def test_pipe_right_side_is_one_call():
    e = _value("a |> flatten([h, w] -> s) + b")
    assert isinstance(e, A.BinOp) and e.op == "+" and e.left.op == "|>"
    spec = nncircuit.load("t.nn", text="model M() { in a: [h: 2, w: 3], b: [s: 6]\n out a |> flatten([h, w] -> s) + b }")
    assert [str(t) for _, t in spec.outputs()] == ["[s: 6]"]


def test_old_readings_are_kept():
    assert _value("a + b |> f").left.op == "+"  # the whole sum is piped
    assert _value("x |> f |> g").left.op == "|>"
    assert isinstance(_value("Linear(x, d -> e) rename seq -> key").operand, A.Call)


def test_over_is_not_checked_against_a_hyperparameter_of_the_same_name():
    text = "model M(per = 3) { in x: [per: 5, d: 2]\n out softmax(x, over per) * per }"
    spec = nncircuit.load("t.nn", text=text)
    assert [str(t) for _, t in spec.outputs()] == ["[per: 5, d: 2]"]


def test_fmt_keeps_the_new_forms():
    from nncircuit.editor.fmt import format_text

    src = "model M() {\n    in x: [n: 2], m: [n: 2] bool\n    out not (x < 0) and m or (x >= 1), where(m, x, -inf) |> relu + x, (x + 1) rename n -> k\n}\n"
    out = format_text(src)
    assert parse(out) == parse(src)
    assert format_text(out) == out


def test_ir_text_round_trips_infinities():
    from nncircuit.ir.parser import parse_ir
    from nncircuit.ir.printer import print_ir

    spec = nncircuit.load("t.nn", text=HEAD + "    out where(m, x, -inf), x > -inf\n}\n")
    text = print_ir(spec.graph)
    assert "-inf" in text
    assert print_ir(parse_ir(text)) == text


@pytest.mark.parametrize("expr", ["where(a > 0, a, b)", "a < b", "minimum(a, b)", "a > 0 and b > 0",
                                  "where(b > 0, 0.5, a)"])
def test_comparisons_and_selection_never_broadcast_outer(expr):
    """The long fuzz found `where(x1 == 0.5, 0.5, t3)` with each side lacking an axis of the
    other typed one way and laid out another by torch; comparisons and selection follow the
    rule of arithmetic: an outer broadcast is refused with a positioned error."""
    text = f"model M() {{\n    in a: [batch, p: 2], b: [batch, q: 3]\n    out {expr}\n}}\n"
    with pytest.raises(nncircuit.NNError, match="each side has an axis the other lacks") as info:
        nncircuit.load("m.nn", text=text)
    assert info.value.span.line == 3
    ok = "model M() {\n    in a: [batch, p: 2], b: [batch]\n    out where(a > 0, a, b), a < b\n}\n"
    nncircuit.load("m.nn", text=ok)  # one side's axes include the other's: implicit, as for +

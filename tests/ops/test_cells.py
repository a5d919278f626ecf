"""The recurrent cells LSTMCell, GRUCell and RNNCell (compiler/ops/cells.py): torch.nn's own
state_dicts load strictly into named instances, values and gradients equal torch.nn's cells
(one step, and stepped in a scan), `bias = false` and `nonlinearity`, any leading axes and
layouts (several batch axes, a lifted block, several input axes), torch.nn's initialisation,
onnxruntime equal to torch, `nnc summary`'s figures, a diagram box, positioned errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nncircuit
from helpers import assert_error_on_line
from nncircuit.errors import NNError

STATES = {"LSTMCell": ("h", "c"), "GRUCell": ("h",), "RNNCell": ("h",)}


def _step_spec(op: str, extra: str = "") -> str:
    s = ", ".join(STATES[op])
    ins = ", ".join(f"{n}: [batch, hidden]" for n in STATES[op])
    return f"""
model Step(d = 3, hidden = 5) {{
    in  x: [batch, d], {ins}
    cell = {op}(d -> hidden{extra})
    {s} = cell(x, {s})
    out {s}
}}
"""


def _reference(op: str, **kw):
    torch.manual_seed(7)
    return getattr(torch.nn, op)(3, 5, **kw)


def _call_ref(ref, op, x, states):
    out = ref(x, tuple(states)) if op == "LSTMCell" else ref(x, states[0])
    return out if isinstance(out, tuple) else (out,)


CASES = [("LSTMCell", "", {}), ("GRUCell", "", {}), ("RNNCell", "", {}),
         ("LSTMCell", ", bias = false", {"bias": False}), ("GRUCell", ", bias = false", {"bias": False}),
         ("RNNCell", ', nonlinearity = "relu"', {"nonlinearity": "relu"}),
         ("RNNCell", ', bias = false, nonlinearity = "relu"', {"bias": False, "nonlinearity": "relu"})]


@pytest.mark.parametrize("op,extra,kw", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_a_torch_nn_cell_state_dict_loads_strictly_and_one_step_equals_it(op, extra, kw):
    ref = _reference(op, **kw)
    m = nncircuit.load("step.nn", text=_step_spec(op, extra)).module(seed=0)
    m.load_state_dict({f"cell.{k}": v for k, v in ref.state_dict().items()}, strict=True)
    assert sorted(k for k, _ in m.named_parameters()) == sorted(f"cell.{k}" for k, _ in ref.named_parameters())
    x = torch.randn(4, 3, requires_grad=True)
    states = [torch.randn(4, 5, requires_grad=True) for _ in STATES[op]]
    got = m(x, *states)
    got = got if isinstance(got, tuple) else (got,)
    want = _call_ref(ref, op, x, states)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    weights = [torch.randn_like(t) for t in want]
    ga = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, got)), [x, *states, *m.parameters()])
    gb = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, want)), [x, *states, *ref.parameters()])
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


SCAN = """
model Encoder(d = 3, hidden = 5) {
    in  x: [batch, seq, d]
    h = zeros([batch, hidden])
    c = zeros([batch, hidden])
    scan seq {
        cell = LSTMCell(d -> hidden)
        h, c = cell(x, h, c)
        emit hs = h
    }
    out hs, h, c
}
"""


@pytest.mark.parametrize("opt", [0, 2])
def test_a_cell_in_a_scan_is_one_module_and_equals_a_torch_loop(opt):
    ref = _reference("LSTMCell")
    spec = nncircuit.load("enc.nn", text=SCAN, opt=opt)
    m = spec.module(seed=0)
    m.load_state_dict({f"scan.cell.{k}": v for k, v in ref.state_dict().items()}, strict=True)
    x = torch.randn(2, 6, 3)
    h = c = torch.zeros(2, 5)
    hs = []
    for t in range(6):
        h, c = ref(x[:, t], (h, c))
        hs.append(h)
    got = m(x)
    for a, b in zip(got, (torch.stack(hs, 1), h, c), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # the generated class takes other hyperparameters: torch.nn's shapes for them
    other = spec.torch_class()(d=4, hidden=7)
    assert {k: tuple(v.shape) for k, v in other.state_dict().items()} == {
        f"scan.cell.{k}": tuple(v.shape) for k, v in torch.nn.LSTMCell(4, 7).state_dict().items()}


LAYOUTS = """
block Cell(d = 3, hidden = 5) {
    in  x: [d], h: [hidden], c: [hidden]
    h, c = LSTMCell(x, h, c, d -> hidden)
    out h, c
}
model Layouts(hidden = 5) {
    in  x: [batch, heads: 2, d: 3], h: [hidden, heads: 2, batch], c: [heads: 2, batch, hidden],
        y: [batch, e: 2, d: 3], g: [batch, hidden], xs: [batch, heads: 2, d: 3]
    h1, c1 = LSTMCell(x, h, c, d -> hidden)
    g1 = GRUCell(y, g, [e, d] -> hidden)
    r1 = RNNCell(x, h, d -> hidden, nonlinearity = "relu")
    h2, c2 = Cell(3, hidden)(xs, transpose(h, hidden, batch), c)
    out h1, c1, g1, r1, h2, c2
}
"""


def _layout_inputs():
    torch.manual_seed(3)
    return dict(x=torch.randn(4, 2, 3), h=torch.randn(5, 2, 4), c=torch.randn(2, 4, 5),
                y=torch.randn(4, 2, 3), g=torch.randn(4, 5), xs=torch.randn(4, 2, 3))


def test_leading_axes_layouts_several_input_axes_and_a_lifted_block():
    spec = nncircuit.load("layouts.nn", text=LAYOUTS)
    m = spec.module(seed=0)
    i = _layout_inputs()
    h1, c1, g1, r1, h2, c2 = m(*i.values())
    assert (h1.shape, c1.shape, g1.shape, r1.shape) == ((5, 2, 4), (2, 4, 5), (4, 5), (5, 2, 4))
    hb = i["h"].permute(2, 1, 0)  # [batch, heads, hidden]
    cb = i["c"].permute(1, 0, 2)
    want_h, want_c = m.lstmcell(i["x"].reshape(8, 3), (hb.reshape(8, 5), cb.reshape(8, 5)))
    torch.testing.assert_close(h1, want_h.reshape(4, 2, 5).permute(2, 1, 0), rtol=0, atol=1e-6)
    torch.testing.assert_close(c1, want_c.reshape(4, 2, 5).permute(1, 0, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(g1, m.g1(i["y"].flatten(1), i["g"]), rtol=0, atol=1e-6)
    assert m.g1.weight_ih.shape == (15, 6)  # [e, d] flattened: 2 * 3 inputs
    want_r = m.r1(i["x"].reshape(8, 3), hb.reshape(8, 5)).reshape(4, 2, 5).permute(2, 1, 0)
    torch.testing.assert_close(r1, want_r, rtol=0, atol=1e-6)
    assert (r1 >= 0).all()  # relu
    cell = m.cell.lstmcell  # the block lifted over batch and heads
    wh, wc = cell(i["xs"].reshape(8, 3), (hb.reshape(8, 5), cb.reshape(8, 5)))
    assert h2.shape == c2.shape == (4, 2, 5)  # the lifted axes first, in the first input's order
    torch.testing.assert_close(h2, wh.reshape(4, 2, 5), rtol=0, atol=1e-6)
    torch.testing.assert_close(c2, wc.reshape(4, 2, 5), rtol=0, atol=1e-6)


def test_onnxruntime_equals_torch_at_two_batch_sizes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    for text, name in ((LAYOUTS, "Layouts"), (SCAN, "Encoder")):
        spec = nncircuit.load(f"{name}.nn", text=text)
        m = spec.module(seed=0)
        out = str(tmp_path / f"{name}.onnx")
        spec.write(out, state_dict=m.state_dict())
        sess = ort.InferenceSession(out)
        for batch in (1, 4):
            if name == "Layouts":
                i = {k: v.narrow(v.dim() - 1 if k == "h" else (1 if k == "c" else 0), 0, batch)
                     for k, v in _layout_inputs().items()}
            else:
                i = {"x": torch.randn(batch, 5, 3)}
            with torch.no_grad():
                want = m(*i.values())
            got = sess.run(None, {k: v.numpy() for k, v in i.items()})
            assert len(got) == len(want)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-6)


def test_the_initialisation_is_torch_nn_s_uniform_within_one_over_sqrt_hidden(tmp_path):
    text = _step_spec("GRUCell").replace("hidden = 5", "hidden = 100")
    spec = nncircuit.load("step.nn", text=text)
    m = spec.module(seed=0)
    bound = 1 / math.sqrt(100)
    for _, p in m.named_parameters():
        assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound
    # the seeded ONNX weights are drawn from the same distribution
    onnx = pytest.importorskip("onnx")
    out = str(tmp_path / "step.onnx")
    spec.write(out)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    cell = [v for k, v in inits.items() if "weight_hh" in k]
    assert cell and np.abs(cell[0]).max() <= bound and np.abs(cell[0]).max() > 0.9 * bound


def test_summary_counts_the_parameters_and_the_two_matrix_products():
    spec = nncircuit.load("enc.nn", text=SCAN)
    s = spec.summary({"batch": 2, "seq": 6})
    assert s.params == 4 * 5 * (3 + 5) + 2 * 4 * 5
    assert s.flops == 6 * 2 * 2 * 4 * 5 * (3 + 5)  # steps × 2 × batch × 4 gates × hidden × (in + hidden)


def test_a_diagram_draws_each_cell_as_a_learned_box():
    import xml.etree.ElementTree as ET

    from nncircuit.backends.diagram import render as R

    text = SCAN.replace("emit hs = h", "g = GRUCell(x, h, d -> hidden)\n        emit hs = RNNCell(x, g, d -> hidden)")
    spec = nncircuit.load("enc.nn", text=text)
    for style in ("circuit", "graph"):
        svg = R.svg(spec, R.options(style, None, ("scan",), False), engine="python")
        root = ET.fromstring(svg)  # well-formed
        words = " ".join(t for el in root.iter() for t in [el.text or ""])
        for glyph in ("LSTM", "GRU", "RNN"):
            assert glyph in words, (style, glyph)


def test_a_cell_given_too_few_tensors_is_a_function_value_and_its_use_says_so():
    text = "model M() {\n    in  x: [batch, d: 3], h: [batch, hidden: 5]\n    y = LSTMCell(x, h, d -> hidden)\n    out y\n}\n"
    with pytest.raises(NNError, match="the operation 'LSTMCell' given 2 of its 3 tensors") as info:
        nncircuit.load("m.nn", text=text)
    assert info.value.span.line == 4


ERRORS = [
    ("LSTMCell(x, h, c)", "LSTMCell needs 'IN -> HIDDEN' axes"),
    ("LSTMCell(x, h, c, d -> [hidden, e])", "the states have one hidden axis, found [hidden, e]"),
    ("LSTMCell(x, h, c, f -> hidden)", "LSTMCell expects an axis 'f' but the input is [batch, d: 3]"),
    ("LSTMCell(x, w, c, d -> hidden)", "the state h must have the hidden axis 'hidden', found [batch, e: 5]"),
    ("LSTMCell(x, h, q, d -> hidden)", "the state c must have the input's other axes and 'hidden'"),
    ("LSTMCell(x, h, c, d -> hidden: 4)", "LSTMCell: axis 'hidden' has size 5 in the input [batch, hidden: 5], but the call says 4"),
    ("LSTMCell(x, h, s, d -> hidden)", "the hidden axis 'hidden' has size 5 in h but 4 in c"),
    ("LSTMCell(x, h, i, d -> hidden)", "LSTMCell needs floating-point tensors, found the state c"),
    ("LSTMCell(x, h, c, d -> hidden, bias = 2)", "LSTMCell: bias must be true or false, found 2"),
    ("RNNCell(x, h, d -> hidden, nonlinearity = \"gelu\")", 'nonlinearity must be "tanh" or "relu", found \'gelu\''),
    ("GRUCell(x, h, d -> hidden, nonlinearity = \"relu\")", "GRUCell has no argument 'nonlinearity'"),
    ("GRUCell(z, h, d -> hidden)", "the state h must have the input's other axes and 'hidden'"),
]


@pytest.mark.parametrize("call, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_positioned_errors(call, message):
    text = ("model M() {\n    in  x: [batch, d: 3], h: [batch, hidden: 5], c: [batch, hidden: 5], "
            "w: [batch, e: 5], q: [hidden: 5], s: [batch, hidden: 4], i: [batch, hidden: 5] int64, "
            "z: [batch, n: 2, d: 3]\n"
            f"    y = {call}\n    out y\n}}\n")
    assert_error_on_line(text, message, 3)


def test_a_checkpoint_rule_reaches_a_cell_in_a_scan_body():
    # the body of a scan is one module (`scan`): its cell's weights are `scan.cell.*`, and a
    # checkpoint source may name them (the path check walks scan bodies too)
    text = SCAN.replace("    out hs, h, c\n", '    out hs, h, c\n    checkpoint {\n        "lstm" = "scan.cell"\n    }\n')
    ref = _reference("LSTMCell")
    m = nncircuit.load("enc.nn", text=text).module(seed=0)
    m.load_state_dict({f"lstm.{k}": v for k, v in ref.state_dict().items()}, strict=True)
    torch.testing.assert_close(m.scan.cell.weight_hh, ref.weight_hh, rtol=0, atol=0)
    bad = SCAN.replace("    out hs, h, c\n", '    out hs, h, c\n    checkpoint {\n        "lstm" = "scam.cell"\n    }\n')
    with pytest.raises(NNError, match=r'"scam.cell" names no module or tensor of this model \(did you mean .scan.cell.'):
        nncircuit.load("enc.nn", text=bad)

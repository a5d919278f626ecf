"""`scan` over a named axis (carried state, per-step slices, emitted values stacked along the
axis, `reverse`, `as t`, nesting, lifting) and the fill ops `zeros` / `ones` / `full`: the
torch module against hand-written loops (values and gradients), onnxruntime against torch at
two sequence lengths, the recurrent zoo (specs/lstm.nn) against torch.nn.LSTM/GRU/RNN, the
positioned errors, the IR text, the summary's per-step cost and the diagram."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

import nncircuit
from helpers import assert_positioned_error
from nncircuit.errors import NNError
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import print_ir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LSTM = os.path.join(ROOT, "specs", "lstm.nn")

ELMAN = """
model Elman(hidden = 4) {
    in  x: [batch, seq, d: 3]
    w = Param([h: hidden, d: 3])
    u = Param([h: hidden, h2: hidden])
    h = zeros([batch, h: hidden])
    scan seq {
        h = tanh(einsum(x, w, over d) + einsum(h rename h -> h2, u, over h2))
        emit hs = h
    }
    out y = hs, last = h
}
"""

# reverse, a bound step index, a nested scan, a scan inside a block lifted over batch and heads
FORMS = """
block Cum(d) {
    in  x: [seq, d]
    s = zeros([d])
    scan seq reverse as t {
        s = s + x * cast(t, to = "float32")
        emit c = s
    }
    out c
}
model Forms(d = 3) {
    in  x: [batch, heads: 2, seq, d]
    y = Cum(d)(x)
    scan heads {
        inner = full([batch], value = 0.5)
        scan seq {
            inner = inner + sum(y, over d)
            emit z = inner * 2.0
        }
        emit zz = z
    }
    out y, zz
}
"""


def load(text: str, model: str | None = None, **kw):
    return nncircuit.load("scan.nn", model, text=text, **kw)


def elman_reference(m, x):
    h = torch.zeros(x.shape[0], m.u.shape[0])
    ys = []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ m.w.T + h @ m.u.T)
        ys.append(h)
    return torch.stack(ys, 1), h


def test_scan_types_and_state():
    spec = load(ELMAN)
    outs = dict(spec.outputs())
    assert outs["y"].names == ("batch", "seq", "h")
    assert outs["last"].names == ("batch", "h")


def test_torch_equals_a_hand_written_loop_values_and_gradients():
    spec = load(ELMAN)
    m = spec.module(seed=0)
    x = torch.randn(2, 6, 3, requires_grad=True)
    y, last = m(x)
    ry, rlast = elman_reference(m, x)
    torch.testing.assert_close(y, ry, rtol=0, atol=1e-6)
    torch.testing.assert_close(last, rlast, rtol=0, atol=1e-6)
    # gradients through the loop equal autograd of the hand-written loop
    g = torch.randn_like(y)
    got = torch.autograd.grad((y * g).sum() + last.sum(), (x, m.w, m.u))
    want = torch.autograd.grad((ry * g).sum() + rlast.sum(), (x, m.w, m.u))
    for a, b in zip(got, want):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_generated_source_is_a_python_loop_with_stack():
    src = load(ELMAN).torch_source()
    assert "for _t in range(x.shape[-2]):" in src
    assert "torch.stack(" in src
    assert "x.select(-2, _t)" in src


def test_reverse_index_nested_and_lifted():
    spec = load(FORMS)
    m = spec.module(seed=0)
    x = torch.randn(2, 2, 5, 3)
    y, zz = m(x)
    t = torch.arange(5.0).view(1, 1, 5, 1)
    torch.testing.assert_close(y, (x * t).flip(2).cumsum(2).flip(2), rtol=0, atol=1e-5)
    torch.testing.assert_close(zz, (0.5 + y.sum(-1).cumsum(2)) * 2, rtol=1e-5, atol=1e-4)
    assert dict(spec.outputs())["zz"].names == ("batch", "heads", "seq")


def test_other_hyperparameters_than_compiled():
    spec = load(ELMAN)
    cls = spec.torch_class()
    m = cls(hidden=7)
    y, last = m(torch.randn(2, 4, 3))
    assert y.shape == (2, 4, 7) and last.shape == (2, 7)


@pytest.mark.parametrize("text,model", [(ELMAN, None), (FORMS, None)])
def test_onnx_is_a_loop_and_equals_torch_at_two_lengths(tmp_path, text, model):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    spec = load(text, model)
    m = spec.module(seed=0).eval()
    out = str(tmp_path / "m.onnx")
    spec.write(out, state_dict=m.state_dict())
    proto = onnx.load(out)
    kinds = [n.op_type for n in proto.graph.node]
    assert "Loop" in kinds
    sess = ort.InferenceSession(out)
    for length in (3, 8):
        xs = []
        for _, t in spec.inputs():
            shape = [a.size.value if a.size.is_static else (2 if a.name == "batch" else length) for a in t.axes]
            xs.append(torch.randn(*shape))
        with torch.no_grad():
            ref = m(*xs)
        got = sess.run(None, {n: x.numpy() for (n, _), x in zip(spec.inputs(), xs)})
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g, r.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model,kind,kw", [
    ("LSTM", "LSTM", {}), ("LSTM", "LSTM", {"bidirectional": True}), ("GRU", "GRU", {}), ("RNN", "RNN", {}),
])
def test_recurrent_zoo_equals_torch_nn(model, kind, kw):
    # one layer here; tests/e2e/test_recurrent_zoo.py covers num_layers and bidirectional
    torch.manual_seed(0)
    ref = getattr(torch.nn, kind)(10, 20, batch_first=True, **kw)
    for opt in (0, 2):
        m = nncircuit.compile(LSTM, model, opt=opt, num_layers=1, **kw)
        m.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(3, 7, 10)
        with torch.no_grad():
            y, states = ref(x)
            got = m(x)
        states = states if isinstance(states, tuple) else (states,)
        torch.testing.assert_close(got[0], y, rtol=0, atol=1e-5)
        for s_ref, s_got in zip(states, got[1:]):
            torch.testing.assert_close(s_got, s_ref, rtol=0, atol=1e-5)


def test_lstm_onnx_equals_torch_at_two_lengths(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load(LSTM, "LSTM", num_layers=1)
    ref = torch.nn.LSTM(10, 20, batch_first=True)
    out = str(tmp_path / "lstm.onnx")
    m = spec.module()
    m.load_state_dict(ref.state_dict(), strict=True)  # torch's names through the checkpoint section
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out)
    for length in (5, 11):
        x = torch.randn(2, length, 10)
        with torch.no_grad():
            y, (h, c) = ref(x)
        got = sess.run(None, {"x": x.numpy()})
        np.testing.assert_allclose(got[0], y.numpy(), atol=1e-5)
        np.testing.assert_allclose(got[1], h.numpy(), atol=1e-5)
        np.testing.assert_allclose(got[2], c.numpy(), atol=1e-5)


def test_fill_ops_take_runtime_and_static_sizes():
    spec = load("""
model F(k = 3) {
    in  x: [batch, seq, d: 2 * k]
    out a = zeros([batch, d]), b = ones([seq, e: k]), c = full([batch, d], value = -1.5)
}
""")
    m = spec.module(seed=0)
    a, b, c = m(torch.randn(4, 5, 6))
    assert a.shape == (4, 6) and (a == 0).all()
    assert b.shape == (5, 3) and (b == 1).all()
    assert c.shape == (4, 6) and (c == -1.5).all()
    a, _, _ = spec.torch_class()(k=2)(torch.randn(1, 2, 4))
    assert a.shape == (1, 4)  # the static size follows the hyperparameter


ERRORS = [
    # a carried value whose type changes
    ("model M() {\n  in x: [batch, seq, d: 3]\n  h = zeros([batch, d])\n  scan seq {\n    h = h + x\n"
     "    h = sum(h, over d)\n  }\n  out h\n}",
     r"scan changes the carried value 'h' from \[batch, d: 3\] to \[batch\]", 4, 3),
    # a scan over an axis no value the body reads has
    ("model M() {\n  in x: [batch, seq, d: 3]\n  h = zeros([batch, d])\n  scan sq {\n    h = h + x\n  }\n  out h\n}",
     r"scan over 'sq': no value the body reads has the axis 'sq' \(did you mean 'seq'\?\)", 4, 3),
    # emit outside a scan
    ("model M() {\n  in x: [batch, d: 3]\n  emit y = x\n  out x\n}",
     r"'emit' belongs directly in the body of a scan", 3, 3),
    # an emitted value named as a value of the body
    ("model M() {\n  in x: [batch, seq, d: 3]\n  h = zeros([batch, d])\n  scan seq {\n    h = h + x\n"
     "    emit h = h\n  }\n  out h\n}",
     r"'h' is a value of this scan body; the stacked values need a name of their own: emit hs = h", 6, 5),
    # an emitted value that still has the scanned axis
    ("model M() {\n  in x: [batch, seq, d: 3]\n  scan seq {\n    emit y = zeros([seq])\n  }\n  out y\n}",
     r"zeros: the size of axis 'seq' is unknown", 4, 14),
    # a scan that neither carries nor emits
    ("model M() {\n  in x: [batch, seq, d: 3]\n  scan seq {\n    y = x * 2\n  }\n  out x\n}",
     r"scan neither updates a value defined before it nor emits one", 3, 3),
    # a fill op with an axis of unknown size
    ("model M() {\n  in x: [batch, d: 3]\n  out zeros([batch, e])\n}",
     r"zeros: the size of axis 'e' is unknown: no tensor in scope has it", 3, 7),
]


@pytest.mark.parametrize("text,msg,line,col", ERRORS)
def test_positioned_errors(text, msg, line, col):
    assert_positioned_error(load, text, msg, line, col)


def test_a_value_built_in_the_body_lacks_the_scanned_axis():
    text = ("model M() {\n  in x: [batch, seq, d: 3], y: [batch, seq]\n  h = zeros([batch, d])\n  scan seq {\n"
            "    h = h + x\n    emit z = einsum(h, zeros([batch, d, e: 2]), over d)\n  }\n  out z\n}")
    spec = load(text)  # the axis is gone inside: a value built there cannot have it
    assert dict(spec.outputs())["z"].names == ("batch", "seq", "e")


def test_ir_text_round_trips():
    for text in (ELMAN, FORMS):
        ir = print_ir(load(text).graph)
        assert "scan @" in ir and "axis seq" in ir
        assert print_ir(parse_ir(ir)) == ir


def test_summary_counts_flops_per_step_times_length():
    spec = load(ELMAN.replace("seq,", "seq: ~10,"))
    short = spec.summary({"batch": 1, "seq": 10})
    long = spec.summary({"batch": 1, "seq": 20})
    row = lambda s: next(r for r in s.rows if r.op.startswith("scan"))  # noqa: E731
    assert "10 steps" in row(short).op and "20 steps" in row(long).op
    assert row(long).cost.flops == 2 * row(short).cost.flops > 0


def test_diagram_draws_a_recurrence():
    svg = load(ELMAN)._repr_svg_()
    assert 'class="carry"' in svg  # the carried wire loops back
    assert "⟲ seq" in svg and "×" not in re.sub(r"<title>.*?</title>", "", svg)


# The straightforward PyTorch that specs/lstm.nn's LSTM replaces (its line count is in the report).
class HandLSTM(torch.nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        k = hidden_size ** -0.5
        self.weight_ih_l0 = torch.nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh_l0 = torch.nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih_l0 = torch.nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))
        self.bias_hh_l0 = torch.nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))
        self.hidden_size = hidden_size

    def forward(self, x):
        xg = x @ self.weight_ih_l0.T + self.bias_ih_l0 + self.bias_hh_l0
        h = c = x.new_zeros(x.shape[0], self.hidden_size)
        out = []
        for t in range(x.shape[1]):
            i, f, g, o = (xg[:, t] + h @ self.weight_hh_l0.T).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out, 1), h, c


def test_lstm_spec_equals_the_hand_written_module_values_and_gradients():
    hand = HandLSTM(10, 20)
    m = nncircuit.compile(LSTM, "LSTM", opt=0, num_layers=1)
    m.load_state_dict(hand.state_dict(), strict=True)
    x = torch.randn(2, 6, 10)
    got, want = m(x), hand(x)
    got = (got[0], got[1][0], got[2][0])  # h_n, c_n: [num_layers * directions, batch, hidden]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    ga = torch.autograd.grad(sum(t.sum() for t in got), list(m.parameters()))
    gb = torch.autograd.grad(sum(t.sum() for t in want), list(hand.parameters()))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_a_learned_instance_from_outside_is_refused_with_the_scan_named():
    text = ("model M(d = 2) {\n  in x: [batch, seq, d]\n  f = Linear(d -> d)\n  h = zeros([batch, d])\n"
            "  scan seq {\n    h = f(h) + x\n  }\n  out h\n}")
    with pytest.raises(NNError, match=r"'f' is a learned instance bound outside this scan; bind it inside the scan"):
        load(text)


def test_learned_ops_inside_the_body_are_one_module_shared_by_every_step():
    spec = load("model M(d = 2) {\n  in x: [batch, seq, d]\n  h = zeros([batch, d])\n"
                "  scan seq {\n    h = tanh(Linear(h, d -> d) + x)\n  }\n  out h\n}")
    m = spec.module(seed=0)
    assert sorted(k for k, _ in m.named_parameters()) == ["scan.linear.bias", "scan.linear.weight"]
    x = torch.randn(2, 4, 2)
    h = torch.zeros(2, 2)
    for t in range(4):
        h = torch.tanh(m.scan.linear(h) + x[:, t])
    torch.testing.assert_close(m(x), h, rtol=0, atol=1e-6)


REVERSE_BY = """
model R(back = true, d = 3) {
    in  x: [batch, seq, d]
    h = zeros([batch, d])
    scan seq reverse = back {
        h = tanh(0.5 * h + x)
        emit y = h
    }
    out y, h
}
"""


@pytest.mark.parametrize("opt", [0, 2])
@pytest.mark.parametrize("back", [True, False])
def test_reverse_from_a_hyperparameter_steps_that_way(back, opt):
    m = load(REVERSE_BY, back=back, opt=opt).module(seed=0)
    x = torch.randn(2, 5, 3)
    h, out = torch.zeros(2, 3), [None] * 5
    for t in (reversed(range(5)) if back else range(5)):
        h = torch.tanh(0.5 * h + x[:, t])
        out[t] = h
    y, last = m(x)
    torch.testing.assert_close(y, torch.stack(out, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(last, h, rtol=0, atol=1e-6)


def test_reverse_from_a_hyperparameter_is_structure_and_formats_as_written():
    cls = load(REVERSE_BY).torch_class()
    with pytest.raises(ValueError, match=r"`scan \.\.\. reverse = back` was compiled for it being true"):
        cls(back=False)
    assert cls(d=5)(torch.randn(1, 2, 5))[0].shape == (1, 2, 5)
    from nncircuit.editor.fmt import format_text

    assert format_text(REVERSE_BY) == REVERSE_BY.lstrip("\n")


@pytest.mark.parametrize("cond,msg", [
    ("x", r"a condition \(`if`, `a if c else b`, `scan \.\.\. reverse =`\) is resolved when the model is built, so it "
          r"compares hyperparameters; found a tensor"),
    ("d", r"a condition \(`if`, `a if c else b`, `scan \.\.\. reverse =`\) must be true or false, found 3"),
])
def test_reverse_condition_on_a_tensor_or_a_number_is_a_positioned_error(cond, msg):
    text = REVERSE_BY.replace("reverse = back", f"reverse = {cond}")
    assert_positioned_error(load, text, msg, 5, 24)


@pytest.mark.parametrize("opt", [0, 2])
def test_a_scan_compiles_in_one_graph_with_torch_compile(opt):
    """torch.compile captures the scan's Python loop (-O0) and the chunked linear_scan_sum of
    -O2 (S4D) without a graph break (fullgraph=True fails on any), and equals eager at two
    lengths; the eager backend keeps the test to capture, which is what a loop could break."""
    s4d = os.path.join(ROOT, "specs", "s4d.nn")
    for path, model, shape in [(LSTM, "LSTM", (2, 5, 10)), (s4d, "S4D", (2, 7, 8))]:
        torch._dynamo.reset()
        m = nncircuit.load(path, model, opt=opt).module(seed=0).eval()
        c = torch.compile(m, fullgraph=True, backend="eager")
        with torch.no_grad():
            for n in (shape[1], shape[1] + 3):
                x = torch.randn(shape[0], n, shape[2])
                want, got = m(x), c(x)
                want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
                for w, g in zip(want, got):
                    torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()

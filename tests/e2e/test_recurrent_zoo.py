"""The recurrent zoo: specs/lstm.nn's LSTM, GRU and RNN against torch.nn at several
(num_layers, bidirectional) settings (values, gradients, torch's own state_dict loaded with
strict=True, the generated class at other settings), specs/ltc.nn against a straightforward
PyTorch loop, and onnxruntime against torch at two sequence lengths."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nncircuit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = os.path.join(ROOT, "specs")
LSTM = os.path.join(SPECS, "lstm.nn")
SETTINGS = [(1, False), (1, True), (2, False), (2, True), (3, True)]


def _reference(kind, layers, bidirectional, **kw):
    torch.manual_seed(layers * 2 + bidirectional)
    return getattr(torch.nn, kind)(5, 6, layers, bidirectional=bidirectional, batch_first=True, **kw)


def _states(states):
    return states if isinstance(states, tuple) else (states,)


@pytest.mark.parametrize("kind,kw", [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("layers,bidirectional", SETTINGS)
def test_equals_torch_nn_values_and_gradients(kind, kw, layers, bidirectional):
    ref = _reference(kind, layers, bidirectional, **kw)
    m = nncircuit.compile(LSTM, kind, opt=0, input_size=5, hidden_size=6, num_layers=layers,
                          bidirectional=bidirectional, **kw)
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 7, 5)
    y, states = ref(x)
    got = m(x)
    want = (y,) + _states(states)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # gradients of every torch parameter, matched through the checkpoint names
    ga = torch.autograd.grad(sum((t * (i + 1)).sum() for i, t in enumerate(got)), list(m.parameters()))
    gb = torch.autograd.grad(sum((t * (i + 1)).sum() for i, t in enumerate(want)), list(ref.parameters()))
    assert sorted(round(float(g.abs().sum()), 3) for g in ga) == pytest.approx(
        sorted(round(float(g.abs().sum()), 3) for g in gb), abs=1e-2)
    mine = dict(zip([k for k, _ in m.named_parameters()], ga))
    own = {k: v for k, v in m.state_dict().items()}
    # load ref's gradients as a state_dict: the checkpoint hook renames them to this model's names
    probe = nncircuit.compile(LSTM, kind, opt=0, input_size=5, hidden_size=6, num_layers=layers,
                              bidirectional=bidirectional, **kw)
    probe.load_state_dict(dict(zip([k for k, _ in ref.named_parameters()], gb)), strict=True)
    for name, g in mine.items():
        assert name in own
        torch.testing.assert_close(g, probe.state_dict()[name], rtol=0, atol=1e-5)


def test_the_generated_class_takes_other_layer_counts_and_refuses_a_fixed_structure():
    spec = nncircuit.load(LSTM, "LSTM", input_size=5, hidden_size=6, num_layers=2, bidirectional=True)
    cls = spec.torch_class()
    m = cls(num_layers=4, hidden_size=3)  # layers after the first are a repeat: any count >= 2
    ref = torch.nn.LSTM(5, 3, 4, bidirectional=True, batch_first=True)
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        y, (h, c) = ref(x)
        got = m(x)
    for a, b in zip(got, (y, h, c)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"`if num_layers > 1` was compiled for it being true"):
        cls(num_layers=1)
    with pytest.raises(ValueError, match=r"`if bidirectional` was compiled for it being true"):
        cls(bidirectional=False)


def test_torch_names_load_and_own_names_round_trip():
    m = nncircuit.compile(LSTM, "GRU", opt=2, num_layers=3, bidirectional=True)
    ref = torch.nn.GRU(10, 20, 3, bidirectional=True, batch_first=True)
    m.load_state_dict(ref.state_dict(), strict=True)
    assert "layer.1.rev.weight_hh" in m.state_dict()
    torch.testing.assert_close(m.state_dict()["layer.1.rev.weight_hh"], ref.weight_hh_l2_reverse)
    m.load_state_dict(m.state_dict(), strict=True)


# ---- LTC: the straightforward PyTorch the spec replaces ------------------------------------
class HandLTC(torch.nn.Module):
    def __init__(self, d=8, hidden=16, unfolds=6, dt=0.1):
        super().__init__()
        self.w_in = torch.nn.Parameter(torch.randn(hidden, d) / d ** 0.5)
        self.w_rec = torch.nn.Parameter(torch.randn(hidden, hidden) / hidden ** 0.5)
        self.b = torch.nn.Parameter(torch.randn(hidden) * 0.1)
        self.tau = torch.nn.Parameter(torch.rand(hidden) + 0.5)
        self.a = torch.nn.Parameter(torch.randn(hidden))
        self.hidden, self.unfolds, self.dt = hidden, unfolds, dt

    def forward(self, u):
        drive = u @ self.w_in.T + self.b
        x = u.new_zeros(u.shape[0], self.hidden)
        states = []
        for t in range(u.shape[1]):
            for _ in range(self.unfolds):
                f = torch.sigmoid(drive[:, t] + x @ self.w_rec.T)
                x = (x + self.dt * f * self.a) / (1 + self.dt * (1 / self.tau + f))
            states.append(x)
        return torch.stack(states, 1), x


def test_ltc_equals_the_hand_written_loop_values_and_gradients():
    torch.manual_seed(0)
    hand = HandLTC()
    m = nncircuit.compile(os.path.join(SPECS, "ltc.nn"), "LTC", opt=0)
    m.load_state_dict(hand.state_dict(), strict=True)
    u = torch.randn(3, 9, 8)
    got, want = m(u), hand(u)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    ga = torch.autograd.grad(sum(t.sum() for t in got), list(m.parameters()))
    gb = torch.autograd.grad(sum(t.sum() for t in want), list(hand.parameters()))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# ---- onnxruntime against torch at two sequence lengths ------------------------------------
ONNX_CASES = [
    ("lstm.nn", "LSTM", dict(num_layers=2, bidirectional=True, hidden_size=6), "x"),
    ("lstm.nn", "GRU", dict(num_layers=2, bidirectional=False, hidden_size=6), "x"),
    ("lstm.nn", "RNN", dict(num_layers=2, bidirectional=True, nonlinearity="relu", hidden_size=6), "x"),
    ("ltc.nn", "LTC", {}, "u"),
    ("lif.nn", "LIF", {}, "x"),
    ("linear_attention.nn", "LinearAttention", {}, "x"),
    ("pointer.nn", "Pointer", {}, "x"),
]


@pytest.mark.parametrize("file,model,kw,name", ONNX_CASES, ids=[c[1] for c in ONNX_CASES])
def test_onnxruntime_equals_torch_at_two_lengths(tmp_path, file, model, kw, name):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load(os.path.join(SPECS, file), model, **kw)
    m = spec.module(seed=0)
    out = str(tmp_path / f"{model}.onnx")
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out)
    (_, t), = spec.inputs()
    for length in (3, 8):
        shape = [a.size.value if a.size.is_static else (2 if a.name == "batch" else length) for a in t.axes]
        x = torch.randn(*shape)
        with torch.no_grad():
            want = m(x)
        want = want if isinstance(want, tuple) else (want,)
        got = sess.run(None, {name: x.numpy()})
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)


# ---- zero-length scans: no step; carried values keep their start, emitted ones are empty ----
ZERO_CASES = [
    ("lstm.nn", "LSTM", dict(num_layers=2, bidirectional=True, hidden_size=6), "x"),
    ("ltc.nn", "LTC", {}, "u"),
]


@pytest.mark.parametrize("file,model,kw,name", ZERO_CASES, ids=[c[1] for c in ZERO_CASES])
def test_a_zero_length_scan_in_torch_and_onnxruntime(tmp_path, file, model, kw, name):
    spec = nncircuit.load(os.path.join(SPECS, file), model, **kw)
    m = spec.module(seed=0)
    (_, t), = spec.inputs()
    x = torch.randn(*[a.size.value if a.size.is_static else (2 if a.name == "batch" else 0) for a in t.axes])
    with torch.no_grad():
        got = m(x)
    shapes = {"LSTM": [(2, 0, 12), (4, 2, 6), (4, 2, 6)], "LTC": [(2, 0, 16), (2, 16)]}[model]
    assert [tuple(g.shape) for g in got] == shapes
    for g in got[1:]:  # the carried states: their zeros start
        assert (g == 0).all()
    ort = pytest.importorskip("onnxruntime")
    out = str(tmp_path / f"{model}.onnx")
    spec.write(out, state_dict=m.state_dict())
    res = ort.InferenceSession(out).run(None, {name: x.numpy()})
    assert [r.shape for r in res] == shapes
    for r, g in zip(res, got):
        np.testing.assert_array_equal(r, g.numpy())


# ---- the pointer network: the straightforward PyTorch the spec replaces ----------------------
class HandPointer(torch.nn.Module):
    def __init__(self, d=2, hidden=16):
        super().__init__()
        p = lambda *shape: torch.nn.Parameter(torch.randn(*shape) * 0.3)  # noqa: E731
        self.enc = torch.nn.Module()
        self.enc.weight_ih, self.enc.weight_hh = p(4 * hidden, d), p(4 * hidden, hidden)
        self.enc.bias_ih, self.enc.bias_hh = p(4 * hidden), p(4 * hidden)
        self.w_ih, self.w_hh, self.b_ih, self.b_hh = p(4 * hidden, d), p(4 * hidden, hidden), p(4 * hidden), p(4 * hidden)
        self.w1, self.w2, self.v, self.start = p(hidden, hidden), p(hidden, hidden), p(hidden), p(d)
        self.hidden = hidden

    @staticmethod
    def cell(gates, c):
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x):
        b, n, _ = x.shape
        xg = x @ self.enc.weight_ih.T + self.enc.bias_ih + self.enc.bias_hh
        h = c = x.new_zeros(b, self.hidden)
        es = []
        for t in range(n):
            h, c = self.cell(xg[:, t] + h @ self.enc.weight_hh.T, c)
            es.append(h)
        keys = torch.stack(es, 1) @ self.w1.T
        inp = self.start.expand(b, -1)
        visited = torch.zeros(b, n, dtype=torch.bool)
        rows = torch.arange(b)
        logits, chosen = [], []
        for _ in range(n):
            h, c = self.cell(inp @ self.w_ih.T + h @ self.w_hh.T + self.b_ih + self.b_hh, c)
            u = torch.tanh(keys + (h @ self.w2.T)[:, None]) @ self.v
            u = u.masked_fill(visited, float("-inf"))
            idx = u.argmax(-1)
            visited = visited.clone()
            visited[rows, idx] = True
            inp = x[rows, idx]
            logits.append(u)
            chosen.append(idx)
        return torch.stack(logits, 1), torch.stack(chosen, 1)


def pointer_state_dict(hand):
    """HandPointer's weights under the spec's names: its encoder and decoder each hold a
    torch.nn.LSTMCell's four tensors."""
    sd = {k: v for k, v in hand.state_dict().items() if k in ("w1", "w2", "v", "start")}
    sd.update({f"scan.enc.{k}": getattr(hand.enc, k) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    sd.update({"scan_1.dec.weight_ih": hand.w_ih, "scan_1.dec.weight_hh": hand.w_hh,
               "scan_1.dec.bias_ih": hand.b_ih, "scan_1.dec.bias_hh": hand.b_hh})
    return {k: v.detach().clone() for k, v in sd.items()}


def test_pointer_equals_the_hand_written_decoder_values_and_gradients():
    torch.manual_seed(0)
    hand = HandPointer()
    x = torch.rand(3, 7, 2)
    m2 = nncircuit.compile(os.path.join(SPECS, "pointer.nn"), "Pointer", opt=2)
    m2.load_state_dict(pointer_state_dict(hand), strict=True)
    with torch.no_grad():
        (l2, c2), (lw, cw) = m2(x), hand(x)
    assert torch.equal(c2, cw)
    torch.testing.assert_close(l2, lw, rtol=0, atol=1e-5)
    m = nncircuit.compile(os.path.join(SPECS, "pointer.nn"), "Pointer", opt=0)
    m.load_state_dict(pointer_state_dict(hand), strict=True)
    (lg, ch), (lw, cw) = m(x), hand(x)
    assert torch.equal(ch, cw)
    assert sorted(ch[0].tolist()) == list(range(7))  # every position chosen once: the visited mask
    torch.testing.assert_close(lg, lw, rtol=0, atol=1e-5)
    finite = torch.isfinite(lw)
    assert torch.equal(torch.isfinite(lg), finite) and (~finite).sum() == 3 * 7 * 6 // 2
    mine = dict(zip([k for k, _ in m.named_parameters()], torch.autograd.grad(lg[finite].sum(), list(m.parameters()))))
    theirs = dict(zip([k for k, _ in hand.named_parameters()], torch.autograd.grad(lw[finite].sum(), list(hand.parameters()))))
    assert len(mine) == len(theirs)
    want = {**{k: theirs[k] for k in ("w1", "w2", "v", "start")},
            **{f"scan.enc.{k}": theirs[f"enc.{k}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
            "scan_1.dec.weight_ih": theirs["w_ih"], "scan_1.dec.weight_hh": theirs["w_hh"],
            "scan_1.dec.bias_ih": theirs["b_ih"], "scan_1.dec.bias_hh": theirs["b_hh"]}
    assert sorted(mine) == sorted(want)
    for k, g in mine.items():
        torch.testing.assert_close(g, want[k], rtol=0, atol=1e-4)


# ---- the language pieces the zoo needed ----------------------------------------------------
CK_IF = """
model M(flag = true) {
    in  x: [batch, d: 3]
    w = Param([e: 2, d: 3])
    if flag {
        checkpoint {
            "proj.weight" = "w"
        }
    }
    out einsum(x, w, over d)
}
"""


def test_a_checkpoint_section_in_a_taken_if_branch_joins_the_model():
    sd = {"proj.weight": torch.randn(2, 3)}
    m = nncircuit.load("ck.nn", text=CK_IF).module(seed=0)
    m.load_state_dict(sd, strict=True)
    torch.testing.assert_close(m.w, sd["proj.weight"])
    off = nncircuit.load("ck.nn", text=CK_IF, flag=False).module(seed=0)
    with pytest.raises(RuntimeError, match="proj.weight"):  # the branch not taken adds no rule
        off.load_state_dict(sd, strict=True)


def test_a_scan_that_reads_no_slice_steps_along_the_axis_in_scope():
    spec = nncircuit.load("count.nn", text="""
model Count(d = 2) {
    in  x: [batch, seq, d]
    s = zeros([batch, d])
    scan seq {
        s = s + 1
        emit t = s
    }
    out t, s
}
""")
    t, s = spec.module(seed=0)(torch.randn(2, 5, 2))
    assert t.shape == (2, 5, 2) and (s == 5).all() and (t[:, 2] == 3).all()


# ---- bias = false and dropout: torch.nn's other two structural arguments -------------------
KINDS = [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})]


def _both(kind, kw, layers, bidirectional, **extra):
    torch.manual_seed(layers * 2 + bidirectional)
    ref = getattr(torch.nn, kind)(5, 6, layers, bidirectional=bidirectional, batch_first=True, **kw, **extra)
    m = nncircuit.compile(LSTM, kind, opt=0, input_size=5, hidden_size=6, num_layers=layers,
                          bidirectional=bidirectional, **kw, **extra)
    m.load_state_dict(ref.state_dict(), strict=True)
    return ref, m


@pytest.mark.parametrize("kind,kw", KINDS)
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (1, True), (2, False), (2, True)])
def test_without_bias_equals_torch_nn_values_and_gradients(kind, kw, layers, bidirectional):
    ref, m = _both(kind, kw, layers, bidirectional, bias=False)
    assert not any("bias" in k for k in m.state_dict())
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in ref.parameters())
    x = torch.randn(3, 7, 5)
    y, states = ref(x)
    got, want = m(x), (y,) + _states(states)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    ga = torch.autograd.grad(sum((t * (i + 1)).sum() for i, t in enumerate(got)), list(m.parameters()))
    gb = torch.autograd.grad(sum((t * (i + 1)).sum() for i, t in enumerate(want)), list(ref.parameters()))
    probe = nncircuit.compile(LSTM, kind, opt=0, input_size=5, hidden_size=6, num_layers=layers,
                              bidirectional=bidirectional, bias=False, **kw)
    probe.load_state_dict(dict(zip([k for k, _ in ref.named_parameters()], gb)), strict=True)
    for (name, _), g in zip(m.named_parameters(), ga, strict=True):
        torch.testing.assert_close(g, probe.state_dict()[name], rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:dropout option adds dropout")  # torch, at num_layers = 1
@pytest.mark.parametrize("kind,kw", KINDS)
@pytest.mark.parametrize("layers,bidirectional", [(1, True), (3, False), (3, True)])
def test_dropout_equals_torch_nn_in_eval_and_draws_as_torch_does_in_training(kind, kw, layers, bidirectional):
    ref, m = _both(kind, kw, layers, bidirectional, dropout=0.5)
    x = torch.randn(3, 7, 5)
    ref.eval(), m.eval()
    with torch.no_grad():
        y, states = ref(x)
        for a, b in zip(m(x), (y,) + _states(states), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    ref.train(), m.train()
    # one sequence: [1, seq, features] is laid out as torch's internal [seq, 1, features], so
    # the same seed gives the same dropout masks, drawn in the same order (layer 1, 2, ...)
    x1 = torch.randn(1, 7, 5)
    with torch.no_grad():
        torch.manual_seed(11)
        y, states = ref(x1)
        torch.manual_seed(11)
        got = m(x1)
        for a, b in zip(got, (y,) + _states(states), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        m.eval()
        plain = m(x1)
    dirs = 2 if bidirectional else 1
    # the first layer's final states never see dropout; with more layers the output does
    for a, b in zip(got[1:], plain[1:]):
        torch.testing.assert_close(a[:dirs], b[:dirs], rtol=0, atol=0)
    assert (layers > 1) == bool((got[0] - plain[0]).abs().max() > 1e-3)


def test_the_generated_class_refuses_another_bias_and_takes_another_dropout():
    cls = nncircuit.load(LSTM, "GRU", input_size=5, hidden_size=6, num_layers=2).torch_class()
    with pytest.raises(ValueError, match=r"`if bias` was compiled for it being true"):
        cls(bias=False)
    m = cls(dropout=0.25)
    ref = torch.nn.GRU(5, 6, 2, batch_first=True, dropout=0.25)
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 4, 5)
    for seed in (0, 1):  # dropout 0.25 at run time: torch's draws
        torch.manual_seed(seed)
        y, h = ref(x)
        torch.manual_seed(seed)
        got = m(x)
        torch.testing.assert_close(got[0], y, rtol=0, atol=1e-5)
        torch.testing.assert_close(got[1], h, rtol=0, atol=1e-5)
    off = nncircuit.load(LSTM, "LSTM", input_size=5, hidden_size=6, num_layers=1, bias=False).torch_class()
    with pytest.raises(ValueError, match=r"`if bias` was compiled for it being false"):
        off(bias=True)


@pytest.mark.parametrize("kind,kw", KINDS[:3])
def test_onnxruntime_equals_torch_without_bias(tmp_path, kind, kw):
    ort = pytest.importorskip("onnxruntime")
    spec = nncircuit.load(LSTM, kind, input_size=5, hidden_size=6, num_layers=2, bidirectional=True,
                          bias=False, dropout=0.5, **kw)
    ref = getattr(torch.nn, kind)(5, 6, 2, bidirectional=True, batch_first=True, bias=False, **kw)
    m = spec.module(seed=0)
    m.load_state_dict(ref.state_dict(), strict=True)
    m.eval()
    out = str(tmp_path / f"{kind}.onnx")
    spec.write(out, state_dict=m.state_dict())
    sess = ort.InferenceSession(out)
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        y, states = ref(x)
    got = sess.run(None, {"x": x.numpy()})
    for g, w in zip(got, (y,) + _states(states), strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)


# ---- LSTM's proj_size: h projected by weight_hr_l* ----------------------------------------
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True), (3, False)])
def test_lstm_with_proj_size_equals_torch_nn_values_and_gradients(bias, layers, bidirectional):
    ref, m = _both("LSTM", {}, layers, bidirectional, bias=bias, proj_size=4)
    assert any(k.startswith("weight_hr_l") for k in ref.state_dict())
    assert any(k.endswith(".weight_hr") for k in m.state_dict())
    x = torch.randn(3, 7, 5)
    y, (h, c) = ref(x)
    got = m(x)
    assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in (y, h, c)]  # h: proj_size features
    assert got[1].shape[-1] == 4 and got[2].shape[-1] == 6
    for a, b in zip(got, (y, h, c), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    ga = torch.autograd.grad(sum((t * (i + 1)).sum() for i, t in enumerate(got)), list(m.parameters()))
    gb = torch.autograd.grad(sum((t * (i + 1)).sum() for i, t in enumerate((y, h, c))), list(ref.parameters()))
    assert sorted(round(float(g.abs().sum()), 3) for g in ga) == pytest.approx(
        sorted(round(float(g.abs().sum()), 3) for g in gb), abs=1e-2)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_the_generated_class_takes_another_proj_size_but_not_none(tmp_path):
    spec = nncircuit.load(LSTM, "LSTM", input_size=5, hidden_size=6, num_layers=2, proj_size=4)
    cls = spec.torch_class()
    m = cls(proj_size=3, num_layers=3)
    ref = torch.nn.LSTM(5, 6, 3, batch_first=True, proj_size=3)
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        y, (h, c) = ref(x)
        for a, b in zip(m(x), (y, h, c), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"`if proj_size > 0` was compiled for it being true"):
        cls(proj_size=0)
    ort = pytest.importorskip("onnxruntime")
    mine = spec.module(seed=0)
    ref = torch.nn.LSTM(5, 6, 2, batch_first=True, proj_size=4)
    mine.load_state_dict(ref.state_dict(), strict=True)
    out = str(tmp_path / "lstm_proj.onnx")
    spec.write(out, state_dict=mine.state_dict())
    with torch.no_grad():
        y, (h, c) = ref(x)
    got = ort.InferenceSession(out).run(None, {"x": x.numpy()})
    for g, w in zip(got, (y, h, c), strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)

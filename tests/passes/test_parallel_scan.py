"""The parallel-scan pass (compiler/passes/recurrence.py): a scan whose carried values follow
h = a * h + b becomes `linear_scan` ops at -O2, equal to the loop of -O0 (outputs, final
states and gradients, fp32, within 1e-5) on the recurrences of S4D, Mamba's selective scan,
linear attention, an RG-LRU-style gate, a reverse scan and a number as the decay, at
lengths 0, 1 and more; scans that are not linear recurrences stay loops."""

from __future__ import annotations

import pytest
import torch

import nncircuit
from conftest import SPECS

S4D_LIKE = """
model S4DLike(n = 4) {
    in  x: [batch, seq, d: 3]
    log_a = Param([d: 3, n: n])
    bw = Param([d: 3, n: n], init = normal())
    cw = Param([d: 3, n: n], init = normal())
    h = zeros([batch, d: 3, n: n])
    scan seq {
        h = exp(-exp(log_a)) * h + mul(x, bw, outer = true)
        emit y = einsum(h, cw, over n)
    }
    out y, last = h
}
"""

MAMBA_LIKE = """
model Selective(n = 4) {
    in  x: [batch, seq, d: 3], dt: [batch, seq, d: 3], b: [batch, seq, n: n], c: [batch, seq, n: n]
    a_log = Param([d: 3, n: n], init = normal())
    dskip = Param([d: 3], init = ones())
    h = zeros([batch, d: 3, n: n])
    scan seq {
        delta = softplus(dt)
        h = exp(mul(delta, -exp(a_log), outer = true)) * h + mul(delta * x, b, outer = true)
        emit y = einsum(h, c, over n) + dskip * x
    }
    out y, last = h
}
"""

LINEAR_ATTENTION = """
model LinAttn() {
    in  q: [batch, seq, dk: 4], k: [batch, seq, dk: 4], v: [batch, seq, dv: 5]
    s = zeros([batch, dk: 4, dv: 5])
    z = zeros([batch, dk: 4])
    scan seq {
        fk = elu(k) + 1
        s = s + mul(fk, v, outer = true)
        z = fk + z
        fq = elu(q) + 1
        emit o = einsum(fq, s, over dk) / einsum(fq, z, over dk)
    }
    out o, s, z
}
"""

RG_LRU = """
model Gated(d = 6) {
    in  x: [batch, seq, d]
    wa = Param([d], init = normal())
    wx = Param([d], init = normal())
    lam = Param([d], init = normal())
    h = zeros([batch, d])
    scan seq {
        r = sigmoid(x * wa)
        i = sigmoid(x * wx)
        a = exp(-8.0 * softplus(lam) * r)
        h = h * a + sqrt(1 - a * a) * (i * x)
        emit y = h
    }
    out y, last = h
}
"""

REVERSE = """
model Backward(d = 5) {
    in  x: [seq, batch, d], g: [seq, batch, d]
    h = zeros([batch, d])
    scan seq reverse {
        h = sigmoid(g) * h + x
        emit y = tanh(h)
    }
    out y, last = h
}
"""

NUMBER = """
model Ema(d = 5) {
    in  x: [batch, seq, d]
    h = zeros([batch, d])
    scan seq {
        h = 0.9 * h + 0.1 * x
        emit y = h
    }
    out y, last = h
}
"""

NOT_LINEAR = """
model Elman(d = 4) {
    in  x: [batch, seq, d]
    w = Param([d], init = normal())
    h = zeros([batch, d])
    scan seq {
        h = tanh(w * h + x)
        emit y = h
    }
    out y
}
"""

OLD_STATE_READ = """
model ReadsOld(d = 4) {
    in  x: [batch, seq, d]
    h = zeros([batch, d])
    scan seq {
        emit y = h * x
        h = 0.5 * h + x
    }
    out y, h
}
"""

LEARNED_BODY = """
model LearnedStep(d = 4) {
    in  x: [batch, seq, d]
    h = zeros([batch, d])
    scan seq {
        h = 0.5 * h + Linear(x, d -> d)
        emit y = h
    }
    out y
}
"""

CASES = {
    "s4d": (S4D_LIKE, lambda L: (torch.randn(2, L, 3),)),
    "mamba": (MAMBA_LIKE, lambda L: (torch.randn(2, L, 3), torch.randn(2, L, 3), torch.randn(2, L, 4), torch.randn(2, L, 4))),
    "linear_attention": (LINEAR_ATTENTION, lambda L: (torch.randn(2, L, 4), torch.randn(2, L, 4), torch.randn(2, L, 5))),
    "rg_lru": (RG_LRU, lambda L: (torch.randn(2, L, 6),)),
    "reverse": (REVERSE, lambda L: (torch.randn(L, 2, 5), torch.randn(L, 2, 5))),
    "number": (NUMBER, lambda L: (torch.randn(2, L, 5),)),
}


def _ops(spec) -> list[str]:
    return [n.op for _, g in spec.graph.walk() for n in g.nodes()]


def _parallel(spec) -> bool:
    """The spec runs a recurrence as linear_scan, or as linear_scan_sum where an einsum reads it."""
    return any(op in ("linear_scan", "linear_scan_sum") for op in _ops(spec))


def _pair(text: str):
    o0 = nncircuit.load("case.nn", text=text)
    o2 = nncircuit.load("case.nn", text=text, opt=2)
    m0 = o0.module(seed=0)
    m2 = o2.module(seed=1)
    m2.load_state_dict(m0.state_dict(), strict=True)  # the pass keeps the state_dict
    return o0, o2, m0, m2


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_scan_becomes_linear_scan(case):
    text, _ = CASES[case]
    o0, o2, _, _ = _pair(text)
    assert "scan" in _ops(o0) and not _parallel(o0)
    assert "scan" not in _ops(o2) and _parallel(o2)


@pytest.mark.parametrize("length", [1, 2, 7, 33])
@pytest.mark.parametrize("case", sorted(CASES))
def test_o2_equals_the_loop(case, length):
    text, inputs = CASES[case]
    _, _, m0, m2 = _pair(text)
    torch.manual_seed(length)
    xs = inputs(length)
    want, got = m0(*xs), m2(*xs)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.shape == g.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case, at", [("s4d", 1), ("mamba", 1), ("rg_lru", 1), ("reverse", 0)])
def test_length_zero(case, at):
    """The loop cannot stack zero steps (torch.stack of nothing); linear_scan gives empty
    per-step outputs and the initial state (zeros here) as the final one."""
    text, inputs = CASES[case]
    _, _, m0, m2 = _pair(text)
    y, last = m2(*inputs(0))
    y1, last1 = m0(*inputs(1))
    assert y.shape == y1.shape[:at] + (0,) + y1.shape[at + 1:]
    assert last.shape == last1.shape and not last.any()


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_equal_the_loop(case):
    text, inputs = CASES[case]
    _, _, m0, m2 = _pair(text)
    torch.manual_seed(3)
    xs = [x.requires_grad_() for x in inputs(9)]
    grads = []
    for m in (m0, m2):
        m.zero_grad()
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in m(*xs))
        ins = torch.autograd.grad(loss, xs + list(m.parameters()), allow_unused=True)
        grads.append(ins)
    for w, g in zip(*grads):
        if w is None:
            assert g is None
            continue
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("text", [NOT_LINEAR, OLD_STATE_READ, LEARNED_BODY], ids=["tanh", "old_state", "learned"])
def test_other_scans_stay_loops(text):
    o2 = nncircuit.load("case.nn", text=text, opt=2)
    assert "scan" in _ops(o2) and not _parallel(o2)


@pytest.mark.parametrize("model,params", [("LSTM", {}), ("LSTM", {"bidirectional": True}), ("GRU", {}), ("RNN", {})])
def test_lstm_zoo_is_left_alone(model, params):
    path = f"{SPECS}/lstm.nn"
    o2 = nncircuit.load(path, model, opt=2, **params)
    assert not _parallel(o2)
    assert _ops(o2).count("scan") == _ops(nncircuit.load(path, model, **params)).count("scan") > 0


def test_the_pass_runs_at_o2_only():
    from nncircuit.passes import LEVELS

    assert "parallel-scan" in LEVELS[2].split(",")
    assert "parallel-scan" not in LEVELS[1].split(",")
    o1 = nncircuit.load("case.nn", text=S4D_LIKE, opt=1)
    assert not _parallel(o1)
    only = nncircuit.load("case.nn", text=S4D_LIKE, passes="parallel-scan")
    assert _parallel(only)


def test_the_zoo_mamba_scan_is_parallel_at_o2():
    # dt [seq, inner] * A [inner, state] over whole sequences is an outer broadcast the step's
    # `dt * A` was not: the pass says so, and specs/mamba.nn's selective scan becomes
    # linear_scan (test_mamba.py checks -O2 against transformers)
    small = dict(vocab_size=97, hidden_size=32, state_size=8, num_hidden_layers=2, time_step_rank=2)
    o0 = nncircuit.load(f"{SPECS}/mamba.nn", "Mamba", **small)
    o2 = nncircuit.load(f"{SPECS}/mamba.nn", "Mamba", opt=2, **small)
    assert "scan" in _ops(o0)
    assert "scan" not in _ops(o2) and _parallel(o2)


def _nodes(spec, op):
    return [n for _, g in spec.graph.walk() for n in g.nodes() if n.op == op]


@pytest.mark.parametrize("case, factors", [("s4d", (1, 2, False)), ("mamba", (2, 3, True))])
def test_an_einsum_read_out_fuses_into_linear_scan_sum(case, factors):
    """The states of S4D and Mamba are read only by einsum(h, c, over n): the pass makes one
    linear_scan_sum of them, a and b as the factors of the products (and a's exp) that made
    them, so no op of the -O2 graph has a [seq, d, n] result; the -O2 outputs, states and
    gradients equal the loop's (test_o2_equals_the_loop, test_gradients_equal_the_loop)."""
    o2 = nncircuit.load("case.nn", text=CASES[case][0], opt=2)
    (node,) = _nodes(o2, "linear_scan_sum")
    assert not _nodes(o2, "linear_scan") and not _nodes(o2, "einsum")
    na, exp_a = node.attrs["na"], node.attrs["exp_a"]
    assert (na, len(node.inputs) - 2 - na, exp_a) == factors
    assert node.attrs["sum"] == ("n",)
    big = [n.op for _, g in o2.graph.walk() for n in g.nodes()
           if any(t.has("seq") and t.has("n") and t.has("d") for t in n.types)]
    assert big == [], big


def test_a_read_out_that_is_not_a_sum_over_state_axes_stays_linear_scan():
    """States read twice, or by an einsum that sums the scanned axis, are not fused."""
    twice = S4D_LIKE.replace("emit y = einsum(h, cw, over n)", "emit y = einsum(h, cw, over n) + mean(h, over n)")
    over_seq = """
model M(n = 4) {
    in  x: [batch, seq, d: 3], q: [batch, seq, n: n]
    bw = Param([d: 3, n: n], init = normal())
    h = zeros([batch, d: 3, n: n])
    scan seq {
        h = 0.5 * h + mul(x, bw, outer = true)
        emit s = h
    }
    out y = einsum(s, q, over [seq, n])
}
"""
    for text in (twice, over_seq):
        o2 = nncircuit.load("case.nn", text=text, opt=2)
        assert _nodes(o2, "linear_scan") and not _nodes(o2, "linear_scan_sum")

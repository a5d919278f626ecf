"""lstm.nn's LSTM layer (x·W_ih for all steps before the scan, the step's gates in the body) vs
the same layer written with an LSTMCell inside the scan (x·W_ih in every step), and
torch.nn.LSTM: forward (no grad) and forward+backward, one thread (THREADS=n for more), medians of 7 interleaved rounds.
`python bench/lstm_cells.py` (a timing script, not a test)."""

from __future__ import annotations

import os
import statistics
import time

import torch

import nncircuit

torch.set_num_threads(int(os.environ.get("THREADS", "1")))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELL = """
model CellLSTM(input_size = 10, hidden_size = 20) {
    in  x: [batch, seq, input_size]
    h = zeros([batch, hidden: hidden_size])
    c = zeros([batch, hidden: hidden_size])
    scan seq {
        cell = LSTMCell(input_size -> hidden)
        h, c = cell(x, h, c)
        emit y = h
    }
    out y, h, c
}
"""
B, IN, H = 16, 32, 64


def _times(m, x):
    """(forward without gradients, forward and backward) of one call, in seconds."""
    with torch.no_grad():
        t0 = time.perf_counter()
        m(x)
        t1 = time.perf_counter()
    xx = x.clone().requires_grad_()
    t2 = time.perf_counter()
    m(xx)[0].sum().backward()
    return t1 - t0, time.perf_counter() - t2


for T in (64, 256):
    torch.manual_seed(0)
    layer = nncircuit.load(os.path.join(ROOT, "specs", "lstm.nn"), "LSTM", opt=0, input_size=IN, hidden_size=H,
                           num_layers=1).module(seed=0)
    cellm = nncircuit.load("c.nn", text=CELL, opt=0, input_size=IN, hidden_size=H).module(seed=0)
    ref = torch.nn.LSTM(IN, H, batch_first=True)
    sd = ref.state_dict()
    layer.load_state_dict(sd, strict=True)
    cellm.load_state_dict({f"scan.cell.{k[:-3]}": v for k, v in sd.items()}, strict=True)  # weight_ih_l0 -> weight_ih
    x = torch.randn(B, T, IN)
    with torch.no_grad():
        a, b, r = layer(x)[0], cellm(x)[0], ref(x)[0]
    print(f"T={T}: max |layer - torch| {float((a - r).abs().max()):.1e}, |cell - torch| {float((b - r).abs().max()):.1e}")
    fns = {"lstm.nn layer": layer, "LSTMCell in scan": cellm, "torch.nn.LSTM": ref}
    res: dict[str, list] = {k: [] for k in fns}
    for _ in range(7):
        for k, m in fns.items():
            res[k].append(_times(m, x))
    for k, ts in res.items():
        f, fb = (statistics.median(t[i] for t in ts) * 1e3 for i in (0, 1))
        print(f"  {k:18s} forward {f:7.2f} ms   forward+backward {fb:7.2f} ms")

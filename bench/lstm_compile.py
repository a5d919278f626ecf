"""torch.compile on the scan LSTM of specs/lstm.nn (CPU, one thread): graph breaks from
torch._dynamo.explain, the compile time of the first call, the time of a first call at another
sequence length (the scan's Python loop is unrolled for a length, so a new length compiles
again), and eager / compiled / torch.nn.LSTM time per forward pass.
`python bench/lstm_compile.py` (figures in docs/benchmarks.md, "torch.compile on a scan")."""

from __future__ import annotations

import os
import time

# a compile time is measured from cold: no inductor cache from an earlier run
os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")

import torch  # noqa: E402

import nncircuit  # noqa: E402

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "specs", "lstm.nn")


def per_call_ms(f, x, n: int = 50) -> float:
    with torch.no_grad():
        for _ in range(3):
            f(x)
        t = time.perf_counter()
        for _ in range(n):
            f(x)
        return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = nncircuit.compile(SPEC, "LSTM", opt=2).eval()
    x = torch.randn(4, 16, 10)
    torch._dynamo.reset()
    ex = torch._dynamo.explain(m)(x)
    print(f"graphs {ex.graph_count}, graph breaks {ex.graph_break_count}, ops {ex.op_count}")
    torch._dynamo.reset()
    c = torch.compile(m)
    t0 = time.perf_counter()
    with torch.no_grad():
        y = c(x)
    print(f"first call (compile) {time.perf_counter() - t0:.1f} s")
    with torch.no_grad():
        err = (y[0] - m(x)[0]).abs().max().item()
    print(f"compiled vs eager max |diff| {err:.1e}")
    x32 = torch.randn(4, 32, 10)
    t0 = time.perf_counter()
    with torch.no_grad():
        y32 = c(x32)
        err32 = (y32[0] - m(x32)[0]).abs().max().item()
    print(f"first call at seq 32 (compiles again) {time.perf_counter() - t0:.1f} s, "
          f"max |diff| {err32:.1e}")
    ref = torch.nn.LSTM(10, 20, batch_first=True).eval()
    print(f"eager {per_call_ms(m, x):.2f} ms, compiled {per_call_ms(c, x):.2f} ms, "
          f"torch.nn.LSTM {per_call_ms(ref, x):.2f} ms per forward (batch 4, seq 16, 10 -> 20)")


if __name__ == "__main__":
    main()

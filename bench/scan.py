"""A scan run one step at a time (-O0: the loop) against the same scan as `linear_scan`
(-O2: the parallel-scan pass), for an S4D layer (specs/s4d.nn) and a Mamba mixer
(bench/mamba_mixer.nn) on the CPU, at several sequence lengths; and the Mamba mixer at -O2
against the same layer written by hand in PyTorch with the Mamba reference code's
selective-scan loop (bench/reference/mamba_mixer.py). At -O2 both layers' scans become
`linear_scan_sum` (the states are read only by an einsum over the state axis), which makes
a, b and the read-out one chunk position at a time. It also times, on the Mamba mixer's
tensors, that fused scan (`_linear_scan_sum` from exp(dt A)'s and dt u B's factors) against
the unfused one (a and b made whole, `_scan_chunks`, then the einsum), and three algorithms
for the recurrence itself: the chunked scan torch's linear_scan uses (`_scan_chunks`, about
3 sqrt(n) steps), the log-depth even/odd reduction it used before, and Hillis–Steele
doubling. Outputs are checked equal
(max |difference| printed) before anything is timed; forward passes, no_grad, eval mode;
rounds interleaved; figures are medians, ratios paired round by round (bench/timing.py).

    python -m bench.scan --seq 256 1024 4096 --rounds 5 --threads 1 --json bench/results/scan-shared-2core-1thread.json
    python -m bench.scan --seq 256 1024 4096 --rounds 5 --threads 2 --json bench/results/scan-shared-2core-2threads.json"""

from __future__ import annotations

import argparse
import json
import os

import torch

import nncircuit

from .reference.mamba_mixer import MambaMixer
from .timing import paired_ratio, side_by_side

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S4D = os.path.join(ROOT, "specs", "s4d.nn")
MAMBA = os.path.join(ROOT, "bench", "mamba_mixer.nn")
S4D_SIZE = dict(d=64, n=64)
MAMBA_SIZE = dict(d=64, di=128, n=16, r=4)
BATCH = 1


def doubling(a, b):
    """Hillis–Steele: log2(n) rounds, each combining every position with the one 2^k back
    (O(n log n) work), along dim 0, from h_{-1} = 0."""
    n, k = b.shape[0], 1
    while k < n:
        b = torch.cat([b[:k], a[k:] * b[:-k] + b[k:]])
        if 2 * k < n:
            a = torch.cat([a[:k], a[k:] * a[:-k]])
        k *= 2
    return b


def even_odd(a, b):
    """The even/odd reduction (torch's linear_scan before the chunked scan): adjacent steps
    combine into one step (a_o a_e, a_o b_e + b_o), the half-length recurrence of the pairs
    gives h at the odd positions, and one multiply-add each fills in the even ones (2 log2 n
    rounds, O(n) work), along dim 0, from h_{-1} = 0."""
    n = b.shape[0]
    if n == 1:
        return b
    m = n // 2
    ae, ao, be, bo = a[0:2 * m:2], a[1:2 * m:2], b[0:2 * m:2], b[1:2 * m:2]
    odd = even_odd(ao * ae, torch.addcmul(bo, ao, be))
    out = torch.empty_like(b)
    out[1:2 * m:2] = odd
    out[0:1] = b[0:1]
    out[2:2 * m:2] = torch.addcmul(be[1:], ae[1:], odd[:-1])
    if n > 2 * m:
        out[2 * m:] = torch.addcmul(b[2 * m:], a[2 * m:], odd[-1:])
    return out


def _pair(path: str, size: dict):
    loop = nncircuit.load(path, opt=0, **size).module(seed=0).eval()
    par = nncircuit.load(path, opt=2, **size).module(seed=1).eval()
    par.load_state_dict(loop.state_dict(), strict=True)
    return loop, par


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def measure(seqs, rounds: int) -> dict:
    torch.manual_seed(0)
    s4d_loop, s4d_par = _pair(S4D, S4D_SIZE)
    mamba_loop, mamba_par = _pair(MAMBA, MAMBA_SIZE)
    hand = MambaMixer(**MAMBA_SIZE).eval()
    hand.load_state_dict(mamba_par.state_dict(), strict=True)
    from nncircuit.backends.torch.ops import HELPERS
    ns: dict = {"torch": torch}
    exec(HELPERS["linear_scan"], ns)
    exec(HELPERS["linear_scan_sum"], ns)
    di, n = MAMBA_SIZE["di"], MAMBA_SIZE["n"]
    results = {"config": {"s4d": S4D_SIZE, "mamba": MAMBA_SIZE, "batch": BATCH, "rounds": rounds,
                          "threads": torch.get_num_threads()}, "seq": {}}
    for seq in seqs:
        xs = torch.randn(BATCH, seq, S4D_SIZE["d"])
        xm = torch.randn(BATCH, seq, MAMBA_SIZE["d"])
        a = torch.rand(seq, BATCH, MAMBA_SIZE["di"], MAMBA_SIZE["n"]) * 0.5 + 0.5
        b = torch.randn(seq, BATCH, MAMBA_SIZE["di"], MAMBA_SIZE["n"])
        h0 = torch.zeros(BATCH, MAMBA_SIZE["di"], MAMBA_SIZE["n"])
        # the selective scan's factors, the stepped axis first: a = exp(dt A), b = (dt u) B, c = C
        dt, u = torch.rand(seq, BATCH, di, 1) * 0.1, torch.randn(seq, BATCH, di, 1)
        am, bm, cm = -torch.rand(1, 1, di, n) * 3, torch.randn(seq, BATCH, 1, n), torch.randn(seq, BATCH, 1, n)

        def fused(dt=dt, u=u, am=am, bm=bm, cm=cm, h0=h0, seq=seq):
            return ns["_linear_scan_sum"]([dt, am], [dt * u, bm], True, h0, cm, seq, (-1,), 3, None, False)[0]

        def unfused(dt=dt, u=u, am=am, bm=bm, cm=cm, h0=h0):
            return torch.einsum("tbdn,tbn->tbd", ns["_scan_chunks"](torch.exp(dt * am), (dt * u) * bm, h0, False), cm[:, :, 0])
        with torch.no_grad():
            diffs = {
                "s4d_parallel_vs_loop": (_first(s4d_par(xs)) - _first(s4d_loop(xs))).abs().max().item(),
                "mamba_parallel_vs_loop": (mamba_par(xm) - mamba_loop(xm)).abs().max().item(),
                "mamba_parallel_vs_hand": (mamba_par(xm) - hand(xm)).abs().max().item(),
                "even_odd_vs_doubling": (even_odd(a, b) - doubling(a, b)).abs().max().item(),
                "chunked_vs_even_odd": (ns["_scan_chunks"](a, b, h0, False) - even_odd(a, b)).abs().max().item(),
                "fused_vs_unfused": (fused() - unfused()).abs().max().item(),
            }
            contenders = {  # bound now: the timing runs inside this iteration
                "s4d_loop": lambda xs=xs: s4d_loop(xs),
                "s4d_parallel": lambda xs=xs: s4d_par(xs),
                "mamba_loop": lambda xm=xm: mamba_loop(xm),
                "mamba_parallel": lambda xm=xm: mamba_par(xm),
                "mamba_hand": lambda xm=xm: hand(xm),
                "fused": fused,
                "unfused": unfused,
                "chunked": lambda a=a, b=b, h0=h0: ns["_scan_chunks"](a, b, h0, False),
                "even_odd": lambda a=a, b=b: even_odd(a, b),
                "doubling": lambda a=a, b=b: doubling(a, b),
            }
            stats = side_by_side(contenders, warmup=1, repeat=rounds)
        ratio = {
            "s4d_loop_over_parallel": paired_ratio(stats["s4d_loop"], stats["s4d_parallel"]),
            "mamba_loop_over_parallel": paired_ratio(stats["mamba_loop"], stats["mamba_parallel"]),
            "mamba_parallel_over_hand": paired_ratio(stats["mamba_parallel"], stats["mamba_hand"]),
            "doubling_over_even_odd": paired_ratio(stats["doubling"], stats["even_odd"]),
            "even_odd_over_chunked": paired_ratio(stats["even_odd"], stats["chunked"]),
            "unfused_over_fused": paired_ratio(stats["unfused"], stats["fused"]),
        }
        results["seq"][seq] = {
            "max_abs_diff": diffs,
            "median_ms": {k: round(s.median * 1e3, 3) for k, s in stats.items()},
            "ratio": {k: r.ratio_json() for k, r in ratio.items()},
        }
        row = results["seq"][seq]
        print(f"seq {seq}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in row["median_ms"].items()))
        print("   ratios: " + ", ".join(f"{k} {v['median']:.2f}" for k, v in row["ratio"].items()))
        print("   max |diff|: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = measure(args.seq, args.rounds)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()

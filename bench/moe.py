"""The sparse mixture of experts (the `MoE` op: tokens sorted by expert, only the k chosen
experts run) against the same layer written densely with the language's routing ops
(every expert on every token, then `gather` of the top k): the same weights, outputs
checked equal, forward latency on the CPU, rounds interleaved.

    python -m bench.moe --tokens 4096 --d 512 --experts 8 --k 2 --rounds 5"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from .timing import Stats, paired_ratio, side_by_side

SPEC = """
model Sparse(d, e, k, hidden) {
    in  x: [batch, seq, d]
    moe = MoE(x, over d, experts = e, k = k, hidden = hidden)
    out moe
}

model Dense(d, e, k, hidden) {
    in  x: [batch, seq, d]
    w1 = Param([expert: e, hidden, d])
    w3 = Param([expert: e, hidden, d])
    w2 = Param([expert: e, o: d, hidden])
    probs = softmax(Linear(x, d -> expert: e, bias = false), over expert)
    vals, idx = top_k(probs, over expert, k = k)
    w = vals / sum(vals, over expert)
    h = silu(einsum(x, w1, over d)) * einsum(x, w3, over d)
    y = einsum(h, w2, over hidden)
    out sum(gather(y, idx, over expert) * w, over expert) rename o -> d
}
"""


def main(argv=None) -> int:
    import torch

    import nncircuit

    ap = argparse.ArgumentParser(prog="python -m bench.moe")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=1792, help="per expert (Mixtral's 3.5 d)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    hp = {"d": args.d, "e": args.experts, "k": args.k, "hidden": args.hidden}
    sparse = nncircuit.load("moe.nn", "Sparse", text=SPEC, **hp).module(seed=0).eval()
    dense = nncircuit.load("moe.nn", "Dense", text=SPEC, **hp).module(seed=0).eval()
    sd = sparse.state_dict()
    gu = sd["moe.experts.gate_up_proj"]
    dense.load_state_dict({"linear.weight": sd["moe.gate.weight"], "w1": gu[:, : args.hidden],
                           "w3": gu[:, args.hidden :], "w2": sd["moe.experts.down_proj"]}, strict=True)
    x = torch.randn(1, args.tokens, args.d, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (sparse(x) - dense(x)).abs().max().item()
    if diff > 1e-4:
        print(f"sparse and dense disagree: max |difference| {diff}", file=sys.stderr)
        return 1

    cpu: dict[str, list[float]] = {"sparse": [], "dense": []}

    def run(name, m):
        def go():
            t = time.process_time()
            with torch.no_grad():
                m(x)
            cpu[name].append(time.process_time() - t)

        return go

    # wall clock, interleaved; on a shared box also the process's CPU time of the same calls
    # (the work done, which other load inflates less; warm-up dropped)
    stats = side_by_side({"sparse": run("sparse", sparse), "dense": run("dense", dense)}, warmup=1,
                         repeat=args.rounds)
    ratio = paired_ratio(stats["dense"], stats["sparse"])
    cpu_ratio = paired_ratio(Stats(tuple(cpu["dense"][1:])), Stats(tuple(cpu["sparse"][1:])))
    out = {
        "config": {"tokens": args.tokens, **hp, "threads": args.threads, "rounds": args.rounds},
        "max_abs_difference": diff,
        "sparse_ms": round(stats["sparse"].median * 1e3, 1),
        "dense_ms": round(stats["dense"].median * 1e3, 1),
        "speedup": ratio.ratio_json(),
        "sparse_cpu_ms": round(statistics.median(cpu["sparse"][1:]) * 1e3, 1),
        "dense_cpu_ms": round(statistics.median(cpu["dense"][1:]) * 1e3, 1),
        "cpu_speedup": cpu_ratio.ratio_json(),
    }
    print(f"MoE forward, {args.tokens} tokens, d {args.d}, {args.experts} experts, top-{args.k}, "
          f"hidden {args.hidden}, {args.threads} threads, median of {args.rounds}:")
    print(f"  sparse (MoE op)        {out['sparse_ms']:9.1f} ms")
    print(f"  dense (gather form)    {out['dense_ms']:9.1f} ms")
    print(f"  dense / sparse         {ratio.median:9.2f} x  (95% CI {out['speedup']['ci95']})")
    print(f"  CPU time: sparse {out['sparse_cpu_ms']:.1f} ms, dense {out['dense_cpu_ms']:.1f} ms, "
          f"dense / sparse {cpu_ratio.median:.2f} x (95% CI {out['cpu_speedup']['ci95']})")
    print(f"  max |sparse - dense|   {diff:.2e}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""-O2 against -O0: GPT-2 forward latency with the same weights, eval mode, float32.
The numbers in docs/optimizer.md come from this script.

    python bench/opt_gpt2.py                           # GPT-2 small on the CPU, batch 1, seq 256
    python bench/opt_gpt2.py --device cuda --batch 8 --seq 1024
    python bench/opt_gpt2.py --quick                   # d 256, 4 layers: a few seconds

Besides -O0 and -O2 it times -O1 plus each fusion alone, to show where the time goes. Every
contender's logits are checked against -O0 first (relative 1e-5); then all are timed side by
side (bench/timing.py: warm-up, alternating order, medians)."""

from __future__ import annotations

import argparse
import json
import os
import sys

if __package__ in (None, ""):  # run as a script: make `bench` and `nncircuit` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.env import SPECS, describe, ensure_nncircuit, machine  # noqa: E402
from bench.timing import side_by_side  # noqa: E402

CONTENDERS = {
    "-O0": dict(opt=0),
    "-O1": dict(opt=1),
    "-O1 + fuse-linear": dict(passes="canonicalize,cse,dce,fuse-linear"),
    "-O1 + fuse-attention": dict(passes="canonicalize,cse,dce,fuse-attention"),
    "-O2": dict(opt=2),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="d 256, heads 4, layers 4, vocab 1000")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.d, args.heads, args.layers, args.vocab = 256, 4, 4, 1000

    ensure_nncircuit()
    import torch

    import nncircuit

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    params = dict(
        vocab=args.vocab, ctx=max(1024, args.seq), d=args.d, heads=args.heads, layers=args.layers
    )
    path = os.path.join(SPECS, "transformer.nn")
    modules = {}
    for name, how in CONTENDERS.items():
        modules[name] = (
            nncircuit.load(path, "GPT2", **how, **params).module(seed=0).to(device).eval()
        )
    weights = modules["-O0"].state_dict()
    for m in modules.values():
        m.load_state_dict(weights)
    x = torch.randint(
        0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)
    ).to(device)

    with torch.inference_mode():
        want = modules["-O0"](x)
        scale = float(want.abs().max())
        errors = {}
        for name, m in modules.items():
            diff = float((m(x) - want).abs().max())
            errors[name] = diff
            if diff > 1e-5 * max(1.0, scale):
                print(
                    f"{name}: logits differ from -O0 by {diff:.3g} (largest logit {scale:.3g})",
                    file=sys.stderr,
                )
                return 1

    def forward(m):
        def run():
            with torch.inference_mode():
                m(x)

        return run

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    stats = side_by_side(
        {k: forward(m) for k, m in modules.items()},
        warmup=args.warmup,
        repeat=args.repeat,
        sync=sync,
    )
    base = stats["-O0"].median
    info = machine(torch.get_num_threads())
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    config = (
        f"GPT2 d={args.d} heads={args.heads} layers={args.layers} vocab={args.vocab}, "
        f"batch {args.batch} × seq {args.seq}, float32, {device.type}"
    )
    print(config)
    print(describe(info))
    print(f"largest |logit| {scale:.3g}; max |Δ| is each contender's largest difference from -O0")
    print(
        f"{'pipeline':<22} {'median ms':>10} {'best ms':>9} {'IQR/median':>11} {'vs -O0':>7} {'max |Δ|':>9}"
    )
    for name, s in stats.items():
        print(
            f"{name:<22} {s.median * 1e3:>10.2f} {s.best * 1e3:>9.2f} {s.spread:>11.3f} "
            f"{base / s.median:>6.2f}× {errors[name]:>9.2g}"
        )
    if args.json:
        out = {
            "config": config,
            "machine": info,
            "largest_logit": scale,
            "results": {
                k: {**v.to_json(), "speedup": round(base / v.median, 4), "max_abs_error": errors[k]}
                for k, v in stats.items()
            },
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

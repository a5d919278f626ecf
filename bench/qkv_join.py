"""The -O2 q/k/v group with its weights joined once (the generated `_joined`) against
concatenating them on every call (the previous helper, put back by patching the generated
module's globals): forward and forward+backward of one model, rounds interleaved.

    python -m bench.qkv_join --model vit --rounds 15"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from .env import SPECS

CONFIGS = {
    "gpt2": ("transformer.nn", "GPT2", {}, lambda torch: torch.randint(0, 50257, (1, 128))),
    "vit": ("vit.nn", "ViT", {}, lambda torch: torch.randn(1, 3, 224, 224)),
}


def main(argv=None) -> int:
    import torch

    import nncircuit

    ap = argparse.ArgumentParser(prog="python -m bench.qkv_join")
    ap.add_argument("--model", choices=sorted(CONFIGS), default="gpt2")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    spec_file, model, params, make = CONFIGS[args.model]
    m = nncircuit.load(os.path.join(SPECS, spec_file), model, opt=2, **params).module(seed=0)
    glb = next(type(x).forward.__globals__ for x in m.modules() if type(x).__name__ != "Linear"
               and "_joined" in type(x).forward.__globals__)
    joined = glb["_joined"]

    def cat(layers, attr):
        return torch.cat([getattr(x, attr) for x in layers])

    x = make(torch)
    times: dict[str, dict[str, list[float]]] = {k: {"forward": [], "train step": []} for k in ("joined", "cat")}
    for _ in range(args.rounds + 2):
        for label, fn in (("joined", joined), ("cat", cat)):
            glb["_joined"] = fn
            with torch.no_grad():
                t = time.perf_counter()
                m(x)
                times[label]["forward"].append(time.perf_counter() - t)
            t = time.perf_counter()
            m(x).float().mean().backward()
            times[label]["train step"].append(time.perf_counter() - t)
            m.zero_grad(set_to_none=True)
    glb["_joined"] = joined
    out = {"model": model, "rounds": args.rounds}
    for what in ("forward", "train step"):
        j = statistics.median(times["joined"][what][2:])
        c = statistics.median(times["cat"][what][2:])
        out[what] = {"joined_ms": round(j * 1000, 1), "cat_ms": round(c * 1000, 1),
                     "joined / cat": round(j / c, 3)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The share of the -O2 pipeline spent verifying the IR, with the pass manager's default
(verify what a pass changed) and with NNC_VERIFY=all (every graph after every pass), on
GPT-2 small and ResNet-50; each run on a freshly elaborated graph, modes interleaved.

    python -m bench.verify_share --repeat 15 --json bench/results/verify_share.json"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from .env import SPECS

CASES = (("transformer.nn", "GPT2"), ("resnet.nn", "ResNet50"))


def measure(spec_file: str, model: str, mode: str) -> tuple[float, float]:
    """(seconds of the -O2 pipeline, seconds of it inside Graph.verify)."""
    import nncircuit
    from nncircuit.ir.graph import Graph
    from nncircuit.passes import PassManager, pipeline

    graph = nncircuit.load(os.path.join(SPECS, spec_file), model, opt=0).graph
    real = Graph.verify
    inside = [0.0, 0]

    def timed(self, _done=None, **kw):
        inside[1] += 1
        t = time.perf_counter()
        try:
            return real(self, _done, **kw)
        finally:
            inside[1] -= 1
            if inside[1] == 0:
                inside[0] += time.perf_counter() - t

    Graph.verify = timed
    try:
        t = time.perf_counter()
        PassManager(pipeline(None, 2), mode=mode).run(graph)
        total = time.perf_counter() - t
    finally:
        Graph.verify = real
    return total, inside[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.verify_share")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows = []
    for spec_file, model in CASES:
        runs = {"changed": [], "all": []}
        for mode in runs:
            measure(spec_file, model, mode)  # warm-up
        for _ in range(args.repeat):
            for mode in runs:
                runs[mode].append(measure(spec_file, model, mode))
        row = {"model": model}
        for mode, rs in runs.items():
            total = statistics.median(t for t, _ in rs)
            share = statistics.median(v / t for t, v in rs)
            row[mode] = {"pipeline_ms": round(total * 1000, 1), "verify_share": round(share, 3)}
        row["pipeline all / changed"] = round(row["all"]["pipeline_ms"] / row["changed"]["pipeline_ms"], 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    text = json.dumps({"repeat": args.repeat, "rows": rows}, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

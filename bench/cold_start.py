"""Cold start of the command line: `nnc check SPEC` (and `python -c pass` for the
interpreter's own share) in fresh processes, as a user's shell runs it, with Python's
bytecode cache on (one warm-up run writes it; a box that sets PYTHONDONTWRITEBYTECODE
compiles every module from source in every process, which is not what users see). Each
figure is the median over --runs of the child's CPU time (user + system, which a loaded
machine does not stretch) and of its wall time; the kinds are interleaved per round.

    python -m bench.cold_start --runs 15 --json bench/results/cold_start.json"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from .env import SPECS

KINDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "nnc check transformer.nn": [sys.executable, "-m", "nncircuit.cli", "check", os.path.join(SPECS, "transformer.nn")],
    "nnc check resnet.nn": [sys.executable, "-m", "nncircuit.cli", "check", os.path.join(SPECS, "resnet.nn")],
}


def run_once(argv: list[str], env: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of argv in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {out.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for cmd in KINDS.values():  # warm-up: writes the bytecode cache
        run_once(cmd, env)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
    for _ in range(args.runs):
        for kind, cmd in KINDS.items():
            samples[kind].append(run_once(cmd, env))
    result = {}
    for kind, s in samples.items():
        cpu = statistics.median(c for c, _ in s)
        wall = statistics.median(w for _, w in s)
        result[kind] = {"cpu_ms": round(cpu * 1000, 1), "wall_ms": round(wall * 1000, 1), "runs": len(s)}
        print(f"{kind:28s} cpu {cpu * 1000:7.1f} ms   wall {wall * 1000:7.1f} ms   ({len(s)} runs)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"load": os.getloadavg(), "figures": result}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

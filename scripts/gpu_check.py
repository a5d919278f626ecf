"""GPU check of compiled modules: for every model in specs/ (small settings), CUDA float32
output vs CPU, bf16 autocast, torch.compile vs eager, and one training step.

Usage (on a machine with CUDA): python scripts/gpu_check.py [--json out.json]
Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import nncircuit  # noqa: E402
from nncircuit.io import write_atomic  # noqa: E402
from conftest import SMALL  # noqa: E402
from helpers import random_inputs  # noqa: E402


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).abs().max() / (b.abs().max() + 1e-12))


def check(file: str, model: str, params: dict) -> dict:
    spec = nncircuit.load(os.path.join(ROOT, "specs", file), model, **params)
    cpu = spec.module(seed=0).eval()
    inputs = random_inputs(spec)
    with torch.no_grad():
        ref = cpu(*inputs)
    gpu = spec.module(seed=0).eval().cuda()
    gpu.load_state_dict(cpu.state_dict())
    xs = [x.cuda() for x in inputs]
    row = {"model": f"{file}:{model}"}
    with torch.no_grad():
        row["fp32_rel_err"] = rel_err(gpu(*xs), ref)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = gpu(*xs)
        row["bf16_rel_err"] = rel_err(out, ref)
        t0 = time.perf_counter()
        compiled = torch.compile(gpu)
        out = compiled(*xs)
        torch.cuda.synchronize()
        row["compile_s"] = round(time.perf_counter() - t0, 1)
        row["compiled_rel_err"] = rel_err(out, ref)
    gpu.train()
    opt = torch.optim.SGD(gpu.parameters(), lr=1e-3)
    out = gpu(*xs)
    loss = out.float().pow(2).mean()
    loss.backward()
    opt.step()
    row["grad_finite"] = all(p.grad is None or torch.isfinite(p.grad).all().item() for p in gpu.parameters())
    return row


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = [check(f, m, p) for (f, m), p in sorted(SMALL.items())]
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'model':28} {'fp32 rel':>10} {'bf16 rel':>10} {'compiled':>10} {'compile s':>9} grads")
    for r in rows:
        print(f"{r['model']:28} {r['fp32_rel_err']:10.2e} {r['bf16_rel_err']:10.2e} "
              f"{r['compiled_rel_err']:10.2e} {r['compile_s']:9.1f} {r['grad_finite']}")
    if "--json" in sys.argv:
        data = {"device": torch.cuda.get_device_name(), "rows": rows}
        write_atomic(sys.argv[sys.argv.index("--json") + 1], json.dumps(data, indent=2))
    bad = [r for r in rows if r["fp32_rel_err"] > 1e-4 or r["compiled_rel_err"] > 1e-4
           or r["bf16_rel_err"] > 5e-2 or not r["grad_finite"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

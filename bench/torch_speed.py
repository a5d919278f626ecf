"""Section 2: the emitted PyTorch against hand-written PyTorch of the same configuration
and weights: forward and forward+backward latency on the CPU in float32, side by side."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .models import build, check_outputs, cpu_cases, opt_levels
from .timing import best_ratio, paired_ratio, side_by_side

THREADS = 2
TOLERANCE = 1e-5


def label(level: int) -> str:
    return f"compiled -O{level}"


def _forward(m, x):
    def run():
        with torch.no_grad():
            m(x)

    return run


def _train_step(m, x, y):
    params = [p for p in m.parameters()]

    def run():
        for p in params:
            p.grad = None
        out = m(x)
        F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()

    return run


def run(quick: bool, log, budget: float | None = None) -> dict:
    torch.set_num_threads(THREADS)
    levels, default = opt_levels()
    # at least `repeat` rounds; cheap models get more, as many as fit in `budget` seconds
    warmup, repeat, default_budget = (2, 5, 2.0) if quick else (2, 9, 20.0)
    budget = default_budget if budget is None else budget
    rows = []
    for case in cpu_cases(quick):
        log(f"torch: {case.name}: build and check")
        compiled, ref, notes = build(case, levels)
        gen = torch.Generator().manual_seed(0)
        x = case.make_input(gen, case.batch)
        errors = check_outputs(case, compiled, ref, x, TOLERANCE)
        row = {
            "model": case.name,
            "config": case.note,
            "params": notes.pop("params"),
            "max_error": errors,
            "notes": list(notes.values()),
            "times": {},
            "ratios": {},
        }
        # forward: inference, eval mode, no autograd
        for m in [*compiled.values(), ref]:
            m.eval()
        contenders = {label(k): _forward(m, x) for k, m in compiled.items()}
        contenders["hand-written"] = _forward(ref, x)
        log(f"torch: {case.name}: forward")
        fwd = side_by_side(contenders, warmup=warmup, repeat=repeat, budget_s=budget)
        # forward + backward: train mode, cross-entropy on random class targets
        for m in [*compiled.values(), ref]:
            m.train()
        with torch.no_grad():
            y = case.targets(ref(x), gen)
        contenders = {label(k): _train_step(m, x, y) for k, m in compiled.items()}
        contenders["hand-written"] = _train_step(ref, x, y)
        log(f"torch: {case.name}: forward+backward")
        train = side_by_side(contenders, warmup=warmup, repeat=repeat, budget_s=budget)
        for what, stats in (("forward", fwd), ("forward+backward", train)):
            row["times"][what] = {k: v.to_json() for k, v in stats.items()}
            base = stats["hand-written"]
            row["ratios"][what] = {
                k: {**paired_ratio(v, base).ratio_json(), "best": best_ratio(v, base)}
                for k, v in stats.items()
                if k != "hand-written"
            }
        rows.append(row)
        del compiled, ref
    return {
        "threads": THREADS,
        "tolerance": TOLERANCE,
        "warmup": warmup,
        "repeat": repeat,
        "budget_s": budget,
        "levels": levels,
        "default_level": default,
        "rows": rows,
    }

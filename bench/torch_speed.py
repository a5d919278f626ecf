"""Section 2: the emitted PyTorch against hand-written PyTorch of the same configuration
and weights: forward and forward+backward latency on the CPU in float32, side by side."""

from __future__ import annotations

import os
import re

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


_CHECK = re.compile(r"\n        if [^\n]*:\n            raise (?:ValueError|TypeError)\([^\n]*\)")


def without_input_checks(source: str, model: str) -> str:
    """The generated source with the model forward's input checks taken out."""
    head = f"class {model}(nn.Module):"
    at = source.index(head)
    fwd = source.index("    def forward(", at)
    body = source.index("\n", fwd)
    end = body
    while True:
        m = _CHECK.match(source, end)
        if m is None:
            break
        end = m.end()
    if end == body:
        raise ValueError(f"no input checks found in {model}.forward")
    return source[:body] + source[end:]


def input_check_cost(log, *, rounds: int = 200, quick: bool = False) -> dict:
    """Forward time of a small GPT-2 (d=128, 2 layers, vocab 1000, batch 4×64) with the
    model forward's input checks over the same module without them: paired ratio over many
    alternating rounds, same weights, eval mode, no autograd."""
    import types

    import nncircuit

    from .env import SPECS

    rounds = 30 if quick else rounds
    spec = nncircuit.load(os.path.join(SPECS, "transformer.nn"), "GPT2", vocab=1000, ctx=64, d=128, heads=4, layers=2, opt=2)
    source = spec.torch_source()
    mods = {}
    for name, src in (("with checks", source), ("without checks", without_input_checks(source, "GPT2"))):
        ns = types.ModuleType(f"bench_checks_{len(mods)}")
        exec(compile(src, f"<{name}>", "exec"), ns.__dict__)
        mods[name] = ns.GPT2(vocab=1000, ctx=64, d=128, heads=4, layers=2).eval()
    mods["without checks"].load_state_dict(mods["with checks"].state_dict())
    x = torch.randint(0, 1000, (4, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.equal(mods["with checks"](x), mods["without checks"](x)):
            raise RuntimeError("the module without checks computes something else")
    log(f"torch: input checks: {rounds} paired rounds")
    stats = side_by_side({k: _forward(m, x) for k, m in mods.items()}, warmup=5, repeat=rounds, max_repeat=rounds)
    ratio = paired_ratio(stats["with checks"], stats["without checks"])
    return {
        "config": "GPT2 d=128, heads=4, layers=2, vocab=1000, -O2; batch 4, seq 64; forward, eval, no_grad",
        "threads": torch.get_num_threads(),
        "times": {k: v.to_json() for k, v in stats.items()},
        "ratio_with_over_without": ratio.ratio_json(),
    }


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
    checks = input_check_cost(log, quick=quick)
    log(f"torch: input checks cost: with/without = {checks['ratio_with_over_without']['median']:.4f} "
        f"(95% CI {checks['ratio_with_over_without']['ci95']})")
    return {
        "input_checks": checks,
        "threads": THREADS,
        "tolerance": TOLERANCE,
        "warmup": warmup,
        "repeat": repeat,
        "budget_s": budget,
        "levels": levels,
        "default_level": default,
        "rows": rows,
    }

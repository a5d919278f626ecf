"""Section 4: training throughput on a GPU: compiled GPT-2 against the hand-written one,
forward+backward under bf16 autocast, eager and under torch.compile, in TFLOP/s next to
the device's peak. Skips cleanly without CUDA."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .models import BenchError, build, gpt2_case, max_error, opt_levels
from .timing import best_ratio, paired_ratio, side_by_side

# dense bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s
PEAKS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("RTX 4090", 165.0),
)


def peak_tflops(name: str) -> float | None:
    for key, peak in PEAKS:
        if key in name:
            return peak
    return None


def gpt2_flops_per_step(*, d, layers, vocab, seq, batch) -> float:
    """Matrix-multiply FLOPs of one forward+backward step (backward = 2 × forward): per token
    and layer 24·d² for the projections and MLP and 4·seq·d for the attention products
    (counted in full, as the usual MFU convention does), plus 2·d·vocab for the output head."""
    per_token = layers * (24 * d * d + 4 * seq * d) + 2 * d * vocab
    return 3.0 * per_token * seq * batch


def _step(m, x, y):
    params = list(m.parameters())

    def run():
        for p in params:
            p.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m(x)
        F.cross_entropy(out.float().reshape(-1, out.shape[-1]), y.reshape(-1)).backward()

    return run


def kernel_profile(fn, steps: int = 3, top: int = 10) -> dict:
    """torch.profiler over `steps` calls of fn: kernel launches per step, GPU time per step,
    and the kernels that take the most of it."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    rows = []
    launches = 0
    total = 0.0
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None)
        if t is None:
            t = e.cuda_time_total
        if t <= 0:
            continue
        launches += e.count
        total += t
        rows.append((t, e.count, e.key))
    rows.sort(reverse=True)
    return {
        "launches_per_step": launches // steps,
        "gpu_ms_per_step": round(total / steps / 1e3, 3),
        "top": [
            {
                "kernel": k[:90],
                "calls_per_step": c // steps,
                "ms_per_step": round(t / steps / 1e3, 3),
            }
            for t, c, k in rows[:top]
        ],
    }


def run(quick: bool, log, profile_kernels: bool = False) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device: torch.cuda.is_available() is False"}
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    if quick:
        cfg = dict(vocab=50257, ctx=1024, d=768, heads=12, layers=12, batch=2, seq=256)
        warmup, repeat = 2, 10
    else:
        cfg = dict(vocab=50257, ctx=1024, d=768, heads=12, layers=12, batch=8, seq=1024)
        warmup, repeat = 3, 30
    case = gpt2_case(name="GPT-2 small", **cfg)
    log(f"gpu: {name}: build and check {case.note}")
    levels, default = opt_levels()
    compiled, ref, notes = build(case, levels)
    modules = {f"compiled -O{k}": m.to(device) for k, m in compiled.items()}
    modules["hand-written"] = ref.to(device)
    gen = torch.Generator().manual_seed(0)
    x = case.make_input(gen, case.batch, device)
    y = torch.randint(0, cfg["vocab"], (case.batch, cfg["seq"]), generator=gen).to(device)

    # correctness on the device, in float32 (TF32 matmuls are off by default in PyTorch)
    errors = {}
    with torch.no_grad():
        want = ref.eval()(x)
        for k, m in modules.items():
            if k != "hand-written":
                errors[k] = max_error(m.eval()(x), want)
        del want
    tol = 1e-4
    for k, err in errors.items():
        if not err <= tol:
            raise BenchError(
                f"GPU: {k} and hand-written outputs differ by {err:.3g} (tolerance {tol:g})"
            )
    for m in modules.values():
        m.train()

    flops = gpt2_flops_per_step(
        d=cfg["d"], layers=cfg["layers"], vocab=cfg["vocab"], seq=cfg["seq"], batch=cfg["batch"]
    )
    peak = peak_tflops(name)
    result = {
        "device": name,
        "default_level": default,
        "config": case.note + ", bf16 autocast, forward+backward with cross-entropy",
        "params": notes.pop("params"),
        "notes": list(notes.values()),
        "max_error_fp32": errors,
        "flops_per_step": flops,
        "peak_tflops": peak,
        "modes": {},
    }
    for mode in ("eager", "torch.compile"):
        steps = {}
        compile_s = {}
        for k, m in modules.items():
            fn = _step(torch.compile(m) if mode == "torch.compile" else m, x, y)
            t = time.perf_counter()
            try:
                fn()  # the first call compiles
                torch.cuda.synchronize()
            except torch.cuda.OutOfMemoryError as e:
                result["notes"].append(f"{k} {mode}: out of memory ({e})")
                torch.cuda.empty_cache()
                continue
            compile_s[k] = time.perf_counter() - t
            steps[k] = fn
        if profile_kernels and mode == "eager":
            log("gpu: eager: kernel profiles")
            result["kernels"] = {k: kernel_profile(fn) for k, fn in steps.items()}
        log(f"gpu: {mode}: timing {', '.join(steps)}")
        stats = side_by_side(steps, warmup=warmup, repeat=repeat, sync=torch.cuda.synchronize)
        base = stats.get("hand-written")
        rows = {}
        for k, s in stats.items():
            rows[k] = {
                **s.to_json(),
                "first_step_s": round(compile_s[k], 3),
                "tokens_per_s": round(cfg["batch"] * cfg["seq"] / s.median),
                "tflops": round(flops / s.median / 1e12, 2),
                "of_peak": round(flops / s.median / 1e12 / peak, 4) if peak else None,
                "ratio": {**paired_ratio(s, base).ratio_json(), "best": best_ratio(s, base)}
                if base
                else None,
            }
        result["modes"][mode] = rows
        torch._dynamo.reset()
        torch.cuda.empty_cache()
    result["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result

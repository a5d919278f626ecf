"""ONNX export at scale: time and extra peak memory of nncircuit's export (one file, and
external data) against a plain write of the same weight bytes to the same folder and
against torch.onnx.export, each run in a fresh process, rounds interleaved; and a
Llama-2-7B-shaped spec exported with seeded weights and loaded in onnxruntime.

    python -m bench.onnx_scale --rounds 3 --json bench/results/onnx_scale.json
    python -m bench.onnx_scale --no-compare --llama 4                 # export + onnxruntime
    python -m bench.onnx_scale --no-compare --llama 32 --export-only  # Llama-2-7B: 27 GB
    python -m bench.onnx_scale --no-compare --deep 10000 --deep 99999

Memory: each child resets its peak RSS (/proc/self/clear_refs, Linux) once the weights are
loaded, so "extra" is the peak during the export above the RSS holding the weights. The
modules each method needs are imported before its clock starts (importing onnx alone takes
seconds cold); nncircuit's time includes loading the spec, the exporters' does not need to."""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA = os.path.join(ROOT, "bench", "llama.nn")
METHODS = ("plain-write", "nncircuit", "nncircuit-external", "torchscript", "dynamo")
CASES = ("GPT-2 small", "ResNet50")


def _status(field: str) -> int:
    """A VmXXX line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    return _status("VmRSS")


def _size(path: str) -> int:
    total = os.path.getsize(path)
    if os.path.exists(path + ".data"):
        total += os.path.getsize(path + ".data")
    return total


# ---- one measurement, in a child process ------------------------------------------------------


def child_export(case_name: str, method: str, folder: str) -> dict:
    import torch

    from .env import SPECS
    from .models import build, cpu_cases
    from .onnx_speed import _torch_export

    import onnx  # noqa: F401  imported before the clock starts, for every method alike
    import torch.onnx  # noqa: F401

    import nncircuit.backends.onnx.export  # noqa: F401

    torch.set_num_threads(2)
    (case,) = [c for c in cpu_cases(False) if c.name == case_name]
    compiled, ref, _ = build(case, [0])
    sd = compiled[0].state_dict()
    weights = sum(v.numel() * v.element_size() for v in sd.values())
    x = case.make_input(torch.Generator().manual_seed(0), case.batch)
    out = os.path.join(folder, f"{method}.onnx")
    base = _reset_peak()
    t = time.perf_counter()
    if method == "plain-write":
        out = os.path.join(folder, "plain.bin")
        with open(out, "wb") as f:
            for v in sd.values():
                f.write(memoryview(v.detach().contiguous().numpy()).cast("B"))
    elif method.startswith("nncircuit"):
        import nncircuit

        nncircuit.export_onnx(
            os.path.join(SPECS, case.spec), out, model=case.model, state_dict=sd,
            external_data=method == "nncircuit-external", **case.params,
        )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _torch_export(case, ref, x, out, method)
    seconds = time.perf_counter() - t
    peak = _status("VmHWM")
    return {"seconds": seconds, "extra_bytes": peak - base, "weight_bytes": weights,
            "file_bytes": _size(out)}


def child_llama(layers: int, folder: str, step: str) -> dict:
    out = os.path.join(folder, f"llama{layers}.onnx")
    if step == "export":
        import nncircuit
        from nncircuit.backends.onnx.export import export_spec

        spec = nncircuit.load(LLAMA, max_params=None, layers=layers)
        base = _reset_peak()
        t = time.perf_counter()
        report = export_spec(spec, out, seed=0)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "extra_bytes": _status("VmHWM") - base, "rss_before": base,
                "params": spec.param_count(), "file_bytes": _size(out),
                "report": _local(report, folder)}
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    base = _reset_peak()
    t = time.perf_counter()
    sess = ort.InferenceSession(out, opts, providers=["CPUExecutionProvider"])
    load = time.perf_counter() - t
    load_peak = _status("VmHWM") - base
    t = time.perf_counter()
    (logits,) = sess.run(None, {"tokens": np.arange(8, dtype=np.int64).reshape(1, 8)})
    run = time.perf_counter() - t
    return {"load_seconds": load, "load_extra_bytes": load_peak, "run_seconds": run,
            "run_extra_bytes": _status("VmHWM") - base, "logits_shape": list(logits.shape),
            "finite": bool(np.isfinite(logits).all()), "ort": ort.__version__}


DEEP = """model Deep(n = 10000, d = 4) {
    in  x: [batch, d]
    repeat n { x = Linear(x, d -> d) }
    out x
}
"""


def child_deep(n: int, folder: str) -> dict:
    """A repeat of n tiny Linear layers (20 parameters each): load, export, and one run."""
    import numpy as np
    import onnxruntime as ort

    import nncircuit
    from nncircuit.backends.onnx.export import export_spec

    t = time.perf_counter()
    spec = nncircuit.load("deep.nn", text=DEEP, n=n)
    loaded = time.perf_counter() - t
    out = os.path.join(folder, f"deep{n}.onnx")
    base = _reset_peak()
    t = time.perf_counter()
    report = export_spec(spec, out, seed=0)
    seconds = time.perf_counter() - t
    extra = _status("VmHWM") - base
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": np.ones((2, 4), dtype=np.float32)})[0]
    return {"layers": n, "load_s": loaded, "export_s": seconds, "extra_bytes": extra,
            "file_bytes": _size(out), "report": _local(report, folder),
            "finite": bool(np.isfinite(y).all())}


def _local(report: str, folder: str) -> str:
    """The report without the temporary folder's path (results are committed)."""
    return report.replace(folder.rstrip(os.sep) + os.sep, "")


def _spawn(args: list[str]) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "bench.onnx_scale", "--child", *args],
        capture_output=True, text=True, cwd=ROOT,
    )
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- the comparison -------------------------------------------------------------------------


def compare(rounds: int, log) -> dict:
    from .env import has_module

    methods = [m for m in METHODS if m != "dynamo" or has_module("onnxscript")]
    skipped = {} if "dynamo" in methods else {"dynamo": "onnxscript is not installed"}
    rows = []
    for case in CASES:
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as folder:
            for r in range(rounds):
                for m in methods:  # interleaved, so a busy machine slows all alike
                    log(f"onnx-scale: {case}: {m}, round {r + 1}/{rounds}")
                    runs[m].append(_spawn(["export", case, m, folder]))
        row = {"model": case, "methods": {}}
        for m, rs in runs.items():
            ok = [x for x in rs if "error" not in x]
            if not ok:
                row["methods"][m] = {"error": rs[0]["error"]}
                continue
            row["methods"][m] = {
                "seconds": [round(x["seconds"], 3) for x in ok],
                "median_s": round(statistics.median(x["seconds"] for x in ok), 3),
                "extra_MiB": round(max(x["extra_bytes"] for x in ok) / 2**20, 1),
                "extra_over_weights": round(
                    max(x["extra_bytes"] for x in ok) / ok[0]["weight_bytes"], 3
                ),
                "weight_MiB": round(ok[0]["weight_bytes"] / 2**20, 1),
                "file_MiB": round(ok[0]["file_bytes"] / 2**20, 1),
            }
        med = {m: v["median_s"] for m, v in row["methods"].items() if "median_s" in v}
        ratios = {}
        for ours in ("nncircuit", "nncircuit-external"):
            if ours in med and "plain-write" in med:
                ratios[f"{ours} / plain-write"] = round(med[ours] / med["plain-write"], 2)
            for theirs in ("torchscript", "dynamo"):
                if ours in med and theirs in med:
                    ratios[f"{theirs} / {ours}"] = round(med[theirs] / med[ours], 2)
        row["ratios"] = ratios
        rows.append(row)
    return {"rounds": rounds, "rows": rows, "skipped": skipped}


def llama(layers: int, log, load: bool = True) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as folder:
        log(f"onnx-scale: Llama ({layers} layers): export")
        export = _spawn(["llama", str(layers), folder, "export"])
        if "error" in export or not load:
            return {"layers": layers, "export": export}
        log(f"onnx-scale: Llama ({layers} layers): onnxruntime load and one run")
        load = _spawn(["llama", str(layers), folder, "load"])
    return {"layers": layers, "export": export, "onnxruntime": load}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.onnx_scale")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama", type=int, action="append", default=[], metavar="LAYERS",
                    help="also export the Llama spec with this many layers (32: Llama-2-7B)")
    ap.add_argument("--deep", type=int, action="append", default=[], metavar="N",
                    help="also export a repeat of N tiny Linear layers")
    ap.add_argument("--export-only", action="store_true",
                    help="--llama: export, without loading it in onnxruntime")
    ap.add_argument("--no-compare", action="store_true", help="only the --llama runs")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "export":
            result = child_export(*rest)
        elif kind == "deep":
            result = child_deep(int(rest[0]), rest[1])
        else:
            result = child_llama(int(rest[0]), rest[1], rest[2])
        print(json.dumps(result))
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    out = {"machine": f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM"}
    if not args.no_compare:
        out["compare"] = compare(args.rounds, log)
    out["llama"] = [llama(n, log, load=not args.export_only) for n in args.llama]
    out["deep"] = []
    for n in args.deep:
        log(f"onnx-scale: a repeat of {n} layers")
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as folder:
            out["deep"].append(_spawn(["deep", str(n), folder]))
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run nncircuit's benchmarks: print tables, write JSON, rewrite docs/benchmarks.md.

python bench/run.py                      # compiler, torch, onnx on the CPU (~10 min, 2 cores)
python bench/run.py --quick              # small configurations, a minute; docs untouched
python bench/run.py --gpu --only gpu --json gpu.json   # the GPU section alone
python bench/run.py --render gpu.json    # rewrite the docs from saved results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make `bench` and `nncircuit` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.env import REPO, ensure_nncircuit, machine  # noqa: E402

ORDER = ("compiler", "torch", "onnx", "gpu")


def _log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _command(argv: list[str]) -> str:
    """The command line as re-runnable text, without this machine's paths."""
    out = []
    for i, a in enumerate(argv):
        if i and argv[i - 1] in ("--json", "--docs", "--render") or os.path.isabs(a):
            a = os.path.basename(a)
        out.append(a)
    return " ".join(["python bench/run.py", *out])


def _write_json(path: str, results: dict):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)


def _section(name: str, args):
    """Run one section with the options that concern it."""
    if name == "compiler":
        from bench import compiler_speed

        return compiler_speed.run(args.quick, _log)
    if name == "torch":
        from bench import torch_speed

        return torch_speed.run(args.quick, _log, budget=args.budget)
    if name == "onnx":
        from bench import onnx_speed

        return onnx_speed.run(args.quick, _log, exporter=args.onnx_exporter, budget=args.budget)
    from bench import gpu

    return gpu.run(args.quick, _log, profile_kernels=args.profile)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small configurations and few repeats")
    p.add_argument(
        "--gpu", action="store_true", help="also run the GPU section (skips without CUDA)"
    )
    p.add_argument(
        "--only", action="append", choices=ORDER, help="run only this section (repeatable)"
    )
    p.add_argument("--json", metavar="FILE", help="write every figure here")
    p.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="time per CPU measurement that cheap models fill with extra rounds "
        "(default 20 for torch, 10 for onnxruntime; --quick 2)",
    )
    p.add_argument(
        "--onnx-exporter",
        choices=["auto", "dynamo", "torchscript"],
        default="auto",
        help="torch.onnx.export's exporter to compare with (auto: torch's default where it can run)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="GPU: also profile the kernels of one eager step each",
    )
    p.add_argument(
        "--docs",
        metavar="FILE",
        help="Markdown file to update "
        "(default docs/benchmarks.md; a --quick run updates it only when this is given)",
    )
    p.add_argument("--no-docs", action="store_true", help="leave the docs alone")
    p.add_argument(
        "--render", metavar="JSON", help="no measuring: rewrite the docs from this results file"
    )
    args = p.parse_args(argv)

    ensure_nncircuit()
    from bench import report

    docs = args.docs or os.path.join(REPO, "docs", "benchmarks.md")
    if args.render:
        with open(args.render, encoding="utf-8") as f:
            results = json.load(f)
        for name, sec in results["sections"].items():
            print(report.section_text(name, results["meta"], sec), end="\n\n")
        if not args.no_docs:
            done = report.update_docs(docs, results)
            _log(f"rewrote {', '.join(done)} in {os.path.relpath(docs, REPO)}")
        return 0

    wanted = args.only or ["compiler", "torch", "onnx"] + (["gpu"] if args.gpu else [])
    names = [n for n in ORDER if n in wanted]

    import torch

    cpu = any(n != "gpu" for n in names)
    if cpu:
        torch.set_num_threads(2)  # the CPU sections' figures are for 2 threads
    results = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": _command(argv),
            "quick": args.quick,
            "commit": _commit(),
            "machine": machine(),
        },
        "sections": {},
    }
    failed = []
    for name in names:
        before = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            res = _section(name, args)
        except Exception as e:  # noqa: BLE001 - one section failing must not hide the others
            _log(f"{name}: FAILED: {type(e).__name__}: {e}")
            failed.append(name)
            continue
        sec = {
            "wall_s": time.perf_counter() - t0,
            "load": {"before": before, "after": os.getloadavg()[0]},
            "result": res,
        }
        results["sections"][name] = sec
        print(report.section_text(name, results["meta"], sec), end="\n\n", flush=True)
        if args.json:  # after every section: a run cut short keeps what it measured
            _write_json(args.json, results)

    if args.json:
        _write_json(args.json, results)
        _log(f"wrote {args.json}")
    if not args.no_docs and (not args.quick or args.docs) and results["sections"]:
        done = report.update_docs(docs, results)
        _log(f"rewrote {', '.join(done)} in {os.path.relpath(docs, REPO)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

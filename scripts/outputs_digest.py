"""Digest of every output the compiler makes for every model in specs/: generated PyTorch
(-O0 and -O2), textual IR, ONNX, and the diagrams (SVG circuit and graph, DOT, Mermaid).
Run it before and after a refactoring that must not change behaviour and diff the lines:

    python scripts/outputs_digest.py > before.txt   # ... change ...
    python scripts/outputs_digest.py > after.txt && diff before.txt after.txt
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

JOBS = [
    ("compile", ["--to", "torch", "-O", "0"], "py"),
    ("compile", ["--to", "torch", "-O", "2"], "py"),
    ("compile", ["--to", "onnx", "-O", "0"], "onnx"),
    ("render", ["--style", "circuit"], "svg"),
    ("render", ["--style", "graph"], "svg"),
    ("render", [], "dot"),
    ("render", [], "mmd"),
]


def models() -> list[tuple[Path, str]]:
    sys.path.insert(0, str(ROOT))
    import nncircuit

    out = []
    for f in sorted((ROOT / "specs").glob("*.nn")):
        for m in nncircuit.models(str(f)):
            out.append((f, m))
    return out


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-onnx", action="store_true")
    args = ap.parse_args(argv)
    nnc = [sys.executable, "-m", "nncircuit.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        for spec, model in models():
            rel = spec.relative_to(ROOT)
            r = subprocess.run(nnc + ["ir", str(rel), "--model", model], cwd=ROOT, capture_output=True)
            print(f"{rel}:{model} ir {digest(r.stdout)} rc={r.returncode}")
            for cmd, flags, ext in JOBS:
                if ext == "onnx" and args.skip_onnx:
                    continue
                out = Path(tmp) / f"{model}.{ext}"
                r = subprocess.run(
                    nnc + [cmd, str(rel), "--model", model, "-o", str(out), *flags],
                    cwd=ROOT, capture_output=True,
                )
                body = out.read_bytes() if out.exists() else b""
                print(f"{rel}:{model} {cmd} {' '.join(flags)} .{ext} {digest(body)} rc={r.returncode}")
                out.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fuzz the `nnc` command line for a time budget: random bytes, damaged versions of the
specs in specs/ and of generated specs, and generated well-typed specs run through every
backend and compared (in-memory vs imported file, -O0 vs -O2, torch vs onnxruntime).

    python scripts/fuzz.py --time 600            # ten minutes
    python scripts/fuzz.py --time 60 --seed 7 --out fuzz-findings

A finding is an input on which nnc crashes (a traceback, exit status 2), takes more than
--limit seconds of CPU time (not of wall-clock time, which a busy machine stretches), gives
a diagnostic without FILE:LINE:COL for a mistake inside the spec or one that points outside
the file, rejects a generated well-typed spec, or whose backends
disagree. Each finding is written to --out with the command that shows it; the run ends with
one line of counts. The exit status is 1 when there was a finding."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import specgen  # noqa: E402

from nncircuit import cli  # noqa: E402
from nncircuit.errors import normalize_newlines  # noqa: E402
from nncircuit.io import write_atomic  # noqa: E402

# A diagnostic about a spec's text starts `FILE:LINE:COL: error: `; these are about the file
# or the command line as a whole and have no position to give.
POSITION = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (error|internal error): ", re.M)
WHOLE_FILE = (
    "defines no model", "is a directory", "no such file", "cannot read", "no model named",
    "cannot write", "is not a finite number", "-p ", "has no hyperparameter",
)


class Hang(BaseException):
    """Raised by the timer in a run that takes too long (not an Exception: nnc's own
    handler must not take it for a bug of its own)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


# A run blocked without using the CPU (reading a pipe, say) is stopped after this many times
# its CPU limit of wall-clock time: a loaded machine slows a run, it does not block it.
BLOCKED_FACTOR = 30


@dataclass
class Outcome:
    argv: list
    rc: object
    seconds: float  # wall-clock, for the record
    stdout: str
    stderr: str
    crash: str = ""  # the traceback of an exception that escaped cli.main
    cpu_seconds: float = 0.0  # what the limits judge

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def run_cli(argv: list, limit: float | None = None) -> Outcome:
    """Run `nnc ARGV` in this process, capturing its output; with `limit` (CPU seconds of
    this process; needs SIGPROF), a run that uses more is stopped and reported as a hang, as
    is one still running after BLOCKED_FACTOR times `limit` of wall-clock time."""
    out, err = io.StringIO(), io.StringIO()
    crash = ""
    timed = limit is not None and hasattr(signal, "SIGPROF") and hasattr(signal, "SIGALRM")
    if timed:
        def on_cpu(signum, frame):
            raise Hang(f"used more than {limit} s of CPU time")

        def on_wall(signum, frame):
            raise Hang(f"blocked: still running after {limit * BLOCKED_FACTOR:g} s")

        old = signal.signal(signal.SIGPROF, on_cpu), signal.signal(signal.SIGALRM, on_wall)
        signal.setitimer(signal.ITIMER_PROF, limit)
        signal.setitimer(signal.ITIMER_REAL, limit * BLOCKED_FACTOR)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    except Hang as h:
        rc, crash = "hang", h.why
    except BaseException:  # noqa: BLE001 - anything escaping main is the finding
        rc, crash = "exception", traceback.format_exc()
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGPROF, old[0])
            signal.signal(signal.SIGALRM, old[1])
    return Outcome(list(argv), rc, time.perf_counter() - t0, out.getvalue(), err.getvalue(), crash,
                   cpu_seconds=time.process_time() - c0)


def problem(o: Outcome, path: str, text: str | None, limit: float | None = None) -> str | None:
    """What is wrong with an outcome of nnc on the spec at `path` (its text, when it is
    text), or None. Exit status 0 and 1 are both fine; a diagnostic must be one. With
    `limit`, a run that used more CPU seconds than that is too slow (tests pass none: no
    time decides a unit test)."""
    if o.crash:
        return f"{o.rc}: {o.crash.strip().splitlines()[-1]}"
    if o.rc not in (0, 1):
        return f"exit status {o.rc}: {o.stderr.strip()[-300:]}"
    if "Traceback (most recent call last)" in o.text or "internal error" in o.stderr:
        return f"a traceback or internal error: {o.stderr.strip()[-300:]}"
    if limit is not None and o.cpu_seconds > limit:
        return f"took {o.cpu_seconds:.2f} s of CPU time (limit {limit} s)"
    if o.rc == 1:
        first = o.stderr.strip().splitlines()[0] if o.stderr.strip() else ""
        if not first:
            return "exit status 1 without a diagnostic"
        m = POSITION.match(first)
        if m is None:
            if not any(w in first for w in WHOLE_FILE):
                return f"a diagnostic without FILE:LINE:COL: {first}"
        elif text is not None and os.path.abspath(m["file"]) == os.path.abspath(path):
            lines = normalize_newlines(text).split("\n")  # the lines editors and nnc count
            line, col = int(m["line"]), int(m["col"])
            if not 1 <= line <= len(lines) or not 1 <= col <= len(lines[line - 1]) + 2:
                return f"position {line}:{col} is outside the file ({len(lines)} lines): {first}"
    return None


# ---- what one input is run through ---------------------------------------------------------


def commands(path: str, work: str, deep: bool) -> list[list[str]]:
    """`check` always; with `deep`, every other command too (they run after check passes)."""
    out = [["check", path]]
    if deep:
        out += [
            ["compile", path, "--to", "torch", "-o", os.path.join(work, "m.py")],
            ["ir", path, "-O2"],
            ["summary", path],
            ["render", path, "-o", os.path.join(work, "m.svg")],
            ["compile", path, "--to", "onnx", "-o", os.path.join(work, "m.onnx")],
        ]
    return out


def try_input(data: bytes, path: str, work: str, *, deep: bool, limit: float) -> tuple[list[str], object]:
    """Run nnc on one input: the problems it shows, and the exit status of `check`."""
    write_atomic(path, data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    found, status = [], None
    for argv in commands(path, work, deep):
        o = run_cli(argv, limit=max(limit * 4, 10.0))
        status = o.rc if status is None else status
        p = problem(o, path, text, limit if argv[0] == "check" else limit * 4)
        if p:
            found.append(f"nnc {' '.join(argv)}: {p}")
        if o.rc != 0:
            break  # the later commands would report the same mistake
    return found, status


# What differential() says of a spec whose float32 arithmetic overflows: its backends may
# disagree (their results depend on the order of evaluation), which is not a finding.
OVERFLOW = "overflow"


def differential(gs: specgen.GenSpec, work: str) -> str | None:
    """Backends that disagree on a generated spec (None when they agree)."""
    import importlib.util

    import torch

    import nncircuit

    def run(m):
        with torch.no_grad():
            y = m.eval()(*specgen.make_inputs(gs))
        return y if isinstance(y, tuple) else (y,)

    def close(a, b):
        return all(
            x.shape == y.shape and (torch.equal(x, y) if not y.is_floating_point() else torch.allclose(
                x, y, rtol=1e-3, atol=1e-4 * max(1.0, float(y.abs().max()) if y.numel() and torch.isfinite(y).all() else 1.0),
                equal_nan=True))
            for x, y in zip(a, b)
        ) and len(a) == len(b)

    def overflowed(module) -> str | None:
        why = specgen.float32_overflow(module, specgen.make_inputs(gs))
        return OVERFLOW if why else None

    try:
        spec = nncircuit.load("generated.nn", text=gs.text, **gs.params)
    except nncircuit.NNError as e:
        return f"a generated spec does not check: {e}"
    try:
        base = spec.module(seed=0)
        want = run(base)
    except Exception as e:  # noqa: BLE001
        return f"the torch module fails: {type(e).__name__}: {e}"
    shapes = [shape for _, _, shape in gs.outputs]
    if [tuple(y.shape) for y in want] != shapes:
        return f"run-time shapes {[tuple(y.shape) for y in want]}, the types say {shapes}"
    pyfile = os.path.join(work, "generated_model.py")
    write_atomic(pyfile, spec.torch_source())
    ms = importlib.util.spec_from_file_location("nnc_fuzz_generated", pyfile)
    mod = importlib.util.module_from_spec(ms)
    ms.loader.exec_module(mod)
    torch.manual_seed(0)
    other = getattr(mod, spec.graph.name)(**{nncircuit.names.pyname(h.name): h.value.value for h in spec.graph.hyper})
    if not close(run(other), want):
        return "the imported source and the in-memory module differ"
    try:
        opt = nncircuit.load("generated.nn", text=gs.text, opt=2, **gs.params).module(seed=0)
        opt.load_state_dict(base.state_dict())
        if not close(run(opt), want):
            return overflowed(base) or "-O2 and -O0 differ"
    except Exception as e:  # noqa: BLE001
        return f"-O2 fails: {type(e).__name__}: {e}"
    try:
        import onnxruntime as ort

        src, onnx_path = os.path.join(work, "generated.nn"), os.path.join(work, "generated.onnx")
        write_atomic(src, gs.text)
        nncircuit.export_onnx(src, onnx_path, state_dict=base.state_dict(), **gs.params)
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        got = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), specgen.make_inputs(gs))})
        if not close([torch.from_numpy(g) for g in got], want):
            return overflowed(base) or "onnxruntime and torch differ"
    except Exception as e:  # noqa: BLE001
        return f"ONNX fails: {type(e).__name__}: {e}"
    return None


# ---- the inputs ----------------------------------------------------------------------------


def corpus() -> list[tuple[str, str]]:
    out = []
    for base, _, files in sorted(os.walk(os.path.join(ROOT, "specs"))):
        for f in sorted(files):
            if f.endswith(".nn"):
                with open(os.path.join(base, f), encoding="utf-8") as fh:
                    out.append((os.path.relpath(os.path.join(base, f), ROOT), fh.read()))
    return out


def make_input(ch: specgen.RandomChooser, n: int, seeds: list) -> tuple[str, bytes, object]:
    """One fuzz input: (how it was made, its bytes, the generated spec when it is one)."""
    kind = ch.pick(["bytes", "corpus", "corpus", "corpus-bytes", "generated", "generated", "generated-mutated"])
    if kind == "bytes":
        return kind, bytes(ch.integer(0, 255) for _ in range(ch.integer(0, 200))), None
    if kind.startswith("corpus"):
        name, text = ch.pick(seeds)
        if kind == "corpus-bytes":
            return f"{kind} {name}", specgen.mutate_bytes(text.encode("utf-8"), ch), None
        return f"{kind} {name}", specgen.mutate(text, ch).encode("utf-8"), None
    gs = specgen.generate(n, size=ch.integer(4, 14))
    if kind == "generated":
        return f"generated {n}", gs.text.encode("utf-8"), gs
    return f"generated-mutated {n}", specgen.mutate(gs.text, ch).encode("utf-8"), None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=float, default=60.0, help="seconds to fuzz (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the input stream")
    ap.add_argument("--limit", type=float, default=2.0,
                    help="CPU seconds one `nnc check` may take (other commands: 4 times as many, "
                         "at least 10)")
    ap.add_argument("--out", default="fuzz-findings", help="folder for the findings")
    ap.add_argument("--deep-every", type=int, default=4,
                    help="run every command (compile, ir, summary, render, onnx) on every Nth input")
    ap.add_argument("--no-differential", action="store_true", help="skip the backend comparisons")
    args = ap.parse_args(argv)

    ch = specgen.RandomChooser(args.seed)
    seeds = corpus()
    counts = {"inputs": 0, "ok": 0, "diagnostics": 0, "generated": 0, "compared": 0, "overflowed": 0,
              "findings": 0}
    kinds: dict[str, int] = {}
    findings: list[str] = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "input.nn")
        n = 0
        while time.monotonic() - start < args.time:
            n += 1
            how, data, gs = make_input(ch, args.seed * 1_000_000 + n, seeds)
            kinds[how.split()[0]] = kinds.get(how.split()[0], 0) + 1
            deep = gs is not None or n % max(1, args.deep_every) == 0
            found, status = try_input(data, path, work, deep=deep, limit=args.limit)
            if gs is not None:
                counts["generated"] += 1
                if not found and not args.no_differential:
                    counts["compared"] += 1
                    d = differential(gs, work)
                    if d == OVERFLOW:
                        counts["overflowed"] += 1
                    elif d:
                        found.append(f"differential: {d}")
            counts["inputs"] += 1
            counts["ok" if status == 0 else "diagnostics"] += 1
            if found:
                counts["findings"] += 1
                findings.append(_record(args.out, counts["findings"], how, data, found))
    elapsed = time.monotonic() - start
    made = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    groups: dict[str, list[str]] = {}
    for f in findings:
        groups.setdefault(signature(f), []).append(f)
    print(f"fuzz: {counts['inputs']} inputs in {elapsed:.0f} s ({made}); {counts['ok']} checked clean, "
          f"{counts['diagnostics']} diagnostics, {counts['compared']} generated specs compared across "
          f"backends ({counts['overflowed']} of them disagreeing only where float32 overflows); "
          f"{counts['findings']} findings of {len(groups)} kinds" + (f" (in {args.out})" if findings else ""))
    for fs in sorted(groups.values(), key=len, reverse=True):
        print(f"  {len(fs)} x {fs[0]}")
    return 1 if findings else 0


def signature(finding: str) -> str:
    """A finding without its file, numbers and quoted names: one line per kind of bug."""
    text = finding.split(": ", 1)[-1]
    text = re.sub(r"'[^']*'|\"[^\"]*\"|/\S+|\d+", "_", text)
    return text[:100]


def _record(out: str, k: int, how: str, data: bytes, found: list[str]) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"finding-{k:04d}.nn")
    write_atomic(path, data)
    write_atomic(path + ".txt", f"input: {how}\n" + "\n".join(found) + "\n")
    return f"{path}: {found[0][:200]}"


if __name__ == "__main__":
    sys.exit(main())

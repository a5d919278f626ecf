"""Section 3: ONNX. Time to produce the ONNX file (nncircuit.export_onnx from the spec and
a state_dict, against torch.onnx.export of the hand-written module), and onnxruntime
latency of the two files, with the same weights and checked outputs."""

from __future__ import annotations

import io
import os
import tempfile
import time
import warnings

import torch

from .env import SPECS, has_module
from .models import BenchError, build, cpu_cases, max_error
from .timing import Stats, best_ratio, paired_ratio, side_by_side

THREADS = 2
TOLERANCE = 1e-4


def available() -> str:
    """'' when nncircuit can export ONNX, else why this section is skipped."""
    if not has_module("nncircuit.backends.onnx.export"):
        return (
            "nncircuit.backends.onnx.export does not exist yet (nncircuit.export_onnx cannot run)"
        )
    for mod in ("onnx", "onnxruntime"):
        if not has_module(mod):
            return f"{mod} is not installed"
    return ""


def _ours(case, sd, out: str):
    import nncircuit

    nncircuit.export_onnx(
        os.path.join(SPECS, case.spec), out, model=case.model, state_dict=sd, **case.params
    )


def _dynamic_axes(case) -> dict:
    if case.spec == "transformer.nn":
        return {"input": {0: "batch", 1: "seq"}, "output": {0: "batch", 1: "seq"}}
    return {"input": {0: "batch"}, "output": {0: "batch"}}


def _torch_export(case, ref, x, out, exporter: str, params: bool = True) -> None:
    """torch.onnx.export of the hand-written module, with the dynamo exporter (torch's
    default since 2.9; it needs onnxscript) or the TorchScript one; `params=False` leaves
    the weights out (out may then be a BytesIO)."""
    ref.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ref,
            (x,),
            out,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=_dynamic_axes(case),
            export_params=params,
            dynamo=exporter == "dynamo",
        )


def _ours_graph(case):
    """What the compiler does for an ONNX file, weights aside: load the spec, lower it."""
    import nncircuit
    from nncircuit.backends.onnx.export import lower

    return lower(nncircuit.load(os.path.join(SPECS, case.spec), case.model, **case.params))


def pick_exporter(choice: str) -> str:
    """'dynamo' or 'torchscript': `auto` is torch's default where it can run."""
    if choice != "auto":
        return choice
    return "dynamo" if has_module("onnxscript") else "torchscript"


def _session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run(quick: bool, log, exporter: str = "auto", budget: float | None = None) -> dict:
    why = available()
    if why:
        return {"skipped": why}
    torch.set_num_threads(THREADS)
    exporter = pick_exporter(exporter)
    repeat_export = 2 if quick else 3
    warmup, repeat, default_budget = (2, 10, 2.0) if quick else (2, 15, 10.0)
    budget = default_budget if budget is None else budget
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cpu_cases(quick):
            log(f"onnx: {case.name}: export")
            compiled, ref, notes = build(case, [0])
            sd = compiled[0].state_dict()
            gen = torch.Generator().manual_seed(0)
            x = case.make_input(gen, case.batch)
            ours_path = os.path.join(tmp, f"{case.model}_ours.onnx")
            theirs_path = os.path.join(tmp, f"{case.model}_torch.onnx")
            ours_t, theirs_t, ours_g, theirs_g = [], [], [], []
            for _ in range(repeat_export):
                t = time.perf_counter()
                _ours(case, sd, ours_path)
                ours_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                _torch_export(case, ref, x, theirs_path, exporter)
                theirs_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                _ours_graph(case)
                ours_g.append(time.perf_counter() - t)
                t = time.perf_counter()
                _torch_export(case, ref, x, io.BytesIO(), exporter, params=False)
                theirs_g.append(time.perf_counter() - t)
            ours_s, theirs_s = Stats(tuple(ours_t)), Stats(tuple(theirs_t))
            ours_gs, theirs_gs = Stats(tuple(ours_g)), Stats(tuple(theirs_g))

            log(f"onnx: {case.name}: onnxruntime")
            feeds = {}
            sessions = {}
            for label, path in (("nncircuit", ours_path), ("torch.onnx.export", theirs_path)):
                sess = _session(path)
                sessions[label] = sess
                feeds[label] = {sess.get_inputs()[0].name: x.numpy()}
            with torch.no_grad():
                want = ref.eval()(x)
            errors = {}
            for label, sess in sessions.items():
                got = torch.from_numpy(sess.run(None, feeds[label])[0])
                errors[label] = max_error(got, want)
                if not errors[label] <= TOLERANCE:
                    raise BenchError(
                        f"{case.name}: onnxruntime output of the {label} file differs from the "
                        f"hand-written module by {errors[label]:.3g} (tolerance {TOLERANCE:g})"
                    )
            stats = side_by_side(
                {k: (lambda s=s, f=feeds[k]: s.run(None, f)) for k, s in sessions.items()},
                warmup=warmup,
                repeat=repeat,
                budget_s=budget,
            )
            ours_rt, theirs_rt = stats["nncircuit"], stats["torch.onnx.export"]
            rows.append(
                {
                    "model": case.name,
                    "config": case.note,
                    "exporter": f"torch.onnx.export ({exporter})",
                    "export": {
                        "nncircuit": ours_s.to_json(),
                        "torch": theirs_s.to_json(),
                        "speedup": round(theirs_s.median / ours_s.median, 2),
                    },
                    "graph_only": {
                        "nncircuit": ours_gs.to_json(),
                        "torch": theirs_gs.to_json(),
                        "speedup": round(theirs_gs.median / ours_gs.median, 2),
                    },
                    "bytes": {
                        "nncircuit": os.path.getsize(ours_path),
                        "torch": os.path.getsize(theirs_path),
                    },
                    "max_error": errors,
                    "onnxruntime": {k: v.to_json() for k, v in stats.items()},
                    "ratio": {
                        **paired_ratio(ours_rt, theirs_rt).ratio_json(),
                        "best": best_ratio(ours_rt, theirs_rt),
                    },
                }
            )
            del compiled, ref, sessions
    return {"threads": THREADS, "tolerance": TOLERANCE, "rows": rows}

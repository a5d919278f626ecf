"""Measure every model of the zoo and write docs/zoo.md, one table: for each, the reference it
is checked against, its parameter count at the published (or default) configuration, checked
equal to the reference's built there (on the meta device), the largest output difference at a
small configuration (fp32, eval: -O0 and -O2 against the reference, onnxruntime against torch),
spec lines (of which the checkpoint section) against PyTorch lines, and its diagram
(docs/zoo/NAME.svg, rendered here).

The models come from three places, each reusing what its tests assert on: bench/zoo.py's CASES
(tests/e2e/test_zoo.py), tests/e2e/test_zoo_more.py's cases (references in
tests/zoo_reference.py; helpers in scripts/zoo_more_table.py) and scripts/zoo_extra.py (the
references and inputs of the other tests/e2e/test_*.py). A model whose measurement fails gets a
row saying so, and the script exits 1.

    python scripts/zoo_table.py            # writes docs/zoo.md and docs/zoo/*.svg
    python scripts/zoo_table.py --check    # exits 1 if docs/zoo.md would change (renders nothing)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # zoo_more_table, zoo_extra

from bench import zoo  # noqa: E402

SPECS = os.path.join(ROOT, "specs")
DOC = os.path.join(ROOT, "docs", "zoo.md")


# ---- line counts -----------------------------------------------------------------------------


def _resolve(path: str, target: str) -> str:
    return os.path.join(SPECS, target[4:]) if target.startswith("zoo:") else os.path.join(os.path.dirname(path), target)


def spec_blocks(path: str) -> tuple[dict[str, tuple[int, set[str]]], dict[str, str]]:
    """The file's blocks and models: name -> (non-blank non-comment lines, names its text
    mentions); and the names it imports -> the file each comes from (`import "f"`: all of f's)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, imports, i = {}, {}, 0
    while i < len(lines):
        s = lines[i].strip()
        m = re.match(r'from\s+"([^"]+)"\s+import\s+(.+)', s)
        if m:
            for name in m.group(2).split(","):
                imports[name.strip()] = _resolve(path, m.group(1))
        m = re.match(r'import\s+"([^"]+)"', s)
        if m:
            target = _resolve(path, m.group(1))
            imports.update({name: target for name in spec_blocks(target)[0]})
        m = re.match(r"(?:block|model)\s+([A-Za-z_]\w*)", s)
        if m:
            depth, j, body = 0, i, []
            while j < len(lines):
                code = lines[j].split("#", 1)[0]
                body.append(code)
                depth += code.count("{") - code.count("}")
                j += 1
                if depth <= 0 and "{" in "".join(body):
                    break
            blocks[m.group(1)] = (sum(1 for t in lines[i:j] if t.strip() and not t.strip().startswith("#")),
                                  set(re.findall(r"[A-Za-z_]\w*", "\n".join(body))))
            i = j
            continue
        i += 1
    return blocks, imports


def imported_blocks(path: str) -> dict[tuple[str, str], int]:
    """Every block the file takes from other files, with the blocks those use in turn (in their
    own file or imported there): (file, block) -> its lines."""
    found, todo = {}, []
    _, imports = spec_blocks(path)
    todo = list({(f, n) for n, f in imports.items()})
    while todo:
        f, name = todo.pop()
        if (f, name) in found:
            continue
        blocks, imports = spec_blocks(f)
        if name not in blocks:
            continue
        n, mentions = blocks[name]
        found[(f, name)] = n
        for other in mentions - {name}:
            if other in blocks:
                todo.append((f, other))
            elif other in imports:
                todo.append((imports[other], other))
    return found


def spec_files(path: str) -> list[str]:
    """The spec file and the files its imported blocks come from (directly or through others)."""
    seen = [path]
    for f, _ in sorted(imported_blocks(path)):
        if f not in seen:
            seen.append(f)
    return seen


def checkpoint_lines(path: str) -> int:
    """Non-blank, non-comment lines of the file's `checkpoint { ... }` sections, braces included."""
    count, depth = 0, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            code = s and not s.startswith("#")
            if depth == 0 and code and re.match(r"checkpoint\s*\{", s):
                count += 1
                depth += s.count("{") - s.count("}")
                continue
            if depth > 0:
                count += bool(code)
                depth += s.count("{") - s.count("}")
    return count


def spec_line_text(path: str) -> tuple[str, list[str]]:
    """The spec's lines: the whole file, and every block it imports from another file (from
    `specs/lib/` or another model's file) with the blocks those use, counted block by block;
    in brackets how many are `checkpoint` sections, and how many were imported from where."""
    files = spec_files(path)
    taken = imported_blocks(path)
    own = zoo.code_lines(path)
    ck = checkpoint_lines(path)
    notes = [f"checkpoint {ck}"] if ck else []
    if taken:
        where = ", ".join(f"`{os.path.relpath(f, SPECS).replace(os.sep, '/')}`" for f in files[1:])
        notes.append(f"{sum(taken.values())} imported from {where}")
    text = f"{own + sum(taken.values())}" + (f" ({'; '.join(notes)})" if notes else "")
    return text, [os.path.relpath(p, ROOT).replace(os.sep, "/") for p in files]


def torch_line_text(pairs) -> str:
    return " + ".join(f"{n:,} {label}" for label, n in pairs) if pairs else "—"


def fmt(x) -> str:
    return f"{x:.1e}"


def params_text(spec: int, ref, published) -> str:
    text = f"{spec:,}"
    if ref is None:
        return text + " (no reference)"
    notes = []
    if ref != spec:
        notes.append(f"reference {ref:,}: DIFFERS")
    if published is not None and published != spec:
        notes.append(f"published {published:,}: DIFFERS")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def render(spec, name: str, write: bool) -> str:
    rel = f"zoo/{name.lower()}.svg"
    if write:
        from nncircuit.backends.diagram import render as R

        R.write(os.path.join(ROOT, "docs", rel), R.svg(spec, R.options()))
    return rel


# ---- bench/zoo.py: the transformers and torchvision-layout models ------------------------------


def measure_case(case: zoo.ZooCase, write: bool) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    import nncircuit

    ref = zoo.reference(case)
    x = case.inputs(torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = case.outputs(ref, x)
    diffs = {}
    for opt in (0, 2):
        module = nncircuit.load(zoo.spec_path(case), case.model, opt=opt, **case.small).module().eval()
        module.load_state_dict(ref.state_dict(), strict=True)
        with torch.no_grad():
            got = module(*x)
        diffs[opt] = zoo.max_difference(got if isinstance(got, tuple) else (got,), want)
        if opt == 0:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "m.onnx")
                nncircuit.export_onnx(zoo.spec_path(case), path, case.model,
                                      state_dict=module.state_dict(), **case.small)
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), x)}
                onnx_out = sess.run(None, feeds)
            torch_out = got if isinstance(got, tuple) else (got,)
            diffs["onnx"] = max(float(np.abs(o - t.numpy()).max()) for o, t in zip(onnx_out, torch_out))
    spec = nncircuit.load(zoo.spec_path(case), case.model, max_params=case.max_params, **case.published_params)
    lines, files = spec_line_text(zoo.spec_path(case))
    torch_lines = [(f"`{os.path.basename(p)}`", zoo.code_lines(p)) for p in zoo.pytorch_files(case)]
    return dict(family=case.family, spec=f"`{case.spec} : {case.model}`", reference=case.reference_name,
                params=params_text(spec.param_count(), zoo.published_reference_count(case), case.published),
                diff=f"{fmt(max(diffs[0], diffs[2]))} (onnxruntime {fmt(diffs['onnx'])})",
                lines=f"{lines} vs {torch_line_text(torch_lines)}", files=files,
                svg=render(spec, case.id, write))


# ---- tests/e2e/test_zoo_more.py: hand-written references of tests/zoo_reference.py -------------

MORE = ["GCN", "GAT", "MemN2N", "Hopfield", "NeuralODE", "MlpMixer", "ConvNeXt", "KAN", "DIN", "HyperMLP"]


def measure_more(name: str, write: bool) -> dict:
    import torch

    import nncircuit
    import zoo_extra as X
    import zoo_more_table as M

    case = M.CASES[name]
    path = M._path(case)
    ref = M._reference(case, case.small, seed=3)

    def make(opt):
        m = nncircuit.load(path, case.model, opt=opt, **case.small).module(seed=0).eval()
        m.load_state_dict(ref.state_dict(), strict=True)
        return m

    def measure(m):
        worst = 0.0
        for sizes in case.sizes:
            x = M._inputs(case, case.small, sizes)
            with torch.no_grad():
                worst = max(worst, X.difference(m(*x), ref(*x)))
        return worst

    diff = X.by_opt(make, measure)
    onnx = X.onnx_difference(path, case.model, case.small, make(0),
                             [M._inputs(case, case.small, sizes, seed=7) for sizes in case.sizes])
    spec = nncircuit.load(path, case.model)
    with torch.device("meta"):
        ref_count = sum(p.numel() for p in case.ref().parameters())
    lines, files = spec_line_text(path)
    return dict(family=f"{name} ({M.FAMILY[name]})", spec=f"`{case.file} : {case.model}`",
                reference=M.REFERENCE[name] + " (`tests/zoo_reference.py`)",
                params=params_text(spec.param_count(), ref_count, case.published),
                diff=f"{fmt(diff)} (onnxruntime {fmt(onnx)})",
                lines=f"{lines} vs {torch_line_text([('reference classes', M.reference_lines(M.CLASSES[name]))])}",
                files=files, svg=render(spec, name, write))


# ---- scripts/zoo_extra.py: the other tests' references ----------------------------------------


def measure_extra(fn, write: bool) -> dict:
    import nncircuit

    m = fn()
    rel = os.path.relpath(m["path"], SPECS).replace(os.sep, "/")
    spec = nncircuit.load(m["path"], m["model"], max_params=None)
    lines, files = spec_line_text(m["path"])
    pairs = m.get("torch_lines") or [(f"`{os.path.basename(p)}`", zoo.code_lines(p)) for p in m.get("torch_files", [])]
    if m["reference"] is None:
        reference, diff = "none: structure only (compiles, not checked against an implementation)", "—"
    else:
        reference = m["reference"] + (f"; {m['note']}" if m.get("note") else "")
        diff = fmt(m["diff"]) + ("" if m["onnx"] is None else f" (onnxruntime {fmt(m['onnx'])})")
    return dict(family=m["family"], spec=f"`{rel} : {m['model']}`", reference=reference,
                params=f"{m['spec_params']:,}" if m["reference"] is None
                else f"{m['spec_params']:,} (the reference has no weights)" if m["ref_params"] is None
                else params_text(m["spec_params"], m["ref_params"], m["published"]),
                diff=diff, lines=f"{lines} vs {torch_line_text(pairs)}", files=files,
                svg=render(spec, m["model"], write))


def jobs():
    """(name, measure(write) -> row) in the table's order."""
    import zoo_extra as X

    out = [(c.id, lambda w, c=c: measure_case(c, w)) for c in zoo.CASES]
    first = ["t5", "llama_decode", "swin", "ddpm_unet", "vae"]
    extra = {f.__name__: f for f in X.MODELS}
    out += [(n, lambda w, f=extra[n]: measure_extra(f, w)) for n in first]
    out += [(n, lambda w, n=n: measure_more(n, w)) for n in MORE]
    out += [(n, lambda w, f=f: measure_extra(f, w)) for n, f in extra.items() if n not in first]
    return out


def unique(rows: list[dict]) -> list[dict]:
    """One row per spec file (for the list of what its lines include)."""
    seen: dict[str, dict] = {}
    for r in rows:
        if r.get("files"):
            seen.setdefault(r["files"][0], r)
    return list(seen.values())


def table(rows: list[dict]) -> str:
    import onnxruntime
    import torch
    import transformers

    out = [
        "# The zoo",
        "",
        "Every model of the zoo, measured. Each is a spec in `specs/` checked against a reference",
        "implementation: where the reference has a `state_dict()` the spec's checkpoint section lets the",
        "compiled module load it with `load_state_dict(..., strict=True)`, and its hyperparameters carry",
        "the reference's names, with the published configuration as the defaults.",
        "Generated by `python scripts/zoo_table.py` from the figures it measures (do not edit by hand);",
        "the tests named below assert the same facts. `docs/zoo_more.md` says what the language lacked",
        "for the graph, memory, scientific, recommender, meta and vision-mixer models.",
        "",
        "| family | spec : model | reference | parameters (published config) | max difference | spec lines (checkpoint) vs PyTorch lines | diagram |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| {r['family']} | {r['spec']} | {r['reference']} | {r['params']} | {r['diff']} | "
                   f"{r['lines']} | {'[svg](' + r['svg'] + ')' if r.get('svg') else '—'} |")
    notes = [c.pytorch_note for c in zoo.CASES if c.pytorch_note]
    out += [
        "",
        "* **parameters**: the spec's count at its defaults (TinyLlama: its published hyperparameters),",
        "  equal to the reference's built at the same configuration on the meta device (no memory; tied",
        "  weights counted once) and to the published count where there is one; a mismatch would",
        "  read DIFFERS. LSTM, GRU, RNN: torch.nn at the spec's defaults (10 → 20, 2 layers). Linear",
        "  attention: the max difference is the larger of its recurrent and parallel forms against the",
        "  reference module's (one state_dict loaded strictly into each).",
        "* **max difference**: the largest |compiled − reference| over every output at a small",
        "  configuration (fp32, eval mode, seeded random weights, BatchNorm statistics and norms moved",
        "  off their initial values where the tests do), the larger of -O0 and -O2, at the sizes of the",
        "  model's test; in brackets the largest |onnxruntime − torch| of the -O0 module's ONNX export",
        "  with the same weights. The small configurations and inputs are those of `bench/zoo.py`",
        "  (GPT-2 … DeepSeek-V3, `tests/e2e/test_zoo.py`), `tests/e2e/test_zoo_more.py` and",
        "  `tests/e2e/test_<model>.py` (`scripts/zoo_extra.py` imports them). VAE: both draw the same",
        "  noise (torch's generator seeded alike), and its ONNX export runs with a pinned log-variance",
        "  (ONNX draws anew). Llama decode: a prefill of 5 tokens, then steps of 1, 1, 1 and 2 tokens",
        "  feeding the cache back; logits, keys and values against a DynamicCache.",
        "* **spec lines**: non-blank lines that are not only a comment: the whole spec file, and every",
        "  block it imports from another file (`specs/lib/` or another model's file: " + "; ".join(
            f"`{r['files'][0][6:]}` from " + ", ".join(f"`{f[6:]}`" for f in r["files"][1:])
            for r in unique(rows) if len(r.get("files", [])) > 1) + ") with the blocks those",
        "  use in turn, counted block by block (the total includes them; in brackets how many).",
        "  Also in brackets, how many lines are `checkpoint` sections: the mapping to the reference's",
        "  names, not the model. A file holding several models (`resnet.nn`, `lstm.nn`, `conv.nn`)",
        "  is counted whole for each.",
        "  **PyTorch lines** count the same way: " + "; ".join(notes) + "; for the hand-written",
        "  references, the classes or functions the reference consists of (docstrings left out);",
        "  torch.nn's `rnn.py` holds every recurrent module (its kernels are C++, not counted).",
        "",
        f"Measured with torch {torch.__version__}, transformers {transformers.__version__}, "
        f"onnxruntime {onnxruntime.__version__} (one thread).",
        "",
    ]
    return "\n".join(out)


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/zoo.md is out of date")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the figures do not depend on the machine's thread count
    rows, failed = [], []
    for name, measure in jobs():
        print(f"measuring {name} ...", file=sys.stderr)
        try:
            rows.append(measure(not args.check))
        except Exception as e:  # one broken model must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            rows.append(dict(family=name, spec="?", reference=f"MEASUREMENT FAILED: {type(e).__name__}: {msg}",
                             params="—", diff="—", lines="—", files=[], svg=None))
    text = table(rows)
    if args.check:
        with open(DOC, encoding="utf-8") as f:
            return 0 if f.read() == text and not failed else 1
    from nncircuit.io import write_atomic

    write_atomic(DOC, text)
    print(text)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

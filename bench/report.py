"""Results as tables: plain text for the terminal, Markdown for docs/benchmarks.md, whose
per-section blocks between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` are
rewritten by each run (a run of one section leaves the others' numbers alone)."""

from __future__ import annotations

import re

from .env import describe

SECTIONS = ("compiler", "torch", "onnx", "gpu")
TITLES = {
    "compiler": "Compiler speed and scaling",
    "torch": "Compiled PyTorch vs hand-written PyTorch (CPU, float32)",
    "onnx": "ONNX export and onnxruntime",
    "gpu": "GPU training throughput (GPT-2 small, bf16 autocast)",
}


class Table:
    def __init__(self, headers: list[str], title: str = ""):
        self.title = title
        self.headers = headers
        self.rows: list[list[str]] = []

    def add(self, *cells):
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [
            max(len(r[i]) for r in [self.headers, *self.rows]) for i in range(len(self.headers))
        ]

        def line(r):
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            )

        out = [self.title] if self.title else []
        out += [line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in self.rows]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"**{self.title}**", ""] if self.title else []
        out.append("| " + " | ".join(self.headers) + " |")
        out.append(
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|"
        )
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(out)


def ms(seconds: float) -> str:
    v = seconds * 1e3
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def ratio_of(r) -> tuple[float, tuple[float, float] | None]:
    """(median, 95% interval or None) of a paired ratio (a plain number in old results)."""
    if isinstance(r, dict):
        ci = r.get("ci95")
        return r["median"], (tuple(ci) if ci else None)
    return float(r), None


def ratio_cell(r) -> str:
    """`median [lo–hi]`: the paired ratio and its 95% confidence interval."""
    med, ci = ratio_of(r)
    return f"{med:.3f} [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else f"{med:.3f}"


def verdict(ratio: float, ci, target: float, lower_is_better: bool = True) -> str:
    """met / within noise / not met: *within noise* when the ratio misses the target but
    its 95% confidence interval still reaches it."""
    ok = ratio <= target if lower_is_better else ratio >= target
    if ok:
        return "met"
    if ci is not None and (ci[0] <= target if lower_is_better else ci[1] >= target):
        return f"within noise (95% interval {ci[0]:.3f}–{ci[1]:.3f})"
    return "**not met**" + (f" (95% interval {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")


# ---- one block per section ------------------------------------------------------------------


def _compiler(res: dict) -> tuple[list[Table], list[str]]:
    tables, lines = [], []
    cold = res.get("cold", {})
    if "error" in cold:
        lines.append(f"Cold start failed: {cold['error']}")
    elif cold:
        total = cold["import"]["median_s"] + cold["compile"]["median_s"]
        lines.append(
            f"From a fresh interpreter (median of {cold['compile']['n']} processes): `import nncircuit` "
            f"{ms(cold['import']['median_s'])} ms, then GPT-2 small: parse {ms(cold['parse']['median_s'])} ms "
            f"(builds the Lark parser), elaborate {ms(cold['elaborate']['median_s'])} ms, torch codegen "
            f"{ms(cold['torch codegen']['median_s'])} ms; {ms(total)} ms in all. "
            f"torch imported: {'yes' if cold['torch_imported'] else 'no'}."
        )
        if total < 0.5:
            target = "met (under 500 ms, which this page takes for *well under*)"
        elif total < 1.0:
            target = "**under a second, but not well under** (500 ms is the bar used)"
        else:
            target = "**not met**"
        lines.append(
            "Target *GPT-2 small compiles in well under a second, `import nncircuit` included "
            f"(torch is never imported)*: {ms(total)} ms, {target}."
        )
    for stage, why in sorted(res.get("skipped_stages", {}).items()):
        lines.append(f"Stage *{stage}* not measured: {why}.")
    for form, data in res.get("gpt2", {}).items():
        rows = data["rows"]
        stages = list(rows[0]["stages"])
        desc = (
            "the spec as written (`repeat layers`)"
            if form == "repeat"
            else "layers written out one statement each (generated spec, no `repeat`)"
        )
        t = Table(
            ["layers", "params", *[f"{s} ms" for s in stages]], f"GPT-2, {desc}; warm, median"
        )
        for r in rows:
            t.add(
                r["layers"], f"{r['params']:,}", *[ms(r["stages"][s]["median_s"]) for s in stages]
            )
        tables.append(t)
        sc = data["scaling"]
        depths = [r["layers"] for r in rows]
        t = Table(
            ["stage", *[f"ms/layer {a}→{b}" for a, b in zip(depths, depths[1:])], "exponent"],
            f"GPT-2 ({form}): cost of one more layer, and growth exponent between the two "
            "largest depths (1 linear, 0 constant, 2 quadratic)",
        )
        for stage in stages:
            t.add(
                stage,
                *[f"{m:.2f}" for m in sc[stage]["marginal_ms_per_layer"]],
                f"{sc[stage]['exponent']:.2f}",
            )
        tables.append(t)
        bad = [s for s in stages if s != "total" and sc[s]["superlinear"]]
        lines.append(
            f"GPT-2 ({form}): "
            + (
                "every stage grows at most linearly with the depth."
                if not bad
                else "superlinear growth in "
                + ", ".join(f"*{s}* (exponent {sc[s]['exponent']:.2f})" for s in bad)
                + "."
            )
        )
    for hot in res.get("hotspots", []):
        t = Table(
            ["function", "calls", "self s", "cumulative s"],
            f"cProfile of *{hot['stage']}* on the unrolled GPT-2, {hot['layers']} layers (top self time)",
        )
        for h in hot["top"]:
            t.add(
                f"`{h['function']}`",
                f"{h['calls']:,}",
                f"{h['self_s']:.3f}",
                f"{h['cumulative_s']:.3f}",
            )
        tables.append(t)
    specs = res.get("specs", [])
    if specs:
        stages = list(specs[0]["stages"])
        t = Table(
            ["spec", "model", "params", *[f"{s} ms" for s in stages]],
            "Every spec in specs/; warm, median",
        )
        for r in specs:
            t.add(
                r["spec"],
                r["model"],
                f"{r['params']:,}",
                *[ms(r["stages"][s]["median_s"]) for s in stages],
            )
        tables.append(t)
    return tables, lines


def _torch(res: dict) -> tuple[list[Table], list[str]]:
    lines = [
        f"{res['threads']} threads; forward in eval mode under `torch.no_grad()`, forward+backward in train "
        f"mode with cross-entropy on random targets; {res['warmup']} warm-up rounds, then at least {res['repeat']} "
        f"rounds in alternating order (more for cheap models: as many as fit in {res.get('budget_s', 0):g} s; "
        "column *rounds*); times are medians; a ratio is the median of the per-round ratios, with its 95% "
        "confidence interval in brackets. Outputs checked equal (relative to max(1, max|out|)) within "
        f"{res['tolerance']:g} in eval and train mode before timing; parameter counts equal."
    ]
    levels = [f"compiled -O{k}" for k in res["levels"]]
    t = Table(
        [
            "model",
            "params",
            "max error",
            "pass",
            "rounds",
            *[f"{c} ms" for c in levels],
            "hand-written ms",
            *[f"ratio -O{k}" for k in res["levels"]],
        ]
    )
    default = f"compiled -O{res.get('default_level', 0)}"
    for r in res["rows"]:
        for what in ("forward", "forward+backward"):
            times = r["times"][what]
            ratios = {c: ratio_of(v) for c, v in r["ratios"][what].items()}
            t.add(
                r["model"],
                f"{r['params']:,}",
                f"{max(r['max_error'].values()):.1e}",
                what,
                times["hand-written"]["n"],
                *[ms(times[c]["median_s"]) if c in times else "–" for c in levels],
                ms(times["hand-written"]["median_s"]),
                *[ratio_cell(r["ratios"][what][c]) if c in ratios else "–" for c in levels],
            )
            for c, (ratio, ci) in ratios.items():
                which = f"{c} (the default level)" if c == default else c
                lines.append(
                    f"Target *{r['model']} {what}: {which} / hand-written ≤ 1.00*: {ratio:.3f}, "
                    f"{verdict(ratio, ci, 1.0)}."
                )
        for n in r["notes"]:
            lines.append(f"{r['model']}: {n}")
    configs = [f"{r['model']}: {r['config']}" for r in res["rows"]]
    lines.insert(1, "Configurations: " + "; ".join(configs) + ".")
    return [t], lines


def _onnx(res: dict) -> tuple[list[Table], list[str]]:
    if "skipped" in res:
        return [], [f"Skipped: {res['skipped']}."]
    rows = res["rows"]
    lines = [
        f"Export: the ONNX file with weights, {rows[0]['exporter'] if rows else ''} against "
        "`nncircuit.export_onnx` (median of the runs). Graph only: no weights; ours is "
        "`nncircuit.load` + `onnx_export.lower`, torch's is `export_params=False`. onnxruntime "
        f"on the CPU, {res['threads']} intra-op threads, same weights in both files; outputs "
        f"checked against the hand-written module within {res['tolerance']:g}."
    ]
    t = Table(
        [
            "model",
            "export ours s",
            "torch s",
            "speedup",
            "graph only ours ms",
            "torch ms",
            "speedup",
            "ours MB",
            "torch MB",
            "ORT ours ms",
            "ORT torch ms",
            "ORT ratio",
        ]
    )
    for r in rows:
        ort_ = r["onnxruntime"]
        ratio, ci = ratio_of(r["ratio"])
        g = r.get("graph_only")
        t.add(
            r["model"],
            f"{r['export']['nncircuit']['median_s']:.3f}",
            f"{r['export']['torch']['median_s']:.3f}",
            f"{r['export']['speedup']:.1f}×",
            ms(g["nncircuit"]["median_s"]) if g else "–",
            ms(g["torch"]["median_s"]) if g else "–",
            f"{g['speedup']:.1f}×" if g else "–",
            f"{r['bytes']['nncircuit'] / 1e6:.1f}",
            f"{r['bytes']['torch'] / 1e6:.1f}",
            ms(ort_["nncircuit"]["median_s"]),
            ms(ort_["torch.onnx.export"]["median_s"]),
            ratio_cell(r["ratio"]),
        )
        lines.append(
            f"Target *{r['model']} export ≥ 10× faster than {r['exporter']}*: "
            f"{r['export']['speedup']:.1f}× with weights, "
            f"{verdict(r['export']['speedup'], None, 10.0, lower_is_better=False)}"
            + (f"; {g['speedup']:.1f}× for the graph alone." if g else ".")
        )
        lines.append(
            f"Target *{r['model']} onnxruntime latency, ours / torch.onnx.export ≤ 1.00*: {ratio:.3f}, "
            f"{verdict(ratio, ci, 1.0)}."
        )
    return [t], lines


def _gpu(res: dict) -> tuple[list[Table], list[str]]:
    if "skipped" in res:
        return [], [f"Skipped: {res['skipped']}."]
    peak = res["peak_tflops"]
    lines = [
        f"{res['device']}: {res['config']}. Peak used for %: {peak:g} TFLOP/s (dense bf16, datasheet)."
        if peak
        else f"{res['device']}: {res['config']}. Peak of this device unknown to the bench.",
        f"FLOPs per step {res['flops_per_step'] / 1e12:.2f} T (matrix products only, backward = 2× forward). "
        f"Outputs checked in float32 on the device first: max error "
        + ", ".join(f"{k} {v:.1e}" for k, v in res["max_error_fp32"].items())
        + f". Peak memory {res['max_memory_gib']} GiB.",
    ]
    t = t_main = Table(
        ["mode", "module", "step ms", "tokens/s", "TFLOP/s", "of peak", "ratio", "first step s"]
    )
    default = f"compiled -O{res.get('default_level', 0)}"
    for mode, rows in res["modes"].items():
        for k, r in rows.items():
            ratio = ratio_of(r["ratio"]) if r["ratio"] is not None else None
            t.add(
                mode,
                k,
                ms(r["median_s"]),
                f"{r['tokens_per_s']:,}",
                f"{r['tflops']:.1f}",
                f"{r['of_peak'] * 100:.1f}%" if r["of_peak"] is not None else "–",
                ratio_cell(r["ratio"]) if ratio else "–",
                f"{r['first_step_s']:.1f}",
            )
            if ratio and k != "hand-written":
                which = f"{k} (the default level)" if k == default else k
                lines.append(
                    f"Target *{mode}: {which} / hand-written step time ≤ 1.00*: {ratio[0]:.3f}, "
                    f"{verdict(ratio[0], ratio[1], 1.0)}."
                )
    lines += [f"Note: {n}" for n in res.get("notes", [])]
    kernels = res.get("kernels")
    if kernels:
        t = Table(
            ["module", "launches/step", "GPU ms/step", "top kernels (ms/step)"],
            "Eager kernel profile (torch.profiler, 3 steps)",
        )
        for k, prof in kernels.items():
            top = "; ".join(f"{x['kernel'][:40]} {x['ms_per_step']:.2f}" for x in prof["top"][:4])
            t.add(k, prof["launches_per_step"], f"{prof['gpu_ms_per_step']:.2f}", top)
        return [t_main, t], lines
    return [t], lines


RENDER = {"compiler": _compiler, "torch": _torch, "onnx": _onnx, "gpu": _gpu}


def _header(meta: dict, sec: dict) -> str:
    load = sec.get("load", {})
    load_s = ""
    if load:
        load_s = f" Load average (1 min) before/after: {load['before']:.2f} / {load['after']:.2f}."
    return (
        f"Measured {meta['date']} on {describe(meta['machine'])}; nncircuit {meta.get('commit', '?')}. "
        f"Command: `{meta['command']}` ({sec['wall_s']:.0f} s).{load_s}"
    )


def section_text(name: str, meta: dict, sec: dict) -> str:
    tables, lines = RENDER[name](sec["result"])
    parts = [f"=== {TITLES[name]} ===", _header(meta, sec)]
    parts += [t.text() for t in tables]
    parts += lines
    return "\n\n".join(parts)


def section_markdown(name: str, meta: dict, sec: dict) -> str:
    tables, lines = RENDER[name](sec["result"])
    parts = [f"### {TITLES[name]}", _header(meta, sec)]
    parts += [t.markdown() for t in tables]
    if lines:
        parts.append("\n".join(f"- {x}" for x in lines))
    return "\n\n".join(parts)


def update_docs(path: str, results: dict) -> list[str]:
    """Rewrite the blocks of the sections in `results` (run.py's JSON) in the Markdown file
    at `path`; a block that is missing is appended under '## Latest numbers'."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    done = []
    for name in SECTIONS:
        sec = results["sections"].get(name)
        if sec is None:
            continue
        body = section_markdown(name, results["meta"], sec)
        begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
        block = f"{begin}\n{body}\n{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if pattern.search(text):
            if "skipped" in sec["result"]:
                continue  # a run that could not measure this section keeps the last numbers
            text = pattern.sub(lambda _, b=block: b, text)
        else:
            if "## Latest numbers" not in text:
                text = text.rstrip("\n") + "\n\n## Latest numbers\n"
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        done.append(name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.rstrip("\n") + "\n")
    return done

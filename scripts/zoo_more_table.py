"""Measure the graph, memory, scientific, recommender, meta and vision-mixer models of the zoo
against their hand-written references (tests/zoo_reference.py) and write the table of
docs/zoo_more.md and its diagrams (docs/zoo_more/NAME.svg).

Usage: python scripts/zoo_more_table.py [--check]   (--check: exit 1 if the file would change)
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
import textwrap

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))  # test_zoo_more.py

import nncircuit  # noqa: E402
import zoo_reference as R  # noqa: E402
from nncircuit.cli import main as nnc  # noqa: E402
from nncircuit.io import write_atomic  # noqa: E402
from test_zoo_more import CASES, _inputs, _path, _reference  # noqa: E402

DOC = os.path.join(ROOT, "docs", "zoo_more.md")
FIGURES = os.path.join(ROOT, "docs", "zoo_more")
BEGIN, END = "<!-- zoo-more:begin -->", "<!-- zoo-more:end -->"

FAMILY = {
    "GCN": "graph", "GAT": "graph", "MemN2N": "memory", "Hopfield": "memory",
    "NeuralODE": "scientific", "MlpMixer": "vision", "ConvNeXt": "vision", "DIN": "recommender",
    "HyperMLP": "meta", "KAN": "scientific",
}
REFERENCE = {
    "GCN": "Kipf & Welling 2017, two layers", "GAT": "Veličković et al. 2018, Cora model",
    "MemN2N": "Sukhbaatar et al. 2015, 3 hops, adjacent tying, BoW",
    "Hopfield": "Ramsauer et al. 2021, Hopfield layer",
    "NeuralODE": "Chen et al. 2018, fixed-step RK4",
    "MlpMixer": "timm `MlpMixer` (mixer_s16_224)", "ConvNeXt": "timm `ConvNeXt` (convnext_tiny)",
    "DIN": "Zhou et al. 2018, Amazon Electronics", "HyperMLP": "Ha et al. 2017 / von Oswald et al. 2020",
    "KAN": "efficient-kan `KAN([784, 64, 10])`",
}


def spec_lines(path: str) -> int:
    """Non-blank lines that are not comments or doc comments."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.strip().startswith("#"))


def reference_lines(classes) -> int:
    """Non-blank, non-comment lines of the reference's classes, docstrings left out."""
    total = 0
    for cls in classes:
        source = textwrap.dedent(inspect.getsource(cls))
        doc_lines: set[int] = set()
        for node in ast.walk(ast.parse(source)):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
        total += sum(1 for n, line in enumerate(source.splitlines(), 1)
                     if line.strip() and not line.strip().startswith("#") and n not in doc_lines)
    return total


def max_difference(name: str) -> float:
    case = CASES[name]
    ref = _reference(case, case.small, seed=3)
    module = nncircuit.compile(_path(case), case.model, seed=0, **case.small).eval()
    module.load_state_dict(ref.state_dict(), strict=True)
    worst = 0.0
    for sizes in case.sizes:
        x = _inputs(case, case.small, sizes)
        with torch.no_grad():
            worst = max(worst, (module(*x) - ref(*x)).abs().max().item())
    return worst


def row(name: str) -> str:
    case = CASES[name]
    count = nncircuit.load(_path(case), case.model).param_count()
    with torch.device("meta"):
        ref_count = sum(p.numel() for p in case.ref().parameters())
    if ref_count != count:
        raise SystemExit(f"{name}: the spec has {count:,} parameters, the reference {ref_count:,}")
    published = "" if case.published is None else (" (published)" if case.published == count else " (NOT the published count)")
    svg = os.path.join(FIGURES, f"{name}.svg")
    if nnc(["render", _path(case), "--model", case.model, "-o", svg]) != 0:
        raise SystemExit(f"{name}: nnc render failed")
    return (f"| {FAMILY[name]} | `{name}` (`specs/{case.file}`) | {REFERENCE[name]} | {count:,}{published} "
            f"| {max_difference(name):.1e} | {spec_lines(_path(case))} vs {reference_lines(R.CLASSES[name])} "
            f"| [svg](zoo_more/{name}.svg) |")


def table() -> str:
    head = ["| family | model (spec) | reference | parameters at the published config | max difference "
            "| spec lines vs reference lines | diagram |", "|---|---|---|---|---|---|---|"]
    order = ["GCN", "GAT", "MemN2N", "Hopfield", "NeuralODE", "MlpMixer", "ConvNeXt", "KAN", "DIN", "HyperMLP"]
    return "\n".join(head + [row(n) for n in order])


def main(argv: list[str]) -> int:
    os.makedirs(FIGURES, exist_ok=True)
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + table() + "\n" + text[end:]
    if "--check" in argv:
        return int(new != text)
    write_atomic(DOC, new)
    print(f"wrote {os.path.relpath(DOC, ROOT)} and {len(CASES)} diagrams")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The graph, memory, scientific, recommender, meta and vision-mixer models of the zoo against
their hand-written references (tests/zoo_reference.py): the helpers scripts/zoo_table.py uses
to measure them for its one table in docs/zoo.md (FAMILY, REFERENCE, max_difference,
reference_lines). Their rows used to be docs/zoo_more.md's table.

Usage: python scripts/zoo_more_table.py [--check]   (the same as scripts/zoo_table.py)
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # zoo_table

import nncircuit  # noqa: E402
import zoo_reference as R  # noqa: E402
from test_zoo_more import CASES, _inputs, _path, _reference  # noqa: E402

CLASSES = R.CLASSES  # the classes each reference consists of (its line count)

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


def main(argv: list[str]) -> int:
    """docs/zoo_more.md's table is now part of docs/zoo.md: write (or --check) that one."""
    import zoo_table

    return zoo_table.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

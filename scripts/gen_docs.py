"""Regenerate the op reference table in docs/language.md from the op registry.

Usage: python scripts/gen_docs.py [--check]
"""

from __future__ import annotations

import os
import sys

from nncircuit.ops import registry
from nncircuit.io import write_atomic

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "language.md")
BEGIN, END = "<!-- ops:begin -->", "<!-- ops:end -->"


def table() -> str:
    rows = [
        "| op | learned | takes | keywords | what it does | example |",
        "|---|---|---|---|---|---|",
    ]
    for name, op in registry.all_ops().items():
        takes = ", ".join(
            {"map": "`IN -> OUT`", "over": "`over AXES`", "axes": "`[AXES]`", "scalars": "numbers as values"}[t] for t in sorted(op.takes)
        )
        if op.positional:
            takes = ", ".join(filter(None, [takes, " ".join(f"`{p}`" for p in op.positional)]))
        kw = ", ".join(f"`{k}`" for k in op.kwargs)
        doc = op.doc.replace("|", "\\|")
        ex = op.example.replace("|", "\\|")
        rows.append(f"| `{name}` | {'yes' if op.learned else ''} | {takes} | {kw} | {doc} | `{ex}` |")
    return "\n".join(rows)


def render(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> int:
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print("docs/language.md is out of date: run python scripts/gen_docs.py", file=sys.stderr)
            return 1
        return 0
    write_atomic(DOC, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The import graph of the nncircuit package: every import of one of its modules by another,
at module level or inside a function, read from the source with `ast`. Prints the edges,
the layer of each module, and the import circles (strongly connected components); exits 1
if there is a circle or an import that runs upward.

    python scripts/import_graph.py            # summary: modules, edges, circles
    python scripts/import_graph.py --edges    # every edge, one per line
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREES = {"compiler": "nncircuit", "backends": "nncircuit.backends", "grammar": "nncircuit.grammar"}

# Imports run downward only: a module imports modules of its own layer or below.
LAYERS = [
    ("errors", "names", "io", "version", "grammar", "progress"),
    ("types",),
    ("ops",),
    ("ir",),
    ("lang", "analysis"),
    ("passes",),
    ("backends",),
    ("api", "editor", "cli", "zoo"),
]
# backends that must not import each other (what both need lives in nncircuit.backends.*)
SIBLINGS = ("nncircuit.backends.torch", "nncircuit.backends.onnx", "nncircuit.backends.diagram")


def modules() -> dict[str, Path]:
    out = {}
    for top, pkg in TREES.items():
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT / top).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import mod` imports a module; `from mod import name` the module itself
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def layer(mod: str) -> int:
    parts = mod.split(".")
    key = parts[1] if len(parts) > 1 else ""
    if mod == "nncircuit":
        return len(LAYERS) - 1
    for i, names in enumerate(LAYERS):
        if key in names:
            return i
    raise SystemExit(f"module {mod} is in no layer: add it to LAYERS in {Path(__file__).name}")


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def problems(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for comp in circles(graph):
        out.append("import circle: " + " -> ".join(comp))
    for a in sorted(graph):
        for b in sorted(graph[a]):
            # a package's __init__ may import its own modules (it is their registration point)
            if b.startswith(a + "."):
                continue
            if layer(b) > layer(a):
                out.append(f"upward import: {a} (layer {layer(a)}) imports {b} (layer {layer(b)})")
            for s in SIBLINGS:
                if a.startswith(s) and b.startswith("nncircuit.backends.") and not b.startswith(s):
                    if any(b.startswith(o) for o in SIBLINGS):
                        out.append(f"backend imports another backend: {a} imports {b}")
    return out


def graph_of() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(m, p, known) for m, p in mods.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="print every edge")
    args = ap.parse_args(argv)
    g = graph_of()
    if args.edges:
        for a in sorted(g):
            for b in sorted(g[a]):
                print(f"{a} -> {b}")
    found = problems(g)
    print(f"{len(g)} modules, {sum(map(len, g.values()))} import edges, {len(circles(g))} circles")
    for p in found:
        print(p)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

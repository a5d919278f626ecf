"""The house rules of the package, read from its source: imports run downward only (no import
circles, no module importing a higher layer), and no backend imports another."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    spec = importlib.util.spec_from_file_location("import_graph", os.path.join(ROOT, "scripts", "import_graph.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = mod
    spec.loader.exec_module(mod)
    return mod


IG = _script()


def test_no_import_circles_and_no_upward_imports():
    graph = IG.graph_of()
    assert len(graph) > 40  # the whole package was read
    assert IG.problems(graph) == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    g = {"nncircuit.ir.graph": {"nncircuit.ops.registry"}, "nncircuit.ops.registry": {"nncircuit.ir.graph"}}
    found = IG.problems(g)
    assert any(p.startswith("import circle") for p in found)
    assert any("upward import: nncircuit.ops.registry" in p for p in found)
    g = {"nncircuit.backends.onnx.export": {"nncircuit.backends.torch.codegen"},
         "nncircuit.backends.torch.codegen": set()}
    assert IG.problems(g) == [
        "backend imports another backend: nncircuit.backends.onnx.export imports nncircuit.backends.torch.codegen"
    ]


def test_lazy_imports_inside_functions_count():
    graph = IG.graph_of()
    # cli imports the api only inside its command functions
    assert "nncircuit.api" in graph["nncircuit.cli"]

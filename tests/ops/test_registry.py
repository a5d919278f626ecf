"""The op registry is the spine: every op is complete, and every backend lowers every op."""

import pytest

import nncircuit
from nncircuit.ops import registry
from nncircuit.backends.torch.ops import TORCH_LOWERINGS

OPS = registry.all_ops()


def test_every_registered_op_has_a_torch_lowering():
    missing = sorted(set(OPS) - set(TORCH_LOWERINGS))
    assert not missing, f"ops without a PyTorch lowering: {missing}"
    unknown = sorted(set(TORCH_LOWERINGS) - set(OPS))
    assert not unknown, f"torch lowerings for unregistered ops: {unknown}"


def test_learned_ops_have_an_init_and_pure_ops_do_not():
    for name, op in OPS.items():
        low = TORCH_LOWERINGS[name]
        assert (low.init is not None) == op.learned, name


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_entry_is_documented(name):
    op = OPS[name]
    assert op.doc and op.example, name
    assert op.learned == name[0].isupper(), "capitalised = has parameters"


def test_registry_rejects_a_second_registration():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(OPS["relu"])


def test_generated_source_is_deterministic():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "specs", "transformer.nn")
    a = nncircuit.load(path, d=64, heads=4, layers=2).torch_source()
    b = nncircuit.load(path, d=64, heads=4, layers=2).torch_source()
    assert a == b


def test_language_reference_lists_every_op():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, os.path.join(root, "scripts", "gen_docs.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_traits_and_figures_are_declared_on_the_entry_and_checked():
    from nncircuit.ops.registry import FIGURES, OpDef

    ops = registry.all_ops()
    assert ops["dropout"].is_random and ops["BatchNorm"].is_stateful and ops["rename"].is_view
    assert not ops["Linear"].traits
    assert ops["einsum"].figure == "cup" and ops["softmax"].figure == "triangle"
    assert {op.figure for op in ops.values()} <= set(FIGURES)
    with pytest.raises(ValueError, match="unknown trait 'pure'"):
        OpDef("x", "", lambda c: ({}, ()), 1, traits=frozenset({"pure"}))
    with pytest.raises(ValueError, match="unknown figure 'star'"):
        OpDef("x", "", lambda c: ({}, ()), 1, figure="star")


def test_passes_ask_the_op_for_its_traits(monkeypatch):
    """CSE merges two identical relu calls, but not once relu says it is random."""
    import dataclasses

    import nncircuit
    from nncircuit.passes import optimize

    src = "model M(d = 2) { in x: [d]\n a = relu(x)\n b = relu(x)\n out a + b }\n"

    def count_relu(spec_text, tmp):
        p = tmp / "m.nn"
        p.write_text(spec_text)
        g = optimize(nncircuit.load(str(p)).graph, passes="cse,dce")
        return sum(n.op == "relu" for n in g.nodes())

    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        assert count_relu(src, pathlib.Path(d)) == 1
        random_relu = dataclasses.replace(registry.REGISTRY["relu"], traits=frozenset({"random"}))
        monkeypatch.setitem(registry.REGISTRY, "relu", random_relu)
        assert count_relu(src, pathlib.Path(d)) == 2

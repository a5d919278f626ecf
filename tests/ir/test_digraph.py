"""The IR's adjacency (compiler/ir/digraph.py) orders nodes as networkx's lexicographical
topological sort did, keeps its edges consistent through edits, and `nnc check` no longer
imports networkx (its cold start)."""

import random
import subprocess
import sys

import networkx as nx
import pytest

import nncircuit
from nncircuit.ir.digraph import Digraph


def _random_dag(seed: int) -> Digraph:
    rng = random.Random(seed)
    g: Digraph[str] = Digraph()
    ids = rng.sample(range(100), 30)  # ids not in creation order, as after passes
    made: list[int] = []
    for nid in ids:
        g.add_node(nid, f"n{nid}")
        for pos in range(rng.randint(0, 3) if made else 0):
            g.add_edge(rng.choice(made), nid, pos, rng.randint(0, 1))
        made.append(nid)
    return g


@pytest.mark.parametrize("seed", range(20))
def test_order_is_networkx_lexicographical_topological_order(seed):
    g = _random_dag(seed)
    assert g.topological_order() == list(nx.lexicographical_topological_sort(g.to_networkx()))


@pytest.mark.parametrize("seed", range(10))
def test_removing_nodes_and_edges_keeps_both_directions_consistent(seed):
    g = _random_dag(seed)
    rng = random.Random(seed)
    for nid in rng.sample(sorted(g.data), 10):
        g.remove_node(nid)
    for dst, edges in g.pred.items():
        for pos, (src, out) in edges.items():
            assert g.succ[src][(dst, pos)] == out
    assert sum(len(e) for e in g.pred.values()) == sum(len(e) for e in g.succ.values())
    assert g.topological_order() == list(nx.lexicographical_topological_sort(g.to_networkx()))


def test_a_cycle_is_found():
    g: Digraph[str] = Digraph()
    for n in range(3):
        g.add_node(n, str(n))
    g.add_edge(0, 1, 0, 0)
    g.add_edge(1, 2, 0, 0)
    assert g.is_acyclic()
    g.add_edge(2, 0, 0, 0)
    assert not g.is_acyclic()


def test_graph_to_networkx_has_every_node_and_edge():
    spec = nncircuit.load("m.nn", text="model M() { in x: [d: 4]\n y = relu(x)\n out y + x }")
    g = spec.graph.to_networkx()
    assert sorted(g.nodes) == sorted(n.id for n in spec.graph.nodes())
    assert sorted((s, d, k) for s, d, k in g.edges(keys=True)) == sorted(
        (v.node, n.id, pos) for n in spec.graph.nodes() for pos, v in enumerate(n.inputs))


def test_check_does_not_import_networkx():
    code = "import sys; from nncircuit import cli; cli.main(['check', 'specs/transformer.nn']); " \
           "print('networkx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=nncircuit_root())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def nncircuit_root() -> str:
    from conftest import ROOT
    return ROOT

"""The adjacency under an IR graph: nodes by id, each node's input edges by position and
each value's uses. A graph's edges are few and typed by position, so a pair of dicts does
what networkx's MultiDiGraph did here, without its import (140 ms, over half of `nnc
check`'s cold start). `to_networkx()` gives the networkx view for analyses that want one."""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

P = TypeVar("P")


class Digraph(Generic[P]):
    """Directed multigraph of int node ids; the edge into `dst` at input position `pos`
    comes from output `out` of node `src`."""

    def __init__(self) -> None:
        self.data: dict[int, P] = {}  # node id -> payload
        self.pred: dict[int, dict[int, tuple[int, int]]] = {}  # dst -> {pos: (src, out)}
        self.succ: dict[int, dict[tuple[int, int], int]] = {}  # src -> {(dst, pos): out}

    def __contains__(self, nid: object) -> bool:
        return nid in self.data

    def __len__(self) -> int:
        return len(self.data)

    def add_node(self, nid: int, payload: P) -> None:
        self.data[nid] = payload
        self.pred.setdefault(nid, {})
        self.succ.setdefault(nid, {})

    def add_edge(self, src: int, dst: int, pos: int, out: int) -> None:
        self.pred[dst][pos] = (src, out)
        self.succ[src][(dst, pos)] = out

    def remove_edge(self, src: int, dst: int, pos: int) -> None:
        del self.pred[dst][pos]
        del self.succ[src][(dst, pos)]

    def remove_node(self, nid: int) -> None:
        for pos, (src, _) in self.pred.pop(nid).items():
            del self.succ[src][(nid, pos)]
        for (dst, pos) in self.succ.pop(nid):
            del self.pred[dst][pos]
        del self.data[nid]

    def out_degree(self, nid: int) -> int:
        return len(self.succ[nid])

    def uses(self, nid: int) -> list[tuple[int, int, int]]:
        """(user id, input position, output index) for every edge out of nid."""
        return [(dst, pos, out) for (dst, pos), out in self.succ[nid].items()]

    def topological_order(self) -> list[int]:
        """Every node after the nodes it uses, ties broken by the smaller id (the order of
        networkx's lexicographical_topological_sort). Raises ValueError on a cycle."""
        indegree = {n: len({src for src, _ in self.pred[n].values()}) for n in self.data}
        ready = [n for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            n = heapq.heappop(ready)
            order.append(n)
            for dst in sorted({dst for dst, _ in self.succ[n]}):
                indegree[dst] -= 1
                if indegree[dst] == 0:
                    heapq.heappush(ready, dst)
        if len(order) != len(self.data):
            raise ValueError("the graph has a cycle")
        return order

    def is_acyclic(self) -> bool:
        try:
            self.topological_order()
        except ValueError:
            return False
        return True

    def to_networkx(self):
        """The same graph as a networkx MultiDiGraph (edge key: the input position; edge
        attribute `out`: the output index; node attribute `node`: the payload)."""
        import networkx as nx

        g = nx.MultiDiGraph()
        for nid, payload in self.data.items():
            g.add_node(nid, node=payload)
        for dst, edges in self.pred.items():
            for pos, (src, out) in sorted(edges.items()):
                g.add_edge(src, dst, key=pos, out=out)
        return g

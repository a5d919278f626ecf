"""Static figures of a model read off its IR: parameter counts per block (and, as the
optimizer work lands, FLOPs and activation memory)."""

from __future__ import annotations

from . import registry
from .ir import Graph


def param_count(g: Graph, *, buffers: bool = False) -> int:
    """Learned parameters (or buffers) of a graph and everything it calls, counted once per
    module: a module applied twice, or a tied weight, is not counted again."""
    total = 0
    seen: set[str] = set()
    for n in g.nodes():
        if n.module is None or n.module in seen:
            continue
        seen.add(n.module)
        if n.op == "call":
            total += param_count(n.callee, buffers=buffers)
        elif n.op == "repeat":
            times = 1 if n.attrs["shared"] else int(n.attrs["count"].value)
            total += times * param_count(n.callee, buffers=buffers)
        else:
            op = registry.get(n.op)
            for p in op.params(n.attrs, ()):
                if p.buffer == buffers:
                    total += p.numel
    return total

"""What a circuit diagram writes beside an op's glyph, read off its typed attributes and its
registry entry (never a list of op names): a convolution's window (kernel, stride,
dilation, groups), what a normalisation with running statistics normalises over, the
position an index takes, the weights a map is tied to."""

from __future__ import annotations

from nncircuit.ir.graph import Node
from nncircuit.types import expr as X
from nncircuit.types.tensor import HVal


def _ints(value) -> list[int] | None:
    """A per-axis attribute (a tuple of sizes) as integers."""
    if not isinstance(value, tuple) or not value:
        return None
    out = []
    for v in value:
        v = v.value if isinstance(v, HVal) else v
        if not isinstance(v, int) or isinstance(v, bool):
            return None
        out.append(v)
    return out


def _per_axis(vals: list[int]) -> str:
    return str(vals[0]) if len(set(vals)) == 1 else "×".join(map(str, vals))


def window(node: Node) -> str:
    """`3×3`, `3×3 /2`, `3×3 d2`, `3×3 g4`, `3×3 dw` (groups = channels: depthwise)."""
    kernel = _ints(node.attrs.get("kernel"))
    if kernel is None:
        return ""
    parts = ["×".join(map(str, kernel))]
    stride = _ints(node.attrs.get("stride"))
    if stride and any(s != 1 for s in stride):
        parts.append("/" + _per_axis(stride))
    dilation = _ints(node.attrs.get("dilation"))
    if dilation and any(d != 1 for d in dilation):
        parts.append("d" + _per_axis(dilation))
    groups = node.attrs.get("groups")
    groups = groups.value if isinstance(groups, HVal) else groups
    if isinstance(groups, int) and groups > 1:
        channels = node.attrs.get("in_channels")
        channels = channels.value if isinstance(channels, HVal) else channels
        parts.append("dw" if groups == channels else f"g{groups}")
    return " ".join(parts)


def statistics_over(node: Node, op, in_types, acted) -> str:
    """A normalisation that keeps running statistics (the registry's "stateful" trait, as
    BatchNorm) normalises over the axes it is lifted over, not over the one it acts on."""
    if op.figure != "circle" or not op.is_stateful or not in_types:
        return ""
    over = [a.name for a in in_types[0].axes if a.name not in acted]
    return "over " + ", ".join(over) if over else ""


def index_text(node: Node) -> str:
    """`[seq = 0]` for an op that takes one position of a named axis."""
    axis, index = node.attrs.get("axis"), node.attrs.get("index")
    if isinstance(axis, str) and isinstance(index, HVal):
        return f"[{axis} = {index.expr.name if isinstance(index.expr, X.Ref) else index.value}]"
    return ""


def tied_to(node: Node) -> str:
    tied = node.attrs.get("tied")
    return f"tied to {tied}" if isinstance(tied, str) and tied else ""


def note(node: Node, op, in_types, acted) -> str:
    """The line written under an op's glyph ("" for none)."""
    return window(node) or statistics_over(node, op, in_types, acted) or tied_to(node)

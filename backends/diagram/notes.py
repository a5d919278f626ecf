"""What a circuit diagram writes beside an op's glyph, from its registry entry (never a list
of op names): the entry's own `note` (a convolution's window, the weights a map is tied to,
see OpDef.note) and, for a normalisation with running statistics, what it normalises over."""

from __future__ import annotations

from nncircuit.ir.graph import Node


def statistics_over(node: Node, op, in_types, acted) -> str:
    """A normalisation that keeps running statistics (the registry's "stateful" trait, as
    BatchNorm) normalises over the axes it is lifted over, not over the one it acts on."""
    if op.figure != "circle" or not op.is_stateful or not in_types:
        return ""
    over = [a.name for a in in_types[0].axes if a.name not in acted]
    return "over " + ", ".join(over) if over else ""


def note(node: Node, op, in_types, acted) -> str:
    """The line written under an op's glyph ("" for none)."""
    return op.note(node.attrs) or statistics_over(node, op, in_types, acted)

"""Typed accessors for the attributes of the structural nodes, which are not registry ops: a
graph's inputs, block calls and repeats (their schemas: registry.STRUCTURAL_ATTRS). The IR's
node classes expose them as properties (InputNode.input_name, CallNode.block, ...)."""

from __future__ import annotations

from nncircuit.ops.registry import Attrs
from nncircuit.types.tensor import HVal


def input_name(a: Attrs) -> str:
    """The name an input is declared with."""
    return a["name"]


def call_block(a: Attrs) -> str:
    """The name of the block a call runs."""
    return a["block"]


def call_args(a: Attrs) -> tuple[tuple[str, HVal], ...]:
    """A call's hyperparameter arguments, (name, value) in the order the call gives them."""
    return a["args"]


def call_lift(a: Attrs) -> tuple[str, ...] | None:
    """The axes a call is lifted over (None: not recorded, as the IR parser leaves it)."""
    return a["lift"]


def repeat_count(a: Attrs) -> HVal:
    """How many times a repeat runs its body."""
    return a["count"]


def repeat_shared(a: Attrs) -> bool:
    """Whether every iteration of a repeat uses one set of parameters."""
    return a["shared"]


def repeat_carried(a: Attrs) -> int:
    """How many leading inputs of a repeat are carried from one iteration to the next."""
    return a["carried"]


# ---- what a `repeat ... over AXIS` and a `scan` add: slices of their inputs along an axis,
# an optional step index, and per-step values stacked after the loop


def loop_axis(a: Attrs) -> str | None:
    """The axis a scan steps along, or a repeat slices its inputs along (None: a repeat that
    slices nothing)."""
    return a["axis"]


def loop_reverse(a: Attrs) -> bool:
    """Whether a scan steps from the last position to the first."""
    return a["reverse"]


def loop_index(a: Attrs) -> bool:
    """Whether the body takes the step index (an int64 scalar after the carried values)."""
    return a["index"]


def loop_scanned(a: Attrs) -> tuple[int, ...]:
    """The input positions the body sees one slice of per step."""
    return a["scanned"]


def loop_stack_at(a: Attrs) -> tuple[int, ...]:
    """Where the stacked axis stands in each per-step output, in the order of the outputs."""
    return a["stack_at"]

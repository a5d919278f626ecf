"""Linear recurrences as one op: `linear_scan(a, b, h0, over seq)` computes
h_t = a_t * h_{t-1} + b_t at every position of the axis, which a backend may run as a
parallel (torch: chunked) scan instead of a loop. The optimizer's `parallel-scan` pass
(passes/recurrence.py) writes it in place of a `scan` whose carried values are updated so."""

from __future__ import annotations

from nncircuit.ops.registry import (
    FLOAT_DTYPES,
    AttrSpec,
    OpCall,
    OpDef,
    as_bool,
    fail,
    over_names,
    register,
)
from nncircuit.types.tensor import TensorType


def _linear_scan_check(call: OpCall):
    if len(call.inputs) != 3:
        raise fail(f"linear_scan takes three tensors (a, b, h0), found {len(call.inputs)}: "
                   "linear_scan(a, b, h0, over seq)")
    a, b, h0 = call.inputs
    names = over_names("linear_scan", call)
    if len(names) != 1:
        raise fail(f"linear_scan steps along exactly one axis, found 'over [{', '.join(names)}]'; "
                   "e.g. linear_scan(a, b, h0, over seq)")
    (axis,) = names
    reverse = as_bool("linear_scan", "reverse", call.kw("reverse", False))
    if not b.has(axis):
        raise fail(f"linear_scan: b must have the axis '{axis}' it steps along, found {b}")
    if h0.has(axis):
        raise fail(f"linear_scan: the initial state h0 is one step's state and must not have '{axis}', found {h0}")
    for what, t in (("a", a), ("b", b), ("h0", h0)):
        if t.dtype not in FLOAT_DTYPES:
            raise fail(f"linear_scan needs floating-point tensors, found {what}: {t}")
    if len({a.dtype, b.dtype, h0.dtype}) != 1:
        raise fail(f"linear_scan: a, b and h0 must have one dtype, found {a.dtype}, {b.dtype}, {h0.dtype}")
    step = [x for x in b.names if x != axis]
    if sorted(step) != sorted(h0.names):
        raise fail(f"linear_scan: b without '{axis}' must have the axes of h0, found {b} and {h0}")
    for x in h0.axes:
        if b.axis(x.name).size != x.size:
            raise fail(f"linear_scan: axis '{x.name}' has size {b.axis(x.name).size} in b but {x.size} in h0")
    for x in a.axes:
        if not b.has(x.name):
            raise fail(f"linear_scan: a has the axis '{x.name}' that b lacks ({a} and {b})")
        if b.axis(x.name).size != x.size:
            raise fail(f"linear_scan: axis '{x.name}' has size {x.size} in a but {b.axis(x.name).size} in b")
    axes = list(h0.axes)  # h0's layout, the stepped axis where b has it
    axes.insert(b.index(axis), b.axis(axis))
    return {"axis": axis, "reverse": reverse}, (TensorType(tuple(axes), b.dtype), h0)


register(
    OpDef(
        name="linear_scan",
        doc="The linear recurrence h_t = a_t * h_{t-1} + b_t along one axis, from h0 (h_{-1}); "
        "returns every h_t stacked along the axis (h0's layout, the axis where b has it) and the last one. `a` may lack "
        "axes of b (the axis itself: the same decay at every step). With `reverse = true` the "
        "steps run from the last position to the first. PyTorch runs it as a chunked scan "
        "(about 3√n elementwise steps), ONNX as a Loop.",
        check=_linear_scan_check,
        arity=3,
        takes=frozenset({"over"}),
        kwargs=("reverse",),
        # FLOPs count matrix products, convolutions and attention only (as torch's
        # FlopCounterMode does, analysis/cost.py): a multiply-add per element is not one, and
        # the loop it replaces counts none either, so -O0 and -O2 give one figure
        flops=lambda attrs, ins, outs, env: 0,
        glyph="⟲",
        example="hs, last = linear_scan(a, b, h0, over seq)",
        attrs=(
            AttrSpec("axis", "axis", doc="the axis stepped along"),
            AttrSpec("reverse", "bool", default=False, doc="step from the last position to the first"),
        ),
    )
)

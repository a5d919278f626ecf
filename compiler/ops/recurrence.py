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
from nncircuit.types.tensor import HVal, TensorType


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


def scan_axis(attrs) -> tuple[str, bool]:
    """(the axis stepped along, whether it runs from the last position) of a linear_scan or a
    linear_scan_sum."""
    return attrs["axis"], attrs["reverse"]


def _linear_scan_sum_check(call: OpCall):
    usage = "y, last = linear_scan_sum(a, b, h0, c, over seq, [seq, d])"
    na = call.kw("na", 1)
    if isinstance(na, HVal):
        na = na.value
    if not isinstance(na, int) or isinstance(na, bool) or na < 1:
        raise fail(f"linear_scan_sum: 'na' (how many factors make a) must be a whole number of at least 1, found {na}")
    if len(call.inputs) < na + 3:
        raise fail(f"linear_scan_sum takes {na} factor(s) of a, at least one factor of b, h0 and c "
                   f"(at least {na + 3} tensors), found {len(call.inputs)}: {usage}")
    names = over_names("linear_scan_sum", call)
    if len(names) != 1:
        raise fail(f"linear_scan_sum steps along exactly one axis, found 'over [{', '.join(names)}]'; {usage}")
    (axis,) = names
    reverse = as_bool("linear_scan_sum", "reverse", call.kw("reverse", False))
    exp_a = as_bool("linear_scan_sum", "exp_a", call.kw("exp_a", False))
    fa, fb = call.inputs[:na], call.inputs[na:-2]
    h0, c = call.inputs[-2], call.inputs[-1]
    if h0.has(axis):
        raise fail(f"linear_scan_sum: the initial state h0 is one step's state and must not have '{axis}', found {h0}")
    if not any(t.has(axis) for t in fb):
        raise fail(f"linear_scan_sum: a factor of b must have the axis '{axis}' it steps along, found "
                   f"{', '.join(str(t) for t in fb)}")
    ts = (*[("a", t) for t in fa], *[("b", t) for t in fb], ("h0", h0), ("c", c))
    for what, t in ts:
        if t.dtype not in FLOAT_DTYPES:
            raise fail(f"linear_scan_sum needs floating-point tensors, found {what}: {t}")
    if len({t.dtype for _, t in ts}) != 1:
        raise fail(f"linear_scan_sum: every tensor must have one dtype, found {', '.join(t.dtype for _, t in ts)}")
    step = {x.name: x for x in h0.axes}
    seq = next(t.axis(axis) for t in fb if t.has(axis))
    for what, t in ts:
        for x in t.axes:
            if x.name == axis:
                if x.size != seq.size:
                    raise fail(f"linear_scan_sum: axis '{axis}' has size {x.size} in {what} but {seq.size} in b")
            elif x.name not in step:
                raise fail(f"linear_scan_sum: {what} {t} has the axis '{x.name}' that h0 {h0} lacks")
            elif step[x.name].size != x.size:
                raise fail(f"linear_scan_sum: axis '{x.name}' has size {x.size} in {what} but {step[x.name].size} in h0")
    if call.axes is None:
        raise fail(f"linear_scan_sum needs the axes of its result y, in order: {usage}")
    out = tuple(s.name for s in call.axes)
    if axis not in out or len(set(out)) != len(out):
        raise fail(f"linear_scan_sum: the result's axes [{', '.join(out)}] must name '{axis}' and each axis once")
    for name in out:
        if name != axis and name not in step:
            raise fail(f"linear_scan_sum: the result's axis '{name}' is not an axis of h0 {h0}")
    summed = tuple(x for x in h0.names if x not in out)
    y = TensorType(tuple(seq if name == axis else step[name] for name in out), h0.dtype)
    attrs = {"axis": axis, "reverse": reverse, "na": na, "exp_a": exp_a, "out": out, "sum": summed}
    return attrs, (y, h0)


register(
    OpDef(
        name="linear_scan_sum",
        doc="linear_scan read out at every step: h_t = a_t * h_{t-1} + b_t along one axis from h0, "
        "where a is the product of its first `na` factors (or `exp` of it with `exp_a = true`) and b "
        "the product of the rest before h0; returns y_t = Σ c_t * h_t over the axes of h0 that the "
        "result `[...]` leaves out, stacked along the axis, and the last state. The -O2 "
        "`fuse-scan-readout` pass writes it for a linear_scan read only by such an einsum; PyTorch "
        "computes a, b and the read-out one chunk position at a time (no [seq, state] tensor), "
        "ONNX as the linear_scan Loop, a Mul and a ReduceSum.",
        check=_linear_scan_sum_check,
        arity=None,
        takes=frozenset({"over", "axes"}),
        kwargs=("reverse", "na", "exp_a"),
        flops=lambda attrs, ins, outs, env: 0,  # as linear_scan: elementwise work counts none
        glyph="⟲",
        example="y, last = linear_scan_sum(dt, A, x, B, h0, C, over seq, [seq, d], na = 2, exp_a = true)",
        attrs=(
            AttrSpec("axis", "axis", doc="the axis stepped along"),
            AttrSpec("reverse", "bool", default=False, doc="step from the last position to the first"),
            AttrSpec("na", "int", default=1, doc="how many of the first inputs are factors of a"),
            AttrSpec("exp_a", "bool", default=False, doc="a is exp of the product of its factors"),
            AttrSpec("out", "axes", doc="the result's axes, in order"),
            AttrSpec("sum", "axes", doc="the axes of h0 summed by the read-out"),
        ),
    )
)

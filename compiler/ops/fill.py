"""Tensors made from nothing but their axes: `zeros`, `ones`, `full` (a scan's initial
state) and `arange` (start, start + step, … along one axis). An axis without a size takes the size it has in the tensors in scope (a run-time
`batch` of an input), which the elaborator hands over as `_sizes`."""

from __future__ import annotations

from nncircuit.ops.registry import AttrSpec, OpCall, OpDef, fail, new_axis, register
from nncircuit.types.tensor import DTYPES, Axis, HVal, TensorType


def _fill_check(name: str):
    def check(call: OpCall):
        if call.axes is None:
            raise fail(f"{name} needs its axes: {name}([batch, h: hidden])")
        known = list(call.kw("_sizes", ()))  # run-time sizes of the axes given without one
        axes = []
        for s in call.axes:
            if s.size is None and known:
                axes.append(Axis(s.name, known.pop(0)))
            elif s.size is None:
                raise fail(
                    f"{name}: the size of axis '{s.name}' is unknown: no tensor in scope has it "
                    f"and no hyperparameter is called so; write '{s.name}: SIZE'"
                )
            else:
                axes.append(new_axis(name, s))
        dtype = call.kw("dtype", "float32")
        dtype = dtype.value if isinstance(dtype, HVal) else dtype
        if dtype not in DTYPES:
            raise fail(f"{name}: unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        attrs: dict = {"axes": tuple(axes), "dtype": dtype}
        if name == "full":
            v = call.kw("value")
            if not isinstance(v, HVal) or isinstance(v.value, (bool, str)):
                raise fail("full needs a number: full([batch, d], value = 0.5)")
            attrs["value"] = v
        return attrs, (TensorType(tuple(axes), dtype),)

    return check


_DOCS = {
    "zeros": "A tensor of zeros with the given axes (a scan's initial state). An axis without a "
    "size takes its size from the tensors in scope: `zeros([batch, h: hidden])` follows the "
    "run-time batch of an input.",
    "ones": "A tensor of ones with the given axes; sizes as for `zeros`.",
    "full": "A tensor filled with `value` with the given axes; sizes as for `zeros`.",
}

for _name in ("zeros", "ones", "full"):
    register(
        OpDef(
            name=_name,
            doc=_DOCS[_name],
            check=_fill_check(_name),
            arity=0,
            kwargs=("dtype", "value") if _name == "full" else ("dtype",),
            takes=frozenset({"axes"}),
            glyph={"zeros": "0", "ones": "1", "full": "c"}[_name],
            example=f"h = {_name}([batch, h: hidden]{', value = 0.5' if _name == 'full' else ''})",
            attrs=(
                AttrSpec("axes", "any", doc="the Axis of each dimension, sizes resolved"),
                AttrSpec("dtype", "dtype", default="float32", doc="the element type"),
            )
            + ((AttrSpec("value", "hval", doc="the fill value"),) if _name == "full" else ()),
        )
    )


def _arange_check(call: OpCall):
    """`arange([i: n], start = 0, step = 1)`: start, start + step, …, n values along one axis
    (the axis's size is the count, as for zeros; not an end)."""
    if call.axes is None:
        raise fail("arange needs its axis: arange([i: n], start = 0, step = 1)")
    if len(call.axes) != 1:
        names = ", ".join(s.name for s in call.axes)
        raise fail(f"arange makes one axis, found {len(call.axes)} ([{names}]); "
                   "make each with its own arange and combine them")
    attrs, (t,) = _fill_check("arange")(call)
    (ax,) = attrs["axes"]
    nums = {}
    for key, default in (("start", 0), ("step", 1)):
        v = call.kw(key, HVal.const(default))
        if not isinstance(v, HVal) or isinstance(v.value, (bool, str)):
            raise fail(f"arange: {key} must be a number: arange([i: n], {key} = 2)")
        nums[key] = v
    if nums["step"].value == 0:
        raise fail("arange: step is 0, so every value would be the start; give a step other than 0")
    if attrs["dtype"] in ("int64", "int32") and any(float(v.value) != int(float(v.value)) for v in nums.values()):
        raise fail(f"arange: dtype \"{attrs['dtype']}\" counts in whole numbers; start and step must be whole")
    if attrs["dtype"] == "bool":
        raise fail("arange counts in numbers; dtype = \"bool\" has none to count in")
    return {"axis": ax, "dtype": attrs["dtype"], **nums}, (t,)


register(
    OpDef(
        name="arange",
        doc="start, start + step, …, start + (n-1)·step along one axis of size n (float32 "
        "unless `dtype` says otherwise); the axis's size as for `zeros`: "
        "`arange([i: dh / 2], step = 2)` is 0, 2, …, dh - 2.",
        check=_arange_check,
        arity=0,
        kwargs=("start", "step", "dtype"),
        takes=frozenset({"axes"}),
        glyph="⋰",
        example="r = arange([i: dh / 2], step = 2)",
        attrs=(
            AttrSpec("axis", "axis_def", doc="the axis it counts along, its size resolved"),
            AttrSpec("start", "hval", default=HVal.const(0), doc="the first value"),
            AttrSpec("step", "hval", default=HVal.const(1), doc="the difference of neighbours (not 0)"),
            AttrSpec("dtype", "dtype", default="float32", doc="the element type"),
        ),
    )
)

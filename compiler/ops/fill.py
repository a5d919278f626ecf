"""Tensors made from nothing but their axes: `zeros`, `ones`, `full` (a scan's initial
state). An axis without a size takes the size it has in the tensors in scope (a run-time
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

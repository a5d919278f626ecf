"""Recurrent cells as learned ops: LSTMCell, GRUCell and RNNCell, torch.nn's cells with their
parameter names, layouts and initialisation, one step of a recurrence each (applied in a
`scan`): `h, c = LSTMCell(x, h, c, d -> hidden)`, `h = GRUCell(x, h, d -> hidden)`."""

from __future__ import annotations

import math

from nncircuit.ops.registry import (
    FLOAT_DTYPES,
    AttrSpec,
    Attrs,
    Init,
    OpCall,
    OpDef,
    ParamSpec,
    as_bool,
    fail,
    numel,
    product_hval,
    register,
    require_axis,
    size_hval,
    static_size,
)
from nncircuit.types import expr as X
from nncircuit.types.tensor import HVal, TensorType

# name -> (gates: blocks of `hidden` rows in the weights, the states it carries)
CELLS: dict[str, tuple[int, tuple[str, ...]]] = {
    "LSTMCell": (4, ("h", "c")),
    "GRUCell": (3, ("h",)),
    "RNNCell": (1, ("h",)),
}
NONLINEARITIES = ("tanh", "relu")


def _example(op: str) -> str:
    states = ", ".join(CELLS[op][1])
    return f"{states} = {op}(x, {states}, d -> hidden)"


def _nonlinearity(v) -> str:
    """RNNCell's `nonlinearity`: "tanh" or "relu". One given by a hyperparameter chooses the
    structure (as a static `if`): a generated class refuses a value that would change it."""
    val = v.value if isinstance(v, HVal) else v
    if not isinstance(val, str) or val not in NONLINEARITIES:
        raise fail(f"RNNCell: nonlinearity must be \"tanh\" or \"relu\", found {val!r}")
    if isinstance(v, HVal) and not v.is_const:
        X.note(X.binop("==", v.expr, X.const(val)),
               f"RNNCell: `nonlinearity = {v.expr.text()}` was compiled for \"{val}\": the structure of a "
               "compiled module is fixed, so compile the spec again for these hyperparameters")
    return val


def _cell_check(call: OpCall):
    op = call.op
    gates, names = CELLS[op]
    example = _example(op)
    if len(call.inputs) != 1 + len(names):
        raise fail(f"{op} takes the input and its state{'s' if len(names) > 1 else ''} "
                   f"({1 + len(names)} tensors), found {len(call.inputs)}: {example}")
    x, states = call.inputs[0], call.inputs[1:]
    for what, t in zip(("the input",) + tuple(f"the state {s}" for s in names), call.inputs):
        if t.dtype not in FLOAT_DTYPES:
            raise fail(f"{op} needs floating-point tensors, found {what}: {t}")
    if len({t.dtype for t in call.inputs}) != 1:
        raise fail(f"{op}: the input and the states must have one dtype, found "
                   f"{', '.join(t.dtype for t in call.inputs)}")
    if not call.src or call.dst is None:
        raise fail(f"{op} needs 'IN -> HIDDEN' axes (the input's features and the states' hidden axis): {example}")
    if len(call.dst) != 1:
        raise fail(f"{op}: the states have one hidden axis, found "
                   f"[{', '.join(s.name for s in call.dst)}] after '->': {example}")
    in_sizes = []
    for s in call.src:
        ax = require_axis(op, x, s)
        static_size(op, ax)
        in_sizes.append(size_hval(ax, s))
    (dst,) = call.dst
    kept = tuple(a for a in x.axes if a.name not in {s.name for s in call.src})
    if any(a.name == dst.name for a in kept):
        raise fail(f"{op}: the input {x} already has the hidden axis '{dst.name}'; rename one of them")
    want = [a.name for a in kept] + [dst.name]
    hidden = None
    for sname, t in zip(names, states):
        if not t.has(dst.name):
            raise fail(f"{op}: the state {sname} must have the hidden axis '{dst.name}', found {t}")
        if sorted(t.names) != sorted(want):
            raise fail(f"{op}: the state {sname} must have the input's other axes and '{dst.name}' "
                       f"([{', '.join(want)}], in any order), found {t} for the input {x}")
        for a in kept:
            if t.axis(a.name).size != a.size:
                raise fail(f"{op}: axis '{a.name}' has size {a.size} in the input {x} but "
                           f"{t.axis(a.name).size} in the state {sname} {t}")
        ax = require_axis(op, t, dst)
        static_size(op, ax)
        if hidden is not None and ax.size != hidden.size:
            raise fail(f"{op}: the hidden axis '{dst.name}' has size {hidden.size} in h but {ax.size} in {sname}")
        hidden = hidden or ax
    if hidden is None:  # arity keeps at least one state; this says so to the type checker
        raise fail(f"{op} needs a state: {example}")
    attrs = {
        "in_axes": tuple(s.name for s in call.src),
        "hidden": hidden,
        "in_features": product_hval(tuple(in_sizes)),
        "hidden_size": size_hval(hidden, dst),
        "bias": as_bool(op, "bias", call.kw("bias", True)),
    }
    if op == "RNNCell":
        attrs["nonlinearity"] = _nonlinearity(call.kw("nonlinearity", "tanh"))
    return attrs, tuple(TensorType(t.axes, x.dtype) for t in states)


def _bound(hidden: HVal) -> Init:
    """torch.nn's cells draw every parameter from uniform(±1/sqrt(hidden_size))."""
    b = 1.0 / math.sqrt(float(hidden.value))
    e = X.binop("/", X.const(1.0), X.call("sqrt", (hidden.expr,)))
    return Init("uniform", (HVal(-b, X.neg(e)), HVal(b, e)))


def _cell_params(op: str):
    gates = CELLS[op][0]

    def params(a: Attrs, ins):
        h, n = a["hidden_size"], a["in_features"]
        rows = product_hval((HVal.const(gates), h)) if gates > 1 else h
        init = _bound(h)
        out = [ParamSpec("weight_ih", (rows, n), init), ParamSpec("weight_hh", (rows, h), init)]
        if a["bias"]:
            out += [ParamSpec("bias_ih", (rows,), init), ParamSpec("bias_hh", (rows,), init)]
        return tuple(out)

    return params


def _cell_flops(op: str):
    gates = CELLS[op][0]

    def flops(a: Attrs, ins, outs, env) -> int:
        # the two matrix products, x W_ihᵀ and h W_hhᵀ, per step (FLOPs count products only)
        return 2 * numel(outs[0], env) * gates * (int(a["in_features"].value) + int(a["hidden_size"].value))

    return flops


_DOCS = {
    "LSTMCell": "One step of torch.nn.LSTMCell: from the input's IN axes and the states h and c "
    "(the input's other axes and the HIDDEN axis, any layout), the next h and c. Parameters "
    "`weight_ih` [4·hidden, in], `weight_hh` [4·hidden, hidden], `bias_ih`, `bias_hh` (gates i, f, g, o), "
    "uniform(±1/√hidden) as torch's; `bias = false` drops the biases.",
    "GRUCell": "One step of torch.nn.GRUCell: from the input's IN axes and the state h, the next h. "
    "Parameters `weight_ih` [3·hidden, in], `weight_hh` [3·hidden, hidden], `bias_ih`, `bias_hh` (gates r, z, n); "
    "`bias = false` drops the biases.",
    "RNNCell": "One step of torch.nn.RNNCell: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (`nonlinearity = \"relu\"`: "
    "relu). Parameters `weight_ih` [hidden, in], `weight_hh` [hidden, hidden], `bias_ih`, `bias_hh`; "
    "`bias = false` drops the biases.",
}

_ATTRS = (
    AttrSpec("in_axes", "axes", doc="the input's feature axes (flattened in order)"),
    AttrSpec("hidden", "axis_def", doc="the states' hidden axis"),
    AttrSpec("in_features", "hval", doc="the product of the in axes' sizes"),
    AttrSpec("hidden_size", "hval", doc="the hidden axis's size"),
    AttrSpec("bias", "bool", doc="bias_ih and bias_hh"),
)

for _op, (_gates, _states) in CELLS.items():
    register(
        OpDef(
            name=_op,
            doc=_DOCS[_op],
            check=_cell_check,
            attrs=_ATTRS + ((AttrSpec("nonlinearity", "str", choices=NONLINEARITIES),) if _op == "RNNCell" else ()),
            arity=1 + len(_states),
            learned=True,
            params=_cell_params(_op),
            flops=_cell_flops(_op),
            kwargs=("bias",) + (("nonlinearity",) if _op == "RNNCell" else ()),
            takes=frozenset({"map"}),
            glyph=_op.removesuffix("Cell"),
            note=(lambda a: a["nonlinearity"] if a["nonlinearity"] != "tanh" else "") if _op == "RNNCell" else (lambda a: ""),
            example=_example(_op),
        )
    )

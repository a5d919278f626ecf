"""The PyTorch lowering table: one entry per registry op. An entry gives the Python
expression of the op's forward (and, for learned ops, the submodule it builds)."""

from __future__ import annotations

import ast as pyast
import math
from dataclasses import dataclass
from collections.abc import Callable

from nncircuit.ops import registry
from nncircuit.errors import LoweringError
from nncircuit.ir.graph import Node
from nncircuit.types import expr as X
from nncircuit.types.tensor import HVal, TensorType

TORCH_DTYPES = {
    "float32": "torch.float32",
    "float16": "torch.float16",
    "bfloat16": "torch.bfloat16",
    "float64": "torch.float64",
    "int64": "torch.int64",
    "int32": "torch.int32",
    "bool": "torch.bool",
}


@dataclass(frozen=True)
class Lowering:
    forward: Callable  # (node, args: list[str], cx) -> str (an expression)
    init: Callable | None = None  # (node, cx) -> str (the submodule's constructor), learned ops


class Statement(str):
    """What an init lowering returns when it is a whole statement rather than the
    constructor of a submodule (`self.register_buffer(...)`)."""


def dim(t: TensorType, name: str) -> int:
    """Negative index of an axis: the runtime tensor may carry lifted axes in front."""
    return t.index(name) - t.rank


def move(var: str, src: tuple[str, ...], dst: tuple[str, ...]) -> str:
    """Code that reorders `var` from axis order `src` to `dst` (same names)."""
    if tuple(src) == tuple(dst):
        return var
    n = len(src)
    diff = [i for i in range(n) if src[i] != dst[i]]
    if len(diff) == 2 and src[diff[0]] == dst[diff[1]]:
        return f"{_paren(var)}.transpose({diff[0] - n}, {diff[1] - n})"
    moved = [(src.index(a) - n, dst.index(a) - n) for a in dst if src.index(a) != dst.index(a)]
    s = tuple(m[0] for m in moved)
    d = tuple(m[1] for m in moved)
    return f"{var}.movedim({_tup(s)}, {_tup(d)})"


def align(var: str, t: TensorType, target: tuple[str, ...], *, full: bool = False) -> str:
    """Reorder `var` (of type t) into the order of `target` and add size-1 axes for the
    target axes it lacks, so that it broadcasts by name. Unless `full`, axes missing before
    the first one it has are left to broadcasting from the left."""
    present = tuple(a for a in target if t.has(a))
    code = move(var, t.names, present)
    if len(present) == len(target) or (not present and not full):
        return code
    first = 0 if full else min(target.index(a) for a in present)
    if all(a in present for a in target[first:]):
        return code
    idx = ", ".join(":" if a in present else "None" for a in target[first:])
    return f"{_paren(code)}[..., {idx}]"


def _paren(code: str) -> str:
    """`code` fit to be an operand: wrapped unless it is an atom (a name, attribute, call,
    subscript or non-negative number). `(a) * (b)` ends with a parenthesis but is no atom."""
    try:
        node = pyast.parse(code, mode="eval").body
    except SyntaxError:
        return f"({code})"
    if isinstance(node, (pyast.Name, pyast.Attribute, pyast.Call, pyast.Subscript, pyast.Constant)):
        return code
    return f"({code})"


def _tup(xs) -> str:
    xs = tuple(xs)
    return f"({xs[0]},)" if len(xs) == 1 else f"({', '.join(str(x) for x in xs)})"


def _unary(fmt: str):
    return Lowering(lambda n, a, cx: fmt.format(x=a[0]))


def _binary(sym: str, fn: str):
    def fwd(n: Node, a, cx):
        if n.attrs.get("scalar") is not None:
            c = _number(cx, n.attrs["scalar"])  # `x * (2 - 1)`, not `x * 2 - 1`
            x = _paren(a[0])
            if n.attrs["side"] == "right":
                return f"{x} {sym} {c}"
            return f"{c} {sym} {x}"
        ta, tb = cx.in_types(n)
        out = n.type.names
        # inside a block a tensor may carry a lift prefix: missing axes cannot be left to
        # broadcasting from the left
        full = cx.graph.kind != "model"
        return f"{_paren(align(a[0], ta, out, full=full))} {sym} {_paren(align(a[1], tb, out, full=full))}"

    return Lowering(fwd)


def _softmax(fn: str):
    """One axis: torch's own. Several: the axes moved last (in the input's order), flattened
    into one, normalised, and put back (the reference's own way; within 2e-7 of float64 where
    exp(x - logsumexp(x, dims)) is 1e-6 off)."""

    def fwd(n: Node, a, cx):
        t, x = n.type, a[0]
        axes = tuple(name for name in t.names if name in n.attrs["axes"])
        if len(axes) == 1:
            return f"torch.{fn}({x}, dim={dim(t, axes[0])})"
        k = len(axes)
        if t.names[-k:] == axes:
            return f"torch.{fn}({_paren(x)}.flatten({-k}), dim=-1).view_as({x})"
        src = tuple(dim(t, name) for name in axes)
        dst = tuple(range(-k, 0))
        sizes = ", ".join(f"{x}.shape[{d}]" for d in src)
        return (f"torch.{fn}({_paren(x)}.movedim({_tup(src)}, {_tup(dst)}).flatten({-k}), dim=-1)"
                f".unflatten(-1, ({sizes})).movedim({_tup(dst)}, {_tup(src)})")

    return Lowering(fwd)


def _einsum(n: Node, a, cx):
    letters: dict[str, str] = {}
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for t in cx.in_types(n) + (n.type,):
        for name in t.names:
            if name not in letters:
                letters[name] = alphabet[len(letters)]
    ins = ",".join("..." + "".join(letters[x] for x in t.names) for t in cx.in_types(n))
    out = "..." + "".join(letters[x] for x in n.type.names)
    return f'torch.einsum("{ins}->{out}", {", ".join(a)})'


def flatten_order(t: TensorType, names) -> tuple[str, ...]:
    """The layout flatten merges in: the named axes moved next to each other, in their order,
    where the first of them stands."""
    first = min(t.index(x) for x in names)
    return t.names[:first] + tuple(names) + tuple(x for x in t.names[first:] if x not in names)


def _flatten(n: Node, a, cx):
    (t,) = cx.in_types(n)
    names = n.attrs["axes"]
    order = flatten_order(t, names)
    x = move(a[0], t.names, order)
    moved = t.with_axes(t.axis(name) for name in order)
    return f"{_paren(x)}.flatten({dim(moved, names[0])}, {dim(moved, names[-1])})"


def _unflatten(n: Node, a, cx):
    (t,) = cx.in_types(n)
    return f"{_paren(a[0])}.unflatten({dim(t, n.attrs['axis'])}, {_tup(cx.hv(s) for s in n.attrs['sizes'])})"


def _transpose(n: Node, a, cx):
    (t,) = cx.in_types(n)
    return f"{_paren(a[0])}.transpose({dim(t, n.attrs['a'])}, {dim(t, n.attrs['b'])})"


def _concat(n: Node, a, cx):
    cx.need_helper("concat")
    out = n.type
    parts = []
    for var, t in zip(a, cx.in_types(n)):
        parts.append(align(var, t, out.names, full=True))
    return f"_concat_broadcast([{', '.join(parts)}], {dim(out, n.attrs['axis'])})"


def _reduce(method: str):
    def fwd(n: Node, a, cx):
        (t,) = cx.in_types(n)
        dims = tuple(dim(t, x) for x in n.attrs["axes"])
        return f"{_paren(a[0])}.{method}(dim={_tup(dims)})"

    return Lowering(fwd)


def _causal_diagonal(x: str, t: TensorType, q: str, k: str) -> str:
    """Where the causal mask starts: aligned at the end (bottom-right), so that with a key/value
    cache query i stands at key position i + (key - query). One when the type says the two
    axes have the same size."""
    if t.axis(q).size == t.axis(k).size:
        return "1"
    return f"{x}.shape[{dim(t, k)}] - {x}.shape[{dim(t, q)}] + 1"


def _causal(n: Node, a, cx):
    t = n.type
    q, k = n.attrs["query"], n.attrs["key"]
    x = a[0]
    mask = (
        f"torch.ones({x}.shape[{dim(t, q)}], {x}.shape[{dim(t, k)}], dtype=torch.bool, "
        f"device={x}.device).triu({_causal_diagonal(x, t, q, k)})"
    )
    mtype = TensorType(tuple(ax for ax in t.axes if ax.name in (q, k)), "bool")
    mtype = mtype if mtype.names == (q, k) else mtype.with_axes((mtype.axis(q), mtype.axis(k)))
    return f'{_paren(x)}.masked_fill({align(mask, mtype, t.names)}, float("-inf"))'


def _positions(n: Node, a, cx):
    ax = n.attrs["axis"]
    size = cx.code(ax.code) if ax.code is not None else cx.size(ax.size)
    return f"torch.arange({size}, device={cx.device()})"


def _length(n: Node, a, cx):
    ax = n.attrs["axis"]
    size = cx.code(ax.code) if ax.code is not None else cx.size(ax.size)
    return f"torch.tensor({size}, dtype=torch.int64, device={cx.device()})"


def _fill(n: Node, a, cx):
    """zeros / ones / full over named axes; a run-time size is read from an input."""
    sizes = [cx.code(ax.code) if ax.code is not None else cx.size(ax.size) for ax in n.attrs["axes"]]
    shape = f"({', '.join(sizes)},)" if sizes else "()"
    dtype = TORCH_DTYPES[n.attrs["dtype"]]
    value = {"zeros": "0", "ones": "1"}.get(n.op) or cx.hv(n.attrs["value"])
    return f"torch.full({shape}, {value}, dtype={dtype}, device={cx.device()})"


def _arange(n: Node, a, cx):
    """arange: counted in float64 (torch.arange's own accumulator for float32) from the
    hyperparameter expressions of start and step, then cast, so the length is the axis's."""
    ax, at = n.attrs["axis"], n.attrs
    size = cx.code(ax.code) if ax.code is not None else cx.size(ax.size)
    dtype = TORCH_DTYPES[at["dtype"]]
    start, step = at["start"], at["step"]
    scale = "" if step.is_const and step.value == 1 else f" * {_paren(cx.hv(step))}"
    shift = "" if start.is_const and start.value == 0 else f" + {_paren(cx.hv(start))}"
    if not scale and not shift:
        return f"torch.arange({size}, dtype={dtype}, device={cx.device()})"
    return f"(torch.arange({size}, dtype=torch.float64, device={cx.device()}){scale}{shift}).to({dtype})"


def _select(n: Node, a, cx):
    (t,) = cx.in_types(n)
    return f"{_paren(a[0])}.select({dim(t, n.attrs['axis'])}, {cx.hv(n.attrs['index'])})"


def _topk(n: Node, a, cx):
    (t,) = cx.in_types(n)
    cx.need_helper("top_k")
    return f"_top_k({a[0]}, {cx.hv(n.attrs['k'])}, {dim(t, n.attrs['axis'])})"


def _gather(n: Node, a, cx):
    cx.need_helper("gather")
    src, idx = cx.in_types(n)
    out = n.type.names
    full = cx.graph.kind != "model"  # a lift prefix, as in _binary
    return f"_gather_broadcast({align(a[0], src, out, full=full)}, {align(a[1], idx, out, full=full)}, {dim(n.type, n.attrs['axis'])})"


def _scatter(add: bool):
    def fwd(n: Node, a, cx):
        cx.need_helper("scatter")
        x, idx, src = cx.in_types(n)
        out = n.type.names
        full = cx.graph.kind != "model"  # a lift prefix, as in _binary
        how = '"add"' if add else "None"
        return (f"_scatter_broadcast({a[0]}, {dim(x, n.attrs['axis'])}, {align(a[1], idx, out, full=full)}, "
                f"{align(a[2], src, out, full=full)}, {how})")

    return Lowering(fwd)


def _index_add(n: Node, a, cx):
    cx.need_helper("scatter")
    x, idx, src = cx.in_types(n)
    target = tuple(n.attrs["rows"] if name == n.attrs["axis"] else name for name in x.names)
    full = cx.graph.kind != "model"
    return f"_index_add_broadcast({a[0]}, {dim(x, n.attrs['axis'])}, {a[1]}, {align(a[2], src, target, full=full)})"


def _moe_init(n: Node, cx):
    cx.need_helper("moe")
    cx.need_helper("top_k")
    at = n.attrs
    return f"_SparseMoE({cx.hv(at['features'])}, {cx.hv(at['experts'])}, {cx.hv(at['hidden'])}, {cx.hv(at['k'])})"


def _moe(n: Node, a, cx):
    (t,) = cx.in_types(n)
    ax = n.attrs["axis"]
    kept = tuple(x for x in t.names if x != ax)
    return move(f"self.{cx.mod(n)}({move(a[0], t.names, kept + (ax,))})", kept + (ax,), n.type.names)


def _experts_init(n: Node, cx):
    cx.need_helper("moe")
    at = n.attrs
    return f"_RoutedExperts({cx.hv(at['features'])}, {cx.hv(at['experts'])}, {cx.hv(at['hidden'])})"


def _experts(n: Node, a, cx):
    x, w, idx = cx.in_types(n)
    ax, choice = n.attrs["axis"], n.attrs["choice"]
    kept = tuple(name for name in x.names if name != ax)
    args = (move(a[0], x.names, kept + (ax,)), move(a[1], w.names, kept + (choice,)),
            move(a[2], idx.names, kept + (choice,)))
    return move(f"self.{cx.mod(n)}({', '.join(args)})", kept + (ax,), n.type.names)


def _pad_to(n: Node, a, cx):
    x, like = cx.in_types(n)
    pads = []
    for name in reversed(x.names):  # F.pad lists the last axis first
        if name in n.attrs["axes"]:
            d = dim(x, name)
            e = dim(like, name)
            diff = f"({a[1]}.shape[{e}] - {a[0]}.shape[{d}])"
            pads += [f"{diff} // 2", f"{diff} - {diff} // 2"]
        else:
            pads += ["0", "0"]
    while pads[-2:] == ["0", "0"]:
        pads = pads[:-2]
    return f"F.pad({a[0]}, [{', '.join(pads)}])"


# ---- learned ops ---------------------------------------------------------------------------


def _linear_init(n: Node, cx):
    if n.attrs["tied"] is not None:
        if not n.attrs["bias"]:
            return None
        return f"nn.Parameter(torch.zeros({cx.hv(n.attrs['out_features'])}))"
    bias = "" if n.attrs["bias"] else ", bias=False"
    return f"nn.Linear({cx.hv(n.attrs['in_features'])}, {cx.hv(n.attrs['out_features'])}{bias})"


def _linear(n: Node, a, cx):
    (t,) = cx.in_types(n)
    ins = n.attrs["in_axes"]
    outs = tuple(x.name for x in n.attrs["out_axes"])
    kept = tuple(x for x in t.names if x not in ins)
    x = move(a[0], t.names, kept + ins)
    if len(ins) > 1:
        x = f"{_paren(x)}.flatten({-len(ins)})"
    if n.attrs["tied"] is not None:
        bias = f", self.{cx.mod(n)}" if n.attrs["bias"] else ""
        y = f"F.linear({x}, self.{cx.pyname(n.attrs['tied'])}.weight{bias})"
    else:
        y = f"self.{cx.mod(n)}({x})"
    if len(outs) > 1:
        y = f"{y}.unflatten(-1, {_tup(cx.hv(s) for s in n.attrs['out_sizes'])})"
    return move(y, kept + outs, n.type.names)


def _embedding_init(n: Node, cx):
    return f"nn.Embedding({cx.hv(n.attrs['num'])}, {cx.hv(n.attrs['dim'])})"


def _norm_init(cls: str):
    def init(n: Node, cx):
        if not n.attrs["shape"]:
            return None  # over a run-time axis (affine = false): F.layer_norm / F.rms_norm
        shape = ", ".join(cx.hv(s) for s in n.attrs["shape"])
        extra = f", eps={_float(n.attrs['eps'], cx)}"
        if not n.attrs["affine"]:
            extra += ", elementwise_affine=False"
        elif cls == "nn.LayerNorm" and not n.attrs["bias"]:
            extra += ", bias=False"
        return f"{cls}(({shape},){extra})"

    return init


def _norm(n: Node, a, cx):
    (t,) = cx.in_types(n)
    axes = n.attrs["axes"]
    kept = tuple(x for x in t.names if x not in axes)
    x = move(a[0], t.names, kept + axes)
    if not n.attrs["shape"]:  # a run-time axis: the length comes from the tensor
        fn = "F.layer_norm" if n.op == "LayerNorm" else "F.rms_norm"
        y = f"{fn}({x}, {_paren(x)}.shape[{-len(axes)}:], eps={_float(n.attrs['eps'], cx)})"
        return move(y, kept + axes, t.names)
    return move(f"self.{cx.mod(n)}({x})", kept + axes, t.names)


def _batchnorm_init(n: Node, cx):
    (t,) = cx.in_types(n)
    k = t.rank - t.index(n.attrs["axis"]) - 1
    cls = {2: "nn.BatchNorm2d", 3: "nn.BatchNorm3d"}.get(k, "nn.BatchNorm1d")
    return f"{cls}({cx.hv(n.attrs['num'])}, eps={_float(n.attrs['eps'], cx)}, momentum={n.attrs['momentum']!r})"


def _channels_first(n: Node, a, cx, channel: str | None, spatial: tuple[str, ...], call: str):
    """Apply a (N, C, *spatial) torch op to a tensor whose axes may stand anywhere."""
    (t,) = cx.in_types(n)
    lead = tuple(x for x in t.names if x != channel and x not in spatial)
    want = lead + ((channel,) if channel else ()) + spatial
    x = move(a[0], t.names, want)
    k = len(spatial) + (1 if channel else 0)
    if cx.lift_len is not None and cx.has_lift_prefix(n.inputs[0]) and cx.lift_len + len(lead) == 1:  # (N, C, ...)
        y = f"{call}({x})"
    else:
        cx.need_helper("channels_first")
        y = f"_channels_first({call}, {x}, {k})"
    out = n.type
    out_channel = out.names[t.index(channel)] if channel else None
    got = lead + ((out_channel,) if channel else ()) + spatial
    return move(y, got, out.names)


def _batchnorm(n: Node, a, cx):
    (t,) = cx.in_types(n)
    c = n.attrs["axis"]
    after = tuple(x for x in t.names[t.index(c) + 1 :])
    return _channels_first(n, a, cx, c, after, f"self.{cx.mod(n)}")


def _conv_init(transposed: bool):
    def init(n: Node, cx):
        k = len(n.attrs["spatial"])
        cls = f"nn.ConvTranspose{k}d" if transposed else f"nn.Conv{k}d"
        parts = [cx.hv(n.attrs["in_channels"]), cx.hv(n.attrs["out_channels"])]
        parts.append(f"kernel_size={_hvtup(n.attrs['kernel'], cx)}")
        for key, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
            vals = n.attrs[key]
            if not _literally(vals, default):
                parts.append(f"{key}={_hvtup(vals, cx)}")
        if transposed and not _literally(n.attrs["output_padding"], 0):
            parts.append(f"output_padding={_hvtup(n.attrs['output_padding'], cx)}")
        if not _literally((n.attrs["groups"],), 1):
            parts.append(f"groups={cx.hv(n.attrs['groups'])}")
        if not n.attrs["bias"]:
            parts.append("bias=False")
        return f"{cls}({', '.join(parts)})"

    return init


def _float(v, cx) -> str:
    """A float attribute: its hyperparameter expression where it has one."""
    if isinstance(v, HVal) and not v.is_const:
        return cx.hv(v)
    return repr(float(v.value if isinstance(v, HVal) else v))


def _literally(vals, default) -> bool:
    """Every value is the literal `default`. A hyperparameter that merely equals it in this
    instance must still be passed: all instances of a block share one class."""
    return all(v.expr == X.const(default) and type(v.value) is type(default) for v in vals)


def _hvtup(vals, cx) -> str:
    codes = [cx.hv(v) for v in vals]
    if len(set(codes)) == 1:
        return codes[0]
    return f"({', '.join(codes)})"


def _conv(n: Node, a, cx):
    return _channels_first(n, a, cx, n.attrs["channel"], n.attrs["spatial"], f"self.{cx.mod(n)}")


def _pool(fn: str):
    def fwd(n: Node, a, cx):
        k = len(n.attrs["spatial"])
        args = f"kernel_size={_hvtup(n.attrs['kernel'], cx)}, stride={_hvtup(n.attrs['stride'], cx)}"
        if not _literally(n.attrs["padding"], 0):
            args += f", padding={_hvtup(n.attrs['padding'], cx)}"
        (t,) = cx.in_types(n)
        # pooling has no channel axis: every non-spatial axis is a batch axis
        lead = tuple(x for x in t.names if x not in n.attrs["spatial"])
        x = move(a[0], t.names, lead + n.attrs["spatial"])
        known = cx.lift_len is not None and cx.has_lift_prefix(n.inputs[0])
        if known and cx.lift_len + len(lead) in (1, 2):  # (C, ...) or (N, C, ...)
            y = f"F.{fn}{k}d({x}, {args})"
        else:
            cx.need_helper("partial")
            cx.need_helper("channels_first")
            y = f"_channels_first(functools.partial(F.{fn}{k}d, {args}), {x}, {k})"
        return move(y, lead + n.attrs["spatial"], n.type.names)

    return Lowering(fwd)


def _param_init(n: Node, cx):
    # a scalar Param([]) has the empty shape: torch.ones() with no size is an error
    shape = ", ".join(cx.hv(s) for s in n.attrs["sizes"]) or "()"
    init = n.attrs["init"]
    if init.kind == "zeros":
        return f"nn.Parameter(torch.zeros({shape}))"
    if init.kind == "ones":
        return f"nn.Parameter(torch.ones({shape}))"
    if _param_made_normal(init):
        return f"nn.Parameter(torch.randn({shape}) * {cx.hv(init.args[0])})"
    return f"nn.Parameter(torch.empty({shape}))"  # init_lines fills it


def _buffer_init(n: Node, cx):
    """register_buffer with the constant of its axes, or the value its input computes in the
    constructor (cx.built_value): the buffer is made once, not in forward."""
    at = n.attrs
    if at["init"] is None:
        value = f"{_paren(cx.built_value)}.clone()"
    else:
        shape = ", ".join(cx.hv(s) for s in at["sizes"]) or "()"
        dtype = TORCH_DTYPES[at["dtype"]]
        kind = at["init"].kind
        if kind == "constant":
            value = f"torch.full(({shape},), {cx.hv(at['init'].args[0])}, dtype={dtype})" if at["sizes"] else (
                f"torch.tensor({cx.hv(at['init'].args[0])}, dtype={dtype})")
        else:
            value = f"torch.{kind}({shape}, dtype={dtype})"
    persistent = "" if at["persistent"] else ", persistent=False"
    return Statement(f"self.register_buffer({cx.mod(n)!r}, {value}{persistent})")


def _random(helper: str, extra: Callable = lambda n, cx: ""):
    def fwd(n: Node, a, cx):
        cx.need_helper("generator")
        cx.need_helper(helper)
        return f"_{helper}(self, {a[0]}{extra(n, cx)})"

    return Lowering(fwd)


def _drop_path_dims(n: Node, cx) -> str:
    (t,) = cx.in_types(n)
    return f", {_float(n.attrs['p'], cx)}, {_tup(dim(t, a) for a in n.attrs['over'])}"


def _param_made_normal(init) -> bool:
    return init.kind == "normal" and init.args[1].value == 0


def init_lines(n: Node, cx) -> list[str]:
    """`nn.init` calls for the parameters of learned op n whose initialisation the spec
    chose (the others keep what the module's constructor does, PyTorch's default)."""
    opdef = registry.get(n.op)
    out = []
    for p in opdef.params(n.attrs, cx.in_types(n)):
        if not p.explicit or p.buffer:
            continue
        if n.op == "Param" and (p.init.kind in ("zeros", "ones") or _param_made_normal(p.init)):
            continue  # its constructor made it so
        if "." in p.name:  # a fused op's parameter of another module: `q.weight`
            owner, _, leaf = p.name.rpartition(".")
            owner, target = f"self.{cx.pyname(owner)}", f"self.{cx.pyname(owner)}.{leaf}"
        elif n.op == "Param" or (n.op == "Linear" and n.attrs["tied"] is not None):
            owner = target = f"self.{cx.mod(n)}"
        else:
            owner, target = f"self.{cx.mod(n)}", f"self.{cx.mod(n)}.{p.name}"
        out.append(_init_call(p.init, target, owner, n, cx))
    return out


def _init_call(init, target: str, owner: str, n: Node, cx) -> str:
    a = [cx.hv(x) for x in init.args]
    k = init.kind
    if k in ("zeros", "ones"):
        return f"nn.init.{k}_({target})"
    if k == "constant":
        return f"nn.init.constant_({target}, {a[0]})"
    if k == "normal":
        mean = "" if init.args[1].value == 0 else f"mean={a[1]}, "
        return f"nn.init.normal_({target}, {mean}std={a[0]})"
    if k == "uniform":
        return f"nn.init.uniform_({target}, {a[0]}, {a[1]})"
    if k in ("xavier_uniform", "xavier_normal"):
        gain = "" if init.args[0].value == 1 else f", gain={a[0]}"
        return f"nn.init.{k}_({target}{gain})"
    if k in ("kaiming_uniform", "kaiming_normal"):
        extra = "" if init.args[0].value == 0 else f", a={a[0]}"
        if init.mode != "fan_in":
            extra += f', mode="{init.mode}"'
        return f"nn.init.{k}_({target}{extra})"
    if k == "fan_in_uniform":  # PyTorch's bias default: ±1/sqrt(fan_in of the weight)
        if n.op == "Linear" or target.endswith(".weight"):
            fan = cx.hv(n.attrs["in_features"]) if n.op == "Linear" else f"{target}[0].numel()"
        else:
            fan = f"{owner}.weight[0].numel()"
        return f"nn.init.uniform_({target}, -1 / math.sqrt({fan}), 1 / math.sqrt({fan}))"
    raise LoweringError(f"no torch code for the initialisation '{k}'", n.span)


# ---- fused ops (the optimizer's; nncircuit.ops.fused) --------------------------------------


def _attention(n: Node, a, cx):
    q, k, v = cx.in_types(n)
    at = n.attrs
    b = tuple(at["batch"])
    qq = move(a[0], q.names, b + (at["query"], at["feature"]))
    kk = move(a[1], k.names, b + (at["key"], at["feature"]))
    vv = move(a[2], v.names, b + (at["key"], at["value_feature"]))
    if at["causal"] and q.axis(at["query"]).size != k.axis(at["key"]).size:
        # SDPA's is_causal lines the mask up top-left, the causal op bottom-right: the two
        # agree only when query and key have one size, which the types do not promise here
        cx.need_helper("causal_attention")
        y = f"_causal_attention({qq}, {kk}, {vv}, {cx.hv(at['scale'])})"
        return move(y, b + (at["query"], at["value_feature"]), n.type.names)
    causal = ", is_causal=True" if at["causal"] else ""
    y = f"F.scaled_dot_product_attention({qq}, {kk}, {vv}{causal}, scale={cx.hv(at['scale'])})"
    return move(y, b + (at["query"], at["value_feature"]), n.type.names)


def _linear_group_init(n: Node, cx):
    """One nn.Linear per member, under the member's own name: the state_dict of the
    unfused model (several (attribute, constructor) pairs)."""
    bias = "" if n.attrs["bias"] else ", bias=False"
    return tuple(
        (m, f"nn.Linear({cx.hv(fin)}, {cx.hv(fout)}{bias})")
        for m, fin, fout in zip(n.attrs["members"], n.attrs["in_features"], n.attrs["out_features"])
    )


def _linear_group(n: Node, a, cx):
    from nncircuit.errors import LoweringError

    (t,) = cx.in_types(n)
    ins = n.attrs["in_axes"]
    kept = tuple(x for x in t.names if x not in ins)
    shapes = []
    for out, axes, sizes in zip(n.types, n.attrs["out_axes"], n.attrs["out_sizes"]):
        if out.names != kept + tuple(ax.name for ax in axes):
            raise LoweringError(f"{n.name}: a LinearGroup part's output axes must come last ({out})", n.span)
        shapes.append(_tup(cx.hv(s) for s in sizes) if len(sizes) > 1 else "None")
    x = move(a[0], t.names, kept + ins)
    if len(ins) > 1:
        x = f"{_paren(x)}.flatten({-len(ins)})"
    layers = _tup(f"self.{cx.pyname(m)}" for m in n.attrs["members"])
    cx.need_helper("linear_group")
    return f"_linear_group({x}, {layers}, {_tup(shapes)})"


def _matmul(n: Node, a, cx):
    x, y = cx.in_types(n)
    at = n.attrs
    b = tuple(at["batch"])
    xx = move(a[0], x.names, b + (at["m"], at["k"]))
    yy = move(a[1], y.names, b + (at["k"], at["n"]))
    return move(f"torch.matmul({xx}, {yy})", b + (at["m"], at["n"]), n.type.names)


TORCH_LOWERINGS: dict[str, Lowering] = {
    "relu": _unary("torch.relu({x})"),
    "gelu": _unary("F.gelu({x})"),
    "gelu_tanh": _unary('F.gelu({x}, approximate="tanh")'),
    "silu": _unary("F.silu({x})"),
    "sigmoid": _unary("torch.sigmoid({x})"),
    "tanh": _unary("torch.tanh({x})"),
    "exp": _unary("torch.exp({x})"),
    "log": _unary("torch.log({x})"),
    "sqrt": _unary("torch.sqrt({x})"),
    "abs": _unary("torch.abs({x})"),
    "neg": _unary("-{x}"),
    "dropout": _random("dropout", lambda n, cx: f", p={_float(n.attrs['p'], cx)}, training=self.training"),
    "drop_path": _random("drop_path", _drop_path_dims),
    "normal_like": _random("normal_like"),
    "uniform_like": _random("uniform_like", lambda n, cx: f", {_float(n.attrs['low'], cx)}, {_float(n.attrs['high'], cx)}"),
    "bernoulli": _random("bernoulli"),
    "Buffer": Lowering(lambda n, a, cx: f"self.{cx.mod(n)}", _buffer_init),
    "add": _binary("+", "add"),
    "sub": _binary("-", "sub"),
    "mul": _binary("*", "mul"),
    "div": _binary("/", "div"),
    "pow": _binary("**", "pow"),
    "softmax": _softmax("softmax"),
    "log_softmax": _softmax("log_softmax"),
    "einsum": Lowering(_einsum),
    "rename": Lowering(lambda n, a, cx: a[0]),
    "transpose": Lowering(_transpose),
    "flatten": Lowering(_flatten),
    "unflatten": Lowering(_unflatten),
    "concat": Lowering(_concat),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("amax"),
    "min": _reduce("amin"),
    "cast": Lowering(lambda n, a, cx: f"{_paren(a[0])}.to({TORCH_DTYPES[n.attrs['to']]})"),
    "causal": Lowering(_causal),
    "positions": Lowering(_positions),
    "length": Lowering(_length),
    **{op: Lowering(_fill) for op in ("zeros", "ones", "full")},
    "arange": Lowering(_arange),
    "select": Lowering(_select),
    "top_k": Lowering(_topk),
    "gather": Lowering(_gather),
    "scatter": _scatter(False),
    "scatter_add": _scatter(True),
    "index_add": Lowering(_index_add),
    "MoE": Lowering(_moe, _moe_init),
    "Experts": Lowering(_experts, _experts_init),
    "pad_to": Lowering(_pad_to),
    "Linear": Lowering(_linear, _linear_init),
    "Embedding": Lowering(lambda n, a, cx: f"self.{cx.mod(n)}({a[0]})", _embedding_init),
    "LayerNorm": Lowering(_norm, _norm_init("nn.LayerNorm")),
    "RMSNorm": Lowering(_norm, _norm_init("nn.RMSNorm")),
    "BatchNorm": Lowering(_batchnorm, _batchnorm_init),
    "Conv": Lowering(_conv, _conv_init(False)),
    "ConvTranspose": Lowering(_conv, _conv_init(True)),
    "maxpool": _pool("max_pool"),
    "avgpool": _pool("avg_pool"),
    "Param": Lowering(lambda n, a, cx: f"self.{cx.mod(n)}", _param_init),
    "attention": Lowering(_attention),
    "LinearGroup": Lowering(_linear_group, _linear_group_init),
    "matmul": Lowering(_matmul),
}

HELPERS = {
    "partial": "",
    "shared_input": '''
def _shared_input(x, ref, rank, ref_rank):
    """x, an input of a lifted call with size 1 on the lifted axes it lacks, expanded to the
    lifted sizes of `ref` (an input that has them all; `rank` and `ref_rank`: the axes the
    block declares for each): shared, not copied, by every position of those axes."""
    lead = torch.broadcast_shapes(x.shape[: x.dim() - rank], ref.shape[: ref.dim() - ref_rank])
    return x.expand(*lead, *x.shape[x.dim() - rank:])
''',
    "generator": '''
def _generator(module, x):
    """The generator the random ops of `module` draw from on x's device: the model's, made by
    its `seed_random(seed)`, else None (torch's global generator, seeded by torch.manual_seed)."""
    gens = getattr(module, "_nnc_generators", None)
    if gens is None:
        return None
    if x.device not in gens:
        gens[x.device] = torch.Generator(x.device).manual_seed(gens["seed"])
    return gens[x.device]
''',
    "dropout": '''
def _dropout(module, x, p, training):
    """Dropout while training (identity in eval mode), drawing from the model's generator."""
    if not training or p == 0:
        return x
    gen = _generator(module, x)
    if gen is None:
        return F.dropout(x, p, True)
    keep = torch.rand(x.shape, generator=gen, device=x.device) >= p
    return x * keep.to(x.dtype) / (1 - p)
''',
    "drop_path": '''
def _drop_path(module, x, p, dims):
    """Stochastic depth while training (identity in eval mode): one draw per position of the
    axes `dims` (a sample), dropped with probability p, the kept ones scaled by 1 / (1 - p)."""
    if not module.training or p == 0:
        return x
    shape = [1] * x.dim()
    for d in dims:
        shape[d] = x.shape[d]
    keep = torch.rand(shape, generator=_generator(module, x), device=x.device) >= p
    return x * keep.to(x.dtype) / (1 - p)
''',
    "normal_like": '''
def _normal_like(module, x):
    """A standard normal draw of x's shape, dtype and device."""
    return torch.randn(x.shape, generator=_generator(module, x), dtype=x.dtype, device=x.device)
''',
    "uniform_like": '''
def _uniform_like(module, x, low, high):
    """A uniform(low, high) draw of x's shape, dtype and device."""
    u = torch.rand(x.shape, generator=_generator(module, x), dtype=x.dtype, device=x.device)
    return u * (high - low) + low
''',
    "bernoulli": '''
def _bernoulli(module, p):
    """1 with the probability p holds at each position, else 0 (p's dtype)."""
    return torch.bernoulli(p, generator=_generator(module, p))
''',
    "concat": '''
def _concat_broadcast(parts, dim):
    """torch.cat that first broadcasts every axis but `dim` (axes are matched by name)."""
    shapes = [list(p.shape) for p in parts]
    for s in shapes:
        s[dim] = 1
    shape = list(torch.broadcast_shapes(*shapes))
    out = []
    for p in parts:
        shape[dim] = p.shape[dim]
        out.append(p.expand(shape))
    return torch.cat(out, dim)
''',
    "gather": '''
def _gather_broadcast(src, idx, dim):
    """torch.gather with the other axes broadcast (axes are matched by name)."""
    s, i = list(src.shape), list(idx.shape)
    s[dim] = i[dim] = 1
    shape = list(torch.broadcast_shapes(s, i))
    src_shape, idx_shape = list(shape), list(shape)
    src_shape[dim], idx_shape[dim] = src.shape[dim], idx.shape[dim]
    return torch.gather(src.expand(src_shape), dim, idx.expand(idx_shape))
''',
    "scatter": '''
def _scatter_broadcast(x, dim, idx, src, reduce):
    """torch.scatter (scatter_add for reduce="add") with the other axes broadcast (axes are
    matched by name): src has the shape of idx."""
    s, i = list(x.shape), list(idx.shape)
    s[dim] = i[dim] = 1
    shape = list(torch.broadcast_shapes(s, i))
    x_shape, idx_shape = list(shape), list(shape)
    x_shape[dim], idx_shape[dim] = x.shape[dim], idx.shape[dim]
    x, idx, src = x.expand(x_shape).clone(), idx.long().expand(idx_shape), src.expand(idx_shape)
    return x.scatter_add_(dim, idx, src) if reduce == "add" else x.scatter_(dim, idx, src)


def _index_add_broadcast(x, dim, idx, src):
    """Slice j of src (along dim) added at position idx[j] of x, the other axes broadcast.
    With lifted axes in front of idx, the same sum as a scatter_add."""
    s, v = list(x.shape), list(src.shape)
    s[dim] = v[dim] = 1
    shape = list(torch.broadcast_shapes(s, v))
    x_shape, src_shape = list(shape), list(shape)
    x_shape[dim], src_shape[dim] = x.shape[dim], src.shape[dim]
    x, src = x.expand(x_shape), src.expand(src_shape)
    if idx.dim() == 1:
        return x.index_add(dim, idx.long(), src)
    lead = idx.dim() - 1  # lifted axes in front of the rows
    between = len(shape) - lead + dim  # the other axes of x before `dim`
    idx = idx.long().reshape(*idx.shape[:-1], *[1] * between, idx.shape[-1], *[1] * (-dim - 1))
    return x.clone().scatter_add_(dim, idx.expand(src_shape), src)
''',
    "moe": '''
class _SparseMoE(nn.Module):
    """Mixtral's sparse mixture of SwiGLU experts over the last axis, named as transformers'
    MixtralSparseMoeBlock (gate.weight, experts.gate_up_proj, experts.down_proj): softmax
    over the experts, the top k renormalised, and only the chosen experts run."""

    def __init__(self, features, experts, hidden, k):
        super().__init__()
        self.k = k
        self.gate = nn.Linear(features, experts, bias=False)
        self.experts = _ExpertBank(features, experts, hidden)

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = torch.softmax(F.linear(x, self.gate.weight).float(), dim=-1)
        top, idx = _top_k(probs, self.k, -1)
        top = (top / top.sum(-1, keepdim=True)).to(x.dtype)
        return self.experts(x, idx, top).reshape(shape)


class _ExpertBank(nn.Module):
    """The SwiGLU experts as stacked weights. Tokens are sorted by expert so each expert's
    rows are one slice; each expert runs on its own tokens only (one matrix product each)."""

    def __init__(self, features, experts, hidden):
        super().__init__()
        self.hidden = hidden
        self.gate_up_proj = nn.Parameter(torch.empty(experts, 2 * hidden, features))
        self.down_proj = nn.Parameter(torch.empty(experts, features, hidden))
        nn.init.uniform_(self.gate_up_proj, -1 / math.sqrt(features), 1 / math.sqrt(features))
        nn.init.uniform_(self.down_proj, -1 / math.sqrt(hidden), 1 / math.sqrt(hidden))

    def forward(self, x, idx, weight):
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.gate_up_proj.shape[0]).tolist()
        tokens = order // idx.shape[-1]
        rows = x[tokens]
        out = torch.empty_like(rows)
        start = 0
        for e, count in enumerate(counts):
            if count:
                part = rows[start:start + count]
                gate_up = F.linear(part, self.gate_up_proj[e])
                h = F.silu(gate_up[:, :self.hidden]) * gate_up[:, self.hidden:]
                out[start:start + count] = F.linear(h, self.down_proj[e])
                start += count
        out = out * weight.reshape(-1)[order].unsqueeze(-1)
        return torch.zeros_like(x).index_add_(0, tokens, out)


class _RoutedExperts(_ExpertBank):
    """The expert bank on a routing computed outside (DeepSeek-V3's): x [..., d], the
    weights and expert indices [..., k] of each token; only the chosen experts run."""

    def forward(self, x, weight, idx):
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        k = idx.shape[-1]
        out = super().forward(flat, idx.reshape(-1, k).long(), weight.reshape(-1, k).to(x.dtype))
        return out.reshape(shape)
''',
    "top_k": '''
def _top_k(x, k, dim):
    """The k largest values along `dim`, largest first, and their indices. Among equal values
    the lower index comes first (ONNX TopK's rule; torch.topk promises no order for ties)."""
    values, indices = torch.sort(x, dim=dim, descending=True, stable=True)
    return values.narrow(dim, 0, k), indices.narrow(dim, 0, k)
''',
    "linear_group": '''
class _Joined(torch.autograd.Function):
    """Parameters that are consecutive rows of one tensor `flat`, as `flat` itself: no copy
    in the forward pass; the backward pass splits the gradient back into one per part."""

    @staticmethod
    def forward(ctx, flat, *parts):
        ctx.rows = [p.shape[0] for p in parts]
        return flat.view_as(flat)

    @staticmethod
    def backward(ctx, grad):
        return (None, *grad.split(ctx.rows))


def _joined(layers, attr):
    """The `attr` tensors of `layers` joined along dim 0. The first call stores them as views
    into one tensor (as nn.RNN's flatten_parameters does; in-place updates and
    load_state_dict keep it), so later calls join them without copying; after `.to()` or a
    replaced parameter they are packed again. Under torch.compile, or for tensors that are
    not this module's parameters (torch.func), it concatenates."""
    parts = [getattr(m, attr) for m in layers]
    if torch.compiler.is_compiling() or not all(
        type(p) is nn.Parameter and m._parameters.get(attr) is p for m, p in zip(layers, parts)
    ):
        return torch.cat(parts)
    key = "_joined_" + attr
    flat = layers[0].__dict__.get(key)
    rows = [p.shape[0] for p in parts]
    if flat is None or not _views_of(flat, parts):
        with torch.no_grad():
            flat = torch.cat([p.detach() for p in parts])
            for p, view in zip(parts, flat.split(rows)):
                p.data = view
        layers[0].__dict__[key] = flat
    return _Joined.apply(flat, *parts)


def _views_of(flat, parts):
    ptr, offset = flat.untyped_storage().data_ptr(), flat.storage_offset()
    for p in parts:
        if (p.device != flat.device or p.dtype != flat.dtype or not p.is_contiguous()
                or p.untyped_storage().data_ptr() != ptr or p.storage_offset() != offset):
            return False
        offset += p.numel()
    return offset == flat.storage_offset() + flat.numel()


def _linear_group(x, layers, shapes):
    """Several nn.Linear maps of x as one matmul, split back into one result per layer (each
    unflattened to its shape). Each layer keeps its own parameters, so the state_dict is that
    of the separate layers; the matmul reads them as one joined weight (see _joined)."""
    weight = _joined(layers, "weight")
    bias = None if layers[0].bias is None else _joined(layers, "bias")
    parts = F.linear(x, weight, bias).split([m.out_features for m in layers], -1)
    return tuple(p if s is None else p.unflatten(-1, s) for p, s in zip(parts, shapes))
''',
    "causal_attention": '''
def _causal_attention(q, k, v, scale):
    """Causal scaled dot-product attention with the mask lined up at the end (bottom-right):
    with more keys than queries (a key/value cache) query i stands at key i + (keys - queries)."""
    nq, nk = q.shape[-2], k.shape[-2]
    if nq == nk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    mask = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
''',
    "channels_first": '''
def _channels_first(fn, x, k):
    """Apply `fn`, which wants (N, *trailing k axes), to x with any number of leading axes."""
    if x.dim() == k + 1:
        return fn(x)
    lead = x.shape[: x.dim() - k]
    y = fn(x.reshape(-1, *x.shape[x.dim() - k :]))
    return y.reshape(*lead, *y.shape[1:])
''',
}


# ---- comparisons, logic, selection, more elementwise maps (ops/compare.py, activations.py) ----


def _number(cx, v) -> str:
    """A number of an attribute as an operand: the hyperparameter code, so that a class built
    with other hyperparameters uses theirs (`where(m, x, low)` with `low = -inf` by default);
    a constant infinity as `float("-inf")`, which no name in generated code spells."""
    if isinstance(v.value, float) and math.isinf(v.value) and not v.expr.refs():
        return 'float("inf")' if v.value > 0 else 'float("-inf")'
    return _paren(cx.hv(v))


def _aligned(n: Node, a, cx) -> list[str]:
    """The tensor operands of n reordered (with size-1 axes) to broadcast as its result, by name."""
    full = cx.graph.kind != "model"  # a lift prefix, as in _binary
    return [align(var, t, n.type.names, full=full) for var, t in zip(a, cx.in_types(n))]


def _infix(sym: str):
    def fwd(n: Node, a, cx):
        if n.attrs.get("scalar") is not None:
            c, x = _number(cx, n.attrs["scalar"]), _paren(a[0])
            return f"{x} {sym} {c}" if n.attrs["side"] == "right" else f"{c} {sym} {x}"
        x, y = _aligned(n, a, cx)
        return f"{_paren(x)} {sym} {_paren(y)}"

    return Lowering(fwd)


def _slots(n: Node, a, cx) -> list[str]:
    """The operands in the order written: tensors aligned by name, numbers as literals."""
    scalars = dict(n.attrs["scalars"])
    tensors = iter(_aligned(n, a, cx))
    return [_number(cx, scalars[i]) if i in scalars else next(tensors) for i in range(len(a) + len(scalars))]


def _where(n: Node, a, cx):
    return f"torch.where({', '.join(_slots(n, a, cx))})"


def _minmax(fn: str, bound: str):
    def fwd(n: Node, a, cx):
        scalars = dict(n.attrs["scalars"])
        if not scalars:
            return f"torch.{fn}({', '.join(_aligned(n, a, cx))})"
        ((_, c),) = scalars.items()
        x = a[0]
        if cx.in_types(n)[0].dtype != n.type.dtype:
            x = f"{_paren(x)}.to({TORCH_DTYPES[n.type.dtype]})"
        return f"torch.clamp({x}, {bound}={_number(cx, c)})"

    return Lowering(fwd)


def _clamp(n: Node, a, cx):
    parts = [a[0]] + [f"{k}={_number(cx, n.attrs[k])}" for k in ("min", "max") if n.attrs[k] is not None]
    return f"torch.clamp({', '.join(parts)})"


def _prelu_init(n: Node, cx):
    return f"nn.PReLU({cx.hv(n.attrs['num'])}, init={cx.hv(n.attrs['init'].args[0])})"


def _prelu(n: Node, a, cx):
    # max(0, x) + w min(0, x), as nn.PReLU, with the slopes along any axis (nn.PReLU's are dim 1)
    (t,) = cx.in_types(n)
    w = f"self.{cx.mod(n)}.weight"
    if n.attrs["axis"] is not None:
        w = align(w, TensorType((t.axis(n.attrs["axis"]),), t.dtype), t.names)
    x = _paren(a[0])
    return f"torch.where({x} >= 0, {x}, {_paren(w)} * {x})"


TORCH_LOWERINGS.update({
    "lt": _infix("<"),
    "le": _infix("<="),
    "gt": _infix(">"),
    "ge": _infix(">="),
    "eq": _infix("=="),
    "ne": _infix("!="),
    "logical_and": _infix("&"),
    "logical_or": _infix("|"),
    "logical_not": _unary("torch.logical_not({x})"),
    "where": Lowering(_where),
    "minimum": _minmax("minimum", "max"),
    "maximum": _minmax("maximum", "min"),
    "clamp": Lowering(_clamp),
    "floor": _unary("torch.floor({x})"),
    "ceil": _unary("torch.ceil({x})"),
    "round": _unary("torch.round({x})"),
    "sign": _unary("torch.sign({x})"),
    "sin": _unary("torch.sin({x})"),
    "cos": _unary("torch.cos({x})"),
    "relu6": _unary("F.relu6({x})"),
    "hardswish": _unary("F.hardswish({x})"),
    "hardsigmoid": _unary("F.hardsigmoid({x})"),
    "mish": _unary("F.mish({x})"),
    "softplus": Lowering(lambda n, a, cx: f"F.softplus({a[0]}, beta={n.attrs['beta']!r}, threshold={n.attrs['threshold']!r})"),
    "elu": Lowering(lambda n, a, cx: f"F.elu({a[0]}, alpha={n.attrs['alpha']!r})"),
    "leaky_relu": Lowering(lambda n, a, cx: f"F.leaky_relu({a[0]}, negative_slope={n.attrs['slope']!r})"),
    "hardtanh": Lowering(lambda n, a, cx: f"F.hardtanh({a[0]}, min_val={n.attrs['min']!r}, max_val={n.attrs['max']!r})"),
    "PReLU": Lowering(_prelu, _prelu_init),
})


# ---- axis surgery and the group/instance norms (ops/surgery.py, ops/norms.py) ----------------


def _slice(n: Node, a, cx):
    (t,) = cx.in_types(n)
    ends = ["" if n.attrs[k] is None else cx.hv(n.attrs[k]) for k in ("start", "stop")]
    after = t.rank - t.index(n.attrs["axis"]) - 1
    return f"{_paren(a[0])}[..., {ends[0]}:{ends[1]}{', :' * after}]"


def _split(n: Node, a, cx):
    (t,) = cx.in_types(n)
    sizes = ", ".join(cx.hv(s) for s in n.attrs["sizes"])
    return f"torch.split({a[0]}, [{sizes}], dim={dim(t, n.attrs['axis'])})"


def _chunk(n: Node, a, cx):
    (t,) = cx.in_types(n)
    return f"torch.chunk({a[0]}, {cx.hv(n.attrs['chunks'])}, dim={dim(t, n.attrs['axis'])})"


def _roll(n: Node, a, cx):
    (t,) = cx.in_types(n)
    return f"torch.roll({a[0]}, {cx.hv(n.attrs['shift'])}, dims={dim(t, n.attrs['axis'])})"


def _shift(n: Node, a, cx):
    (t,) = cx.in_types(n)
    cx.need_helper("shift")
    return f"_shift({a[0]}, {cx.hv(n.attrs['shift'])}, {dim(t, n.attrs['axis'])}, {_number(cx, n.attrs['fill'])})"


def _stack(n: Node, a, cx):
    out = n.type
    parts = [move(var, t.names, out.names[1:]) for var, t in zip(a, cx.in_types(n))]
    if cx.graph.kind != "model":  # a lift prefix on some operands only: broadcast them
        return f"torch.stack(torch.broadcast_tensors({', '.join(parts)}), dim={-out.rank})"
    return f"torch.stack([{', '.join(parts)}], dim={-out.rank})"


def _upsample(n: Node, a, cx):
    (t,) = cx.in_types(n)
    axes = tuple(n.attrs["axes"])
    lead = tuple(x for x in t.names if x not in axes)
    x = move(a[0], t.names, lead + axes)
    cx.need_helper("upsample")
    y = f"_upsample({x}, {len(axes)}, {cx.hv(n.attrs['scale'])}, {n.attrs['mode']!r})"
    return move(y, lead + axes, n.type.names)


def _groupnorm_init(n: Node, cx):
    extra = "" if n.attrs["affine"] else ", affine=False"
    return f"nn.GroupNorm({cx.hv(n.attrs['groups'])}, {cx.hv(n.attrs['num'])}, eps={_float(n.attrs['eps'], cx)}{extra})"


def _groupnorm(n: Node, a, cx):
    return _channels_first(n, a, cx, n.attrs["channel"], tuple(n.attrs["spatial"]), f"self.{cx.mod(n)}")


def _instancenorm_init(n: Node, cx):
    if not n.attrs["affine"]:
        return None  # no parameters: a layer_norm over the spatial axes computes it
    k = len(n.attrs["spatial"])
    return f"nn.InstanceNorm{k}d({cx.hv(n.attrs['num'])}, eps={_float(n.attrs['eps'], cx)}, affine=True)"


def _instancenorm(n: Node, a, cx):
    (t,) = cx.in_types(n)
    spatial = tuple(n.attrs["spatial"])
    if n.attrs["affine"]:
        return _channels_first(n, a, cx, n.attrs["channel"], spatial, f"self.{cx.mod(n)}")
    lead = tuple(x for x in t.names if x not in spatial)
    x = move(a[0], t.names, lead + spatial)
    k = len(spatial)
    y = f"F.layer_norm({x}, {_paren(x)}.shape[{-k}:], eps={_float(n.attrs['eps'], cx)})"
    return move(y, lead + spatial, t.names)


TORCH_LOWERINGS.update({
    "slice": Lowering(_slice),
    "split": Lowering(_split),
    "chunk": Lowering(_chunk),
    "roll": Lowering(_roll),
    "shift": Lowering(_shift),
    "reverse": Lowering(lambda n, a, cx: f"torch.flip({a[0]}, dims=({dim(n.type, n.attrs['axis'])},))"),
    "cumsum": Lowering(lambda n, a, cx: f"torch.cumsum({a[0]}, dim={dim(n.type, n.attrs['axis'])})"),
    "cumprod": Lowering(lambda n, a, cx: f"torch.cumprod({a[0]}, dim={dim(n.type, n.attrs['axis'])})"),
    "stack": Lowering(_stack),
    "upsample": Lowering(_upsample),
    "GroupNorm": Lowering(_groupnorm, _groupnorm_init),
    "InstanceNorm": Lowering(_instancenorm, _instancenorm_init),
})

HELPERS.update({
    "shift": '''
def _shift(x, k, dim, fill):
    """x moved k positions along dim (to higher positions for k > 0), the emptied ones `fill`."""
    n = x.shape[dim]
    src = torch.arange(n, device=x.device) - k
    keep = ((src >= 0) & (src < n)).view([n if d == dim % x.dim() else 1 for d in range(x.dim())])
    return torch.where(keep, torch.roll(x, k, dim), torch.tensor(fill, dtype=x.dtype, device=x.device))
''',
    "upsample": '''
def _upsample(x, k, scale, mode):
    """nn.Upsample (align_corners=False) of the last k axes of x, any number of axes before them."""
    if mode == "bilinear":
        mode = ("linear", "bilinear", "trilinear")[k - 1]
    lead = x.shape[: x.dim() - k]
    y = F.interpolate(x.reshape(-1, 1, *x.shape[x.dim() - k :]), scale_factor=scale, mode=mode)
    return y.reshape(*lead, *y.shape[2:])
''',
})


# ---- linear recurrences ------------------------------------------------------------------


def _linear_scan(n: Node, a, cx):
    ta, tb, th = cx.in_types(n)
    out = n.types[0].names
    axis = n.attrs["axis"]
    full = cx.graph.kind != "model"  # a lift prefix, as in _binary
    step = tuple(x for x in out if x != axis)
    cx.need_helper("linear_scan")
    return (f"_linear_scan({align(a[0], ta, out, full=full)}, {move(a[1], tb.names, out)}, {move(a[2], th.names, step)}, "
            f"{dim(n.types[0], axis)}, {n.attrs['reverse']})")


def _linear_scan_sum(n: Node, a, cx):
    """The factors and c aligned to (axis, h0's axes), h0 in its own layout; the helper makes
    y as (axis, h0's axes not summed) and moves it into the order of the op's result."""
    ts = cx.in_types(n)
    na, axis, out = n.attrs["na"], n.attrs["axis"], tuple(n.attrs["out"])
    lay = (axis, *ts[-2].names)
    fac = [f"{align(v, t, lay, full=True)}.movedim({-len(lay)}, 0)" for v, t in zip(a[:-2], ts[:-2])]
    c = f"{align(a[-1], ts[-1], lay, full=True)}.movedim({-len(lay)}, 0)"
    dims = tuple(lay.index(x) - len(lay) for x in n.attrs["sum"])
    kept = tuple(x for x in lay if x not in n.attrs["sum"])
    moved = [(kept.index(x) - len(out), out.index(x) - len(out)) for x in out if kept.index(x) != out.index(x)]
    perm = f"({_tup(m[0] for m in moved)}, {_tup(m[1] for m in moved)})" if moved else "None"
    i = next(i for i in range(na, len(ts) - 2) if ts[i].has(axis))  # a factor of b with the axis
    cx.need_helper("linear_scan_sum")
    return (f"_linear_scan_sum([{', '.join(fac[:na])}], [{', '.join(fac[na:])}], {n.attrs['exp_a']}, {a[-2]}, {c}, "
            f"{_paren(a[i])}.shape[{dim(ts[i], axis)}], {_tup(dims) if dims else '()'}, {len(out)}, {perm}, "
            f"{n.attrs['reverse']})")


TORCH_LOWERINGS["linear_scan"] = Lowering(_linear_scan)
TORCH_LOWERINGS["linear_scan_sum"] = Lowering(_linear_scan_sum)

HELPERS["linear_scan"] = '''
def _scan_chunks(a, b, h0, reverse):
    """h_t = a_t * h_{t-1} + b_t along dim 0 from h0 (a and h0 broadcast to b; `reverse`: from
    the last position to the first), in chunks of c ~ sqrt(n) steps: every chunk run from a
    zero state (all chunks at once, c steps), the state entering each chunk from the chunk
    ends (one step per chunk), then every chunk run again from its entering state, keeping
    each step; the n mod c steps the chunks leave over, after them, one at a time.
    O(sqrt n) steps of elementwise work, each over a whole chunk's worth of positions."""
    n = b.shape[0]
    c = max(1, round(n ** 0.5))
    k = n // c
    lo = n - k * c if reverse else 0  # the chunks cover positions lo .. lo + k c - 1
    at = a.expand(n, *b.shape[1:])  # a view: an `a` of length 1 is the same at every step
    b3 = b[lo:lo + k * c].unflatten(0, (k, c))
    a3 = at[lo:lo + k * c].unflatten(0, (k, c)) if a.shape[0] > 1 else a[None].expand(1, c, *a.shape[1:])
    steps = range(c - 1, -1, -1) if reverse else range(c)
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), h0.dtype)
    end, prod = b3[:, steps[0]].to(dtype), a3[:, steps[0]].to(dtype)  # at the result's precision
    for j in steps[1:]:
        end = torch.addcmul(b3[:, j], a3[:, j], end)
        prod = prod * a3[:, j]
    prod = prod.expand_as(end)
    into = [h0.expand(b.shape[1:]).to(dtype)]
    for i in range(k - 1, 0, -1) if reverse else range(k - 1):
        into.append(torch.addcmul(end[i], prod[i], into[-1]))
    h = torch.stack(into[::-1] if reverse else into)
    # without gradients each step is written straight into the result
    grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad or h0.requires_grad)
    hs, kept = b.new_empty(b3.shape, dtype=dtype), []
    for j in steps:
        h = torch.addcmul(b3[:, j], a3[:, j], h, out=None if grad else hs[:, j])
        kept.append(h)
    if grad:
        hs = torch.stack(kept[::-1] if reverse else kept, 1)
    hs = hs.flatten(0, 1)
    if k * c == n:
        return hs
    h, tail = hs[0] if reverse else hs[-1], []
    for t in range(lo - 1, -1, -1) if reverse else range(k * c, n):
        h = torch.addcmul(b[t], at[t], h)
        tail.append(h)
    return torch.cat([torch.stack(tail[::-1]), hs]) if reverse else torch.cat([hs, torch.stack(tail)])


def _linear_scan(a, b, h0, dim, reverse):
    """h_t = a_t * h_{t-1} + b_t at every position t along `dim` (negative), from h0 (which
    lacks that axis); `a` broadcasts against b. Returns every h_t and the last one."""
    a = a.reshape((1,) * (b.dim() - a.dim()) + tuple(a.shape)).movedim(dim, 0)
    h0 = h0.unsqueeze(dim)
    h0 = h0.reshape((1,) * (b.dim() - h0.dim()) + tuple(h0.shape)).movedim(dim, 0)[0]
    b = b.movedim(dim, 0)
    if b.shape[0] == 0:
        return b.movedim(0, dim), torch.broadcast_to(h0, tuple(b.shape[1:]))
    hs = _scan_chunks(a, b, h0, reverse)
    return hs.movedim(0, dim), hs[0] if reverse else hs[-1]
'''


# ---- recurrent cells (nncircuit.ops.cells) -------------------------------------------------


def _cell_init(n: Node, cx):
    cls = f"nn.{n.op}"
    extra = "" if n.attrs["bias"] else ", bias=False"
    if n.op == "RNNCell" and n.attrs["nonlinearity"] != "tanh":
        extra += f', nonlinearity="{n.attrs["nonlinearity"]}"'
    return f"{cls}({cx.hv(n.attrs['in_features'])}, {cx.hv(n.attrs['hidden_size'])}{extra})"


def _movedims(src: tuple[str, ...], dst: tuple[str, ...]):
    """(from, to) of Tensor.movedim turning axis order src into dst; None when they agree."""
    if src == dst:
        return None
    n = len(src)
    moved = [(src.index(a) - n, dst.index(a) - n) for a in dst if src.index(a) != dst.index(a)]
    return tuple(m[0] for m in moved), tuple(m[1] for m in moved)


def _cell(n: Node, a, cx):
    """torch.nn's cell itself, on x [kept..., in] and its states [kept..., hidden]: called
    directly where the tensors have one batch axis at most (the cell's own contract), else
    through `_recurrent_cell`, which flattens the leading axes into one."""
    x_t, *state_ts = cx.in_types(n)
    ins, hidden = tuple(n.attrs["in_axes"]), n.attrs["hidden"].name
    kept = tuple(name for name in x_t.names if name not in ins)
    x = move(a[0], x_t.names, kept + ins)
    if len(ins) > 1:
        x = f"{_paren(x)}.flatten({-len(ins)})"
    states = [move(v, t.names, kept + (hidden,)) for v, t in zip(a[1:], state_ts)]
    back = [_movedims(kept + (hidden,), t.names) for t in n.types]
    direct = cx.lift_len == 0 and len(kept) <= 1 and not any(back)
    if direct:
        arg = f"({', '.join(states)})" if len(states) > 1 else states[0]
        return f"self.{cx.mod(n)}({x}, {arg})"
    cx.need_helper("recurrent_cell")
    moves = f", {_tup(back)}" if any(back) else ""
    return f"_recurrent_cell(self.{cx.mod(n)}, {x}, {_tup(states)}{moves})"


for _cell_op in ("LSTMCell", "GRUCell", "RNNCell"):
    TORCH_LOWERINGS[_cell_op] = Lowering(_cell, _cell_init)

HELPERS["recurrent_cell"] = '''
def _recurrent_cell(cell, x, states, moves=()):
    """A torch.nn LSTMCell, GRUCell or RNNCell (one batch axis at most) on x [..., in] and its
    states [..., hidden] with any leading axes, flattened into one and restored after; `moves`:
    (from, to) of a movedim per result (None: none), into the layouts of the states."""
    lead = torch.broadcast_shapes(x.shape[:-1], *(s.shape[:-1] for s in states))
    flat = [t.expand(*lead, t.shape[-1]).reshape(-1, t.shape[-1]) for t in (x, *states)]
    out = cell(flat[0], tuple(flat[1:]) if len(states) > 1 else flat[1])
    out = [o.reshape(*lead, o.shape[-1]) for o in (out if isinstance(out, tuple) else (out,))]
    out = [o.movedim(*m) if m else o for o, m in zip(out, moves or [None] * len(out))]
    return tuple(out) if len(out) > 1 else out[0]
'''
HELPERS["linear_scan_sum"] = '''
def _linear_scan_sum(fa, fb, exp_a, h0, c, n, dims, rank, perm, reverse):
    \"\"\"h_t = a_t * h_{t-1} + b_t along dim 0 from h0 (a: the product of the factors fa, under
    exp if exp_a; b: the product of fb), read out as y_t = (c_t * h_t) summed over `dims`
    (negative), stacked along dim -rank (behind any lifted axes) and moved by `perm`; returns
    y and the last state. The factors and c have the stepped axis first (size 1: the same at
    every step), of length n. The chunked
    scan of _scan_chunks, but a, b and the read-out are made for one chunk position at a time
    (that position in every chunk: a strided slice), so no [seq, state] tensor is ever made:
    a first pass from zero states gives every chunk's end state and the product of its a; one
    step per chunk carries the state into each; a second pass runs every chunk from its
    entering state, reading each state out as it goes; the positions the chunks leave over
    run one at a time after them.\"\"\"
    shape = torch.broadcast_shapes(h0.shape, *(f.shape[1:] for f in (*fa, *fb)))

    def prod(fs, sl):
        p = None
        for f in fs:
            f = f if f.shape[0] == 1 else f[sl]
            p = f if p is None else p * f
        return p

    def ab(sl):
        a = prod(fa, sl)
        return (torch.exp(a) if exp_a else a), prod(fb, sl)

    def read(h, sl):
        y = h * (c if c.shape[0] == 1 else c[sl])
        return y.sum(dims) if dims else y

    def done(y, h):
        y = y.movedim(0, -rank)
        return (y if perm is None else y.movedim(*perm)), h

    h = h0.expand(shape)
    if n == 0:
        return done(read(h[None][:0], slice(0, 0)), h)
    cs = max(1, round(n ** 0.5))
    k = n // cs
    lo = n - k * cs if reverse else 0  # the chunks cover positions lo .. lo + k cs - 1
    steps = range(cs - 1, -1, -1) if reverse else range(cs)
    at = [slice(lo + j, lo + k * cs, cs) for j in range(cs)]
    end = pa = None
    for j in steps:
        a, b = ab(at[j])
        end, pa = (b, a) if end is None else (torch.addcmul(b, a, end), pa * a)
    shp = torch.broadcast_shapes(end.shape, pa.shape)
    end, pa = end.expand(shp), pa.expand(shp)
    into = [h]
    for i in range(k - 1, 0, -1) if reverse else range(k - 1):
        into.append(torch.addcmul(end[i], pa[i], into[-1]))
    h = torch.stack(into[::-1] if reverse else into)
    ys = [None] * cs
    for j in steps:
        a, b = ab(at[j])
        h = torch.addcmul(b, a, h)
        ys[j] = read(h, at[j])
    y = torch.stack(ys, 1).flatten(0, 1)
    h = h[0] if reverse else h[-1]
    tail = []
    for t in range(lo - 1, -1, -1) if reverse else range(k * cs, n):
        a, b = ab(slice(t, t + 1))
        h = torch.addcmul(b[0], a[0], h)
        tail.append(read(h[None], slice(t, t + 1)))
    if tail:
        y = torch.cat([*tail[::-1], y]) if reverse else torch.cat([y, *tail])
    return done(y, h)
'''


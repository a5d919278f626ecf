"""The ONNX graph builder the backend lowers into: unique names, deduplicated constants, and
the layout helpers (permute and align by axis name, reshape part of a shape, read run-time
sizes) that every op lowering shares. Each tensor knows its full run-time rank: the axes of
its IR type plus the `prefix` of leading axes a lifted block call added in front."""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import lcm

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nncircuit.names import fresh
from nncircuit.errors import InternalError, LoweringError
from nncircuit.types.sizes import Dim, Size
from nncircuit.types.tensor import Axis, TensorType

FUNCTION_DOMAIN = "nncircuit"

ELEM: dict[str, int] = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16,
    "float64": TensorProto.DOUBLE,
    "int64": TensorProto.INT64,
    "int32": TensorProto.INT32,
    "bool": TensorProto.BOOL,
}
NUMPY: dict[int, type] = {
    TensorProto.FLOAT: np.float32,
    TensorProto.FLOAT16: np.float16,
    TensorProto.DOUBLE: np.float64,
    TensorProto.INT64: np.int64,
    TensorProto.INT32: np.int32,
    TensorProto.BOOL: np.bool_,
}
SHORT: dict[int, str] = {
    TensorProto.FLOAT: "f32",
    TensorProto.FLOAT16: "f16",
    TensorProto.BFLOAT16: "bf16",
    TensorProto.DOUBLE: "f64",
    TensorProto.INT64: "i64",
    TensorProto.INT32: "i32",
    TensorProto.BOOL: "bool",
}


@dataclass(frozen=True)
class Tensor:
    """An ONNX value standing for an IR value: its name, its IR type, and how many lifted
    axes it carries in front of the type's axes at run time."""

    name: str
    type: TensorType
    prefix: int = 0

    @property
    def rank(self) -> int:
        return self.prefix + self.type.rank

    @property
    def names(self) -> tuple[str, ...]:
        return self.type.names

    def pos(self, axis: str) -> int:
        """Position of a named axis in the full run-time rank."""
        return self.prefix + self.type.index(axis)

    def like(self, name: str, axes=None, dtype: str | None = None) -> Tensor:
        t = self.type if axes is None else self.type.with_axes(axes)
        return replace(self, name=name, type=t if dtype is None else t.with_dtype(dtype))


class Names:
    """Unique value names of one graph or function body. `wanted` names (graph outputs)
    are kept free for their owner; `claim` takes an exact name (an initializer's)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.wanted: set[str] = set()

    def fresh(self, base: str) -> str:
        name = fresh(base, lambda n: n in self.taken or n in self.wanted)
        self.taken.add(name)
        return name


class Builder:
    """Collects the nodes of one ONNX graph or function body, in a topological order."""

    def __init__(self, opset: int, *, fp16: bool = False):
        self.opset = opset
        self.fp16 = fp16
        self.nodes: list[onnx.NodeProto] = []
        self.values = Names()
        self.node_names = Names()
        self.scope = ""
        self._consts: dict[tuple, str] = {}
        self._shapes: dict[tuple, str] = {}
        self.const_names: set[str] = set()

    # ---- types
    def elem(self, dtype: str) -> int:
        """The ONNX element type computing an IR dtype (float32 is float16 in fp16 mode)."""
        if self.fp16 and dtype == "float32":
            return TensorProto.FLOAT16
        return ELEM[dtype]

    # ---- nodes
    def op(self, op_type: str, inputs, *, outputs: int = 1, domain: str = "", **attrs):
        """Append a node; returns its output name (or the list of them when outputs > 1)."""
        base = f"{self.scope}/{op_type}" if self.scope else op_type
        node_name = self.node_names.fresh(base)
        outs = [
            self.values.fresh(node_name if i == 0 else f"{node_name}:{i}") for i in range(outputs)
        ]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(
            op_type, list(inputs), outs, name=node_name, domain=domain or None, **attrs
        )
        self.nodes.append(node)
        return outs[0] if outputs == 1 else outs

    def producer(self, value: str, start: int = 0) -> onnx.NodeProto | None:
        for node in self.nodes[start:]:
            if value in node.output:
                return node
        return None

    def rename(self, old: str, new: str, start: int = 0) -> None:
        """Give value `old` (made by a node at or after `start`) the name `new` everywhere."""
        _rename_in(self.nodes[start:], old, new)
        self.values.taken.discard(old)

    def name_result(self, values: list[str], start: int) -> list[str]:
        """After one IR node's lowering: name its results (and their producing node) by the
        scope path, so `h.3.attn.q` is both a node and a value in the graph."""
        out = []
        for i, v in enumerate(values):
            node = self.producer(v, start)
            if node is None or v in self.const_names or not self.scope:
                out.append(v)
                continue
            if i == 0 and node.name != self.scope and self.scope not in self.node_names.taken:
                self.node_names.taken.discard(node.name)
                node.name = self.scope
                self.node_names.taken.add(self.scope)
            want = self.scope if i == 0 else f"{self.scope}:{i}"
            if v == want or want in self.values.taken or want in self.values.wanted:
                out.append(v)
                continue
            self.rename(v, want, start)
            self.values.taken.add(want)
            out.append(want)
        return out

    def claim(self, name: str) -> None:
        """Take `name` exactly (initializers carry state_dict names)."""
        if name in self.values.taken:
            raise LoweringError(
                f"the parameter name '{name}' is also the name of a value in the graph"
            )
        self.values.wanted.discard(name)
        self.values.taken.add(name)

    def finish_outputs(self, outputs: list[tuple[str, str]], fixed: set[str]) -> list[str]:
        """Give the graph's results their output names: the producing value is renamed, or an
        Identity added where it is an input, a constant, or already another output."""
        renamed: dict[str, str] = {}
        done: set[str] = set()
        names = []
        for name, v in outputs:
            v = renamed.get(v, v)
            self.values.wanted.discard(name)
            if v == name and v not in done and v not in fixed:
                names.append(v)
                done.add(v)
                continue
            free = name not in self.values.taken
            target = name if free else self.values.fresh(name)
            if (
                free
                and v not in done
                and v not in fixed
                and v not in self.const_names
                and self.producer(v) is not None
            ):
                self.rename(v, target)
                self.values.taken.add(target)
                renamed[v] = target
            else:
                if free:
                    self.values.taken.add(target)
                self.nodes.append(
                    helper.make_node(
                        "Identity", [v], [target], name=self.node_names.fresh(f"{target}/Identity")
                    )
                )
            names.append(target)
            done.add(target)
        return names

    # ---- constants
    def const(self, array: np.ndarray, elem: int | None = None) -> str:
        """A Constant node (one per distinct value in this body), named by its content."""
        array = np.asarray(array)
        if elem is None:
            elem = {np.dtype(v): k for k, v in NUMPY.items()}[array.dtype]
        key = (
            elem,
            array.shape,
            array.tobytes() if elem != TensorProto.BFLOAT16 else repr(array.tolist()),
        )
        if key in self._consts:
            return self._consts[key]
        if array.size <= 8:
            shown = array if elem == TensorProto.BFLOAT16 else array.astype(NUMPY[elem])
            flat = ",".join(_fmt(x) for x in shown.reshape(-1))
            text = f"{SHORT[elem]}[{flat}]" if array.ndim else f"{SHORT[elem]}({flat})"
        else:
            text = f"{SHORT[elem]}_const"
        name = self.values.fresh(text)
        if elem == TensorProto.BFLOAT16:
            value = helper.make_tensor(
                name, elem, array.shape, array.astype(np.float32).reshape(-1).tolist()
            )
        else:
            value = numpy_helper.from_array(array.astype(NUMPY[elem]), name)
        self.node_names.taken.add(name)
        self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=value))
        self._consts[key] = name
        self.const_names.add(name)
        return name

    def i64(self, values) -> str:
        return self.const(np.array(list(values), dtype=np.int64))

    def scalar(self, value, elem: int) -> str:
        if elem == TensorProto.BFLOAT16:
            return self.const(np.array(value, dtype=np.float32), elem)
        return self.const(np.array(value, dtype=NUMPY[elem]), elem)

    # ---- shapes
    def shape(self, x: str, start: int = 0, end: int | None = None) -> str:
        """The 1-D int64 shape of x, or the part [start, end) of it."""
        key = (x, start, end)
        if key not in self._shapes:
            self._shapes[key] = self._shape(x, start, end)
        return self._shapes[key]

    def _shape(self, x: str, start: int, end: int | None) -> str:
        if self.opset >= 15:
            return self.op("Shape", [x], start=start or None, end=end)
        if start == 0 and end is None:
            return self.op("Shape", [x])
        s = self.shape(x)
        ends = [end] if end is not None else [2**62]
        return self.op("Slice", [s, self.i64([start]), self.i64(ends)])

    def dim(self, x: str, i: int) -> str:
        """The size of axis i of x as a 0-d int64 scalar."""
        return self.op("Gather", [self.shape(x), self.const(np.array(i, dtype=np.int64))], axis=0)

    def cat(self, parts: list[str]) -> str:
        return parts[0] if len(parts) == 1 else self.op("Concat", parts, axis=0)

    def unsqueeze(self, x: str, axes) -> str:
        return self.op("Unsqueeze", [x, self.i64(axes)])

    def squeeze(self, x: str, axes) -> str:
        return self.op("Squeeze", [x, self.i64(axes)])

    def reduce(self, op_type: str, x: str, axes, *, keepdims: int) -> str:
        axes = list(axes)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.i64(axes)], keepdims=keepdims)
        return self.op(op_type, [x], axes=axes, keepdims=keepdims)

    # ---- layout by axis name
    def transpose(self, t: Tensor, order) -> Tensor:
        """Reorder the type's axes into `order` (the lifted prefix stays in front)."""
        order = tuple(order)
        if order == t.names:
            return t
        perm = list(range(t.prefix)) + [t.pos(a) for a in order]
        return t.like(self.op("Transpose", [t.name], perm=perm), [t.type.axis(a) for a in order])

    def align(self, t: Tensor, target, *, full: bool = True) -> Tensor:
        """Reorder t into the order of `target` and insert size-1 axes for the target axes it
        lacks, so that it broadcasts against any tensor laid out as `target`. Unless `full`,
        a tensor without lifted axes leaves missing leading axes to broadcasting."""
        target = tuple(target)
        present = tuple(a for a in target if t.type.has(a))
        t = self.transpose(t, present)
        if not full and t.prefix == 0 and present:
            target = target[target.index(present[0]) :]
        missing = [t.prefix + i for i, a in enumerate(target) if not t.type.has(a)]
        if not missing:
            return t
        axes = [t.type.axis(a) if t.type.has(a) else Axis(a, Size.of(1)) for a in target]
        return t.like(self.unsqueeze(t.name, missing), axes)

    def reshape_span(self, t: Tensor, start: str, end: str, middle: list[Axis]) -> Tensor:
        """Replace the type axes from `start` to `end` (inclusive, adjacent) by `middle`
        (static sizes, at most one unknown)."""
        i, j = t.pos(start), t.pos(end)
        after = t.type.axes[t.type.index(end) + 1 :]
        mid = [a.size.value if a.size.is_static else -1 for a in middle]
        if mid.count(-1) > 1:
            raise InternalError("reshape with two unknown sizes")
        lead = [0] * i  # Reshape copies a 0 from the same position of the input
        if all(a.size.is_static for a in after):
            shape = self.i64(lead + mid + [a.size.value for a in after])
        else:
            shape = self.cat([self.i64(lead + mid), self.shape(t.name, j + 1)])
        axes = list(t.type.axes[: t.type.index(start)]) + list(middle) + list(after)
        return t.like(self.op("Reshape", [t.name, shape]), axes)

    def broadcast_shape(self, parts: list[Tensor], rank: int, skip: int | None) -> str:
        """The broadcast shape of `parts` (same type layout, prefixes right-aligned) with the
        axis `skip` (counted from the end) set to 1."""
        shapes = []
        for p in parts:
            pieces = []
            if rank > p.rank:
                pieces.append(self.i64([1] * (rank - p.rank)))
            if skip is None:
                pieces.append(self.shape(p.name))
            else:
                k = p.rank + skip
                if k > 0:
                    pieces.append(self.shape(p.name, 0, k))
                pieces.append(self.i64([1]))
                if k + 1 < p.rank:
                    pieces.append(self.shape(p.name, k + 1))
            shapes.append(self.cat(pieces))
        return shapes[0] if len(shapes) == 1 else self.op("Max", shapes)

    def cast(self, t: Tensor, dtype: str) -> Tensor:
        if t.type.dtype == dtype and self.elem(dtype) == self.elem(t.type.dtype):
            return t
        return t.like(self.op("Cast", [t.name], to=self.elem(dtype)), dtype=dtype)


class Dims:
    """Run-time sizes of one graph's dynamic axes, read (lazily) from the first input that
    has each one; a repeat body also sees its parent's."""

    def __init__(self, b: Builder, inputs: list[Tensor], parent: Dims | None = None):
        self.b = b
        self.parent = parent
        self.sources: dict[str, tuple[str, int]] = {}
        self.cache: dict[str, str] = {}
        for t in inputs:
            for ax in t.type.axes:
                sym = ax.size.bare_symbol()
                if sym is not None and sym not in self.sources:
                    self.sources[sym] = (t.name, t.pos(ax.name))

    def symbol(self, sym: str) -> str:
        if sym in self.cache:
            return self.cache[sym]
        if sym in self.sources:
            x, i = self.sources[sym]
            self.cache[sym] = self.b.dim(x, i)
            return self.cache[sym]
        if self.parent is not None:
            return self.parent.symbol(sym)
        raise LoweringError(f"the run-time size '{sym}' cannot be read from any input")

    def size(self, s: Size) -> str:
        """A 0-d int64 scalar holding the size `s` at run time."""
        b = self.b
        if s.is_static:
            return b.const(np.array(s.value, dtype=np.int64))
        den = lcm(s.const.denominator, *(c.denominator for _, c in s.terms))
        total = None
        for atom, c in s.terms:
            if isinstance(atom, Dim):
                v = self.symbol(atom.name)
            else:
                v = b.op("Div", [self.size(atom.num), b.const(np.array(atom.den, dtype=np.int64))])
            k = int(c * den)
            if k != 1:
                v = b.op("Mul", [v, b.const(np.array(k, dtype=np.int64))])
            total = v if total is None else b.op("Add", [total, v])
        if s.const:
            total = b.op("Add", [total, b.const(np.array(int(s.const * den), dtype=np.int64))])
        if den != 1:
            total = b.op("Div", [total, b.const(np.array(den, dtype=np.int64))])
        if total is None:
            raise InternalError(f"size {s} has no terms and is not static")
        return total


def _rename_in(nodes, old: str, new: str) -> None:
    """Rename a value in `nodes` and in the subgraphs they hold (a Loop body reads values of
    the graph around it by name)."""
    for node in nodes:
        for seq in (node.input, node.output):
            for i, v in enumerate(seq):
                if v == old:
                    seq[i] = new
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_in(attr.g.node, old, new)
                for seq in (attr.g.output,):
                    for vi in seq:
                        if vi.name == old:
                            vi.name = new


def _fmt(x) -> str:
    """A constant's element as its name shows it (numpy's shortest round-trip form)."""
    if isinstance(x, (bool, np.bool_)):
        return "1" if x else "0"
    return str(x)


def value_info(name: str, t: TensorType, elem: int) -> onnx.ValueInfoProto:
    """A graph input/output declaration: static sizes as numbers, dynamic axes by their
    spec name (dim_param), sizes computed from dynamic axes left unnamed."""
    dims: list[int | str | None] = []
    for ax in t.axes:
        if ax.size.is_static:
            dims.append(ax.size.value)
        else:
            dims.append(ax.size.bare_symbol())
    return helper.make_tensor_value_info(name, elem, dims)

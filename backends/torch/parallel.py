"""The tensor-parallel plan of a spec, read off its named axes: which Linears of the generated
module split column-wise (their output axis is sharded) and which row-wise (they contract it
back), as `{module_fqn: "colwise" | "rowwise"}` for `torch.distributed.tensor.parallel`.

A pair is sharded only where the generated code is right on each rank's local shard:

* the column-wise Linears map to exactly one output axis A, which is the last axis, and are
  called as modules (not tied to an Embedding, not fused into a LinearGroup by -O2);
* between them and the row-wise Linear there are only elementwise ops over A (activations,
  `*`, `+`, dropout), whose values nothing else reads;
* the row-wise Linear contracts exactly A (its last input axis).

Anything else stays replicated, with the reason in the plan file. Attention's q, k, v map to
two axes ([heads, dh]) and the generated code unflattens them with the global `heads`, which
the local shard does not have: they and the output projection stay replicated."""

from __future__ import annotations

from dataclasses import dataclass

from nncircuit.backends.structure import single_call_body
from nncircuit.errors import InternalError
from nncircuit.ir.graph import BodyNode, CallNode, Graph, LoopNode, Node, Value
from nncircuit.ops import registry
from nncircuit.ops.core import renamed
from nncircuit.ops.fused import group_members
from nncircuit.ops.nn import linear_attrs
from nncircuit.names import pyname
from nncircuit.types import expr as X

# ops that act on each element of the sharded axis independently of the others
ELEMENTWISE = frozenset(
    {"relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "exp", "log", "sqrt", "abs", "neg", "dropout"}
)
BINARY = frozenset({"add", "sub", "mul", "div"})


@dataclass(frozen=True)
class Entry:
    """One Linear of the model: its module path, its style and why (the sharded axis, or the
    reason it stays replicated)."""

    fqn: str
    style: str  # "colwise" | "rowwise" | "replicated"
    axis: str  # the sharded axis; "" when replicated
    size: int  # that axis's size (the mesh size must divide it); 0 when replicated
    why: str
    # a split of several axes ([heads, dh]): the module that reshapes with the size of the
    # first, and its attribute holding that size, which each rank sets to its local share
    local: tuple[str, str] | None = None


def plan_entries(graph: Graph) -> list[Entry]:
    """Every Linear module of the model (by module path, sorted) with its tensor-parallel style."""
    entries: dict[str, Entry] = {}
    for prefix, g in _instances(graph, ""):
        for e in _graph_entries(g, prefix):
            entries.setdefault(e.fqn, e)
    return [entries[k] for k in sorted(entries, key=_fqn_key)]


def plan(graph: Graph) -> dict[str, str]:
    """`{module_fqn: "colwise" | "rowwise"}`: the Linears to shard; the others stay replicated."""
    return {e.fqn: e.style for e in plan_entries(graph) if e.style != "replicated"}


def _fqn_key(fqn: str):
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in fqn.split("."))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _instances(g: Graph, prefix: str):
    """(module path, graph) of g and of every block instance below it, as the generated module
    nests them: a call is its module attribute, a repeat an nn.ModuleList indexed 0..n-1 (a
    single module when shared), of the body class or, when the body is one block, of that block."""
    yield prefix, g
    for n in g.nodes():
        if not isinstance(n, BodyNode) or n.module is None:
            continue
        here = _join(prefix, pyname(n.module))
        if isinstance(n, CallNode):
            yield from _instances(n.callee, here)
            continue
        if not isinstance(n, LoopNode):
            raise InternalError(f"{n.op} node {n.name} is neither a call nor a repeat")
        inner = single_call_body(n.callee)
        body = inner.callee if inner is not None else n.callee
        paths = [here] if n.shared else [f"{here}.{i}" for i in range(int(n.count.value))]
        for p in paths:
            yield from _instances(body, p)


def _graph_entries(g: Graph, prefix: str) -> list[Entry]:
    nodes = g.nodes()
    uses: dict[str, int] = {}
    for n in nodes:
        if n.module is not None:
            uses[n.module] = uses.get(n.module, 0) + 1
    out: dict[str, Entry] = {}

    def fqn(n: Node, module: str | None = None) -> str:
        return _join(prefix, pyname(module or n.owner))

    for n in nodes:
        if n.op == "LinearGroup":
            members = group_members(n.attrs)
            for m in members:
                out[fqn(n, m)] = Entry(
                    fqn(n, m), "replicated", "", 0,
                    f"fused with {', '.join(x for x in members if x != m)} into one LinearGroup "
                    "(-O2 joins their weights on every call); compile with -O1 to shard it",
                )
        elif n.op == "Linear" and n.module is not None and linear_attrs(n.attrs).tied is None:
            out[fqn(n)] = Entry(fqn(n), "replicated", "", 0, _replicated_why(g, n))

    for n in nodes:
        if n.op != "Linear" or fqn(n) not in out or out[fqn(n)].style != "replicated":
            continue
        found = _row_sources(g, n, uses)
        ins = linear_attrs(n.attrs).in_axes
        if isinstance(found, str):
            if len(linear_attrs(n.attrs).out_axes) == 1:
                why = f"is not a row-wise split of {ins[0] if len(ins) == 1 else list(ins)}: {found}"
                out[fqn(n)] = Entry(fqn(n), "replicated", "", 0, why)
            continue
        cols, local = found
        if any(out[fqn(c)].style != "replicated" for c in cols):
            continue  # a Linear already split row-wise cannot also split column-wise
        axis = ins[0]
        size = int(next(a for a in g.type_of(n.inputs[0]).axes if a.name == axis).size.value)
        where = (prefix, local) if local else None
        whole = f"; each rank holds whole slices of {axis}, and {local} is set to its share" if local else ""
        for c in cols:
            out[fqn(c)] = Entry(fqn(c), "colwise", axis, size, f"its output axis {axis} is sharded{whole}", where)
        out[fqn(n)] = Entry(fqn(n), "rowwise", axis, size, f"contracts the sharded axis {axis}", where)
    return list(out.values())


def _replicated_why(g: Graph, n: Node) -> str:
    lin = linear_attrs(n.attrs)
    outs = [a.name for a in lin.out_axes]
    ins = list(lin.in_axes)
    if len(outs) > 1:
        return f"maps to [{', '.join(outs)}], and no Linear contracts {outs[0]} back through per-slice ops alone"
    if len(ins) > 1:
        return f"contracts [{', '.join(ins)}], which no Linear splits column-wise"
    return f"no Linear contracts {outs[0]} through elementwise ops alone"


def _row_sources(g: Graph, row: Node, uses: dict[str, int]):
    """(the column-wise Linears whose sharded axis `row` contracts, the hyperparameter attribute
    to localise or None), or why there are none.

    One contracted axis A: A must be the last axis all the way (elementwise ops only). Several,
    [H, ...]: H is the outermost of the flattened features (each rank's columns are whole
    slices of H), the values in between carry H, and the ops are renames, elementwise ops and
    blocks lifted over H (which by the language's lifting act on each slice of H alone); the
    generated code reshapes with `self.H`, which each rank sets to its share."""
    ins = linear_attrs(row.attrs).in_axes
    axis = ins[0]
    if row.module is None or uses.get(row.module, 0) != 1:
        return "its module is applied more than once"
    several = len(ins) > 1
    local = None
    if several:
        ax = next((a for a in g.type_of(row.inputs[0]).axes if a.name == axis), None)
        hyper = {h.name for h in g.hyper}
        if ax is None or not isinstance(ax.code, X.Ref) or ax.code.name not in hyper or ax.code.name != pyname(ax.code.name):
            return f"the size of {axis} is not one of the block's hyperparameters"
        local = ax.code.name
    elif g.type_of(row.inputs[0]).names[-1:] != (axis,):
        return f"{axis} is not the last axis of its input"

    def carries(v: Value) -> bool:
        names = g.type_of(v).names
        return axis in names if several else names[-1:] == (axis,)

    region: set[int] = set()  # nodes between the column-wise Linears and `row`
    cols: list[Node] = []
    stack = [row.inputs[0]]
    while stack:
        v = stack.pop()
        if g.is_output(v):
            return "a sharded value is an output of its block"
        if not carries(v):
            return f"{axis} is not {'an' if several else 'the last'} axis of an intermediate value"
        n = g.node(v.node)
        if n.id in region:
            continue
        region.add(n.id)
        if n.op == "Linear":
            lin = linear_attrs(n.attrs)
            outs = lin.out_axes
            fits = (len(outs) > 1 and outs[0].name == axis and local is not None
                    and lin.out_sizes[0].expr == X.Ref(local)) if several \
                else (len(outs) == 1 and outs[0].name == axis)
            if not fits or n.module is None or lin.tied is not None or uses.get(n.module, 0) != 1:
                return f"{n.name} is not a Linear that maps to {axis} {'first' if several else 'alone'}"
            cols.append(n)
        elif n.op in ELEMENTWISE:
            stack.append(n.inputs[0])
        elif n.op in BINARY:
            if len(n.inputs) == 2 and len({g.type_of(x).names for x in n.inputs}) != 1:
                return f"{n.name} broadcasts one side over the sharded axis"
            stack.extend(n.inputs)
        elif several and n.op == "rename" and renamed(n.attrs)[0] != axis:
            stack.append(n.inputs[0])
        elif several and isinstance(n, CallNode) and axis in n.lift:
            if local in frozenset().union(*(v.expr.refs() for _, v in n.args)):
                return f"{n.name} takes {local} as an argument"
            stack.extend(n.inputs)
        elif n.op == "input":
            return f"{axis} comes from outside the block ({n.name})"
        else:
            return f"{n.name} ({n.op}) is not elementwise over {axis}"
    # every value in the region is read only inside it (or by `row`): no one else sees a shard
    for nid in region:
        node = g.node(nid)
        for i in range(len(node.types)):
            for user, _ in g.users(Value(nid, i)):
                if user.id not in region and user.id != row.id:
                    return f"{node.name} is also read by {user.name}"
    if several:  # the local size of H must reach nothing but the region
        for n in g.nodes():
            if n.id in region or n.id == row.id or n.op == "input":
                continue
            if any(axis in t.names for t in n.types) or local in _hyper_refs(n):
                return f"{n.name} also uses {axis}"
    return sorted(cols, key=lambda c: c.id), local


def _hyper_refs(n: Node) -> frozenset[str]:
    """The hyperparameters a node's attributes reference (in their expressions)."""
    if isinstance(n, CallNode):
        return frozenset().union(*(v.expr.refs() for _, v in n.args))
    if isinstance(n, LoopNode):
        return frozenset(n.count.expr.refs())
    return registry.get(n.op).hyper_refs(n.attrs)


def plan_source(graph: Graph, source: str) -> str:
    """The plan as a Python file that needs only torch: `PLAN`, the sharded axes, and
    `parallelize(model, mesh)`, which checks the mesh size divides them and applies the plan."""
    entries = plan_entries(graph)
    sharded = [e for e in entries if e.style != "replicated"]
    local = {e.local: e.size for e in sharded if e.local is not None}
    width = max((len(repr(e.fqn)) for e in sharded), default=0)
    lines = [
        f"# Tensor-parallel plan generated by nncircuit from {source}, model {graph.name}.",
        "# Edit the spec, not this file: it is regenerated by `nnc compile --parallel`.",
        "# Pass it to torch.distributed.tensor.parallel.parallelize_module, or call parallelize(model, mesh).",
        "from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module",
        "",
        "# module -> style: colwise splits the Linear's output features, rowwise its input features",
        "PLAN = {",
        *(f"    {e.fqn!r}:{' ' * (width - len(repr(e.fqn)))} {e.style!r},  # {e.why}" for e in sharded),
        "}",
        "",
        "# module -> (sharded axis, its size): the mesh size must divide each size",
        "AXES = {",
        *(f"    {e.fqn!r}:{' ' * (width - len(repr(e.fqn)))} ({e.axis!r}, {e.size})," for e in sharded),
        "}",
        "",
        "# module -> (attribute, size): the generated code reshapes the sharded values with this",
        "# attribute, which parallelize() sets to each rank's share, size // mesh size",
        "LOCAL = {",
        *(f"    {m!r}: ({a!r}, {z})," for (m, a), z in sorted(local.items())),
        "}",
        "",
        "# Linears left replicated (every rank computes them whole), and why:",
        *(f"#   {e.fqn}: {e.why}" for e in entries if e.style == "replicated"),
        *(["#   (none)"] if len(sharded) == len(entries) else []),
        "",
        "",
        "def parallelize(model, mesh):",
        '    """Shard `model` (built with the hyperparameters this plan was generated with) over the',
        '    1-D device mesh `mesh`; returns the model. Checks that the mesh size divides every',
        '    sharded axis, then sets the LOCAL attributes to each rank\'s share."""',
        "    n = mesh.size()",
        "    for fqn, (axis, size) in sorted(AXES.items()):",
        "        if size % n:",
        "            raise ValueError(f'{fqn}: axis {axis} of size {size} does not split over {n} devices')",
        "    for fqn, (attribute, size) in sorted(LOCAL.items()):",
        "        setattr(model.get_submodule(fqn), attribute, size // n)",
        "    styles = {'colwise': ColwiseParallel, 'rowwise': RowwiseParallel}",
        "    return parallelize_module(model, mesh, {k: styles[v]() for k, v in PLAN.items()})",
        "",
    ]
    return "\n".join(lines)


def emit_plan(spec, out: str) -> str:
    """Write the spec's tensor-parallel plan to `out`; return a report line."""
    import os

    from nncircuit.io import write_atomic

    entries = plan_entries(spec.graph)
    write_atomic(out, plan_source(spec.graph, os.path.basename(spec.path)), inputs=tuple(spec.program.files))
    n = sum(e.style != "replicated" for e in entries)
    fused = sum(e.why.startswith("fused with") for e in entries)
    note = f" ({fused} fused by -O2 stay replicated: -O1 can split them)" if fused else ""
    return f"wrote {out}: tensor-parallel plan, {n} of {len(entries)} Linears sharded{note}"

"""Text diagrams: Graphviz DOT and Mermaid flowcharts of the graph style, from one flat
view of the IR (nodes named by scope path, open blocks and repeats as clusters, every edge
labelled with its tensor type)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TypeGuard

from nncircuit.names import fresh
from nncircuit.ops import registry
from nncircuit.ir.graph import BodyNode, CallNode, Graph, InputNode, LoopNode, Node, ScanNode, Value

from nncircuit.backends.diagram import model as dm


@dataclass
class FNode:
    id: str
    lines: list[str]
    kind: str  # "op" | "learned" | "block" | "input" | "output"
    cluster: str | None


@dataclass
class FCluster:
    id: str
    label: str
    kind: str  # "block" | "repeat"
    parent: str | None
    doc: str = ""


@dataclass
class FEdge:
    src: str
    dst: str
    label: str


@dataclass
class FlatView:
    title: str
    doc: str
    nodes: list[FNode] = field(default_factory=list)
    clusters: list[FCluster] = field(default_factory=list)
    edges: list[FEdge] = field(default_factory=list)


def op_lines(node: Node, g: Graph) -> list[str]:
    lk = dm.look(node, g)
    head = f"{lk.text} {node.op}" if lk.text != node.op else node.op
    return [node.name, head] if lk.caption or not dm.is_auto_name(node.name, node.op) else [head]


def call_lines(node: CallNode, opts: dm.Options) -> list[str]:
    lines = [dm.call_title(node)]
    args = dm.args_text(node.args)
    if args:
        lines.append(args)
    if opts.cost:
        lines.append(dm.params_text(dm.block_params(node)))
    return lines


def cluster_label(node: BodyNode, opts: dm.Options) -> str:
    if isinstance(node, (LoopNode, ScanNode)):
        label = dm.repeat_title(node)
    else:
        call = dm.as_call(node)
        args = dm.args_text(call.args)
        label = dm.call_title(call) + (f"({args})" if args else "")
    if opts.cost:
        label += f" · {dm.params_text(dm.block_params(node))}"
    return label


def flat_view(spec, opts: dm.Options) -> FlatView:
    g = spec.graph
    exp = dm.Expansion(g, opts)
    title = dm.model_title(g) + (f" · {dm.params_text(spec.param_count())}" if opts.cost else "")
    view = FlatView(title, g.doc)
    _visit(view, g, "", 0, dm.root_env(g), exp, opts, None)
    for name, v in g.outputs:
        oid = f"output:{name}"
        view.nodes.append(FNode(oid, [name], "output", None))
        view.edges.append(FEdge(_out_end(g, "", v, 0, exp), oid, dm.type_label(g.type_of(v), dm.root_env(g))))
    return view


def _is_open(node: Node, path: str, level: int, exp: dm.Expansion) -> TypeGuard[BodyNode]:
    return isinstance(node, BodyNode) and exp.is_open(path, node, level + 1)


def _visit(view: FlatView, g: Graph, prefix: str, level: int, env, exp, opts, cluster):
    for node in g.nodes():
        path = dm.scope(prefix, node.name)
        if isinstance(node, InputNode):
            view.nodes.append(FNode(path, [node.input_name], "input", cluster))
        elif _is_open(node, path, level, exp):
            view.clusters.append(FCluster(path, cluster_label(node, opts), "repeat" if dm.is_loop(node) else "block",
                                          cluster, node.callee.doc if isinstance(node, CallNode) else ""))
            inner = level + 1 if isinstance(node, CallNode) else level
            _visit(view, node.callee, path, inner, dm.callee_env(node, g, env), exp, opts, path)
        elif isinstance(node, BodyNode):
            view.nodes.append(FNode(path, call_lines(dm.as_call(node), opts), "block", cluster))
        else:
            kind = "learned" if registry.get(node.op).learned else "op"
            view.nodes.append(FNode(path, op_lines(node, g), kind, cluster))
        for slot, v in enumerate(node.inputs):
            src = _out_end(g, prefix, v, level, exp)
            dst = _in_end(node, path, slot, level, exp)
            view.edges.append(FEdge(src, dst, dm.type_label(g.type_of(v), env)))


def _out_end(g: Graph, prefix: str, v: Value, level: int, exp) -> str:
    """The drawn node a value comes out of (inside an open block, the node that makes it)."""
    node = g.node(v.node)
    path = dm.scope(prefix, node.name)
    if _is_open(node, path, level, exp):
        _, inner = node.callee.outputs[v.index]
        return _out_end(node.callee, path, inner, level + 1 if isinstance(node, CallNode) else level, exp)
    return path


def _in_end(node: Node, path: str, slot: int, level: int, exp) -> str:
    if _is_open(node, path, level, exp):
        return dm.scope(path, node.callee.node(node.callee.inputs[slot]).name)
    return path


# ---- DOT -------------------------------------------------------------------------------------------


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


DOT_SHAPES = {
    "op": 'shape=box, style="rounded"',
    "learned": 'shape=box, style="rounded,bold", penwidth=2',
    "block": 'shape=box, peripheries=2',
    "input": "shape=ellipse",
    "output": "shape=ellipse",
}


def dot(spec, opts: dm.Options) -> str:
    """The graph-style diagram as Graphviz DOT (deterministic text)."""
    return dot_of(flat_view(spec, opts), spec.graph.name)


def _tree(view: FlatView) -> tuple[dict, dict]:
    """The clusters under each cluster, and the nodes directly in each (None: top level)."""
    children: dict[str | None, list] = {}
    for c in view.clusters:
        children.setdefault(c.parent, []).append(c)
    nodes_in: dict[str | None, list[FNode]] = {}
    for n in view.nodes:
        nodes_in.setdefault(n.cluster, []).append(n)
    return children, nodes_in


def dot_of(view: FlatView, name: str) -> str:
    out = [f"digraph {_q(name)} {{"]
    out.append(f"  graph [rankdir=LR, fontname=\"DejaVu Sans\", fontsize=11, labelloc=t, labeljust=l, "
               f"label={_q(view.title)}];")
    out.append('  node [fontname="DejaVu Sans", fontsize=10];')
    out.append('  edge [fontname="DejaVu Sans", fontsize=8];')
    children, nodes_in = _tree(view)

    def emit(cluster: str | None, indent: str):
        for n in nodes_in.get(cluster, []):
            out.append(f"{indent}{_q(n.id)} [id={_q(n.id)}, label={_q(chr(10).join(n.lines))}, {DOT_SHAPES[n.kind]}];")
        for c in children.get(cluster, []):
            style = "dashed" if c.kind == "repeat" else "rounded"
            out.append(f"{indent}subgraph {_q('cluster_' + c.id)} {{")
            out.append(f"{indent}  id={_q(c.id)}; label={_q(c.label)}; style={style}; color=\"#6b7280\";")
            emit(c.id, indent + "  ")
            out.append(f"{indent}}}")

    emit(None, "  ")
    for e in view.edges:
        out.append(f"  {_q(e.src)} -> {_q(e.dst)} [label={_q(e.label)}];")
    out.append("}")
    return "\n".join(out) + "\n"


# ---- Mermaid --------------------------------------------------------------------------------------


def _mid(path: str, taken: dict[str, str]) -> str:
    """A Mermaid node id for a scope path: letters, digits and underscores only."""
    if path in taken:
        return taken[path]
    base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", path.replace(".", "__"))
    cand = fresh(base, set(taken.values()), first=2)
    taken[path] = cand
    return cand


def _mtext(s: str) -> str:
    return '"' + s.replace('"', "#quot;") + '"'


MERMAID_SHAPES = {
    "op": ("(", ")"),
    "learned": ("[", "]"),
    "block": ("[[", "]]"),
    "input": ("([", "])"),
    "output": ("([", "])"),
}


def mermaid(spec, opts: dm.Options) -> str:
    """The graph-style diagram as a Mermaid flowchart (deterministic text)."""
    view = flat_view(spec, opts)
    ids: dict[str, str] = {}
    out = ["flowchart LR", f"  %% {view.title}"]
    children, nodes_in = _tree(view)

    def emit(cluster: str | None, indent: str):
        for n in nodes_in.get(cluster, []):
            a, b = MERMAID_SHAPES[n.kind]
            text = "<br/>".join(n.lines)
            if n.kind == "learned":
                text = f"<b>{text}</b>"
            out.append(f"{indent}{_mid(n.id, ids)}{a}{_mtext(text)}{b}")
        for c in children.get(cluster, []):
            out.append(f"{indent}subgraph {_mid(c.id, ids)}[{_mtext(c.label)}]")
            out.append(f"{indent}  direction LR")
            emit(c.id, indent + "  ")
            out.append(f"{indent}end")

    emit(None, "  ")
    for e in view.edges:
        out.append(f"  {_mid(e.src, ids)} -->|{_mtext(e.label)}| {_mid(e.dst, ids)}")
    for c in view.clusters:
        if c.kind == "repeat":
            out.append(f"  style {_mid(c.id, ids)} stroke-dasharray: 5 3")
    return "\n".join(out) + "\n"

"""The graph style: a layered block diagram, one box per op, tensor types on the edges,
open blocks and repeats as nested clusters. Laid out by Graphviz `dot` when the binary is
installed, else by our own layered layout (so SVG never needs a system binary)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from nncircuit.ops import registry
from nncircuit.ir.graph import BodyNode, CallNode, Graph, InputNode, Node

from nncircuit.backends.diagram import model as dm
from nncircuit.backends.diagram.layout import Band, Cell, Placement, Spacing, place, route, split_rows, wrap_ranges
from nncircuit.backends.diagram.svg import Svg, num, path_d, text_width, wrap
from nncircuit.backends.diagram.text import call_lines, cluster_label, dot_of, flat_view, op_lines

LINE = 13.0
FONT = 10.0
LABEL = 8.0
TITLE_H = 22.0
EDGE = "#333"
WRAP_WIDTH = 1200.0
SPACING = dict(above=13.0, below=5.0, gap=10.0, min_gap=28.0, bend=22.0)


@dataclass
class Ctx:
    g: Graph
    prefix: str
    level: int
    env: dm.Env
    exp: dm.Expansion
    opts: dm.Options
    framed: bool


@dataclass
class BoxDraw:
    path: str
    kind: str  # "op" | "learned" | "block" | "input" | "output"
    lines: list[str]
    tip: str
    op: str = ""


@dataclass
class FrameDraw:
    path: str
    node: Node
    label: str
    caption: list[str]
    sub: Layout
    inner: tuple[float, float]
    level: int


@dataclass
class SinkDraw:
    path: str
    names: list[str]
    ys: list[float]


@dataclass
class ContDraw:
    tags: list[str]
    ys: list[float]
    side: str  # "in" | "out"


@dataclass
class Layout:
    rows: list[tuple[Placement, float]]  # one placement, or several stacked (a wrapped diagram)
    width: float
    height: float
    in_ys: list[float] = field(default_factory=list)
    out_ys: list[float] = field(default_factory=list)
    in_x: list[float] = field(default_factory=list)
    out_x: float = 0.0


def _slots(n: int, h: float) -> list[list[float]]:
    return [[h / 2 + (j - (n - 1) / 2) * 10] for j in range(n)]


def _box(key: str, draw: BoxDraw, n_in: int, n_out: int, **kw) -> Cell:
    bold = draw.kind in ("learned", "block")
    w = max(text_width(s, FONT, bold and i == 0) for i, s in enumerate(draw.lines)) + 18
    h = max(24.0, LINE * len(draw.lines) + 10, 10.0 * max(n_in, n_out) + 10)
    return Cell(key, w, h, _slots(n_in, h), _slots(n_out, h), payload=draw, **kw)


def frame_cell(node: BodyNode, cx: Ctx) -> Cell:
    path = dm.scope(cx.prefix, node.name)
    level = cx.level + 1 if isinstance(node, CallNode) else cx.level
    sub = layout_graph(Ctx(node.callee, path, level, dm.callee_env(node, cx.g, cx.env), cx.exp, cx.opts, True))
    label = cluster_label(node, cx.opts)
    doc = node.callee.doc if isinstance(node, CallNode) else ""
    inner_w = sub.width + 20
    caption = wrap(doc, max(inner_w, 200.0) - 16, 9) if doc else []
    w = max(inner_w, text_width(label, FONT, True) + 20, max((text_width(s, 9) for s in caption), default=0) + 16)
    h = TITLE_H + sub.height + 12 * len(caption) + (6 if caption else 2)
    ins = [[TITLE_H + y] for y in sub.in_ys]
    outs = [[TITLE_H + y] for y in sub.out_ys]
    draw = FrameDraw(path, node, label, caption, sub, (10.0, TITLE_H), level)
    return Cell(node.name, w, h, ins, outs, prefer=(0,), payload=draw)


def layout_graph(cx: Ctx) -> Layout:
    g = cx.g
    cells: list[Cell] = []
    for node in g.nodes():
        path = dm.scope(cx.prefix, node.name)
        tip = f"{path}: {node.op}"
        if isinstance(node, InputNode):
            name = node.input_name
            cells.append(_box(node.name, BoxDraw(path, "input", [name], tip), 0, 1, pinned="first", align="right"))
        elif isinstance(node, BodyNode) and cx.exp.is_open(path, node, cx.level + 1):
            cells.append(frame_cell(node, cx))
        elif isinstance(node, BodyNode):
            draw = BoxDraw(path, "block", call_lines(dm.as_call(node), cx.opts), f"{path}: {dm.as_call(node).block}")
            cells.append(_box(node.name, draw, len(node.inputs), len(node.types), prefer=(0,)))
        else:
            kind = "learned" if registry.get(node.op).learned else "op"
            draw = BoxDraw(path, kind, op_lines(node, g), tip, node.op)
            cells.append(_box(node.name, draw, len(node.inputs), len(node.types), prefer=(0,)))
    names = [name for name, _ in g.outputs]
    ys = [12.0 + 28 * j for j in range(len(names))]
    sink_w = max([text_width(s, FONT) + 16 for s in names] + [20.0])
    sink = Cell("<outputs>", sink_w, 28.0 * len(names), [[y] for y in ys], [], pinned="last", align="left",
                payload=SinkDraw(cx.prefix, names, ys))
    cells.append(sink)
    out_slots: dict = {}
    for j, (_, v) in enumerate(g.outputs):
        out_slots.setdefault(v, []).append(j)
    bands = []
    for node in g.nodes():
        for idx, t in enumerate(node.types):
            v = node.out(idx)
            dsts = [(user.name, pos) for user, pos in g.users(v)] + [(sink.key, j) for j in out_slots.get(v, ())]
            text = dm.type_label(t, cx.env)
            bands.append(Band(node.name, idx, dsts, text_width(text, LABEL) + 4,
                              payload=dm.scope(cx.prefix, node.name), labels=[text]))
    sp = Spacing(**SPACING, margin_x=0.0 if cx.framed else 6.0, margin_y=4.0)
    p = place(cells, bands, sp)
    by = p.cells
    ins = [by[g.node(i).name] for i in g.inputs]
    in_ys, in_x = [c.y + c.outs[0][0] for c in ins], [c.x for c in ins]
    out_ys, out_x = [sink.y + y for y in ys], sink.x + sink.w
    rows = [(p, 0.0)]
    ranges = None if cx.framed else wrap_ranges(p, bands, WRAP_WIDTH)
    if ranges and p.width / max(p.height, 1.0) > 3.0:
        rows, y = [], 0.0
        for row_cells, row_bands in split_rows(cells, bands, p, ranges, _cont_in, _cont_out):
            rp = place(row_cells, row_bands, sp)
            rows.append((rp, y))
            y += rp.height + 18
    width = max(rp.width for rp, _ in rows)
    height = rows[-1][1] + rows[-1][0].height
    return Layout(rows, width, height, in_ys, out_ys, in_x, out_x)


def _cont_in(band: Band, tag: str):
    cell = Cell(f"<from {tag}>", 24.0, 24.0, [], [[12.0]], pinned="first", align="right",
                payload=ContDraw([tag], [12.0], "in"))
    return cell, band.labels, band.label_w


def _cont_out(leaving):
    ys = [12.0 + 28 * j for j in range(len(leaving))]
    return Cell("<onward>", 24.0, 28.0 * len(leaving), [[y] for y in ys], [], pinned="last", align="left",
                payload=ContDraw([tag for _, tag in leaving], ys, "out"))


# ---- drawing -------------------------------------------------------------------------------------


def _shift(segs, ox, oy):
    return [(c, *[v + (ox if i % 2 == 0 else oy) for i, v in enumerate(xs)]) for c, *xs in segs]


def draw_layout(svg: Svg, lay: Layout, ox: float, oy: float):
    for p, dy in lay.rows:
        draw_placement(svg, p, ox, oy + dy)


def draw_placement(svg: Svg, p: Placement, ox: float, oy: float):
    routes = [route(p, b) for b in p.bands]
    for r in routes:
        for w in r.wires:
            svg.el("path", d=path_d(_shift(w.segments, ox, oy)), fill="none", stroke=EDGE, stroke_width=1.1,
                   cls="wire", data_value=r.band.payload)
    for cell in p.cells.values():
        x, y = ox + cell.x, oy + cell.y
        d = cell.payload
        if isinstance(d, BoxDraw):
            _draw_box(svg, d, x, y, cell.w, cell.h)
        elif isinstance(d, FrameDraw):
            _draw_frame(svg, d, x, y, cell)
        elif isinstance(d, SinkDraw):
            for name, yy in zip(d.names, d.ys):
                svg.el("rect", x=x, y=y + yy - 9, width=cell.w, height=18, rx=9, fill="#fff", stroke=EDGE,
                       cls="io")
                svg.text(x + cell.w / 2, y + yy + 3.5, name, size=FONT, anchor="middle", cls="io-name")
        elif isinstance(d, ContDraw):
            for tag, yy in zip(d.tags, d.ys):
                svg.el("circle", cx=x + cell.w / 2, cy=y + yy, r=9, fill="#fff", stroke=EDGE, cls="marker")
                svg.text(x + cell.w / 2, y + yy + 3.5, tag, size=FONT, bold=True, anchor="middle", cls="marker")
    for r in routes:
        for x, y in r.dots:
            svg.el("circle", cx=ox + x, cy=oy + y, r=2, fill=EDGE, cls="dot")
    for b in p.bands:
        src = p.cells[b.src]
        if not src.outs[b.idx] or not b.labels:
            continue
        svg.text(ox + p.label_x[src.col] + 3, oy + src.y + src.outs[b.idx][0] - 3.5, b.labels[0], size=LABEL,
                 fill="#333", cls="label")


def _draw_box(svg: Svg, d: BoxDraw, x, y, w, h):
    cls = {"input": "input", "output": "output", "block": "block collapsed"}.get(d.kind, "op")
    attrs = {"data_scope": d.path} if d.kind == "block" else {"data_op": d.op or None}
    svg.open("g", id=d.path, cls=cls, data_bbox=f"{num(x)} {num(y)} {num(w)} {num(h)}", **attrs)
    svg.el("title", d.tip)
    if d.kind == "input":
        svg.el("rect", x=x, y=y + h / 2 - 9, width=w, height=18, rx=9, fill="#fff", stroke=EDGE, cls="shape")
    else:
        svg.el("rect", x=x, y=y, width=w, height=h, rx=4, fill="#fff", stroke=EDGE,
               stroke_width=2 if d.kind == "learned" else 1.1, cls="shape")
        if d.kind == "block":
            svg.el("rect", x=x + 3, y=y + 3, width=w - 6, height=h - 6, rx=2, fill="none", stroke=EDGE,
                   stroke_width=0.8)
    top = y + h / 2 - LINE * len(d.lines) / 2 + 9.5
    for i, line in enumerate(d.lines):
        svg.text(x + w / 2, top + LINE * i, line, size=FONT, anchor="middle",
                 bold=d.kind in ("learned", "block") and i == 0, fill="#000" if i == 0 else "#333",
                 cls="title" if i == 0 else "subtitle")
    svg.close("g")


def _draw_frame(svg: Svg, d: FrameDraw, x, y, cell: Cell):
    is_repeat = dm.is_loop(d.node)
    data = {"data_scope": d.path}
    if isinstance(d.node, CallNode):
        data["data_block"] = d.node.block
    svg.open("g", id=d.path, cls="repeat" if is_repeat else "block expanded",
             data_bbox=f"{num(x)} {num(y)} {num(cell.w)} {num(cell.h)}", **data)
    svg.el("title", f"{d.path}: {d.label}")
    svg.el("rect", x=x, y=y, width=cell.w, height=cell.h, rx=6, fill=("#f5f7fa", "#eaeef3")[d.level % 2],
           stroke="#6b7280", stroke_dasharray="5 3" if is_repeat else None, cls="frame")
    svg.text(x + 8, y + 15, d.label, size=FONT, bold=True, cls="title")
    ix, iy = x + d.inner[0], y + d.inner[1]
    for k, yy in enumerate(cell.ins[0:]):
        sx = ix + d.sub.in_x[k]
        svg.el("path", d=path_d([("M", x, y + yy[0]), ("L", sx, y + yy[0])]), fill="none", stroke=EDGE,
               stroke_width=1.1, cls="wire")
    for yy in cell.outs:
        svg.el("path", d=path_d([("M", ix + d.sub.out_x, y + yy[0]), ("L", x + cell.w, y + yy[0])]),
               fill="none", stroke=EDGE, stroke_width=1.1, cls="wire")
    draw_layout(svg, d.sub, ix, iy)
    for i, line in enumerate(d.caption):
        svg.text(x + 8, iy + d.sub.height + 10 + 12 * i, line, size=9, italic=True, fill="#444", cls="doc")
    svg.close("g")


def python_svg(spec, opts: dm.Options) -> str:
    g = spec.graph
    cx = Ctx(g, "", 0, dm.root_env(g), dm.Expansion(g, opts), opts, False)
    params = spec.param_count() if opts.cost else None
    return document(layout_graph(cx), g, dm.model_title(g), g.doc, params, g.name)


def block_svg(g: Graph, path: str, level: int, env, exp, opts: dm.Options, title: str, params) -> str:
    """A block's own diagram (for the HTML page's panels)."""
    lay = layout_graph(Ctx(g, path, level, env, exp, opts, False))
    return document(lay, g, title, g.doc, params, None)


def document(lay: Layout, g: Graph, title: str, doc: str, params, root_id) -> str:
    cost = dm.params_text(params) if params is not None else ""
    margin = 14.0
    width = max(lay.width + 2 * margin, text_width(title, 13, True) + text_width(cost, 10) + 2 * margin + 12)
    caption = wrap(doc, max(width - 2 * margin, 300.0), 10) if doc else []
    width = max([width] + [text_width(s, 10) + 2 * margin for s in caption])
    header = 34.0
    height = header + lay.height + (14 * len(caption) + 10 if caption else 0) + margin
    svg = Svg()
    svg.el("rect", x=0, y=0, width=width, height=height, fill="#fff", cls="background")
    svg.open("g", id=root_id, cls="model")
    svg.text(margin, 22, title, size=13, bold=True, cls="title")
    if cost:
        svg.text(margin + text_width(title, 13, True) + 12, 22, cost, size=10, fill="#555", cls="cost")
    draw_layout(svg, lay, margin, header)
    for i, line in enumerate(caption):
        svg.text(margin, header + lay.height + 16 + 14 * i, line, size=10, italic=True, fill="#333", cls="doc")
    svg.close("g")
    return svg.document(width, height)


def graph_svg(spec, opts: dm.Options, *, engine: str = "auto") -> str:
    """engine: "auto" (Graphviz when installed), "dot" or "python"."""
    exe = shutil.which("dot") if engine in ("auto", "dot") else None
    if exe:
        text = dot_of(flat_view(spec, opts), spec.graph.name)
        try:
            res = subprocess.run([exe, "-Tsvg"], input=text.encode(), capture_output=True, timeout=60, check=True)
            return res.stdout.decode("utf-8")
        except (OSError, subprocess.SubprocessError):
            pass  # a broken Graphviz install: our own layout still works
    return python_svg(spec, opts)

"""Drawing of the circuit style: wires, wire labels, the glyph of each op kind, closed
blocks, open block frames, and the whole model with its title and doc caption."""

from __future__ import annotations

from dataclasses import replace

from nncircuit.types.tensor import TensorType

from nncircuit.backends.diagram import model as dm
from nncircuit.backends.diagram.circuit import (
    CUP_COL, GLYPH_SIZE, LABEL_SIZE, R, ROUTER_H, SMALL, TITLE_SIZE, ZONE, CallDraw, Ctx, FrameDraw, GraphLayout,
    IoDraw, OpDraw, layout_graph,
)
from nncircuit.backends.diagram.layout import STAGGER, Placement, route, stagger
from nncircuit.backends.diagram.svg import Svg, num, path_d, text_width, wrap
from nncircuit.errors import InternalError
from nncircuit.ir.graph import CallNode, ScanNode
from nncircuit.ops.routing import moe_routing

INK = "#1a1a1a"
GREY = "#555"
HALO = "#ffffff"
BOX_FILL = "#f2f3f5"
CONV_FILL = "#dbeafe"  # the conventions' light-blue trapezoid
STATS_FILL = "#c7cbd1"  # a normalisation over batch statistics
FRAME_FILL = ("#f3f5f8", "#e9edf3")
MARGIN = 14.0


def _curve(x1, y1, x2, y2) -> list[tuple]:
    if abs(y1 - y2) < 0.01:
        return [("M", x1, y1), ("L", x2, y2)]
    mid = (x1 + x2) / 2
    return [("M", x1, y1), ("C", mid, y1, mid, y2, x2, y2)]


def _wire(svg: Svg, segs, *, over=False, cls="wire", width=1.1):
    d = path_d(segs)
    if over:
        svg.el("path", d=d, fill="none", stroke=HALO, stroke_width=4.5, cls="halo")
    svg.el("path", d=d, fill="none", stroke=INK, stroke_width=width, cls=cls)


def _dot(svg: Svg, x, y, r=2.3):
    svg.el("circle", cx=x, cy=y, r=r, fill=INK, cls="dot")


def _open_group(svg: Svg, path: str, cls: str, x, y, w, h, tip: str, **data):
    svg.open("g", id=path, cls=cls, data_bbox=f"{_n(x)} {_n(y)} {_n(w)} {_n(h)}", **data)
    svg.el("title", tip)


def _n(v: float) -> str:
    from nncircuit.backends.diagram.svg import num

    return num(v)


def _types(ts: list[TensorType], env) -> str:
    return ", ".join(dm.type_label(t, env) for t in ts)


# ---- a laid-out graph ---------------------------------------------------------------------------


def draw_layout(svg: Svg, lay: GraphLayout, ox: float, oy: float):
    for p, dy in lay.rows:
        draw_placement(svg, p, lay.ctx, ox, oy + dy)


def draw_placement(svg: Svg, p: Placement, cx: Ctx, ox: float, oy: float):
    routes = [route(p, b) for b in p.bands]
    for r in routes:
        for w in r.wires:
            segs = [(c, *[v + (ox if i % 2 == 0 else oy) for i, v in enumerate(xs)]) for c, *xs in w.segments]
            _wire(svg, segs)
    for cell in p.cells.values():
        d = cell.payload
        x, y = ox + cell.x, oy + cell.y
        if isinstance(d, OpDraw):
            draw_op(svg, d, x, y, cell.w, cx)
        elif isinstance(d, CallDraw):
            draw_call(svg, d, x, y, cell.w, cell.h, cell.ins, cell.outs, cx)
        elif isinstance(d, FrameDraw):
            draw_frame(svg, d, x, y, cell.w, cell.h, cx)
        elif isinstance(d, IoDraw):
            draw_io(svg, d, x, y, cell.w, cell.h)
    _separators(svg, p, ox, oy)
    for r in routes:
        for x, y in r.dots:
            _dot(svg, ox + x, oy + y)
    for b in p.bands:
        src = p.cells[b.src]
        lx = ox + p.label_x[src.col] + 3
        for text, off in zip(b.labels, src.outs[b.idx]):
            if text:
                svg.text(lx, oy + src.y + off - 3, text, size=LABEL_SIZE, fill="#333", cls="label")


def _separators(svg: Svg, p: Placement, ox, oy):
    """Dashed lines between the wire groups of a tuple of inputs."""
    ins = sorted((c for c in p.cells.values() if isinstance(c.payload, IoDraw) and c.payload.kind == "input"),
                 key=lambda c: c.y)
    if len(ins) < 2:
        return
    x0 = ox + min(c.x for c in ins)
    need = max([b.label_w for b in p.bands if p.cells[b.src] in ins] + [0.0])
    x1 = ox + p.label_x[0] + need
    for a, b in zip(ins, ins[1:]):
        y = oy + (a.y + a.outs[0][-1] + b.y + b.outs[0][0]) / 2 - 2
        svg.el("line", x1=x0, y1=y, x2=x1, y2=y, stroke="#888", stroke_width=0.8,
               stroke_dasharray="3 2", cls="separator")


def draw_io(svg: Svg, d: IoDraw, x, y, w, h):
    if d.kind in ("cont-in", "cont-out"):
        _continuation(svg, d, x, y, w)
        return
    if d.kind == "input":
        _open_group(svg, d.path, "input", x, y, w, h, f"{d.path}: input")
    for gi, ys in enumerate(d.groups):
        for yy in ys:
            _wire(svg, [("M", x, y + yy), ("L", x + w, y + yy)])
        name = d.names[gi] if gi < len(d.names) else ""
        if name:
            svg.text(x + (w - 2 if d.kind == "input" else 2), y + ys[0] - 5, name, size=9, bold=True,
                     anchor="end" if d.kind == "input" else "start", cls="io-name")
    if d.kind == "output":
        for a, b in zip(d.groups, d.groups[1:]):
            yy = y + (a[-1] + b[0]) / 2
            svg.el("line", x1=x, y1=yy, x2=x + w, y2=yy, stroke="#888", stroke_width=0.8,
                   stroke_dasharray="3 2", cls="separator")
    else:
        svg.close("g")


def _continuation(svg: Svg, d: IoDraw, x, y, w):
    """Where a wrapped diagram's wires leave one row and come back in the next: a letter."""
    for tag, ys in zip(d.names, d.groups):
        mid = y + (ys[0] + ys[-1]) / 2
        if d.kind == "cont-in":
            cx, wx = x + 8, (x + 16, x + w)
        else:
            cx, wx = x + w - 8, (x, x + w - 16)
        for yy in ys:
            _wire(svg, [("M", wx[0], y + yy), ("L", wx[1], y + yy)], cls="wire continued")
        span = (ys[-1] - ys[0]) / 2
        svg.el("rect", x=cx - 7, y=mid - span - 7, width=14, height=2 * span + 14, rx=7, fill="#fff",
               stroke=INK, stroke_width=1.1, cls="marker")
        svg.text(cx, mid + 3.5, tag, size=9.5, bold=True, anchor="middle", cls="marker")


# ---- ops -------------------------------------------------------------------------------------------


def _row(y, r):
    return y + R / 2 + r * R


def draw_op(svg: Svg, d: OpDraw, x, y, w, cx: Ctx):
    lk = d.look
    height = d.nrows * R + 2 * d.pad + (ROUTER_H if lk.kind == dm.ROUTER else 0)
    ry = y + d.pad
    tip = f"{d.path}: {d.node.op} {_types(d.in_types, cx.env)} → {_types(d.out_types, cx.env)}"
    _open_group(svg, d.path, "op", x, y, w, height + (11 if lk.caption else 0) + (11 if lk.note else 0), tip,
                data_op=d.node.op)
    stroke = 2.2 if lk.learned else 1.1
    acted_ys = [_row(ry, r) for t, rows in zip(d.in_types + d.out_types, d.in_rows + d.out_rows)
                for a, r in zip(t.axes, rows) if a.name in lk.acted]
    mid = sum(acted_ys) / len(acted_ys) if acted_ys else ry + d.nrows * R / 2
    kind = lk.kind
    if kind in (dm.BOX, dm.SOURCE, dm.TRAPEZOID):
        if kind == dm.TRAPEZOID:
            inset = min(6.0, height / 5)
            pts = [(x, y + 1), (x + w, y + 1 + inset), (x + w, y + height - 1 - inset), (x, y + height - 1)]
            svg.el("polygon", points=" ".join(f"{_n(a)},{_n(b)}" for a, b in pts), fill=CONV_FILL,
                   stroke=INK, stroke_width=stroke, stroke_linejoin="round", cls="shape")
        else:
            svg.el("rect", x=x, y=y + 1, width=w, height=height - 2, rx=3, fill=BOX_FILL, stroke=INK,
                   stroke_width=stroke, cls="shape")
        passing = _pass_over(svg, d, x, ry, w)
        _glyph(svg, lk, x + w / 2, _clear_of(mid, passing, ry, d.nrows))
        _port_separators(svg, [[_row(ry, r) for r in rows] for rows in d.in_rows], x, 7)
        _port_separators(svg, [[_row(ry, r) for r in rows] for rows in d.out_rows], x + w, -7)
    elif kind in (dm.TAG, dm.CIRCLE, dm.TRIANGLE, dm.RELABEL):
        ys = [_row(ry, r) for r in d.in_rows[0]]
        for yy in ys:
            if kind == dm.TAG:  # the wires meet the tag's edges; none runs through its text
                m, half = (min(ys) + max(ys)) / 2, (max(ys) - min(ys)) / 2 + 6.5
                bite = 5 * (1 - abs(yy - m) / half)
                _wire(svg, [("M", x, yy), ("L", x + 1 + bite, yy)])
                _wire(svg, [("M", x + w - 7 + 6 * (1 - abs(yy - m) / half), yy), ("L", x + w, yy)])
            else:
                _wire(svg, [("M", x, yy), ("L", x + w, yy)])
        cxm = x + w / 2
        if kind == dm.TAG:
            top, bot = min(ys) - 6.5, max(ys) + 6.5
            m = (top + bot) / 2
            pts = [(x + 1, top), (x + w - 7, top), (x + w - 1, m), (x + w - 7, bot), (x + 1, bot), (x + 6, m)]
            svg.el("polygon", points=" ".join(f"{_n(a)},{_n(b)}" for a, b in pts), fill="#fff",
                   stroke=INK, stroke_width=1.0, stroke_linejoin="round", cls="shape")
            svg.text(cxm + 2, m + 3.3, lk.text, size=9.5, anchor="middle", cls="glyph")
        elif kind == dm.CIRCLE:
            span = (max(acted_ys) - min(acted_ys)) / 2 if acted_ys else 0
            # statistics over the lifted axes (BatchNorm): filled, and a bar across those wires
            svg.el("ellipse", cx=cxm, cy=mid, rx=7, ry=7 + span, fill=STATS_FILL if lk.batch_stats else "#fff",
                   stroke=INK, stroke_width=stroke, cls="shape")
        elif kind == dm.TRIANGLE:
            # a softmax over several axes together: one triangle whose back spans their wires
            span = (max(acted_ys) - min(acted_ys)) / 2 if acted_ys else 0
            pts = [(cxm + 6, mid - 7 - span), (cxm + 6, mid + 7 + span), (cxm - 6, mid)]
            svg.el("polygon", points=" ".join(f"{_n(a)},{_n(b)}" for a, b in pts), fill="#fff",
                   stroke=INK, stroke_width=1.3, stroke_linejoin="round", cls="shape")
        else:  # a renamed wire: a tick where its name changes
            old = set(d.in_types[0].names)
            for a, r in zip(d.out_types[0].axes, d.out_rows[0]):
                if a.name not in old:
                    yy = _row(ry, r)
                    svg.el("line", x1=cxm, y1=yy - 4, x2=cxm, y2=yy + 4, stroke=INK, stroke_width=1.2,
                           cls="shape")
    elif kind == dm.ROUTER:
        svg.el("rect", x=x, y=y + 1, width=w, height=height - 2, rx=3, fill=BOX_FILL, stroke=INK,
               stroke_width=stroke, cls="shape")
        _pass_over(svg, d, x, ry, w)
        _router(svg, d, x, ry, w)
    elif kind == dm.MERGE:
        _merge(svg, d, x, ry, w, lk)
    elif kind == dm.CUP:
        _cup(svg, d, x, ry, w)
    if lk.note:
        svg.text(x + w / 2, y + height + 8, lk.note, size=SMALL, anchor="middle", fill=INK, cls="note")
    if lk.caption:
        svg.text(x + w / 2, y + height + 8 + (11 if lk.note else 0), lk.caption, size=SMALL, italic=True,
                 anchor="middle", fill=GREY, cls="caption")
    svg.close("g")


def _glyph(svg: Svg, lk: dm.Look, cx, cy):
    tw = text_width(lk.text, GLYPH_SIZE, lk.learned)
    shift = 3.5 if lk.bias else 0.0
    svg.text(cx - shift, cy + 4.3, lk.text, size=GLYPH_SIZE, bold=lk.learned, anchor="middle", cls="glyph")
    if lk.bias:
        svg.text(cx - shift + tw / 2 + 0.5, cy - 0.5, "+", size=9, bold=True, cls="glyph")


def _pass_over(svg: Svg, d: OpDraw, x, y, w) -> list[float]:
    """Carried wires cross the box untouched: the op is lifted over them. Where several
    inputs carry the same axis, the one already level with the output passes over and the
    others end at the box (no wire climbs inside a box); the heights it passes at."""
    ys = []
    for t_out, rows_out in zip(d.out_types, d.out_rows):
        for b, ro in zip(t_out.axes, rows_out):
            if b.name in d.look.acted:
                continue
            src = [ri for t_in, rows_in in zip(d.in_types, d.in_rows) for a, ri in zip(t_in.axes, rows_in)
                   if a.name == b.name and a.size == b.size]
            level = [ri for ri in src if ri == ro]
            for ri in level or src:
                _wire(svg, _curve(x, _row(y, ri), x + w, _row(y, ro)), over=True)
                ys += [_row(y, ri), _row(y, ro)]
    return ys


def _clear_of(mid: float, passing: list[float], y: float, nrows: int) -> float:
    """The glyph's height: `mid`, or the nearest half-row between wires that is clear of
    the wires passing over the box."""
    if all(abs(mid - p) >= 7 for p in passing):
        return mid
    spots = [y + r * R for r in range(nrows + 1)]  # half-way between two rows
    clear = [s for s in spots if all(abs(s - p) >= 7 for p in passing)]
    return min(clear, key=lambda s: abs(s - mid)) if clear else mid


def _router(svg: Svg, d: OpDraw, x, y, w):
    """A mixture of experts, drawn as routing under the wires it is lifted over: the token's
    wire forks to a router (softmax ◁, then top-k) and to a stack of expert boxes (the
    learned maps, k of E run); the experts' outputs meet in a weighted sum Σ whose weights
    come from the top-k (dashed), and the sum goes back up to the output wire."""
    experts, k = moe_routing(d.node.attrs)
    y_in = next((_row(y, r) for a, r in zip(d.in_types[0].axes, d.in_rows[0]) if a.name in d.look.acted), y)
    y_out = next((_row(y, r) for a, r in zip(d.out_types[0].axes, d.out_rows[0]) if a.name in d.look.acted), y_in)
    top = y + d.nrows * R + 8  # the band under the wires
    shown = min(experts, 4)
    box_h, step = 9.0, 12.0
    centres = [top + i * step + box_h / 2 for i in range(shown)]
    labels = [str(i + 1) for i in range(shown)]
    if experts > shown:
        labels[-2:] = ["⋮", str(experts)]
    fork = (x + 12, centres[0])
    _wire(svg, _curve(x, y_in, fork[0], fork[1]))
    _dot(svg, *fork)
    # the experts: a bus fans the token out to each box, another gathers the outputs
    bx, bw = x + 92, 24.0
    _wire(svg, [("M", fork[0], fork[1]), ("L", bx - 8, fork[1])])
    _wire(svg, [("M", bx - 8, centres[0]), ("L", bx - 8, centres[-1])])
    sx, sy = x + w - 26, (centres[0] + centres[-1]) / 2
    for cy, label in zip(centres, labels):
        _wire(svg, [("M", bx - 8, cy), ("L", bx, cy)])
        if label == "⋮":
            svg.text(bx + bw / 2, cy + 3.5, label, size=SMALL, anchor="middle", cls="glyph")
            continue
        svg.el("rect", x=bx, y=cy - box_h / 2, width=bw, height=box_h, rx=1.5, fill="#fff", stroke=INK,
               stroke_width=1.6, cls="shape")
        svg.text(bx + bw / 2, cy + 3, f"E{label}", size=7.5, bold=True, anchor="middle", cls="glyph")
        _wire(svg, _curve(bx + bw, cy, sx - 7, sy))
    # the router: softmax over the experts, then the top k
    ry = centres[-1] + 14
    _wire(svg, [("M", fork[0], fork[1]), ("L", fork[0], ry), ("L", x + 22, ry)])
    tx = x + 28
    pts = [(tx + 5, ry - 6), (tx + 5, ry + 6), (tx - 5, ry)]
    svg.el("polygon", points=" ".join(f"{_n(a)},{_n(b)}" for a, b in pts), fill="#fff", stroke=INK,
           stroke_width=1.3, stroke_linejoin="round", cls="shape")
    svg.text(tx, ry + 14, "router", size=SMALL, anchor="middle", fill=GREY, cls="note")
    _wire(svg, [("M", tx + 5, ry), ("L", x + 44, ry)])
    label = f"top-{k}"
    lw = text_width(label, 9.5) + 12
    svg.el("rect", x=x + 44, y=ry - 6.5, width=lw, height=13, rx=6.5, fill="#fff", stroke=INK,
           stroke_width=1.0, cls="shape")
    svg.text(x + 44 + lw / 2, ry + 3.3, label, size=9.5, anchor="middle", cls="glyph")
    svg.el("path", d=path_d([("M", x + 44 + lw, ry), ("L", sx, ry), ("L", sx, sy + 7)]), fill="none",
           stroke=INK, stroke_width=1.0, stroke_dasharray="3 2", cls="wire")
    svg.text(bx + bw / 2, ry + 14, f"{k} of {experts} run", size=SMALL, anchor="middle", fill=GREY, cls="note")
    # the weighted sum, back up to the output wire
    svg.el("circle", cx=sx, cy=sy, r=7, fill="#fff", stroke=INK, stroke_width=1.1, cls="shape")
    svg.text(sx, sy + 3.8, "Σ", size=10.5, bold=True, anchor="middle", cls="glyph")
    _wire(svg, _curve(sx + 7, sy, x + w, y_out))


def _merge(svg: Svg, d: OpDraw, x, y, w, lk):
    out_t, out_rows = d.out_types[0], d.out_rows[0]
    row_of = {a.name: r for a, r in zip(out_t.axes, out_rows)}
    cxm = x + w - 16
    for t, rows in zip(d.in_types, d.in_rows):
        pairs = [(_row(y, r), _row(y, row_of[a.name])) for a, r in zip(t.axes, rows) if a.name in row_of]
        offs = stagger(pairs, STAGGER)
        bw = cxm - 5 - x - max(offs + [0.0])
        for (y0, y1), off in zip(pairs, offs):
            _wire(svg, [("M", x, y0), ("L", x + off, y0)] + _curve(x + off, y0, x + off + bw, y1)[1:]
                  + [("L", cxm - 5, y1)])
    ys = [_row(y, r) for r in out_rows]
    for yy in ys:
        _wire(svg, [("M", cxm + 5, yy), ("L", x + w, yy)])
    top, bot = min(ys) - 7, max(ys) + 7
    svg.el("rect", x=cxm - 7, y=top, width=14, height=bot - top, rx=7, fill="#fff", stroke=INK,
           stroke_width=1.1, cls="shape")
    svg.text(cxm, (top + bot) / 2 + 4, lk.text, size=11.5, bold=True, anchor="middle", cls="glyph")


def _cup(svg: Svg, d: OpDraw, x, y, w):
    """Contraction: wires of a summed axis join in a cup, in a column of their own; wires of
    a kept axis run straight past it, then bend to the output (where several inputs share
    one, they join at a dot)."""
    out_t, out_rows = d.out_types[0], d.out_rows[0]
    row_of = {a.name: r for a, r in zip(out_t.axes, out_rows)}
    cxm = x + w - 12
    kept: dict[str, int] = {}
    summed: dict[str, list[float]] = {}
    for t, rows in zip(d.in_types, d.in_rows):
        for a, r in zip(t.axes, rows):
            yy = _row(y, r)
            if a.name in row_of:
                bend = _curve(x + CUP_COL, yy, cxm, _row(y, row_of[a.name]))
                _wire(svg, [("M", x, yy), ("L", x + CUP_COL, yy)] + bend[1:])
                kept[a.name] = kept.get(a.name, 0) + 1
            else:
                _wire(svg, [("M", x, yy), ("L", x + 7, yy)])
                summed.setdefault(a.name, []).append(yy)
    for name, r in row_of.items():
        _wire(svg, [("M", cxm, _row(y, r)), ("L", x + w, _row(y, r))])
        if kept.get(name, 0) > 1:
            _dot(svg, cxm, _row(y, r))
    for ys in summed.values():
        if len(ys) == 1:
            _dot(svg, x + 7, ys[0], 2.0)
        for y0, y1 in zip(ys, ys[1:]):
            reach = min(8.0, 4 + abs(y1 - y0) * 0.2)
            svg.el("path", d=path_d([("M", x + 7, y0), ("C", x + 7 + reach, y0, x + 7 + reach, y1, x + 7, y1)]),
                   fill="none", stroke=INK, stroke_width=1.6, cls="cup")


# ---- blocks ------------------------------------------------------------------------------------------


def _lift_wires(svg: Svg, lift, in_types, in_ys, out_types, out_ys, x0, x1, rows: dict | None):
    """Wires of the axes a block is lifted over, passing over it; several inputs' copies
    of one axis join at a dot (a shared axis), several outputs' copies split at one."""
    for name in lift:
        ins = [ys[t.index(name)] for t, ys in zip(in_types, in_ys) if t.has(name)]
        outs = [ys[t.index(name)] for t, ys in zip(out_types, out_ys) if t.has(name)]
        if not ins or not outs:
            continue
        if rows is None and len(ins) == 1 and len(outs) == 1:
            _wire(svg, _curve(x0, ins[0], x1, outs[0]), over=True)
            continue
        if rows is None and len(outs) == 1 and outs[0] in ins:
            # a closed box: the copy level with the output passes over it, the others end
            # at the box (none climbs inside it)
            _wire(svg, [("M", x0, outs[0]), ("L", x1, outs[0])], over=True)
            continue
        if rows is not None:
            ly = rows[name]
            ja, jb = x0 + ZONE, x1 - ZONE
        else:
            ly = outs[0]
            ja = jb = (x0 + x1) / 2
        if rows is not None and len(ins) > 1:
            # copies from several inputs join the row one after another, the nearest first,
            # so that they do not converge on one point as one steep stroke
            near = sorted(ins, key=lambda yy: (abs(yy - ly), yy))
            ends = [ja - (len(near) - 1 - r) * STAGGER for r in range(len(near))]
            for r, (yy, xe) in enumerate(zip(near, ends)):
                _wire(svg, _curve(x0, yy, xe, ly))
                if r:
                    _dot(svg, xe, ly)
            _wire(svg, [("M", ends[0], ly), ("L", jb, ly)])
            for yy in outs:
                _wire(svg, _curve(jb, ly, x1, yy))
            if len(outs) > 1:
                _dot(svg, jb, ly)
            continue
        for yy in ins:
            _wire(svg, _curve(x0, yy, ja, ly), over=rows is None)
        if ja != jb:
            _wire(svg, [("M", ja, ly), ("L", jb, ly)])
        for yy in outs:
            _wire(svg, _curve(jb, ly, x1, yy), over=rows is None)
        if len(ins) > 1:
            _dot(svg, ja, ly)
        if len(outs) > 1:
            _dot(svg, jb, ly)


def _port_separators(svg: Svg, groups, x, outward: float):
    for a, b in zip(groups, groups[1:]):
        yy = (a[-1] + b[0]) / 2
        svg.el("line", x1=x, y1=yy, x2=x + outward, y2=yy, stroke="#888", stroke_width=0.8,
               stroke_dasharray="3 2", cls="separator")


def draw_call(svg: Svg, d: CallDraw, x, y, w, h, ins, outs, cx: Ctx):
    tip = f"{d.path}: {d.node.block} {_types(d.in_types, cx.env)} → {_types(d.out_types, cx.env)}"
    _open_group(svg, d.path, "block collapsed", x, y, w, h, tip, data_block=d.node.block,
                data_scope=d.path)
    svg.el("rect", x=x, y=y + 1, width=w, height=h - 2, rx=5, fill="#fff", stroke=INK, stroke_width=1.6,
           cls="shape")
    top = y + d.text_top + (h - d.text_top - 12 * len(d.lines)) / 2
    for i, (text, size, bold, colour) in enumerate(d.lines):
        named = i == len(d.lines) - 1 and i > 0 and text == dm.value_name(d.node)
        svg.text(x + w / 2, top + 9.5 + 12 * i, text, size=size, bold=bold, fill=colour, anchor="middle",
                 italic=named, cls="title" if i == 0 else "caption" if named else "subtitle")
    _lift_wires(svg, d.lift, d.in_types, [[y + v for v in ys] for ys in ins], d.out_types,
                [[y + v for v in ys] for ys in outs], x, x + w, None)
    _port_separators(svg, [[y + v for v in ys] for ys in ins], x, 8)
    _port_separators(svg, [[y + v for v in ys] for ys in outs], x + w, -8)
    svg.close("g")


def draw_frame(svg: Svg, d: FrameDraw, x, y, w, h, cx: Ctx):
    is_repeat = dm.is_loop(d.node)
    kind = "repeat" if is_repeat else "block expanded"
    tip = f"{d.path}: {d.title} {_types(d.in_types, cx.env)} → {_types(d.out_types, cx.env)}"
    data = {"data_scope": d.path}
    if isinstance(d.node, CallNode):
        data["data_block"] = d.node.block
    _open_group(svg, d.path, kind, x, y, w, h, tip, **data)
    once = is_repeat and not d.badge  # `repeat 1`: the body is drawn as it is, with no ×1 frame
    if not once:
        svg.el("rect", x=x, y=y, width=w, height=h, rx=6, fill=FRAME_FILL[d.level % 2], stroke="#6b7280",
               stroke_width=1.0, stroke_dasharray="5 3" if is_repeat else None, cls="frame")
        svg.text(x + 8, y + 14, d.title, size=TITLE_SIZE, bold=True, cls="title")
    tx = x + 8 + text_width(d.title, TITLE_SIZE, True) + 6
    if d.subtitle and not once:
        svg.text(tx, y + 14, d.subtitle, size=SMALL + 0.5, fill="#333", cls="subtitle")
        tx += text_width(d.subtitle, SMALL + 0.5) + 8
    if d.cost:
        svg.text(tx, y + 14, d.cost, size=SMALL, fill=GREY, cls="cost")
    if d.badge:
        svg.text(x + w - 8, y + 15, d.badge, size=13, bold=True, anchor="end", cls="badge")
    ix, iy = x + d.inner[0], y + d.inner[1]
    sub = d.sub
    callee = d.node.callee
    decl_in = [callee.node(i).type for i in callee.inputs]
    decl_out = [callee.type_of(v) for _, v in callee.outputs]
    for t, ys, decl, inner, sx in zip(d.in_types, d.in_ys, decl_in, sub.in_ys, sub.in_x):
        for a, py in zip(t.axes, ys):
            if a.name in d.lift or not decl.has(a.name):
                continue
            ty = iy + inner[decl.index(a.name)]
            segs = _curve(x, y + py, x + ZONE, ty)
            segs.append(("L", ix + sx, ty))
            _wire(svg, segs)
    for t, ys, decl, inner in zip(d.out_types, d.out_ys, decl_out, sub.out_ys):
        for a, py in zip(t.axes, ys):
            if a.name in d.lift or not decl.has(a.name):
                continue
            sy = iy + inner[decl.index(a.name)]
            curve = _curve(x + w - ZONE, sy, x + w, y + py)
            _wire(svg, [("M", ix + sub.out_x, sy), ("L", x + w - ZONE, sy)] + curve[1:])
    rows = {name: y + ly for name, ly in zip(d.lift, d.lift_y)}
    _lift_wires(svg, d.lift, d.in_types, [[y + v for v in ys] for ys in d.in_ys], d.out_types,
                [[y + v for v in ys] for ys in d.out_ys], x, x + w, rows)
    if isinstance(d.node, ScanNode):
        _recurrence(svg, d, x, y, w, h)
    draw_layout(svg, sub, ix, iy)
    cap_y = y + d.cap_top + 10
    for i, line in enumerate(d.caption):
        svg.text(x + 8, cap_y + 12 * i, line, size=9, italic=True, fill="#444", cls="doc")
    svg.close("g")


def _recurrence(svg: Svg, d: FrameDraw, x, y, w, h):
    """A scan is drawn as a recurrence: each carried state's wire leaves the body on the
    right and loops back under it into its input on the left; the scanned axis of each
    sliced input ends at the frame in a ⟲ mark (the body sees one position per step)."""
    node = d.node
    if not isinstance(node, ScanNode):
        raise InternalError(f"{node.name} is not a scan")
    axis = node.axis
    k = node.carried
    bottom = y + h - 4
    for i in range(k):
        if not d.out_ys[i] or not d.in_ys[i]:
            continue
        oy, iy = y + d.out_ys[i][0], y + d.in_ys[i][0]
        xr, xl = x + w - ZONE / 2, x + ZONE / 2
        path = f"M {num(xr)} {num(oy)} L {num(xr)} {num(bottom)} L {num(xl)} {num(bottom)} L {num(xl)} {num(iy)}"
        svg.el("path", d=path, fill="none", stroke="#b45309", stroke_width=1.2, stroke_dasharray="4 2",
               cls="carry")
        svg.el("path", d=f"M {num(xl - 3)} {num(iy + 6)} L {num(xl)} {num(iy)} L {num(xl + 3)} {num(iy + 6)}",
               fill="none", stroke="#b45309", stroke_width=1.2, cls="carry")
    for i in node.scanned:
        t = d.in_types[i]
        if i < len(d.in_ys) and t.has(axis) and len(d.in_ys[i]) == t.rank:
            py = y + d.in_ys[i][t.index(axis)]
            svg.text(x + 3, py - 2, f"⟲{axis}", size=SMALL, fill="#b45309", cls="scanned")


# ---- the model -------------------------------------------------------------------------------------


def circuit_svg(spec, opts: dm.Options) -> str:
    from nncircuit.analysis.cost import param_count
    from nncircuit.backends.diagram import paper

    g = spec.graph
    max_w = max(paper.budget(opts) - 2 * MARGIN, 160.0) if opts.width_pt else 0.0
    if opts.block:  # one block alone, titled with its hyperparameters, opened to --depth
        node, path, env, level = paper.find_block(g, opts.block)
        callee = node.callee
        exp = dm.Expansion(callee, replace(opts, expand=tuple(e for e in opts.expand if e != opts.block)))
        lay = _fit(lambda frame_w: layout_graph(Ctx(callee, "", 0, env, exp, opts, False, max_w=max_w,
                                                    frame_w=frame_w)), max_w)
        params = param_count(callee)
        doc = paper.caption(callee.doc, params, opts)
        return document(lay, callee, opts, params if opts.cost else None,
                        title=paper.block_title(node), doc=doc, root_id=node.block)
    exp = dm.Expansion(g, opts)
    lay = _fit(lambda frame_w: layout_graph(Ctx(g, "", 0, dm.root_env(g), exp, opts, False, max_w=max_w,
                                                 frame_w=frame_w)), max_w)
    params = spec.param_count()
    return document(lay, g, opts, params if opts.cost else None, doc=paper.caption(g.doc, params, opts))


def _fit(lay_out, max_w: float) -> GraphLayout:
    """Paper mode: lay out with open blocks narrowed until the rows fit in `max_w` (a row
    that holds a frame also holds the markers where it starts and ends)."""
    lay = lay_out(max_w)
    frame_w = max_w
    for _ in range(3):
        if not max_w or lay.width <= max_w + 0.5 or frame_w < 200:
            break
        frame_w -= lay.width - max_w
        lay = lay_out(frame_w)
    return lay


TITLE_LEAD = 17.0  # px between the lines of a wrapped title


def _wrap_title(title: str, room: float) -> list[str]:
    """`Block(a=1, b=2, ...)` in lines at most `room` px wide, broken after commas (the
    lines after the first indented under the opening parenthesis)."""
    if text_width(title, 13, True) <= room or "(" not in title:
        return [title]
    head, _, rest = title.partition("(")
    parts = [p + "," for p in rest.split(", ")]
    parts[-1] = parts[-1][:-1]
    lines, line = [], head + "("
    indent = " " * 4
    for part in parts:
        cand = line + part if line.endswith("(") else f"{line} {part}"
        if text_width(cand, 13, True) > room and not line.endswith("("):
            lines.append(line)
            line = indent + part
        else:
            line = cand
    return lines + [line]


def document(lay: GraphLayout, g, opts: dm.Options, params: int | None, *, title: str | None = None,
             doc: str | None = None, root_id: str | None = None) -> str:
    """The SVG of a laid-out graph with a title line above it and its doc caption below."""
    svg = Svg()
    title = title if title is not None else dm.model_title(g)
    doc = g.doc if doc is None else doc
    cost = dm.params_text(params) if params is not None else ""
    cost_w = text_width(cost, 10) + 12 if cost else 0.0
    from nncircuit.backends.diagram import paper

    # paper mode: a title longer than the drawing may be wide (a block's hyperparameters)
    # wraps after its commas instead of widening the figure, which would print it smaller
    room = max(lay.width, paper.budget(opts) - 2 * MARGIN) - cost_w if opts.width_pt else 0.0
    titles = _wrap_title(title, room) if room else [title]
    title_w = max(text_width(t, 13, True) for t in titles) + cost_w
    width = max(lay.width + 2 * MARGIN, title_w + 2 * MARGIN, 240.0)
    caption = wrap(doc, max(width - 2 * MARGIN, 300.0), 10) if doc else []
    width = max([width] + [text_width(s, 10) + 2 * MARGIN for s in caption])
    header = 34.0 + TITLE_LEAD * (len(titles) - 1)
    height = header + lay.height + (14 * len(caption) + 10 if caption else 0) + MARGIN
    svg.el("rect", x=0, y=0, width=width, height=height, fill="#fff", cls="background")
    svg.open("g", id=g.name if root_id is None else (root_id or None), cls="model")
    for i, line in enumerate(titles):
        svg.text(MARGIN, 22 + TITLE_LEAD * i, line, size=13, bold=True, cls="title")
    if cost:
        svg.text(MARGIN + text_width(titles[0], 13, True) + 12, 22, cost, size=10, fill=GREY, cls="cost")
    draw_layout(svg, lay, MARGIN, header)
    for i, line in enumerate(caption):
        svg.text(MARGIN, header + lay.height + 16 + 14 * i, line, size=10, italic=True, fill="#333",
                 cls="doc")
    svg.close("g")
    return svg.document(width, height)

"""The circuit style (neural circuit diagrams): every axis is a horizontal wire, ops are
glyphs on the wires they act on, the other wires pass over them, blocks are named boxes
that open into their own sub-diagram, a repeat is drawn once with ×N.

This module turns a graph into placed cells (recursively for open blocks); drawing them
is circuit_draw.py's job."""

from __future__ import annotations

from dataclasses import dataclass, field

from nncircuit.errors import InternalError
from nncircuit.ir.graph import BodyNode, CallNode, Graph, InputNode, LoopNode, Node, ScanNode
from nncircuit.ops import registry
from nncircuit.types.tensor import TensorType

from nncircuit.backends.diagram import model as dm
from nncircuit.backends.diagram.layout import Band, Cell, Placement, Spacing, place, split_rows, wrap_ranges
from nncircuit.backends.diagram.rows import R, assign_rows, cup_order, merge_spread, preferred_slots, rows_y
from nncircuit.backends.diagram.svg import text_width, wrap

CUP_COL = 20.0  # a contraction's own column, where its cups close; kept wires bend after it
CUP_W = CUP_COL + 36.0
MERGE_W = 32.0
LABEL_SIZE = 8.5
GLYPH_SIZE = 12.0
TITLE_SIZE = 10.5
SMALL = 8.5
ZONE = 24.0  # entry/exit stretch of an open block, where wires move to their rows
TITLE_H = 20.0
NAME_H = 11.0  # room above an input's wires for its name
ROUTER_W, ROUTER_H = 168.0, 84.0  # a mixture of experts: its width, and the band under its wires

WRAP_WIDTH = 1200.0  # a root diagram wider than this (and flat) is wrapped into rows
WRAP_RATIO = 3.0
ROW_GAP = 18.0
CONT_W = 22.0
SPACING = dict(above=R / 2 + 1, below=R / 2 - 1, gap=6.0, min_gap=30.0, bend=22.0)


@dataclass
class Ctx:
    g: Graph
    prefix: str
    level: int  # calls above this graph
    env: dm.Env
    exp: dm.Expansion
    opts: dm.Options
    framed: bool  # drawn inside a block's frame
    lift_room: float = 0.0  # extra room above each input, for the wires the frame is lifted over
    quiet: bool = False  # a repeat body: its wires continue from outside, unnamed and unlabelled
    max_w: float = 0.0  # paper mode: wrap into rows no wider than this (0: the usual rule)
    frame_w: float = 0.0  # paper mode: and open blocks in it no wider than this (0: max_w)
    tags: list[int] = field(default_factory=lambda: [0])  # letters used by wrapped rows so far (shared)
    stack: tuple[int, ...] | None = None  # the graph's inputs top to bottom (by default their own order)

    def path(self, node: Node) -> str:
        return dm.scope(self.prefix, node.name)


@dataclass
class OpDraw:
    node: Node
    path: str
    look: dm.Look
    in_types: list[TensorType]
    out_types: list[TensorType]
    in_rows: list[list[int]]
    out_rows: list[list[int]]
    nrows: int
    pad: float  # room above the first row (and below the last) inside the shape


@dataclass
class CallDraw:
    node: CallNode
    path: str
    lines: list[tuple[str, float, bool, str]]  # text, size, bold, colour
    text_top: float  # the text goes below the wires that pass over the box
    in_types: list[TensorType]
    out_types: list[TensorType]
    lift: tuple[str, ...]


@dataclass
class FrameDraw:
    node: BodyNode
    path: str
    sub: GraphLayout
    title: str
    subtitle: str  # hyperparameters or the repeat count
    cost: str
    badge: str  # ×N for a repeat
    caption: list[str]
    inner: tuple[float, float]  # where the sub-diagram sits
    lift: tuple[str, ...]
    lift_y: list[float]
    in_types: list[TensorType]
    out_types: list[TensorType]
    in_ys: list[list[float]]
    out_ys: list[list[float]]
    level: int
    cap_top: float


@dataclass
class IoDraw:
    kind: str  # "input" | "output" | "cont-in" | "cont-out" (where a wrapped row ends / resumes)
    names: list[str]
    path: str
    groups: list[list[float]]


@dataclass
class GraphLayout:
    ctx: Ctx
    rows: list[tuple[Placement, float]]  # one placement, or several stacked (a wrapped diagram)
    width: float
    height: float
    in_ys: list[list[float]] = field(default_factory=list)  # per graph input
    out_ys: list[list[float]] = field(default_factory=list)  # per graph output
    in_x: list[float] = field(default_factory=list)  # where each input's wires begin
    out_x: float = 0.0  # where the outputs' wires end


# ---- cells -------------------------------------------------------------------------------------


def op_cell(node: Node, cx: Ctx) -> Cell:
    lk = dm.look(node, cx.g)
    in_types = [cx.g.type_of(v) for v in node.inputs]
    out_types = list(node.types)
    carried = {a.name for t in in_types for a in t.axes} - lk.acted
    prefer = preferred_slots(in_types, out_types)
    order = cup_order(in_types, out_types) if lk.kind == dm.CUP else None
    in_rows, out_rows, nrows = assign_rows(in_types, out_types, carried, prefer[0] if prefer else 0, order)
    cell = _op_cell(node, cx, lk, in_types, out_types, in_rows, out_rows, nrows, prefer)
    op = registry.all_ops().get(node.op)
    now = {"stack": None, "home": prefer[0] if prefer else 0}

    def rebuild(stack, home):
        order = None
        if lk.kind == dm.CUP and stack is not None:  # a contraction's operands are named axes: any order reads the same
            stacked = cup_order([in_types[i] for i in stack], out_types)
            order = [stacked[stack.index(i)] for i in range(len(in_types))]
        elif lk.kind == dm.CUP:
            order = cup_order(in_types, out_types)
        in_rows, out_rows, nrows = assign_rows(in_types, out_types, carried, home, order, stack=stack)
        new = _op_cell(node, cx, lk, in_types, out_types, in_rows, out_rows, nrows, prefer)
        cell.w, cell.h, cell.ins, cell.outs, cell.payload = new.w, new.h, new.ins, new.outs, new.payload
        now.update(stack=stack, home=home)

    if (lk.kind == dm.MERGE and op is not None and op.is_commutative) or (lk.kind == dm.CUP and order):
        cell.arrange = lambda stack: rebuild(stack, now["home"])  # operands stacked in the order they arrive
    if lk.kind == dm.MERGE and len(in_types) > 1:
        cell.rehome = lambda home: rebuild(now["stack"], home)
    return cell


def _op_cell(node, cx, lk, in_types, out_types, in_rows, out_rows, nrows, prefer) -> Cell:
    shape_w = {
        dm.TAG: text_width(lk.text, 9.5) + 18,
        dm.CIRCLE: 24.0,
        dm.TRIANGLE: 22.0,
        dm.MERGE: MERGE_W + max([merge_spread(in_rows, out_rows, in_types)] + [0.0]),
        dm.CUP: CUP_W,
        dm.RELABEL: 12.0,
        dm.TRAPEZOID: text_width(lk.text, GLYPH_SIZE, lk.learned) + 26 + (7 if lk.bias else 0),
        dm.ROUTER: ROUTER_W,
    }.get(lk.kind, max(26.0, text_width(lk.text, GLYPH_SIZE, lk.learned) + 14 + (7 if lk.bias else 0)))
    w = max(shape_w, text_width(lk.caption, SMALL) + 4 if lk.caption else 0,
            text_width(lk.note, SMALL) + 4 if lk.note else 0)
    pad = 0.0
    if lk.kind in (dm.BOX, dm.SOURCE, dm.TRAPEZOID, dm.ROUTER):
        pad = 5.0
    h = nrows * R + 2 * pad + (NAME_H if lk.caption else 0) + (NAME_H if lk.note else 0)
    h += ROUTER_H if lk.kind == dm.ROUTER else 0
    draw = OpDraw(node, cx.path(node), lk, in_types, out_types, in_rows, out_rows, nrows, pad)
    return Cell(
        node.name, w, h, [rows_y(r, pad) for r in in_rows], [rows_y(r, pad) for r in out_rows],
        prefer=prefer, payload=draw,
    )


ARGS_W = 200.0  # px: a closed block's hyperparameters wrap to lines this wide


def call_cell(node: CallNode, cx: Ctx) -> Cell:
    """A closed block: a named box with its hyperparameters; lifted wires pass over it, and
    the text sits below them."""
    lines = [(dm.call_title(node), TITLE_SIZE, True, "#000")]
    args = dm.args_text(node.args)
    for line in wrap(args, ARGS_W, SMALL + 0.5) if args else []:  # many hyperparameters: several lines
        lines.append((line, SMALL + 0.5, False, "#333"))
    if cx.opts.cost:
        lines.append((dm.cost_text(node, cx.path(node), cx.opts), SMALL, False, "#555"))
    if dm.value_name(node):  # the name of what it computes, in italics as under an op
        lines.append((dm.value_name(node), SMALL, False, "#555"))
    in_types = [cx.g.type_of(v) for v in node.inputs]
    out_types = list(node.types)
    lift = tuple(node.lift)
    prefer = preferred_slots(in_types, out_types)
    cell = _call_cell(node, cx, lines, in_types, out_types, lift, prefer, None)
    if len(in_types) > 1:
        def arrange(stack):  # inputs stacked in the order they arrive, top to bottom
            new = _call_cell(node, cx, lines, in_types, out_types, lift, prefer, stack)
            cell.w, cell.h, cell.ins, cell.outs, cell.payload = new.w, new.h, new.ins, new.outs, new.payload
        cell.arrange = arrange
    return cell


def _call_cell(node, cx, lines, in_types, out_types, lift, prefer, stack) -> Cell:
    in_rows, out_rows, nrows = assign_rows(in_types, out_types, set(lift), prefer[0] if prefer else 0,
                                           stack=stack)
    over = [r for t, rows in zip(in_types + out_types, in_rows + out_rows)
            for a, r in zip(t.axes, rows) if a.name in lift]
    pad = 5.0
    text_top = pad + (max(over) + 1) * R if over else 0.0
    h = max(nrows * R + 2 * pad, text_top + 12 * len(lines) + 8)
    w = max(56.0, max(text_width(t, s, b) for t, s, b, _ in lines) + 18)
    draw = CallDraw(node, cx.path(node), lines, text_top, in_types, out_types, lift)
    return Cell(
        node.name, w, h, [rows_y(r, pad) for r in in_rows], [rows_y(r, pad) for r in out_rows],
        prefer=prefer, payload=draw,
    )


def frame_cell(node: BodyNode, cx: Ctx, stack: tuple[int, ...] | None = None) -> Cell:
    """An open block or a repeat: its own sub-diagram in a titled frame, its inputs stacked
    top to bottom in the order `stack` (by default their own)."""
    cell = _frame_cell(node, cx, stack)
    if len(node.inputs) > 1 and stack is None:
        def arrange(order):  # inputs stacked in the order they arrive: the block is laid out again
            new = _frame_cell(node, cx, tuple(order))
            cell.w, cell.h, cell.ins, cell.outs, cell.payload = new.w, new.h, new.ins, new.outs, new.payload
        cell.arrange = arrange
    return cell


def _frame_cell(node: BodyNode, cx: Ctx, stack: tuple[int, ...] | None) -> Cell:
    path = cx.path(node)
    is_call = isinstance(node, CallNode)
    level = cx.level + 1 if is_call else cx.level
    lift = tuple(node.lift) if isinstance(node, CallNode) else ()
    sub_cx = Ctx(node.callee, path, level, dm.callee_env(node, cx.g, cx.env), cx.exp, cx.opts, True,
                 len(lift) * R, quiet=not is_call, max_w=max((cx.frame_w or cx.max_w) - 2 * ZONE, 160.0) if cx.max_w else 0.0,
                 tags=cx.tags, stack=stack)
    sub = layout_graph(sub_cx)
    if isinstance(node, CallNode):
        title = dm.call_title(node)
        subtitle = dm.args_text(node.args)
        badge = ""
    elif isinstance(node, (LoopNode, ScanNode)):
        title = node.name
        subtitle = dm.repeat_count_text(node)
        if isinstance(node, ScanNode):
            badge = dm.scan_badge(node)
        else:
            badge = f"×{node.count.value}" + (" shared" if node.shared else "")
        if isinstance(node, LoopNode) and node.count.value == 1 and not node.shared:
            badge = ""  # drawn without a frame (see draw_frame)
    else:
        raise InternalError(f"{node.op} node {node.name} is neither a call nor a repeat")
    cost = dm.cost_text(node, path, cx.opts) if cx.opts.cost else ""
    title_w = (text_width(title, TITLE_SIZE, True) + text_width(subtitle, SMALL + 0.5) + 10
               + (text_width(cost, SMALL) + 10 if cost else 0) + (text_width(badge, 13, True) + 14 if badge else 0))
    lift_top = TITLE_H
    body_top = lift_top + len(lift) * R
    in_types = [cx.g.type_of(v) for v in node.inputs]
    out_types = list(node.types)
    callee = node.callee
    decl_in = [callee.node(i).type for i in callee.inputs]
    decl_out = [callee.type_of(v) for _, v in callee.outputs]
    in_ys = _ports(in_types, decl_in, sub.in_ys, lift, body_top, stack)
    out_ys = _ports(out_types, decl_out, sub.out_ys, lift, body_top)
    inner_w = ZONE + sub.width + ZONE
    doc = callee.doc if is_call else ""
    cap_w = max(inner_w, 200.0) - 16
    caption = wrap(doc, cap_w, 9) if doc else []
    w = max(inner_w, title_w + 16, max((text_width(s, 9) for s in caption), default=0) + 16)
    cap_h = 12 * len(caption) + (4 if caption else 0)
    lowest = max([y for ys in in_ys + out_ys for y in ys], default=0)
    cap_top = max(body_top + sub.height, lowest + R / 2)
    h = cap_top + cap_h + 2
    lift_y = _lift_rows(lift, lift_top, in_types, in_ys, out_types, out_ys)
    draw = FrameDraw(node, path, sub, title, subtitle, cost, badge, caption, (ZONE, body_top), lift,
                     lift_y, in_types, out_types, in_ys, out_ys, level, cap_top)
    return Cell(node.name, w, h, in_ys, out_ys, prefer=preferred_slots(in_types, out_types), payload=draw)


def _lift_rows(lift, lift_top, in_types, in_ys, out_types, out_ys) -> list[float]:
    """Heights of the wires a frame is lifted over. A lifted axis that leads its input's
    axes (`batch` of [batch, seq, d]) runs straight through at the height it comes in at
    (the topmost input's copy) and leaves at that height too (its output port moves there;
    `out_ys` is updated), so it does not climb to the frame's top and back down; others run
    along the top, under the title."""
    rows = []
    for i, name in enumerate(lift):
        default = lift_top + R / 2 + i * R
        ins = [ys[t.index(name)] for t, ys in zip(in_types, in_ys) if t.has(name) and _leads(t, name, lift)]
        if not ins or len(ins) < sum(1 for t in in_types if t.has(name)):
            rows.append(default)
            continue
        y = min(ins)
        rows.append(y)
        for t, ys in zip(out_types, out_ys):
            if t.has(name) and _leads(t, name, lift):
                k = t.index(name)
                below = ys[k + 1] if k + 1 < len(ys) else float("inf")
                if y < below - R / 2 and (k == 0 or y > ys[k - 1] + R / 2):
                    ys[k] = y
    return rows


def _leads(t: TensorType, name: str, lift) -> bool:
    """Whether `name` comes before every axis of `t` the frame is not lifted over."""
    k = t.index(name)
    return all(n in lift for n in t.names[:k + 1])


def _ports(types, declared, inner_ys, lift, body_top, stack=None) -> list[list[float]]:
    """Port heights of a frame's wire groups (stacked top to bottom in the order `stack`):
    each group's first declared axis lines up with the sub-diagram's wire; groups never
    overlap (a free row between them)."""
    order = list(stack) if stack is not None else list(range(len(types)))
    got: dict[int, list[float]] = {}
    floor = TITLE_H + R / 2
    for i in order:
        t, decl, ys = types[i], declared[i], inner_ys[i]
        names = list(t.names) or ["_"]
        anchor = next((k for k, n in enumerate(names) if n not in lift), 0)
        if decl.rank and anchor < len(names) and decl.has(names[anchor]) and ys:
            y = body_top + ys[decl.index(names[anchor])]
        else:
            y = floor + anchor * R
        top = max(y - anchor * R, floor)
        got[i] = [top + k * R for k in range(len(names))]
        floor = got[i][-1] + 2 * R
    return [got[i] for i in range(len(types))]


def input_cell(node: InputNode, cx: Ctx) -> Cell:
    t = node.type
    n = max(t.rank, 1)
    name = "" if cx.quiet and len(cx.g.inputs) == 1 else node.input_name
    top = NAME_H + cx.lift_room
    draw = IoDraw("input", [name], cx.path(node), [rows_y(range(n), top)])
    w = max(8.0, text_width(name, 9, True) + 4)
    return Cell(node.name, w, top + n * R, [], [rows_y(range(n), top)], pinned="first",
                align="right", payload=draw, stacked=cx.stack is not None)


def output_cell(g: Graph, cx: Ctx) -> Cell:
    groups = []
    top = NAME_H
    names = []
    for name, v in g.outputs:
        n = max(g.type_of(v).rank, 1)
        groups.append(rows_y(range(n), top))
        top += (n + 1) * R + NAME_H
        names.append("" if name == "out" or (cx.quiet and len(g.outputs) == 1) else name)
    w = max([8.0] + [text_width(s, 9, True) + 4 for s in names])
    draw = IoDraw("output", names, cx.prefix, groups)
    return Cell("<outputs>", w, top - R - NAME_H + 2, groups, [], pinned="last", align="left", payload=draw)


# ---- one graph -----------------------------------------------------------------------------------


def _new_axes(node: Node, cell: Cell, idx: int, g: Graph, quiet: bool) -> list[bool]:
    """Which wires of output `idx` start here (and so get a label): all of an input's or a
    source's; else those that no input wire at the same height carries on unchanged."""
    t = node.types[idx]
    if node.op == "input":
        return [not quiet] * max(t.rank, 1)
    if not node.inputs or not t.axes:
        return [True] * max(t.rank, 1)
    at: dict[float, set] = {}
    for v, ys in zip(node.inputs, cell.ins):
        for a, y in zip(g.type_of(v).axes, ys):
            at.setdefault(round(y, 2), set()).add((a.name, a.size))
    return [(a.name, a.size) not in at.get(round(y, 2), ()) for a, y in zip(t.axes, cell.outs[idx])]


def layout_graph(cx: Ctx) -> GraphLayout:
    g = cx.g
    cells: list[Cell] = []
    for node in g.nodes():
        if isinstance(node, InputNode):
            cells.append(input_cell(node, cx))
        elif isinstance(node, BodyNode):
            path = cx.path(node)
            if cx.exp.is_open(path, node, cx.level + 1):
                cells.append(frame_cell(node, cx))
            else:
                cells.append(call_cell(dm.as_call(node), cx))
        else:
            cells.append(op_cell(node, cx))
    if cx.stack is not None:  # the inputs are placed (stacked) in the order given
        names = [g.node(i).name for i in g.inputs]
        rank = {names[i]: k for k, i in enumerate(cx.stack)}
        firsts = sorted((c for c in cells if c.key in rank), key=lambda c: rank[c.key])
        it = iter(firsts)
        cells = [next(it) if c.key in rank else c for c in cells]
    sink = output_cell(g, cx)
    cells.append(sink)
    by_name = {c.key: c for c in cells}
    bands: list[Band] = []
    types: dict[int, TensorType] = {}
    out_slots: dict = {}
    for j, (_, v) in enumerate(g.outputs):
        out_slots.setdefault(v, []).append(j)
    for node in g.nodes():
        for idx, t in enumerate(node.types):
            v = node.out(idx)
            dsts = [(user.name, pos) for user, pos in g.users(v)]
            dsts += [(sink.key, j) for j in out_slots.get(v, ())]
            new = _new_axes(node, by_name[node.name], idx, g, cx.quiet)
            texts = _labels(t, cx.env, new)
            band = Band(node.name, idx, dsts, _labels_width(texts), payload=cx.path(node), labels=texts)
            types[id(band)] = t
            bands.append(band)
    margin = 0.0 if cx.framed else 6.0
    sp = Spacing(**SPACING, margin_x=margin, margin_y=4.0)
    placement = place(cells, bands, sp)
    ins = [by_name[g.node(i).name] for i in g.inputs]
    rows = [(placement, 0.0)]
    if cx.max_w:
        # rows no wider than max_w: narrow the target by what the markers and labels of the
        # cuts added, and try again (a few times: a wide frame may simply not fit). Laying out
        # a row moves its cells, so every try starts from a fresh placement.
        target, chosen = cx.max_w, None
        for _ in range(4):
            ranges = wrap_ranges(place(cells, bands, sp), bands, target, max_cross=-1)
            if not ranges:
                break
            chosen = ranges
            rows = _wrapped(cells, bands, place(cells, bands, sp), ranges, types, by_name, cx, sp)
            widest = max(p.width for p, _ in rows)
            # a row of one column (a wide block) cannot be cut: narrowing the target for it
            # would only cut the other rows into stubs (an input alone in a row)
            if all(a == b for (a, b), (p, _) in zip(ranges, rows) if p.width > cx.max_w + 0.5):
                break
            if target < 100:
                break
            target -= widest - cx.max_w
        placement = place(cells, bands, sp)
        rows = [(placement, 0.0)]
        if chosen:
            rows = _wrapped(cells, bands, placement, chosen, types, by_name, cx, sp)
        cx.tags[0] += len({tag for p, _ in rows[1:] for c in p.cells.values()
                           if isinstance(c.payload, IoDraw) and c.payload.kind == "cont-in" for tag in c.payload.names})
    else:
        ranges = None if cx.framed else wrap_ranges(placement, bands, WRAP_WIDTH)
        if ranges and placement.width / max(placement.height, 1.0) > WRAP_RATIO:
            rows = _wrapped(cells, bands, placement, ranges, types, by_name, cx, sp)
    # where the inputs start and the outputs end, in the rows they were placed in
    row_y = {key: dy for p, dy in rows for key in p.cells}
    in_ys = [[row_y[c.key] + c.y + y for y in c.outs[0]] for c in ins]
    out_ys = [[row_y[sink.key] + sink.y + y for y in ys] for ys in sink.ins]
    width = max(p.width for p, _ in rows)
    height = rows[-1][1] + rows[-1][0].height
    return GraphLayout(cx, rows, width, height, in_ys, out_ys, [c.x for c in ins], sink.x + sink.w)


def _labels(t: TensorType, env, new: list[bool]) -> list[str | None]:
    if not t.axes:
        return ["()"] if new[0] else [None]
    return [dm.axis_label(a, env) if fresh else None for a, fresh in zip(t.axes, new)]


def _labels_width(texts) -> float:
    return max([text_width(s, LABEL_SIZE) + 4 for s in texts if s] + [0.0])


def _wrapped(cells, bands, placement, ranges, types, by_name, cx: Ctx, sp: Spacing):
    """A diagram too wide for a page, as rows; values that go on to the next row end in a
    lettered marker and start again from the same letter."""

    def make_in(band: Band, tag: str):
        src = by_name[band.src]
        ys = src.outs[band.idx]
        offs = [y - ys[0] + R / 2 for y in ys]
        draw = IoDraw("cont-in", [tag], "", [offs])
        cell = Cell(f"<from {tag}>", CONT_W, offs[-1] + R / 2, [], [offs], pinned="first", align="right",
                    payload=draw)
        t = types[id(band)]
        texts = _labels(t, cx.env, [True] * max(t.rank, 1))
        return cell, texts, _labels_width(texts)

    def make_out(leaving):
        groups, top = [], 0.0
        for band, _ in leaving:
            ys = by_name[band.src].outs[band.idx]
            groups.append([top + y - ys[0] + R / 2 for y in ys])
            top = groups[-1][-1] + 1.5 * R
        draw = IoDraw("cont-out", [tag for _, tag in leaving], "", groups)
        return Cell("<onward>", CONT_W, top - R, groups, [], pinned="last", align="left", payload=draw)

    made: dict[int, list] = {}  # what each row's <onward> cell was made of

    def make_out_kept(leaving):
        cell = make_out(leaving)
        made[id(cell)] = leaving
        return cell

    rows, y = [], 0.0
    for row_cells, row_bands in split_rows(cells, bands, placement, ranges, make_in, make_out_kept, cx.tags[0]):
        p = place(row_cells, row_bands, sp)
        if _restack_onward(row_cells, row_bands, p, made, make_out):
            p = place(row_cells, row_bands, sp)
        rows.append((p, y))
        y += p.height + ROW_GAP
    return rows


def _restack_onward(row_cells, row_bands, p, made, make_out) -> bool:
    """Stack the values that leave a row in the order their wires arrive in the row as laid
    out (top to bottom), so that they do not cross on their way to the markers; whether the
    onward cell was remade."""
    k = next((i for i, c in enumerate(row_cells) if c.key == "<onward>"), None)
    if k is None:
        return False
    feeds = {slot: b for b in row_bands for d, slot in b.dsts if d == "<onward>"}
    if len(feeds) < 2:
        return False

    def at(slot):
        b = feeds[slot]
        src = p.cells[b.src]
        return src.y + (src.outs[b.idx][0] if src.outs[b.idx] else 0.0)

    order = sorted(feeds, key=lambda slot: (at(slot), slot))
    if order == sorted(feeds):
        return False
    leaving = made[id(row_cells[k])]
    row_cells[k] = make_out([leaving[slot] for slot in order])
    new_slot = {old: i for i, old in enumerate(order)}
    for b in row_bands:
        b.dsts = [(d, new_slot[slot] if d == "<onward>" else slot) for d, slot in b.dsts]
    return True

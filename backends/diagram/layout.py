"""Left-to-right placement of one graph's cells, shared by the diagram styles.

Cells are put in columns by longest path (sources as late as they can go). Within a
column each cell goes to the free height nearest to where its main input arrives, so a
chain of ops draws as a straight line; a value that is still needed later keeps its own
horizontal lane, and every cell in the columns it crosses keeps clear of it. Bends
happen only in the last stretch of the gap before a consumer; wire labels sit in the
first stretch, right after the producer, so labels never meet bends or boxes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from nncircuit.errors import InternalError


# A cell that cannot sit where it wants goes below rather than above unless above is much
# nearer: a chain that steps aside for the lanes it leaves behind (a U-Net's skips) keeps
# stepping the same way, whatever the height of the frames it opens into.
DOWN = 0.5
STAGGER = 5.0  # between the bends of neighbouring wires that change height together


def stagger(pairs: list[tuple[float, float]], step: float = STAGGER) -> list[float]:
    """Where each of several wires (from y0 to y1, top to bottom) starts its bend, after the
    first to bend: wires that change height together bend one after another, as a ribbon
    turns (moving down, the top wire bends last; moving up, first), so they stay apart
    instead of running as one steep stroke. All at once when they do not move together."""
    moves = [y1 - y0 for y0, y1 in pairs]
    moving = [k for k, m in enumerate(moves) if abs(m) > 0.01]  # a wire that stays level needs no room
    offs = [0.0] * len(pairs)
    if len(moving) < 2 or not (all(moves[k] > 0 for k in moving) or all(moves[k] < 0 for k in moving)):
        return offs
    n = len(moving)
    down = moves[moving[0]] > 0
    for i, k in enumerate(moving):
        offs[k] = (n - 1 - i) * step if down else i * step
    return offs


@dataclass(eq=False)
class Cell:
    key: str  # unique in its graph
    w: float
    h: float
    ins: list[list[float]]  # per input slot: y offsets of its wires
    outs: list[list[float]]  # per output: y offsets of its wires
    pinned: str = ""  # "first" (graph inputs) | "last" (the outputs) | ""
    prefer: tuple[int, ...] = ()  # input slots to line up with, best first
    align: str = "center"  # within its column: "left" | "center" | "right"
    payload: object = None
    arrange: Callable[[list[int]], None] | None = None  # restack the input slots, top to bottom
    # level the outputs with input slot `home` instead: a merge placed below all its operands
    # takes them all from above (none loops under the box to come back up)
    rehome: Callable[[int], None] | None = None
    # placed below the stacked cells before it in its column, whatever its consumers prefer
    # (a frame's inputs, in the order their values arrive from outside)
    stacked: bool = False
    col: int = 0
    x: float = 0.0
    y: float = 0.0


@dataclass(eq=False)
class Band:
    """One value: the wires from output `idx` of cell `src` to each consumer's input slot."""

    src: str
    idx: int
    dsts: list[tuple[str, int]]
    label_w: float = 0.0  # room its labels need right after the producer
    payload: object = None
    labels: list = field(default_factory=list)  # text above each wire where it starts, or None


@dataclass
class Spacing:
    above: float  # room a band needs above its first wire (its labels)
    below: float  # and below its last wire
    gap: float  # between a cell and anything else in its column
    min_gap: float  # between two columns
    bend: float  # width of the stretch where wires change height
    margin_x: float = 0.0
    margin_y: float = 0.0


@dataclass
class Placement:
    cells: dict[str, Cell]
    bands: list[Band]
    col_x: list[float]
    col_w: list[float]
    width: float
    height: float
    bend: float
    label_x: dict[int, float] = field(default_factory=dict)  # column -> where labels start


@dataclass
class Wire:
    """A polyline with smooth bends; points go left to right."""

    segments: list[tuple]  # ("M", x, y) | ("L", x, y) | ("C", x1, y1, x2, y2, x, y)


@dataclass
class Route:
    band: Band
    wires: list[Wire]  # every wire of the band to every consumer
    dots: list[tuple[float, float]]  # where a wire splits (copy)
    starts: list[tuple[float, float]]  # where each wire of the band leaves its producer


def place(cells: list[Cell], bands: list[Band], sp: Spacing) -> Placement:
    """Columns and coordinates for `cells` (given in topological order)."""
    by_key = {c.key: c for c in cells}
    if len(by_key) != len(cells):
        raise InternalError("diagram cells with the same key")
    preds: dict[str, list[str]] = {c.key: [] for c in cells}
    succs: dict[str, list[str]] = {c.key: [] for c in cells}
    feeding: dict[tuple[str, int], Band] = {}
    for b in bands:
        for dst, slot in b.dsts:
            preds[dst].append(b.src)
            succs[b.src].append(dst)
            feeding[(dst, slot)] = b
    _columns(cells, preds, succs, by_key)
    ncols = max(c.col for c in cells) + 1
    last_col = {id(b): _last_col(b, by_key) for b in bands}

    def band_ys(b: Band) -> list[float]:
        src = by_key[b.src]
        return [src.y + off for off in src.outs[b.idx]]

    placed: set[str] = set()
    for col in range(ncols):
        column = [c for c in cells if c.col == col]
        passing = []
        for b in bands:
            src = by_key[b.src]
            if src.col < col < last_col[id(b)] and src.key in placed and src.outs[b.idx]:
                ys = band_ys(b)
                passing.append((min(ys) - sp.above, max(ys) + sp.below))
        # cells of a column keep the order of where they want to be, top to bottom; a
        # source whose place depends on its neighbours in the column comes after them
        wanted, later = [], []
        for cell in column:
            if cell.arrange is not None:
                _arrange(cell, by_key, feeding, placed)
        for i, cell in enumerate(column):
            pref = _preferred(cell, by_key, feeding, succs, placed, last_col)
            if pref is None:
                later.append(cell)
            else:
                wanted.append((pref, i, cell))
        wanted.sort(key=lambda t: t[:2])
        floor = None
        boxes: list[tuple[float, float]] = []
        for pref, _, cell in wanted:
            cell.y = _nearest_free(pref, cell.h, passing, sp.gap, floor)
            home = _home_below(cell, by_key, feeding, placed)
            if home is not None and cell.rehome is not None:
                out_y = cell.y + cell.outs[0][0]
                cell.rehome(home)
                cell.y = _nearest_free(out_y - cell.outs[0][0], cell.h, passing, sp.gap, floor)
            floor = cell.y + cell.h + sp.gap
            boxes.append((cell.y, cell.y + cell.h))
            placed.add(cell.key)
        below = None  # under the last stacked cell
        for cell in later:
            pref = None if cell.stacked else _preferred(cell, by_key, feeding, succs, placed, last_col)
            if pref is None:
                pref = max((b for _, b in boxes), default=-sp.gap) + sp.gap
            cell.y = _nearest_free(pref, cell.h, passing + boxes, sp.gap, below if cell.stacked else None)
            if cell.stacked:
                below = cell.y + cell.h + sp.gap
            boxes.append((cell.y, cell.y + cell.h))
            placed.add(cell.key)

    # horizontal: column widths, and gaps wide enough for the labels of bands starting there
    col_w = [0.0] * ncols
    for c in cells:
        col_w[c.col] = max(col_w[c.col], c.w)
    label_need = [0.0] * ncols
    spread = [0.0] * ncols  # room the spread bends of the wires arriving at each column need
    for b in bands:
        col = by_key[b.src].col
        label_need[col] = max(label_need[col], b.label_w)
        fans: dict[int, int] = {}
        for dst, slot in b.dsts:
            d = by_key[dst]
            offs = stagger(list(zip(band_ys(b), [d.y + off for off in d.ins[slot]])))
            fans[d.col] = fans.get(d.col, 0) + 1
            spread[d.col] = max(spread[d.col], max(offs + [0.0]) + (fans[d.col] - 1) * len(offs) * STAGGER)
    col_x = []
    x = sp.margin_x
    label_x = {}
    for col in range(ncols):
        col_x.append(x)
        label_x[col] = x + col_w[col]
        gap = max(sp.min_gap, label_need[col] + sp.bend + 8 if label_need[col] else sp.min_gap)
        if col + 1 < ncols:
            gap += spread[col + 1]
        x += col_w[col] + (gap if col < ncols - 1 else 0)
    width = x + sp.margin_x
    for c in cells:
        slack = col_w[c.col] - c.w
        c.x = col_x[c.col] + {"left": 0.0, "right": slack}.get(c.align, slack / 2)

    top = min((c.y for c in cells), default=0.0)
    for b in bands:
        if by_key[b.src].outs[b.idx]:
            top = min(top, min(band_ys(b)) - sp.above)
    shift = sp.margin_y - top
    for c in cells:
        c.y += shift
    bottom = max((c.y + c.h for c in cells), default=0.0)
    return Placement(by_key, bands, col_x, col_w, width, bottom + sp.margin_y, sp.bend, label_x)


def _columns(cells, preds, succs, by_key):
    for c in cells:
        if c.pinned == "first":
            c.col = 0
        elif c.pinned == "last":
            continue
        elif preds[c.key]:
            c.col = 1 + max(by_key[p].col for p in preds[c.key])
        else:
            c.col = 0
    # a source (no inputs) goes right before its first consumer
    for c in reversed(cells):
        if c.pinned or preds[c.key]:
            continue
        consumers = [by_key[s].col for s in succs[c.key] if by_key[s].pinned != "last"]
        if consumers:
            c.col = max(0, min(consumers) - 1)
    last = max((c.col for c in cells if c.pinned != "last"), default=0) + 1
    for c in cells:
        if c.pinned == "last":
            c.col = last


def _arrange(cell: Cell, by_key, feeding, placed):
    """Stack the input slots of `cell` in the order their values arrive, top to bottom, so
    that each operand comes in from its own side (an addition's operands do not cross)."""
    arrival = {}
    for s in range(len(cell.ins)):
        b = feeding.get((cell.key, s))
        if b is not None and b.src in placed and by_key[b.src].outs[b.idx]:
            src = by_key[b.src]
            arrival[s] = src.y + src.outs[b.idx][0]
    if len(arrival) < 2:
        return
    stack = sorted(range(len(cell.ins)), key=lambda s: (arrival.get(s, float("inf")), s))
    if stack != list(range(len(cell.ins))) and cell.arrange is not None:
        cell.arrange(stack)


def _home_below(cell: Cell, by_key, feeding, placed) -> int | None:
    """The lowest input slot of a merge whose operands all arrive above its outputs (it was
    pushed below them), when its outputs are not already level with that slot; else None."""
    if cell.rehome is None or len(cell.ins) < 2 or not cell.outs or not cell.outs[0]:
        return None
    out_y = cell.y + cell.outs[0][0]
    for s in range(len(cell.ins)):
        b = feeding.get((cell.key, s))
        if b is None or b.src not in placed or not by_key[b.src].outs[b.idx] or not cell.ins[s]:
            return None
        src = by_key[b.src]
        if src.y + src.outs[b.idx][0] > out_y:
            return None
    lowest = max(range(len(cell.ins)), key=lambda s: cell.ins[s][0])
    return None if cell.ins[lowest][0] == cell.outs[0][0] else lowest


def _last_col(b: Band, by_key) -> int:
    if not b.dsts:
        return by_key[b.src].col + 1
    return max(by_key[d].col for d, _ in b.dsts)


def _preferred(cell, by_key, feeding, succs, placed, last_col) -> float | None:
    slots = list(cell.prefer) + [i for i in range(len(cell.ins)) if i not in cell.prefer]
    usable = [s for s in slots if (cell.key, s) in feeding and feeding[(cell.key, s)].src in placed
              and cell.ins[s]]
    ending = [s for s in usable if last_col[id(feeding[(cell.key, s)])] == cell.col]
    for s in ending + usable:
        b = feeding[(cell.key, s)]
        src = by_key[b.src]
        return src.y + src.outs[b.idx][0] - cell.ins[s][0]
    # a source: line up with where its consumer will sit, judged by its other inputs
    if cell.outs and cell.outs[0]:
        for dst_key in succs[cell.key]:
            dst = by_key[dst_key]
            mine = [s for s in range(len(dst.ins)) if feeding.get((dst_key, s)) is not None
                    and feeding[(dst_key, s)].src == cell.key]
            for s in range(len(dst.ins)):
                b = feeding.get((dst_key, s))
                if b is None or b.src == cell.key or b.src not in placed or not dst.ins[s] or not mine:
                    continue
                src = by_key[b.src]
                dst_top = src.y + src.outs[b.idx][0] - dst.ins[s][0]
                return dst_top + dst.ins[mine[0]][0] - cell.outs[0][0]
    return None


def _nearest_free(pref: float, h: float, obstacles, gap: float, floor: float | None) -> float:
    """The top nearest to `pref` (not above `floor`) where a cell of height h touches nothing."""

    def free(t):
        return all(t + h + gap <= a or t >= b + gap for a, b in obstacles)

    cands = [pref] + ([floor] if floor is not None else [])
    for a, b in obstacles:
        cands += [b + gap, a - gap - h]
    best = None
    for t in cands:
        if (floor is not None and t < floor) or not free(t):
            continue
        key = (abs(t - pref) * (DOWN if t > pref else 1.0), -t)
        if best is None or key < best[0]:
            best = (key, t)
    if best is None:  # below every obstacle is always free
        return max([pref] + [b + gap for _, b in obstacles] + ([floor] if floor is not None else []))
    return best[1]


def route(p: Placement, b: Band) -> Route:
    """The wires of band `b`: a trunk to its last consumer and branches that split off it."""
    src = p.cells[b.src]
    x0 = src.x + src.w
    ys = [src.y + off for off in src.outs[b.idx]]
    starts = [(x0, y) for y in ys]
    if not b.dsts:
        return Route(b, [], [], starts)
    dsts = [(p.cells[d], slot) for d, slot in b.dsts]

    def dy(item):
        cell, slot = item
        return abs(cell.y + cell.ins[slot][0] - ys[0]) if ys else 0.0

    t = max(range(len(dsts)), key=lambda i: (dsts[i][0].col, -dy(dsts[i]), -i))
    wires: list[Wire] = []
    dots: list[tuple[float, float]] = []
    trunk_bends: list[float] = []
    fan = _fan_out(dsts, ys, t)
    for i in [t] + [i for i in range(len(dsts)) if i != t]:
        cell, slot = dsts[i]
        xe = p.col_x[cell.col]
        is_trunk = i == t
        ends = [cell.y + cell.ins[slot][k] for k in range(len(ys))]
        offs = stagger(list(zip(ys, ends)))
        for k, y in enumerate(ys):
            y2 = ends[k]
            # the bends of wires that move together are spread (see stagger), the last to
            # bend ending where the consumer starts; branches to one column fan out, the
            # farthest splitting first
            bx = xe - p.bend - max(offs) + offs[k] - fan.get(i, 0.0)
            if is_trunk:
                xs = x0
                trunk_bends.append(bx if abs(y2 - y) > 0.01 else xe)
            else:
                xs = min(bx, trunk_bends[k])
            segs: list[tuple] = [("M", xs, y)]
            if abs(y2 - y) > 0.01:
                segs.append(("L", bx, y))
                mid = bx + p.bend / 2
                segs.append(("C", mid, y, mid, y2, bx + p.bend, y2))
                if xe > bx + p.bend + 0.01:
                    segs.append(("L", xe, y2))
            if cell.x > segs[-1][-2] + 0.01 or len(segs) == 1:
                segs.append(("L", cell.x, y2))
            wires.append(Wire(segs))
            if not is_trunk:
                dots.append((xs, y))
    return Route(b, wires, sorted(set(dots)), starts)


def _fan_out(dsts, ys, trunk: int) -> dict[int, float]:
    """How much earlier each branch of a value splits off than the nearest of the branches
    to the same column: one STAGGER per wire of each branch nearer than it, so that branches
    leaving one value for several consumers in a column do not run together from one dot."""
    if not ys:
        return {}
    by_col: dict[int, list[tuple[float, int]]] = {}
    for i, (cell, slot) in enumerate(dsts):
        dy = abs(cell.y + cell.ins[slot][0] - ys[0])
        if i != trunk and dy > 0.01:
            by_col.setdefault(cell.col, []).append((dy, i))
    out = {}
    for group in by_col.values():
        for rank, (_, i) in enumerate(sorted(group)):
            out[i] = rank * len(ys) * STAGGER  # past the spread bends of the nearer branch
    return out


# ---- wrapping a long diagram into rows ------------------------------------------------------------


def wrap_ranges(p: Placement, bands: list[Band], max_width: float, max_cross: int = 2):
    """Column ranges that split a diagram wider than `max_width` into rows, cutting only
    where at most `max_cross` values cross the cut and no value crosses a whole row, with
    rows of comparable width and the widest as narrow as can be (the fewest rows that fit
    in `max_width`). None when wrapping would not help."""
    ncols = len(p.col_x)
    if p.width <= max_width or ncols < 5:
        return None
    if max_cross < 0:
        return _fit_ranges(p, bands, max_width)
    cols = {k: c.col for k, c in p.cells.items()}
    last = {id(b): max((cols[d] for d, _ in b.dsts), default=-1) for b in bands}
    ok = [0 < c < ncols - 2 and sum(1 for b in bands if cols[b.src] <= c < last[id(b)]) <= max_cross
          for c in range(ncols)]
    cont = 30.0  # room for the markers where a row starts or ends

    def through(c: int, j: int) -> bool:
        """Whether a value would cross a whole row (columns c+1..j) without stopping."""
        return j < ncols - 1 and any(cols[b.src] <= c and last[id(b)] > j for b in bands)

    def width(a: int, b: int) -> float:
        return p.col_x[b] + p.col_w[b] - p.col_x[a] + cont * ((a > 0) + (b < ncols - 1))

    allowed = [c for c in range(ncols) if ok[c]]
    best = None
    most = min(-(-int(p.width) // int(max_width)) + 1, 4)
    for k in range(2, most + 1):
        combos = itertools.combinations(allowed, k - 1)
        for cuts in itertools.islice(combos, 100_000):
            bounds = [0] + [c + 1 for c in cuts] + [ncols]
            rows = [(bounds[i], bounds[i + 1] - 1) for i in range(k)]
            if any(through(a - 1, b) for a, b in rows[1:]):
                continue
            widths = [width(a, b) for a, b in rows]
            if min(widths) < 0.4 * max(widths):
                continue  # a stub of a row reads as an afterthought
            if best is None or max(widths) < best[0]:
                best = (max(widths), rows)
        if best is not None and best[0] <= max_width:
            break
    if best is None or best[0] > 0.8 * p.width:
        return None
    return best[1]


def _fit_ranges(p: Placement, bands: list[Band], max_width: float):
    """Paper mode: the fewest rows no wider than `max_width`, cutting anywhere, the widest
    as narrow as can be; every value that crosses a cut is saved under a letter and loaded
    again in the row that uses it, so a diagram with many skips (a U-Net) wraps too. A
    column wider than `max_width` gets a row of its own. None when it fits in one row."""
    ncols = len(p.col_x)
    cols = {k: c.col for k, c in p.cells.items()}
    last = {id(b): max((cols[d] for d, _ in b.dsts), default=-1) for b in bands}
    # room for the markers, and for the labels of the wires that start again after a cut
    start = [30.0 + max([b.label_w for b in bands if cols[b.src] < a <= last[id(b)]] + [0.0]) + p.bend
             for a in range(ncols)]

    def width(a: int, b: int) -> float:
        return p.col_x[b] + p.col_w[b] - p.col_x[a] + (start[a] if a > 0 else 0.0) + (30.0 if b < ncols - 1 else 0.0)

    rows, a = 0, 0
    while a < ncols:  # the fewest rows: greedy, left to right
        b = a
        while b + 1 < ncols and width(a, b + 1) <= max_width:
            b += 1
        rows += 1
        a = b + 1
    if rows < 2:
        return None
    # the same number of rows with the widest as narrow as can be; the outputs never
    # stand alone in a row
    best: dict[tuple[int, int], tuple[float, list]] = {}

    def solve(a: int, k: int):
        if (a, k) in best:
            return best[(a, k)]
        if k == 1:
            res = (width(a, ncols - 1), [(a, ncols - 1)]) if ncols - 1 > a or a == 0 else (float("inf"), [])
        else:
            res = (float("inf"), [])
            for b in range(a, ncols - 1):
                rest = solve(b + 1, k - 1)
                cand = max(width(a, b), rest[0])
                if cand < res[0]:
                    res = (cand, [(a, b)] + rest[1])
        best[(a, k)] = res
        return res

    result = solve(0, rows)
    return result[1] if result[1] else None


def split_rows(cells: list[Cell], bands: list[Band], p: Placement, ranges, make_in, make_out, first: int = 0):
    """The cells and bands of each row. A value that crosses into a row starts there from a
    continuation cell `make_in(band, tag) -> (cell, labels, label width)`; values that leave a row end in
    one cell `make_out([(band, tag), ...]) -> cell`. Tags are A, B, … by first crossing (from the
    `first`-th letter on, so that the rows inside a frame have letters of their own)."""
    cols = {c.key: p.cells[c.key].col for c in cells}
    tags: dict[int, str] = {}

    def tag_of(band: Band) -> str:
        if id(band) not in tags:
            n = first + len(tags)
            tags[id(band)] = chr(ord("A") + n % 26) + (str(n // 26) if n >= 26 else "")
        return tags[id(band)]

    rows = []
    for a, b in ranges:
        row_cells = [c for c in cells if a <= cols[c.key] <= b]
        starts: list[Cell] = []
        start_at: dict[str, float] = {}
        row_bands: list[Band] = []
        leaving: list[Band] = []
        leaving_new: list[Band] = []
        for band in bands:
            src_col = cols[band.src]
            dst_cols = [cols[d] for d, _ in band.dsts]
            if src_col > b or not dst_cols or max(dst_cols) < a:
                continue
            inside = [(d, s) for d, s in band.dsts if a <= cols[d] <= b]
            if src_col < a and not inside:
                continue  # saved in an earlier row, loaded in a later one: nothing to draw here
            if src_col >= a:
                new = Band(band.src, band.idx, inside, band.label_w, band.payload, band.labels)
            else:
                cell, labels, label_w = make_in(band, tag_of(band))
                starts.append(cell)
                start_at[cell.key] = _passes_at(p, band, a)
                new = Band(cell.key, 0, inside, label_w, band.payload, labels)
            if max(dst_cols) > b:
                leaving.append(band)
                leaving_new.append(new)
            row_bands.append(new)
        if leaving:
            # values that go on leave in the order they were made, top to bottom (a first
            # guess: circuit._restack_onward restacks them as the row is laid out)
            order = sorted(range(len(leaving)), key=lambda k: _made_at(p, leaving[k]))
            leaving_new = [leaving_new[k] for k in order]
            out = make_out([(leaving[k], tag_of(leaving[k])) for k in order])  # lettered in that order
            row_cells.append(out)
            for slot, new in enumerate(leaving_new):
                new.dsts.append((out.key, slot))
        # values that start again here stack in the order their wires pass the row's first
        # column in the diagram laid out in one row, so they do not cross
        starts.sort(key=lambda c: start_at.get(c.key, 0.0))
        rows.append((starts + row_cells, row_bands))
    return rows


def _made_at(p: Placement, band: Band) -> float:
    """Where `band` leaves its producer in the placement `p` (of the diagram in one row)."""
    src = p.cells[band.src]
    return src.y + (src.outs[band.idx][0] if src.outs[band.idx] else 0.0)


def _passes_at(p: Placement, band: Band, col: int) -> float:
    """The height at which `band`'s wires pass column `col` in the placement `p`: level with
    the consumer's input there, else at the producer's height (a wire runs level and bends
    just before the column of its consumer)."""
    here = [p.cells[d].y + p.cells[d].ins[s][0] for d, s in band.dsts
            if p.cells[d].col == col and p.cells[d].ins[s]]
    return min(here) if here else _made_at(p, band)

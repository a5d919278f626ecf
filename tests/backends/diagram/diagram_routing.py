"""Routing checks read back from a circuit diagram's SVG: wires through text (glyphs, labels,
titles), through a contraction's cup or along its arc, wires that turn back (down then up) or
loop below what they join, wires squeezed into one stroke, and wires that climb inside a box."""

import re
import xml.etree.ElementTree as ET

from nncircuit.backends.diagram.svg import text_width

NS = "{http://www.w3.org/2000/svg}"
TEXT = ("glyph", "label", "title", "subtitle", "note", "caption", "marker", "io-name")


def polyline(d: str) -> list[tuple[float, float]]:
    """The points of an M/L/C path, each curve sampled at 16 steps."""
    pts: list[tuple[float, float]] = []
    for cmd, body in re.findall(r"([MLC])([^MLC]*)", d):
        v = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", body)]
        if cmd in "ML":
            pts.append((v[0], v[1]))
        else:
            (x0, y0), (x1, y1, x2, y2, x3, y3) = pts[-1], v
            for i in range(1, 17):
                t = i / 16
                a, b, c, e = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3
                pts.append((a * x0 + b * x1 + c * x2 + e * x3, a * y0 + b * y1 + c * y2 + e * y3))
    return pts


def _hits(p, q, box) -> bool:
    """Whether segment p-q passes through the inside of box (x0, y0, x1, y1) (Liang-Barsky)."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return False
    dx, dy = q[0] - p[0], q[1] - p[1]
    lo, hi = 0.0, 1.0
    for d, a, b in ((dx, p[0] - x0, x1 - p[0]), (dy, p[1] - y0, y1 - p[1])):
        if d == 0:
            if a <= 0 or b <= 0:
                return False
            continue
        t1, t2 = -a / d, b / d
        if d < 0:
            t1, t2 = t2, t1
        lo, hi = max(lo, t1), min(hi, t2)
    return hi - lo > 1e-9


def _near(pts, box) -> bool:
    """Whether the wire's bounding box meets the box at all (a cheap test first)."""
    return (min(p[0] for p in pts) < box[2] and max(p[0] for p in pts) > box[0]
            and min(p[1] for p in pts) < box[3] and max(p[1] for p in pts) > box[1])


def text_box(el):
    x, y, size = float(el.get("x")), float(el.get("y")), float(el.get("font-size"))
    w = text_width(el.text or "", size, el.get("font-weight") == "bold")
    anchor = el.get("text-anchor") or "start"
    x0 = x - (w / 2 if anchor == "middle" else w if anchor == "end" else 0)
    return (x0 + 1, y - 0.7 * size + 1, x0 + w - 1, y + 0.15 * size - 0.5)


def wires(root):
    return [polyline(el.get("d")) for el in root.iter(NS + "path") if "wire" in (el.get("class") or "").split()]


def routing_problems(svg: str) -> dict[str, int]:
    root = ET.fromstring(svg)
    ws = wires(root)
    texts = [(el.text, text_box(el)) for el in root.iter(NS + "text") if el.get("class") in TEXT]
    through_text = sum(1 for pts in ws for _, b in texts if _near(pts, b)
                       and any(_hits(p, q, b) for p, q in zip(pts, pts[1:])))
    cups = []
    for el in root.iter(NS + "path"):
        if el.get("class") == "cup":
            pts = polyline(el.get("d"))
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            cups.append((min(xs) + 0.5, min(ys) + 0.5, max(xs), max(ys) - 0.5))
    through_cup = sum(1 for pts in ws for b in cups if _near(pts, b) and any(_hits(p, q, b) for p, q in zip(pts, pts[1:])))
    # chain the wire paths that continue one another, then count turns back
    ends = {}
    for pts in ws:
        ends.setdefault((round(pts[0][0], 1), round(pts[0][1], 1)), []).append(pts)
    turns = 0
    for pts in ws:
        chain, seen = list(pts), 0
        while seen < 20:
            nxt = ends.get((round(chain[-1][0], 1), round(chain[-1][1], 1)))
            if not nxt or nxt[0] is pts:
                break
            chain += nxt[0][1:]
            seen += 1
        sign, flips = 0, 0
        for (_, a), (_, b) in zip(chain, chain[1:]):
            s = (b > a + 0.05) - (b < a - 0.05)
            if s and sign and s != sign:
                flips += 1
            sign = s or sign
        turns += flips > 0
    return {"wire through text": through_text, "wire through cup": through_cup, "wire turns back": turns,
            "wire on arc": wires_on_arcs(ws, _arcs(root)), "loop below": loops_below(ws, _merges(root)),
            "squeeze": squeezes(ws), "diagonal through box": diagonals_through_boxes(ws, _op_boxes(root))}


# ---- what a person would not draw (tracker issue 14, item 1) ---------------------------------------


def _resample(pts, step=1.0):
    """Points every `step` units along a polyline, each with its direction (dx, dy) there."""
    out = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        n = max(1, int(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 / step))
        d = ((x1 - x0) / n, (y1 - y0) / n)
        out += [(x0 + d[0] * i, y0 + d[1] * i, d) for i in range(n)]
    return out


def _chains(ws):
    """Each wire continued through the wires that start where it ends (a value's path
    through pass-over wires, frames and merges), as one list of points."""
    ends = {}
    for pts in ws:
        ends.setdefault((round(pts[0][0], 1), round(pts[0][1], 1)), []).append(pts)
    for pts in ws:
        chain, seen = list(pts), 0
        while seen < 20:
            nxt = ends.get((round(chain[-1][0], 1), round(chain[-1][1], 1)))
            if not nxt or nxt[0] is pts:
                break
            chain += nxt[0][1:]
            seen += 1
        yield chain


def _arcs(root):
    return [polyline(el.get("d")) for el in root.iter(NS + "path") if el.get("class") == "cup"]


def wires_on_arcs(ws, arcs, near=1.6) -> int:
    """Wires that run along a contraction's arc, away from the arc's own ends."""
    n = 0
    for arc in arcs:
        (ax0, ay0), (ax1, ay1) = arc[0], arc[-1]
        inner = [(x, y) for x, y, _ in _resample(arc, 0.5)
                 if min(abs(x - ax0) + abs(y - ay0), abs(x - ax1) + abs(y - ay1)) > 3.5]
        for pts in ws:
            samples = _resample(pts, 0.5)
            if any((x - p) ** 2 + (y - q) ** 2 < near * near for x, y in inner for p, q, _ in samples):
                n += 1
    return n


def _merges(root):
    """Boxes of the ops drawn as a merge (a pill where matching wires join: +, *, ...)."""
    out = []
    for g in root.iter(NS + "g"):
        if "op" in (g.get("class") or "").split() and any(
                el.tag == NS + "rect" and el.get("rx") == "7" and el.get("class") == "shape" for el in g):
            x, y, w, h = (float(v) for v in g.get("data-bbox").split())
            out.append((x, y, x + w, y + h))
    return out


def loops_below(ws, merges, depth=6.0) -> int:
    """Wires (followed through their continuations) that arrive from above a merge but dip
    below both their ends and come back up into it: an operand routed round the far side
    of the other operand it joins, instead of coming in from the side it arrives on."""
    n = 0
    for chain in _chains(ws):
        low = max(y for _, y in chain)
        if not (low - chain[0][1] > depth and low - chain[-1][1] > depth):
            continue
        (ex, ey), sy = chain[-1], chain[0][1]
        n += any(x0 <= ex <= x1 + 0.5 and y0 <= ey <= y1 and sy < y0 for x0, y0, x1, y1 in merges)
    return n


def squeezes(ws, near=2.5, run=6) -> int:
    """Pairs of wires that run together as one stroke: steep stretches of two wires closer
    than `near` over `run` or more units (a crossing is shorter than that)."""
    grid: dict[tuple[int, int], list[tuple[int, float, float]]] = {}
    steep = []
    for i, pts in enumerate(ws):
        s = _resample(pts, 1.0)
        s = [(x, y) for k, (x, y, (dx, dy)) in enumerate(s) if abs(dy) > 2 * abs(dx) and 4 <= k < len(s) - 4]
        steep.append(s)
        for x, y in s:
            grid.setdefault((int(x // 4), int(y // 4)), []).append((i, x, y))
    close: dict[tuple[int, int], int] = {}
    for i, s in enumerate(steep):
        for x, y in s:
            hit = set()
            for gx in range(int(x // 4) - 1, int(x // 4) + 2):
                for gy in range(int(y // 4) - 1, int(y // 4) + 2):
                    for j, p, q in grid.get((gx, gy), ()):
                        if j > i and (p - x) ** 2 + (q - y) ** 2 < near * near:
                            hit.add(j)
            for j in hit:
                close[(i, j)] = close.get((i, j), 0) + 1
    return sum(1 for c in close.values() if c >= run)


def _op_boxes(root):
    """Boxes (x0, y0, x1, y1) of the ops drawn as boxes or trapezoids and of closed blocks."""
    out = []
    for g in root.iter(NS + "g"):
        cls = (g.get("class") or "").split()
        if "op" not in cls and "collapsed" not in cls:
            continue
        for el in g:
            if el.get("class") != "shape":
                continue
            if el.tag == NS + "rect" and el.get("rx") in ("3", "5"):
                x, y, w, h = (float(el.get(k)) for k in ("x", "y", "width", "height"))
                out.append((x, y, x + w, y + h))
            elif el.tag == NS + "polygon":
                p = [tuple(map(float, q.split(","))) for q in el.get("points").split()]
                if len(p) == 4:  # a trapezoid
                    out.append((min(a for a, _ in p), min(b for _, b in p), max(a for a, _ in p),
                                max(b for _, b in p)))
    return out


def diagonals_through_boxes(ws, boxes, rise=2.0) -> int:
    """Wires that change height while inside an op's box or a closed block's box."""
    n = 0
    for pts in ws:
        for x0, y0, x1, y1 in boxes:
            if not _near(pts, (x0, y0, x1, y1)):
                continue
            climb = 0.0
            for p, q in zip(pts, pts[1:]):
                lo, hi = _clip(p, q, (x0 + 0.5, y0 + 0.5, x1 - 0.5, y1 - 0.5))
                if hi > lo:
                    climb += abs(q[1] - p[1]) * (hi - lo)
            n += climb > rise
    return n


def _clip(p, q, box):
    x0, y0, x1, y1 = box
    dx, dy = q[0] - p[0], q[1] - p[1]
    lo, hi = 0.0, 1.0
    for d, a, b in ((dx, p[0] - x0, x1 - p[0]), (dy, p[1] - y0, y1 - p[1])):
        if d == 0:
            if a <= 0 or b <= 0:
                return 0.0, 0.0
            continue
        t1, t2 = -a / d, b / d
        if d < 0:
            t1, t2 = t2, t1
        lo, hi = max(lo, t1), min(hi, t2)
    return lo, hi


def wire_crossings(svg: str) -> int:
    """Pairs of wires (paths of class wire) that cross each other somewhere."""
    root = ET.fromstring(svg)
    paths = [polyline(el.get("d")) for el in root.iter(NS + "path") if el.get("class") == "wire"]
    segs = [list(zip(p, p[1:])) for p in paths if len(p) > 1]
    boxes = [(min(x for x, _ in p), min(y for _, y in p), max(x for x, _ in p), max(y for _, y in p))
             for p in paths if len(p) > 1]

    def cross(a, b) -> bool:
        (x1, y1), (x2, y2) = a
        (x3, y3), (x4, y4) = b
        d = (x2 - x1) * (y4 - y3) - (y2 - y1) * (x4 - x3)
        if abs(d) < 1e-9:
            return False
        t = ((x3 - x1) * (y4 - y3) - (y3 - y1) * (x4 - x3)) / d
        u = ((x3 - x1) * (y2 - y1) - (y3 - y1) * (x2 - x1)) / d
        return 1e-6 < t < 1 - 1e-6 and 1e-6 < u < 1 - 1e-6

    n = 0
    for i in range(len(segs)):
        for j in range(i + 1, len(segs)):
            a, b = boxes[i], boxes[j]
            if a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]:
                continue
            n += any(cross(s, t) for s in segs[i] for t in segs[j])
    return n

"""Routing checks read back from a circuit diagram's SVG: wires through text (glyphs, labels,
titles), wires through a contraction's cup, and wires that turn back (down then up)."""

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
    through_text = sum(1 for pts in ws for _, b in texts if any(_hits(p, q, b) for p, q in zip(pts, pts[1:])))
    cups = []
    for el in root.iter(NS + "path"):
        if el.get("class") == "cup":
            pts = polyline(el.get("d"))
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            cups.append((min(xs) + 0.5, min(ys) + 0.5, max(xs), max(ys) - 0.5))
    through_cup = sum(1 for pts in ws for b in cups if any(_hits(p, q, b) for p, q in zip(pts, pts[1:])))
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
    return {"wire through text": through_text, "wire through cup": through_cup, "wire turns back": turns}

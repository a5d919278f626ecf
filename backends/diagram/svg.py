"""SVG writing for the diagrams: a small element builder with escaping and deterministic
number formatting, and text metrics (advance widths of DejaVu Sans, the font the PNG and
PDF renderer resolves) so that layouts can size boxes around their labels."""

from __future__ import annotations

import math
import re
from xml.sax import saxutils

FONT = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"

# Advance widths (1/1000 em) of DejaVu Sans for ASCII 32..126, regular and bold.
_REGULAR = (
    318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636,
    636, 636, 636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698,
    770, 632, 575, 775, 752, 295, 295, 656, 557, 863, 748, 787, 603, 787, 695, 635, 611, 732,
    684, 989, 685, 611, 685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635, 615, 352, 635,
    634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592,
    525, 636, 337, 636, 838,
)
_BOLD = (
    348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696,
    696, 696, 696, 696, 696, 696, 696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734,
    830, 683, 683, 821, 837, 372, 372, 775, 637, 995, 837, 850, 733, 850, 770, 720, 682, 812,
    774, 1103, 771, 724, 725, 457, 365, 457, 838, 500, 500, 675, 716, 593, 716, 678, 435, 716,
    712, 343, 343, 665, 343, 1042, 712, 687, 716, 716, 493, 595, 478, 712, 652, 924, 645, 652,
    582, 712, 365, 712, 838,
)
_OTHER = {"×": 838, "…": 1000, "·": 318, "→": 838, "↦": 838, "θ": 612, "ᵀ": 385, "√": 637, "÷": 838}
_WIDE = 900  # symbols (★ ◁ ○ ∪ ⋈ …) and anything not listed


# Characters XML 1.0 does not allow, even escaped: a spec's doc comment or string
# hyperparameter holding one would make the SVG (and the PNG/PDF made from it) unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _visible(m: re.Match) -> str:
    c = ord(m.group())
    if c < 0x20:
        return chr(0x2400 + c)  # its Control Pictures glyph: ␀ ␁ ...
    return "\u2421" if c == 0x7F else "\ufffd"


def escape(text: str) -> str:
    """`text` as XML character data: markup escaped, characters XML forbids made visible."""
    return saxutils.escape(_NOT_XML.sub(_visible, text))


def quoteattr(text: str) -> str:
    """`text` as a quoted XML attribute value, as `escape` treats character data."""
    return saxutils.quoteattr(_NOT_XML.sub(_visible, text))


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width in px of `text` at font `size`."""
    table = _BOLD if bold else _REGULAR
    total = 0
    for ch in text:
        c = ord(ch)
        if 32 <= c < 127:
            total += table[c - 32]
        else:
            total += _OTHER.get(ch, _WIDE)
    return total * size / 1000.0


def wrap(text: str, width: float, size: float) -> list[str]:
    """Greedy word wrap of `text` into lines at most `width` px wide (a long word stays whole)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        cand = f"{line} {word}" if line else word
        if line and text_width(cand, size) > width:
            lines.append(line)
            line = word
        else:
            line = cand
    if line:
        lines.append(line)
    return lines


def num(x: float) -> str:
    """A coordinate as short, stable text: two decimals at most, no trailing zeros."""
    r = round(float(x), 2)
    if r == 0:
        return "0"
    s = f"{r:.2f}".rstrip("0").rstrip(".")
    return s


def _attr_name(key: str) -> str:
    if key == "cls":
        return "class"
    if key.startswith("data_"):
        return "data-" + key[5:].replace("_", "-")
    return key.replace("_", "-")


def _attr_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return num(v)
    return str(v)


class Svg:
    """An SVG document built element by element; attributes keep the order they are given."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._depth = 0

    def _attrs(self, attrs: dict) -> str:
        out = []
        for k, v in attrs.items():
            if v is None:
                continue
            out.append(f" {_attr_name(k)}={quoteattr(_attr_value(v))}")
        return "".join(out)

    def open(self, tag: str, **attrs) -> None:
        self.parts.append(f"{'  ' * self._depth}<{tag}{self._attrs(attrs)}>")
        self._depth += 1

    def close(self, tag: str) -> None:
        self._depth -= 1
        self.parts.append(f"{'  ' * self._depth}</{tag}>")

    def el(self, tag: str, text: str | None = None, **attrs) -> None:
        pad = "  " * self._depth
        if text is None:
            self.parts.append(f"{pad}<{tag}{self._attrs(attrs)}/>")
        else:
            self.parts.append(f"{pad}<{tag}{self._attrs(attrs)}>{escape(text)}</{tag}>")

    def raw(self, text: str) -> None:
        self.parts.append(text)

    def text(self, x, y, s: str, *, size: float, bold=False, italic=False, anchor="start",
             fill="#000", cls=None, **attrs) -> None:
        self.el(
            "text", s, x=x, y=y, font_size=size,
            font_weight="bold" if bold else None,
            font_style="italic" if italic else None,
            text_anchor=anchor if anchor != "start" else None,
            fill=fill, cls=cls, **attrs,
        )

    def document(self, width: float, height: float, body_attrs: dict | None = None) -> str:
        width, height = math.ceil(width - 0.01), math.ceil(height - 0.01)  # whole pixels
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(width)}" height="{num(height)}" '
            f'viewBox="0 0 {num(width)} {num(height)}" font-family={quoteattr(FONT)}'
            f"{self._attrs(body_attrs or {})}>"
        )
        return "\n".join([head, *self.parts, "</svg>"]) + "\n"


def path_d(points_and_curves) -> str:
    """Path data from ("M", x, y) / ("L", x, y) / ("C", x1, y1, x2, y2, x, y) tuples."""
    out = []
    for cmd, *xs in points_and_curves:
        out.append(cmd + " ".join(num(x) for x in xs))
    return " ".join(out)

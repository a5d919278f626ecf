"""Paper mode: a printed width and text size (`--width 486pt --font-size 7`), the caption
(`--caption off|doc|TEXT`, its parameter figures recomputed), one block drawn alone
(`--block NAME`), and the PNG's raster size checked before the rasteriser sees it."""

from __future__ import annotations

import re

from nncircuit.errors import NNError, did_you_mean
from nncircuit.ir.graph import BodyNode, CallNode, Graph

from nncircuit.backends.diagram import model as dm

SMALLEST_TEXT = 8.5  # px: wire labels, subtitles and costs, the smallest text the styles draw
DEFAULT_FONT_PT = 7.0  # the smallest text at the printed width when --width comes alone
CAIRO_MAX = 32767  # px: the largest image side cairo can allocate
_UNITS = {"pt": 1.0, "px": 0.75, "in": 72.0, "mm": 72 / 25.4, "cm": 72 / 2.54}


def parse_length(text: str | float, what: str = "--width") -> float:
    """`486pt`, `648px`, `6.75in`, `17cm` (a bare number is pt) as points."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(pt|px|in|mm|cm)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise NNError(f"{what} {text!r}: expected a positive length such as 486pt or 648px "
                      f"(units: {', '.join(_UNITS)})")
    return float(m.group(1)) * _UNITS[m.group(2) or "pt"]


def font_pt(opts: dm.Options) -> float:
    return opts.font_pt or (DEFAULT_FONT_PT if opts.width_pt else 0.0)


def budget(opts: dm.Options) -> float:
    """The widest the drawing may be, in px, for its smallest text to print at --font-size
    when the figure is scaled to --width (0: no limit)."""
    if not opts.width_pt:
        return 0.0
    return opts.width_pt * SMALLEST_TEXT / font_pt(opts)


def printed_size(width_px: float, height_px: float, opts: dm.Options) -> tuple[float, float] | None:
    """The printed size in pt: the figure is scaled so its smallest text is --font-size, and
    never wider than --width (a drawing that cannot be made narrow enough prints smaller)."""
    size = font_pt(opts)
    if not size:
        return None
    scale = size / SMALLEST_TEXT
    if opts.width_pt:
        scale = min(scale, opts.width_pt / width_px)
    return width_px * scale, height_px * scale


_HEAD = re.compile(r'<svg xmlns="http://www.w3.org/2000/svg" width="([\d.]+)" height="([\d.]+)"')


def with_printed_size(svg: str, opts: dm.Options) -> str:
    """Give the SVG its printed width and height in pt (the viewBox keeps the drawing)."""
    m = _HEAD.search(svg)
    if not m:
        return svg
    size = printed_size(float(m.group(1)), float(m.group(2)), opts)
    if size is None:
        return svg
    from nncircuit.backends.diagram.svg import num

    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(size[0])}pt" height="{num(size[1])}pt"'
    return svg[:m.start()] + head + svg[m.end():]


def smallest_text_pt(svg: str) -> float:
    """The smallest text of a drawing as printed, in pt (px when it has no printed size)."""
    head = re.search(r'<svg [^>]*width="([\d.]+)(pt)?"[^>]*viewBox="0 0 ([\d.]+) ', svg)
    sizes = [float(s) for s in re.findall(r'<text [^>]*font-size="([\d.]+)"', svg)]
    if not head or not sizes:
        return 0.0
    ratio = float(head.group(1)) / float(head.group(3)) if head.group(2) else 1.0
    return min(sizes) * ratio


def raster_size(svg: str, scale: float) -> tuple[int, int]:
    """The PNG's size in px for `scale`, as cairosvg will make it (pt at 96 dpi)."""
    m = re.search(r'<svg [^>]*width="([\d.]+)(pt)?" height="([\d.]+)(pt)?"', svg)
    if not m:
        raise NNError("cannot read the size of the drawing to rasterise it")
    unit = 96 / 72 if m.group(2) else 1.0
    return round(float(m.group(1)) * unit * scale), round(float(m.group(3)) * unit * scale)


def check_raster(svg: str, scale: float) -> None:
    if not scale > 0:
        raise NNError(f"--scale must be more than 0, found {scale}")
    w, h = raster_size(svg, scale)
    if max(w, h) > CAIRO_MAX:
        fit = CAIRO_MAX / max(w / scale, h / scale)
        raise NNError(
            f"the PNG would be {w}×{h} px at scale {scale:g}, beyond the rasteriser's limit of "
            f"{CAIRO_MAX} px a side: use --scale {int(fit * 100) / 100:g} or less, a smaller --depth, "
            "or write .svg or .pdf (no such limit)"
        )


# ---- one block drawn alone --------------------------------------------------------------------


def find_block(g: Graph, name: str) -> tuple[CallNode, str, dm.Env, int]:
    """The first call (in drawing order) of block `name`, or the call at scope path `name`:
    (node, scope path, typical sizes inside it, nesting level)."""
    envs = {"": dm.root_env(g)}
    levels = {"": 0}
    known: set[str] = set()
    for prefix, graph in g.walk():
        for node in graph.nodes():
            if not isinstance(node, BodyNode):
                continue
            path = dm.scope(prefix, node.name)
            envs[path] = dm.callee_env(node, graph, envs[prefix])
            levels[path] = levels[prefix] + (isinstance(node, CallNode))
            if not isinstance(node, CallNode):
                continue
            known |= {node.block, path}
            if name in (node.block, path):
                return node, path, envs[path], levels[path]
    raise NNError(f"--block: the model has no block or scope '{name}'{did_you_mean(name, known)}")


def block_title(node: CallNode) -> str:
    args = dm.args_text(node.args)
    return f"{node.block}({args})" if args else node.block


# ---- the caption ------------------------------------------------------------------------------

_FIGURE = re.compile(r"\b\d{1,3}(?:,\d{3})+(?= parameters\b)|\b\d+(?= parameters\b)")


def caption(doc: str, params: int, opts: dm.Options) -> str:
    """The caption under the drawing. `doc` (the default) is the doc comment, with every
    figure written as `N parameters` replaced by the count of the configuration drawn (a
    doc comment states its defaults; `-p` changes them); `off` is none; anything else is the
    caption itself, where `{params}` is that count."""
    mode = opts.caption
    if mode == "off":
        return ""
    if mode == "doc":
        return _FIGURE.sub(f"{params:,}", doc) if doc else ""
    return mode.replace("{params}", f"{params:,}")

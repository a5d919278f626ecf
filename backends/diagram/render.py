"""`nnc render`: draw a spec as an architecture diagram. The format follows the output's
extension: .svg, .png and .pdf (through cairosvg), .dot (Graphviz), .mmd (Mermaid), .html
(one self-contained page). Styles: "circuit" (neural circuit diagrams) and "graph"."""

from __future__ import annotations


from nncircuit.errors import NNError
from nncircuit.io import write_atomic
from nncircuit.backends.diagram import model as dm
from nncircuit.backends.diagram.draw import options, svg

FORMATS = (".svg", ".png", ".pdf", ".dot", ".mmd", ".html")


def render(spec, fmt: str, opts: dm.Options | None = None) -> bytes | str:
    """The diagram in format `fmt` (an extension such as ".png"): text or bytes."""
    opts = opts or options()
    fmt = fmt.lower()
    if fmt == ".svg":
        return svg(spec, opts)
    if fmt in (".png", ".pdf"):
        return rasterize(svg(spec, opts), fmt, opts.scale)
    if fmt == ".dot":
        from nncircuit.backends.diagram.text import dot

        return dot(spec, opts)
    if fmt == ".mmd":
        from nncircuit.backends.diagram.text import mermaid

        return mermaid(spec, opts)
    if fmt == ".html":
        from nncircuit.backends.diagram.html import html

        return html(spec, opts)
    raise NNError(f"cannot render to '{fmt or 'a file without extension'}': use one of {', '.join(FORMATS)}")


def rasterize(svg_text: str, fmt: str, scale: float = 2.0) -> bytes:
    """PNG (at `scale` times the drawing's size) or PDF; a PNG beyond what the rasteriser
    can allocate is refused with the scale that would fit, before cairo fails."""
    from nncircuit.backends.diagram.paper import check_raster

    if fmt == ".png":
        check_raster(svg_text, scale)
    try:
        import cairosvg
    except ImportError:
        raise NNError(
            f"writing {fmt[1:].upper()} needs the cairosvg package: pip install cairosvg "
            "(or pip install 'nncircuit[render]'); .svg, .html, .dot and .mmd need nothing extra"
        ) from None
    data = svg_text.encode("utf-8")
    if fmt == ".png":
        return cairosvg.svg2png(bytestring=data, scale=scale)
    return cairosvg.svg2pdf(bytestring=data)


def write(path: str, content: bytes | str, inputs=()) -> None:
    write_atomic(path, content, inputs=inputs)

"""`nnc render`: draw a spec as an architecture diagram. The format follows the output's
extension: .svg, .png and .pdf (through cairosvg), .dot (Graphviz), .mmd (Mermaid), .html
(one self-contained page). Styles: "circuit" (neural circuit diagrams) and "graph"."""

from __future__ import annotations

import os

from nncircuit.errors import NNError
from nncircuit.io import write_atomic

from . import diagram_model as dm

FORMATS = (".svg", ".png", ".pdf", ".dot", ".mmd", ".html")


def options(style: str = "circuit", depth: int | None = None, expand=(), cost: bool = False) -> dm.Options:
    if style not in dm.STYLES:
        raise NNError(f"unknown diagram style '{style}' (choose from {', '.join(dm.STYLES)})")
    if depth is not None and depth < 0:
        raise NNError(f"--depth must be 0 or more, found {depth}")
    return dm.Options(style, 0 if depth is None else depth, tuple(expand or ()), bool(cost))


def with_flops(spec, opts: dm.Options) -> dm.Options:
    """Fill in the FLOPs per block when costs are shown (batch 1, the spec's typical sizes;
    parameters only when a dynamic axis has no typical size)."""
    if not opts.cost or opts.flops:
        return opts
    from dataclasses import replace

    from nncircuit.analysis import costs
    from nncircuit.summary import input_sizes

    try:
        _, rows = costs(spec.graph, input_sizes(spec.graph))
    except NNError:
        return opts
    # a repeat is drawn once: blocks inside it show one iteration's FLOPs, as their parameters
    repeats = {r.path: int(r.op.split()[1]) for r in rows if r.op.startswith("repeat ")}
    flops = []
    for r in rows:
        times = 1
        for p, count in repeats.items():
            if r.path.startswith(p + "."):
                times *= max(count, 1)
        if r.cost.flops:
            flops.append((r.path, r.cost.flops // times))
    return replace(opts, flops=tuple(flops))


def svg(spec, opts: dm.Options | None = None, *, engine: str = "auto") -> str:
    """The diagram of `spec` as SVG text (deterministic)."""
    opts = with_flops(spec, opts or options())
    if opts.style == "graph":
        from .diagram_graph import graph_svg

        return graph_svg(spec, opts, engine=engine)
    from .diagram_circuit_draw import circuit_svg

    return circuit_svg(spec, opts)


def render(spec, fmt: str, opts: dm.Options | None = None) -> bytes | str:
    """The diagram in format `fmt` (an extension such as ".png"): text or bytes."""
    opts = opts or options()
    fmt = fmt.lower()
    if fmt == ".svg":
        return svg(spec, opts)
    if fmt in (".png", ".pdf"):
        return rasterize(svg(spec, opts), fmt)
    if fmt == ".dot":
        from .diagram_text import dot

        return dot(spec, opts)
    if fmt == ".mmd":
        from .diagram_text import mermaid

        return mermaid(spec, opts)
    if fmt == ".html":
        from .diagram_html import html

        return html(spec, opts)
    raise NNError(f"cannot render to '{fmt or 'a file without extension'}': use one of {', '.join(FORMATS)}")


def rasterize(svg_text: str, fmt: str) -> bytes:
    try:
        import cairosvg
    except ImportError:
        raise NNError(
            f"writing {fmt[1:].upper()} needs the cairosvg package: pip install cairosvg "
            "(or pip install 'nncircuit[render]'); .svg, .html, .dot and .mmd need nothing extra"
        ) from None
    data = svg_text.encode("utf-8")
    if fmt == ".png":
        return cairosvg.svg2png(bytestring=data, scale=2.0)
    return cairosvg.svg2pdf(bytestring=data)


def write(path: str, content: bytes | str, inputs=()) -> None:
    write_atomic(path, content, inputs=inputs)


def run_cli_render(spec, args) -> int:
    opts = options(args.style, args.depth, args.expand, args.cost)
    fmt = os.path.splitext(args.output)[1].lower()
    if fmt not in FORMATS:
        raise NNError(f"cannot render to '{args.output}': the extension must be one of {', '.join(FORMATS)}")
    content = render(spec, fmt, opts)
    write(args.output, content, inputs=tuple(spec.program.files))
    what = "Mermaid" if fmt == ".mmd" else "Graphviz DOT" if fmt == ".dot" else f"{opts.style} style"
    print(f"wrote {args.output}: {spec.model}, {what}")
    return 0

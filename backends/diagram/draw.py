"""The SVG of a spec in either style (circuit or graph), and the options every format
shares: what the other formats and the HTML page build on."""

from __future__ import annotations

from nncircuit.errors import NNError
from nncircuit.backends.diagram import model as dm


def options(style: str = "circuit", depth: int | None = None, expand=(), cost: bool = False, *,
            width: str | float | None = None, font_size: float | None = None, caption: str | None = None,
            block: str | None = None, scale: float | None = None) -> dm.Options:
    """Diagram options. Paper mode: `width` the printed width ("486pt", "648px"; a number is
    pt), `font_size` the smallest text there in pt, `caption` "doc" | "off" | the text,
    `block` one block drawn alone, `scale` of a PNG."""
    from nncircuit.backends.diagram.paper import parse_length

    if style not in dm.STYLES:
        raise NNError(f"unknown diagram style '{style}' (choose from {', '.join(dm.STYLES)})")
    if depth is not None and depth < 0:
        raise NNError(f"--depth must be 0 or more, found {depth}")
    if font_size is not None and not 0 < font_size <= 72:
        raise NNError(f"--font-size is in pt, between 0 and 72; found {font_size:g}")
    if scale is not None and not 0 < scale <= 16:
        raise NNError(f"--scale must be more than 0 and at most 16, found {scale:g}")
    return dm.Options(style, 0 if depth is None else depth, tuple(expand or ()), bool(cost),
                      width_pt=parse_length(width) if width is not None else 0.0,
                      font_pt=float(font_size or 0.0), caption="doc" if caption is None else caption,
                      block=block or "", scale=2.0 if scale is None else float(scale))


def with_flops(spec, opts: dm.Options) -> dm.Options:
    """Fill in the FLOPs per block when costs are shown (batch 1, the spec's typical sizes;
    parameters only when a dynamic axis has no typical size)."""
    if not opts.cost or opts.flops:
        return opts
    from dataclasses import replace

    from nncircuit.analysis.cost import costs
    from nncircuit.analysis.summary import input_sizes

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
    from nncircuit.backends.diagram.paper import with_printed_size

    opts = with_flops(spec, opts or options())
    if opts.style == "graph":
        from nncircuit.backends.diagram.graph import graph_svg

        return with_printed_size(graph_svg(spec, opts, engine=engine), opts)
    from nncircuit.backends.diagram.circuit_draw import circuit_svg

    return with_printed_size(circuit_svg(spec, opts), opts)

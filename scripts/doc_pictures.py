"""Regenerate the pictures in docs/diagrams (SVG and PNG) from the zoo specs, in paper mode:
486 pt wide (a page's full text width), the smallest text printed at 7 pt.

Usage: python scripts/doc_pictures.py [--check]

tests/test_render.py reads PICTURES from here and checks that the committed SVGs are what
`nnc render` draws today."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "diagrams")
PAPER = {"width": "486pt"}

# name, spec file, model, render options (besides paper mode; "params": hyperparameters
# other than the spec's defaults, "max_params": the budget a published config loads under)
PICTURES = [
    ("gpt2", "transformer.nn", None, {}),
    ("gpt2-attention", "transformer.nn", None, {"block": "SelfAttention", "depth": 1}),
    ("vit", "vit.nn", None, {}),
    ("resnet18", "resnet.nn", "ResNet18", {}),
    ("resnet50", "resnet.nn", "ResNet50", {}),
    ("unet", "unet.nn", None, {}),
    ("lstm", "lstm.nn", "LSTM", {"params": {"num_layers": 2, "bidirectional": True}}),
    ("mamba-block", "mamba.nn", "Mamba", {"block": "MambaMixer"}),
    ("deepseek-moe", "deepseek_v3.nn", "DeepseekV3", {"block": "DeepseekV3MoE", "max_params": 10**12}),
    ("swin-block", "vision/swin.nn", "SwinT", {"block": "swin_transformer_block_1"}),
]


def svg_of(file: str, model: str | None, opts: dict) -> str:
    import nncircuit
    from nncircuit.backends.diagram import render as R

    opts = dict(opts)
    params, budget = opts.pop("params", {}), opts.pop("max_params", None)
    spec = nncircuit.load(os.path.join(ROOT, "specs", file), model, **params,
                          **({"max_params": budget} if budget else {}))
    return R.svg(spec, R.options(**PAPER, **opts))


def main() -> int:
    from nncircuit.backends.diagram import paper
    from nncircuit.backends.diagram import render as R

    stale = []
    for name, file, model, opts in PICTURES:
        svg = svg_of(file, model, opts)
        path = os.path.join(OUT, f"{name}.svg")
        if "--check" in sys.argv:
            with open(path, encoding="utf-8") as f:
                if f.read() != svg:
                    stale.append(name)
            continue
        R.write(path, svg)
        R.write(path[:-4] + ".png", R.rasterize(svg, ".png", 2.0))
        print(f"docs/diagrams/{name}.svg and .png: smallest text {paper.smallest_text_pt(svg):.1f} pt")
    if stale:
        print(f"stale in docs/diagrams: {', '.join(stale)}: run python scripts/doc_pictures.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Paper mode: a title longer than the drawing is wide (a block drawn alone with many
hyperparameters) wraps after its commas instead of widening the figure, which printed every
label smaller (Mamba's mixer at 486 pt: smallest text 3.9 pt before, 7 pt now)."""

import xml.etree.ElementTree as ET

from nncircuit.backends.diagram import paper
from test_diagram_paper import paper_svg
from test_render import NS


def titles(svg):
    """The figure's title lines (a frame's title inside it has the class too, in a smaller size)."""
    return [el.text for el in ET.fromstring(svg).iter(NS + "text")
            if el.get("class") == "title" and el.get("font-size") == "13"]


def test_a_long_block_title_wraps_and_text_keeps_its_size():
    svg = paper_svg("mamba.nn", "Mamba", block="MambaMixer", width="486pt")
    lines = titles(svg)
    assert len(lines) > 1 and lines[0].startswith("MambaMixer(hidden_size=768,")
    assert "".join(lines).replace(",", ", ").split() == \
        "MambaMixer(hidden_size=768, state_size=16, conv_kernel=4, intermediate_size=1536, time_step_rank=48, use_conv_bias=True, use_bias=False)".split()
    assert paper.smallest_text_pt(svg) >= 6.0


def test_a_short_title_stays_on_one_line():
    svg = paper_svg("mlp.nn", width="486pt")
    assert len(titles(svg)) == 1

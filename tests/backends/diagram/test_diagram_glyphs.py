"""What the glyphs of axis surgery say: a slice shows its range, a split its parts, a roll
or shift its axis and step, a running sum or reversal its axis — so two such boxes in one
picture are told apart (before, every slice was `[:]` and every roll `↻`)."""

import xml.etree.ElementTree as ET

import pytest

import nncircuit
from test_render import NS, geometry_problems, svg_of

SPEC = """
model Surgery(d = 8, half = 4) {
    in  x: [batch, seq: ~16, d]
    a = x[d = 0:half]
    tail = x[seq = 1:]
    b, c = split(x, over d, (half, d - half))
    p, q = chunk(x, 2, over d)
    r = roll(a, 1, over seq)
    s = shift(b, -2, over seq)
    out r + s + c + p + q, cumsum(tail, over seq), reverse(x, over seq)
}
"""


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    path = tmp_path_factory.mktemp("glyphs") / "surgery.nn"
    path.write_text(SPEC, encoding="utf-8")
    svg = svg_of(nncircuit.load(str(path)))
    assert not geometry_problems(svg)
    return {el.text for el in ET.fromstring(svg).iter(NS + "text") if el.text}


@pytest.mark.parametrize("text", [
    "[d = 0:half]",     # a slice by its hyperparameter's name
    "[seq = 1:]",       # an open end
    "d: half | d - half",  # a split's parts
    "d ÷ 2",            # a chunk's count
    "seq +1",           # a roll's axis and step
    "seq -2",           # a shift backwards
    "over seq",         # a running sum's and a reversal's axis
])
def test_axis_surgery_says_what_it_does(texts, text):
    assert text in texts, sorted(texts)

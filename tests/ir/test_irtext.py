"""The textual IR: print → parse → print is the same text for every spec (and after the
optimizer), the parsed graphs verify and compile to the same PyTorch source, sizes and
types survive the trip, and malformed text is an error that points into the text."""

import os
import re

import pytest
from conftest import SMALL, SPECS
from hypothesis import given, settings
from hypothesis import strategies as st

import nncircuit
import specgen
from nncircuit.backends.torch.codegen import generate
from nncircuit.errors import ParseError
from nncircuit.ir.parser import parse_ir, parse_type
from nncircuit.ir.printer import all_graphs, print_ir, size_text, type_text
from nncircuit.types.sizes import Size

MODELS = sorted(SMALL)


def _load(key, **kw):
    f, model = key
    return nncircuit.load(os.path.join(SPECS, f), model, **SMALL[key], **kw)


@pytest.mark.parametrize("key", MODELS, ids=[m for _, m in MODELS])
@pytest.mark.parametrize("opt", [0, 2])
def test_round_trip_of_every_spec(key, opt):
    g = _load(key, opt=opt).graph
    for locs in (True, False):
        text = print_ir(g, locs=locs)
        back = parse_ir(text)
        assert print_ir(back, locs=locs) == text
        assert back.name == g.name and len(all_graphs(back)) == len(all_graphs(g))
    # the parsed graphs are the same program: the same PyTorch source, comments included
    assert generate(parse_ir(print_ir(g)), "m.nn") == generate(g, "m.nn")


def test_text_names_every_field():
    text = print_ir(_load(("transformer.nn", "GPT2")).graph)
    for piece in (
        'files "',
        "model @GPT2 = GPT2(vocab = 97@vocab default \"97\"",  # the values given are the defaults
        "repeat @GPT2_h(%x) count 2@layers",
        "call @SelfAttention(%ln1) block SelfAttention args(d = 64@d, heads = 4@heads, "
        'proj_std = 0.01@"0.02 / sqrt(2 * layers)") lift [batch]',
        "Linear(%x, [d: 64@d] -> [heads: 4@heads, dh: 16@dh], bias_init = zeros, init = normal(0.02))",
        "Linear(%layer_norm, [d: 64@d] -> [vocab: 97@vocab], bias = false, tied = wte)",
        "div(%einsum, scalar = 4.0@\"sqrt(dh)\", side = right)",
        "positions(seq, _size = size(seq)) : [seq] int64",
        "dims batch = 1, seq = 128",
    ):
        assert piece in text, piece


def test_graphs_are_printed_once_callees_first():
    g = _load(("resnet.nn", "ResNet18")).graph
    text = print_ir(g)
    labels = [line.split()[1] for line in text.splitlines() if line.startswith(("block ", "repeat ", "model "))]
    assert labels[-1] == "@ResNet18"
    assert len(labels) == len(set(labels))
    # BasicBlock(64, 64, 1) and BasicBlock(64, 128, 2) are two graphs of one block: two labels
    assert "@BasicBlock" in labels and "@BasicBlock.2" in labels
    for i, label in enumerate(labels):
        assert all(f"{label}(" not in t for t in labels[:i])


@pytest.mark.parametrize("seed", range(30))
def test_round_trip_of_generated_specs(seed):
    gs = specgen.generate(seed)
    for opt in (0, 2):
        g = nncircuit.load("generated.nn", text=gs.text, opt=opt, **gs.params).graph
        text = print_ir(g)
        assert print_ir(parse_ir(text)) == text, gs.describe()


SIZES = st.recursive(
    st.one_of(
        st.integers(0, 300).map(Size.of),
        st.sampled_from(["seq", "h", "skip.h"]).map(Size.dim),
        st.sampled_from([2, 8]).map(lambda m: Size.dim("w", m)),
    ),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: p[0] + p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] - p[1]),
        st.tuples(inner, st.integers(-3, 5)).map(lambda p: p[0] * p[1]),
        st.tuples(inner, st.integers(1, 4)).map(lambda p: p[0].floordiv(p[1])),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(SIZES)
def test_sizes_round_trip(size):
    t = parse_type(f"[x: {size_text(size)}]")
    assert t.axes[0].size == size
    assert size_text(t.axes[0].size) == size_text(size)


@pytest.mark.parametrize(
    "text",
    ["[batch, seq, d: 64@d] int64", "[c: 3@3, h: floor(h + 1, 2) - 1]", "[w: w%8]", "[]",
     '[n: 17@"(image // patch) ** 2 + 1", e: 3/2 * w%2]', "[k: -h + 3]"],
)
def test_types_round_trip(text):
    assert type_text(parse_type(text)) == text


BASE = """\
model @M = M() {
  in %x
  %x = input x : [seq, d: 8]
  %y = relu(%x) : [seq, d: 8]
  out y = %y
}
"""


@pytest.mark.parametrize(
    "bad, message, line",
    [
        (BASE.replace("relu(%x)", "rleu(%x)"), "unknown op 'rleu'", 4),
        (BASE.replace("relu(%x) : [seq, d: 8]", "relu(%x) : [seq, d: 9]"), "the text says [seq, d: 9]", 4),
        (BASE.replace("relu(%x)", "relu(%z)"), "%z is used before it is defined", 4),
        (BASE.replace("out y = %y", "out y = %y.1"), "has one result", 5),
        (BASE.replace("  in %x\n", ""), "has no 'in' line", 6),
        (BASE.replace("relu(%x)", "softmax(%x, over [e])"), "softmax expects an axis 'e'", 4),
        (BASE.replace("%y = relu", "%x = relu"), "%x is defined twice", 4),
        (BASE.replace("[seq, d: 8]\n  %y", "[seq, d: 8] $\n  %y"), "unexpected character '$'", 3),
        (BASE + "model @M = M() {\n}\n", "graph @M is defined twice", 7),
    ],
)
def test_malformed_text_is_an_error_at_its_place(bad, message, line):
    with pytest.raises(ParseError, match=re.escape(message)) as e:
        parse_ir(bad)
    assert e.value.span.line == line
    assert "<ir>:" in e.value.render()


def test_hand_written_text_parses():
    g = parse_ir(BASE)
    assert [n.op for n in g.nodes()] == ["input", "relu"]
    assert print_ir(g) == "# nncircuit IR\n\n" + BASE

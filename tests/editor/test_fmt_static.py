"""`nnc fmt` on static `if`/`for`: each `} else {` is a line of its own, so a comment stays in
the branch it was written in (before, every comment inside an `if` or a `for` moved above
it), and a `scan` or an indexed `repeat` inside one keeps its header."""

from __future__ import annotations

import pytest

import nncircuit
from nncircuit.editor.fmt import format_text

SPEC = """model M(d = 4, mode = 2, layers = 2) {
    in  x: [batch, seq: ~8, d], cache: [layer: layers, batch, d]
    # before the if
    if mode == 1 {
        # first in the first branch
        x = relu(x)   # trailing in the first branch
        # last in the first branch
    } else if mode == 2 {
        for (k, s) in [(1, 2), (3, 4)] {
            # inside the for
            if k > 1 {
                # deep
                x = x * s
            }
        }
    }
    else {
        # inside else
        h = zeros([batch, d])
        scan seq as t {
            h = h + x   # carried
            emit y = h
        }
        x = y
    }
    repeat layers as blocks, i over layer {
        if mode > 0 {
            x = x + cache
        }
    }
    out x
}
"""

# the canonical layout: `} else {` on one line, two spaces before a trailing comment
WANT = (SPEC.replace("    }\n    else {", "    } else {")
        .replace("x = relu(x)   #", "x = relu(x)  #").replace("h = h + x   #", "h = h + x  #"))


def test_comments_stay_in_their_branch():
    assert format_text(SPEC) == WANT


def test_idempotent():
    assert format_text(WANT) == WANT


@pytest.mark.parametrize("inner", [
    "scan seq reverse as t {\n            h = h + x\n        }",
    "repeat 2 shared as r, i {\n            h = h + x\n        }",
])
def test_loops_inside_an_if_keep_their_header(inner):
    text = ("model M(d = 4) {\n    in  x: [batch, seq: ~8, d]\n    h = zeros([batch, seq, d])\n"
            f"    if d > 1 {{\n        {inner}\n    }}\n    out h\n}}\n")
    assert format_text(text) == text


# a checkpoint section inside a static if (it raised an internal error)
CHECKPOINT_IN_IF = """model M(tie = true, d = 4, n = 2) {
    in  x: [batch, seq, d], c: [layer: n, batch, d]
    if tie {
        repeat n as h, i over layer {
            x = x + Linear(x, d -> d) + c
            emit kv = mean(x, over seq)
        }
        scan seq reverse as t {
            emit ys = x
        }
        out y = ys, kv = kv
        checkpoint {
            "net" = ""
            "head" = transpose("h.0.linear")
        }
    } else {
        out y = x
    }
}
"""


def test_static_if_keeps_its_statements():
    assert format_text(CHECKPOINT_IN_IF) == CHECKPOINT_IN_IF
    messy = CHECKPOINT_IN_IF.replace("    checkpoint {\n", "    checkpoint   {\n").replace('"net" = ""', '"net"   =   ""')
    assert format_text(messy) == CHECKPOINT_IN_IF
    nncircuit.load("m.nn", "M", text=format_text(CHECKPOINT_IN_IF))  # still a valid spec

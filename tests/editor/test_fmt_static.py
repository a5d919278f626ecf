"""`nnc fmt` inside a static `if`: a checkpoint section (it raised an internal error), a
repeat with an index and `over`, and a scan (their heads lost `, i over layer`, `reverse`)
keep their text."""

from __future__ import annotations

import nncircuit
from nncircuit.editor.fmt import format_text

TEXT = """model M(tie = true, d = 4, n = 2) {
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
    assert format_text(TEXT) == TEXT
    messy = TEXT.replace("    checkpoint {\n", "    checkpoint   {\n").replace('"net" = ""', '"net"   =   ""')
    assert format_text(messy) == TEXT
    nncircuit.load("m.nn", "M", text=format_text(TEXT))  # still a valid spec

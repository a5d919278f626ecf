"""A `checkpoint` section inside a static `if` of a model counts on the branch the condition
takes and only there (it was silently ignored before: a tied and an untied head need
different rules)."""

from __future__ import annotations

import pytest
import torch

import nncircuit
from nncircuit.errors import ShapeError

SPEC = """
model M(tie = true, d = 4) {
    in  x: [batch, d]
    emb = Linear(x, d -> d)
    if tie {
        out z = Linear(emb, d -> d)
        checkpoint { "lm" = "z" }
    } else {
        out z = emb
        checkpoint { "first" = "emb" }
    }
}
"""


def load(text=SPEC, **kw):
    return nncircuit.load("ck.nn", "M", text=text, **kw)


def test_the_taken_branch_section_maps_names():
    m = load().module(seed=0)
    own = m.state_dict()
    ref = {"emb.weight": own["emb.weight"], "emb.bias": own["emb.bias"],
           "lm.weight": torch.ones(4, 4), "lm.bias": own["z.bias"]}
    m.load_state_dict(ref, strict=True)
    assert torch.equal(m.state_dict()["z.weight"], torch.ones(4, 4))


def test_the_other_branch_section_is_not_applied():
    m = load(tie=False).module(seed=0)
    own = m.state_dict()
    m.load_state_dict({"first.weight": torch.ones(4, 4), "first.bias": own["emb.bias"]}, strict=True)
    assert torch.equal(m.state_dict()["emb.weight"], torch.ones(4, 4))
    with pytest.raises(RuntimeError, match="lm.weight"):
        m.load_state_dict(dict(own, **{"lm.weight": torch.ones(4, 4)}), strict=True)


def test_a_section_beside_the_branch_joins_it():
    # the model's own section and the taken branch's are one set of rules (lstm.nn maps layer
    # 0 at the top and the reverse direction in `if bidirectional`)
    text = SPEC.replace("    if tie {", '    checkpoint { "a" = "emb" }\n    if tie {')
    m = load(text).module(seed=0)
    own = m.state_dict()
    m.load_state_dict({"a.weight": torch.ones(4, 4), "a.bias": own["emb.bias"],
                       "lm.weight": own["z.weight"], "lm.bias": own["z.bias"]}, strict=True)
    assert torch.equal(m.state_dict()["emb.weight"], torch.ones(4, 4))


def test_two_sections_at_the_top_are_refused():
    text = SPEC.replace("    if tie {", '    checkpoint { "a" = "emb" }\n    checkpoint { "b" = "emb" }\n    if tie {')
    with pytest.raises(ShapeError, match="two 'checkpoint' sections") as info:
        load(text)
    assert "ck.nn:6:" in str(info.value)

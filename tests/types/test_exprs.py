"""The hyperparameter expression tree: folding, evaluation, its three printers, and the text
form read back (round trip), for hand-written trees and every expression of every spec."""

import os

import pytest

import nncircuit
from nncircuit.types import expr as X
from nncircuit.ir.printer import all_graphs
from nncircuit.types.tensor import HVal

from conftest import OVER_BUDGET, SPECS

d, heads, k = X.Ref("d"), X.Ref("heads"), X.Ref("k")


def test_constants_fold_and_references_stay():
    assert X.binop("*", X.Const(2), X.Const(3)) == X.Const(6)
    assert X.binop("div", X.Const(12), X.Const(4)) == X.Const(3)
    assert X.call("sqrt", (X.Const(16),)) == X.Const(4.0)
    assert X.binop("*", X.Const(4), d) == X.Bin("*", X.Const(4), d)
    assert X.binop("+", d, X.Const(0)) == d and X.binop("*", X.Const(1), d) == d
    assert X.binop("-", X.binop("+", k, X.Const(2)), X.Const(3)) == X.Bin("-", k, X.Const(1))
    assert X.neg(X.Const(3)) == X.Neg(X.Const(3)) and X.neg(X.neg(X.Const(3))) == X.Const(3)


def test_evaluation_follows_the_language():
    env = {"d": 768, "heads": 12, "k": 7}
    assert X.binop("div", d, heads).evaluate(env) == 64  # `/` of two integers: exact
    assert (
        X.binop("/", X.Const(1), X.call("sqrt", (X.binop("div", d, heads),))).evaluate(env) == 0.125
    )
    assert X.binop("//", X.binop("+", k, X.Const(1)), X.Const(2)).evaluate(env) == 4
    assert X.binop("==", X.binop("%", d, heads), X.Const(0)).evaluate(env) is True
    with pytest.raises(X.ExprError):
        X.Ref("nope").evaluate(env)
    with pytest.raises(X.ExprError):
        X.binop("div", d, X.Ref("z")).evaluate({"d": 1, "z": 0})


SCALE = X.binop("/", X.Const(1), X.call("sqrt", (X.binop("div", d, heads),)))
POOL = X.binop("+", X.binop("//", X.binop("-", k, X.Const(1)), X.Const(2)), X.Const(1))


@pytest.mark.parametrize(
    "e,py,text,math",
    [
        (SCALE, "1 / math.sqrt(self.d // self.heads)", "1 / sqrt(d / heads)", "1 / √(d / heads)"),
        (POOL, "(self.k - 1) // 2 + 1", "(k - 1) // 2 + 1", "⌊(k - 1) / 2⌋ + 1"),
        (X.binop("*", X.Const(4), d), "4 * self.d", "4 * d", "4 · d"),
        (
            X.binop("-", d, X.binop("-", k, X.Const(1))),
            "self.d - (self.k - 1)",
            "d - (k - 1)",
            "d - (k - 1)",
        ),
        (
            X.binop("**", X.binop("div", d, k), X.Const(2)),
            "(self.d // self.k) ** 2",
            "(d / k) ** 2",
            "(d / k) ^ 2",
        ),
        (X.neg(d), "-self.d", "-d", "-d"),
        (X.call("sqrt", (d,)), "math.sqrt(self.d)", "sqrt(d)", "√d"),
    ],
)
def test_printers(e, py, text, math):
    assert e.python(lambda n: f"self.{n}") == py
    assert e.text() == text
    assert e.math() == math
    env = {"d": 48, "heads": 4, "k": 6}
    # the Python the torch backend prints computes what the tree computes
    assert eval(e.python(lambda n: n), {"math": __import__("math")}, dict(env)) == e.evaluate(env)
    assert X.parse(text, env) == e


def test_text_form_tells_exact_from_true_division_by_the_values():
    assert X.parse("d / heads", {"d": 8, "heads": 2}) == X.Bin("div", d, heads)
    assert X.parse("d / heads", {"d": 8.0, "heads": 2}) == X.Bin("/", d, heads)
    assert X.parse('"same"') == X.Const("same") and X.parse("true") == X.Const(True)
    with pytest.raises(X.ExprError):
        X.parse("math.sqrt(d)")  # Python is not the IR's syntax
    with pytest.raises(X.ExprError):
        X.parse("open(d)")


def test_hval_holds_a_tree_never_a_string():
    with pytest.raises(TypeError):
        HVal(64, "d // heads")
    assert HVal.const(3).is_const and not HVal(64, d).is_const


def test_check_messages_render_as_the_checker_writes_them():
    c = X.Check(
        X.binop("==", X.binop("%", d, heads), X.Const(0)),
        (("s", "d / heads: "), ("e", d), ("s", " is not divisible by "), ("e", heads)),
    )
    assert c.render({"d": 66, "heads": 4}) == "d / heads: 66 is not divisible by 4"
    assert c.python_message(lambda n: n) == 'f"d / heads: {d} is not divisible by {heads}"'
    assert X.Check.from_template(c.cond, c.template(), None, {"d": 1, "heads": 1}) == c


def _exprs(g):
    for h in g.hyper:
        yield h.value.expr
        if h.default is not None:
            yield h.default
    for c in g.checks:
        yield c.cond
    for n in g.nodes():
        for t in n.types:
            for a in t.axes:
                if a.code is not None:
                    yield a.code
        stack = [v for _, v in n.attrs.items]
        while stack:
            v = stack.pop()
            if isinstance(v, HVal):
                yield v.expr
            elif isinstance(v, tuple):
                stack.extend(v)


SPEC_MODELS = sorted(
    (f, m)
    for f in os.listdir(SPECS)
    if f.endswith(".nn")
    for m in nncircuit.models(os.path.join(SPECS, f))
)


@pytest.mark.parametrize("f,m", SPEC_MODELS, ids=[m for _, m in SPEC_MODELS])
def test_every_expression_of_every_spec_reads_back(f, m):
    g = nncircuit.load(os.path.join(SPECS, f), m, max_params=10**12 if f in OVER_BUDGET else 2 * 10**9).graph
    n = 0
    for sub in all_graphs(g):
        env = {h.name: h.value.value for h in sub.hyper}
        for e in _exprs(sub):
            assert X.parse(e.text(), env) == e, e.text()
            assert X.is_scalar(e.evaluate(env))  # a value (None is one: `sliding_window = none`)
            n += 1
    assert n > 0


def test_folding_leaves_what_it_cannot_evaluate():
    """A spec's mistake (a string size) is the checker's to report, not a crash in folding."""
    e = X.binop(">=", X.Const("four"), X.Const(1))
    assert e == X.Bin(">=", X.Const("four"), X.Const(1))
    with pytest.raises(X.ExprError):
        e.evaluate({})
    assert X.binop("==", X.Const("a"), X.Const(1)) == X.Const(False)


def test_ir_check_lines_round_trip_and_bad_ones_are_parse_errors():
    from nncircuit.errors import ParseError
    from nncircuit.ir.parser import parse_ir
    from nncircuit.ir.printer import print_ir

    spec = nncircuit.load(
        os.path.join(SPECS, "transformer.nn"), "GPT2", vocab=50, ctx=8, d=16, heads=2, layers=1
    )
    text = print_ir(spec.graph)
    assert 'check "d % heads == 0" "d / heads: {d} is not divisible by {heads}' in text
    assert print_ir(parse_ir(text)) == text
    for bad, says in (
        ('check "d % heads == 0"', 'check "open(d)"'),
        ("is not divisible by {heads}", "is not divisible by {heads"),
    ):
        with pytest.raises(ParseError) as err:
            parse_ir(text.replace(bad, says, 1))
        assert err.value.span is not None


def test_inf_reads_back_as_the_infinity_unless_it_is_a_name():
    # `where(kept, s, -inf)` in DeepseekV3's router: its textual form must read back
    assert X.parse("-inf") == X.Neg(X.Const(float("inf")))
    assert X.parse("-inf", {"inf": 3}) == X.Neg(X.Ref("inf"))

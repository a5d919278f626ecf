"""The expression simplifier drops `x * 1`, `1 * x`, `x / 1`, `x + 0` only for integer
constants: a float constant makes the expression a float (`1.0 * n / k` is a true division,
not the exact integer one), and the printed text, read back, must say so."""

import pytest

from nncircuit.types import expr as X

N, K = X.Ref("n"), X.Ref("k")


@pytest.mark.parametrize("op", ["*", "div"])
def test_integer_one_drops_out(op):
    assert X.binop(op, N, X.const(1)) == N
    assert X.binop("*", X.const(1), N) == N
    assert X.binop("+", N, X.const(0)) == N


def test_a_float_constant_stays():
    ratio = X.binop("/", X.binop("*", X.const(1.0), N), K)
    assert ratio.text() == "1.0 * n / k"
    assert ratio.evaluate({"n": 20, "k": 8}) == 2.5
    assert X.binop("*", N, X.const(1.0)).text() == "n * 1.0"
    assert X.binop("+", N, X.const(0.0)).text() == "n + 0.0"

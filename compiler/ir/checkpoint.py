"""A model's checkpoint mapping: how the state_dict names of a reference implementation
(Hugging Face, torchvision) are made from this model's tensors. Frozen values the model's
graph holds; the torch backend turns them into a load_state_dict pre-hook."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nncircuit.errors import InternalError, Span
from nncircuit.types import expr as X

# What a rule's right side may apply to this model's tensors, with its arity (None: two or more).
FUNCTIONS = {"transpose": 1, "concat": None}


@dataclass(frozen=True)
class CkPath:
    """A tensor or module path of this model (`h.*.attn.q`); `*` takes the reference
    path's numbers in order, `*+1` / `*-1` shifted, or shifted by a hyperparameter
    expression (`*-first_k_dense_replace`, `*+(a * b)`: see SHIFT)."""

    path: str


@dataclass(frozen=True)
class CkApply:
    """`transpose(a)`: a matrix stored the other way round (GPT-2's Conv1D); vectors pass
    unchanged. `concat(a, b, ...)`: parts stacked along the first axis (a fused projection)."""

    fn: str
    args: tuple[CkPath | CkApply, ...]

    def __post_init__(self):
        arity = FUNCTIONS.get(self.fn, -1)
        if arity == -1 or (arity is None and len(self.args) < 2) or (arity is not None and len(self.args) != arity):
            raise InternalError(f"bad checkpoint function {self.fn} of {len(self.args)} arguments")


CkSource = CkPath | CkApply

# `*` of a source path and its shift: a number (`*-1`), a hyperparameter name
# (`*-first_k_dense_replace`, ending at the next `.`) or an expression in parentheses
# (`*+(2 * depth)`). Path names have no `+`, `-` or parentheses, so a shift is unambiguous.
SHIFT = re.compile(r"\*(?:([+-])([0-9]+|[A-Za-z_][A-Za-z0-9_]*|\((?:[^()]|\([^()]*\))*\)))?")


def shifts(path: str) -> list[re.Match]:
    """Each `*` of a source path with its shift (groups: sign, amount)."""
    return list(SHIFT.finditer(path))


def shift_expr(m: re.Match, env: dict) -> X.Expr | None:
    """The signed shift of one `*` as an expression over the hyperparameters (`env`, their
    values), or None where it has no shift. Raises X.ExprError on text that is no expression."""
    sign, amount = m.group(1), m.group(2)
    if sign is None:
        return None
    e = X.parse(amount[1:-1] if amount.startswith("(") else amount, env)
    return X.neg(e) if sign == "-" else e


def numeric(path: str, env: dict) -> str:
    """The path with every hyperparameter shift evaluated at `env` (`sparse.*-3`)."""
    def one(m):
        e = shift_expr(m, env)
        return m.group(0) if e is None else f"*{int(e.evaluate(env)):+d}"
    return SHIFT.sub(one, path)


@dataclass(frozen=True)
class CkRule:
    """`"ref" = source`: every reference key equal to `ref` or under it (`ref.weight`) is
    made of `source` (the rest of the key appended to each path)."""

    ref: str
    source: CkSource
    span: Span | None = None

    def data(self) -> tuple:
        """The rule as plain nested tuples of strings, for generated code."""
        return (self.ref, _data(self.source))


def _data(s: CkSource):
    if isinstance(s, CkPath):
        return s.path
    return (s.fn, *(_data(a) for a in s.args))


def paths(s: CkSource) -> list[CkPath]:
    if isinstance(s, CkPath):
        return [s]
    return [p for a in s.args for p in paths(a)]


@dataclass(frozen=True)
class CkSection:
    """A model's checkpoint section: its rules, and the spec names of its modules that are
    attributes of another name in generated code (`v_proj` is `vv_proj`), so that the rest
    of a reference name (`q_proj.weight` under a prefix rule) finds them."""

    rules: tuple[CkRule, ...]
    escaped: tuple[tuple[str, str], ...] = ()


def source_text(s: CkSource) -> str:
    """The textual IR form of a source: `transpose(concat(h.*.attn.q,h.*.attn.k))`."""
    if isinstance(s, CkPath):
        return s.path
    return f"{s.fn}({','.join(source_text(a) for a in s.args)})"


def parse_source(text: str) -> CkSource:
    """The inverse of source_text; raises ValueError on anything else."""
    source, rest = _parse(text)
    if rest:
        raise ValueError(f"unexpected {rest!r} after a checkpoint source")
    return source


def _parse(text: str) -> tuple[CkSource, str]:
    i = 0
    while i < len(text) and text[i] not in "(),":
        i += 1
        if text[i - 1] in "+-" and text[i : i + 1] == "(":  # a shift `*+(...)`: part of the path
            depth = 0
            while i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
                if depth == 0:
                    break
    head, rest = text[:i], text[i:]
    if not rest.startswith("("):
        return CkPath(head), rest
    if head not in FUNCTIONS:
        raise ValueError(f"unknown checkpoint function {head!r}")
    args = []
    rest = rest[1:]
    while True:
        arg, rest = _parse(rest)
        args.append(arg)
        if rest.startswith(","):
            rest = rest[1:]
        elif rest.startswith(")"):
            rest = rest[1:]
            break
        else:
            raise ValueError("a checkpoint function's arguments end with ')'")
    try:
        return CkApply(head, tuple(args)), rest
    except InternalError as e:
        raise ValueError(str(e)) from None

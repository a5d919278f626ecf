"""A model's checkpoint mapping: how the state_dict names of a reference implementation
(Hugging Face, torchvision) are made from this model's tensors. Frozen values the model's
graph holds; the torch backend turns them into a load_state_dict pre-hook."""

from __future__ import annotations

from dataclasses import dataclass

from nncircuit.errors import InternalError, Span

# What a rule's right side may apply to this model's tensors, with its arity (None: two or more).
FUNCTIONS = {"transpose": 1, "concat": None}


@dataclass(frozen=True)
class CkPath:
    """A tensor or module path of this model (`h.*.attn.q`); `*` takes the reference
    path's numbers in order, `*+1` / `*-1` shifted."""

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

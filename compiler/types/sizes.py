"""Axis sizes: integers, or symbolic expressions over dynamic axes (`seq`, `h`), kept in a
canonical linear form so that equal sizes compare equal (`(h - 1) / 2 + 1` twice is one size)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from nncircuit.errors import ShapeError

MAX_SIZE = 2**40  # hyperparameter integers beyond this are refused
MAX_AXIS = 2**32  # axes longer than this are refused: no tensor of that extent is meant


@dataclass(frozen=True, order=True)
class Dim:
    """A dynamic axis size, known only at run time. `multiple`: it is a multiple of this."""

    name: str
    multiple: int = 1


@dataclass(frozen=True, order=True)
class Floor:
    """floor(num / den) where num is not provably divisible by den."""

    num: Size
    den: int


Atom = Dim | Floor


@dataclass(frozen=True)
class Size:
    """const + sum(coeff * atom), coefficients rational, terms sorted: a canonical form."""

    const: Fraction = Fraction(0)
    terms: tuple[tuple[Atom, Fraction], ...] = field(default=())

    def __post_init__(self):
        if any(c == 0 for _, c in self.terms):
            raise ValueError("Size terms must have non-zero coefficients")

    # ---- construction
    @staticmethod
    def of(value: int) -> Size:
        if abs(value) > MAX_AXIS:
            raise ShapeError(f"an axis of size {value} is longer than the limit {MAX_AXIS:,}")
        return Size(Fraction(value))

    @staticmethod
    def dim(name: str, multiple: int = 1) -> Size:
        return Size(Fraction(0), ((Dim(name, multiple), Fraction(1)),))

    @staticmethod
    def _make(const: Fraction, terms: dict) -> Size:
        items = tuple(sorted(((a, c) for a, c in terms.items() if c != 0), key=_atom_key))
        return Size(Fraction(const), items)

    # ---- queries
    @property
    def is_static(self) -> bool:
        return not self.terms

    @property
    def value(self) -> int:
        if self.terms or self.const.denominator != 1:
            raise ShapeError(f"size {self} is not a known integer")
        return int(self.const)

    def bare_symbol(self) -> str | None:
        """The symbol's name when this size is exactly one dynamic axis, else None."""
        if self.const == 0 and len(self.terms) == 1:
            atom, c = self.terms[0]
            if isinstance(atom, Dim) and c == 1:
                return atom.name
        return None

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for atom, _ in self.terms:
            if isinstance(atom, Dim):
                out.add(atom.name)
            else:
                out |= atom.num.symbols()
        return out

    def _is_integer_multiple_of(self, k: int) -> bool:
        """Whether self / k is an integer for every value of the symbols."""
        if (self.const / k).denominator != 1:
            return False
        for atom, c in self.terms:
            unit = atom.multiple if isinstance(atom, Dim) else 1
            if (c * unit / k).denominator != 1:
                return False
        return True

    # ---- arithmetic
    def __add__(self, other) -> Size:
        other = _lift(other)
        terms = dict(self.terms)
        for a, c in other.terms:
            terms[a] = terms.get(a, Fraction(0)) + c
        return Size._make(self.const + other.const, terms)

    __radd__ = __add__

    def __neg__(self) -> Size:
        return Size._make(-self.const, {a: -c for a, c in self.terms})

    def __sub__(self, other) -> Size:
        return self + (-_lift(other))

    def __rsub__(self, other) -> Size:
        return _lift(other) - self

    def __mul__(self, other) -> Size:
        other = _lift(other)
        if other.is_static:
            k = other.const
        elif self.is_static:
            return other * self
        else:
            raise ShapeError(f"cannot multiply two run-time sizes {self} and {other}")
        return Size._make(self.const * k, {a: c * k for a, c in self.terms})

    __rmul__ = __mul__

    def floordiv(self, k: int) -> Size:
        """floor(self / k): exact when provably divisible, else a Floor atom."""
        if k <= 0:
            raise ShapeError(f"cannot divide a size by {k}")
        if self.is_static:
            return Size(Fraction(int(self.const) // k))
        if self._is_integer_multiple_of(k):
            return Size._make(self.const / k, {a: c / k for a, c in self.terms})
        # floor((D + R) / k) = D / k + floor(R / k) when D / k is an integer
        whole: dict = {}
        rest: dict = {}
        for a, c in self.terms:
            unit = a.multiple if isinstance(a, Dim) else 1
            (whole if (c * unit / k).denominator == 1 else rest)[a] = c
        q, r = divmod(self.const, k) if self.const.denominator == 1 else (Fraction(0), self.const)
        out = Size._make(Fraction(q), {a: c / k for a, c in whole.items()})
        if not rest:
            return out + Size(Fraction(int(r) // k)) if r.denominator == 1 else out
        rem = Size._make(r, rest)
        if r == 0 and len(rest) == 1:
            (atom, c), = rest.items()
            if isinstance(atom, Floor) and c == 1:  # floor(floor(x / a) / b) = floor(x / (a b))
                return out + Size._make(Fraction(0), {Floor(atom.num, atom.den * k): Fraction(1)})
        return out + Size._make(Fraction(0), {Floor(rem, k): Fraction(1)})

    def exact_div(self, k: int) -> Size | None:
        """self / k when that is provably an integer, else None."""
        if self.is_static:
            return Size(self.const / k) if (self.const / k).denominator == 1 else None
        return self.floordiv(k) if self._is_integer_multiple_of(k) else None

    def subst(self, mapping: dict[str, Size]) -> Size:
        out = Size(self.const)
        for atom, c in self.terms:
            if isinstance(atom, Dim):
                val = mapping.get(atom.name, Size.dim(atom.name, atom.multiple))
            else:
                val = atom.num.subst(mapping).floordiv(atom.den)
            out = out + val * Size(c)
        return out

    def evaluate(self, env: dict[str, int]) -> int:
        return self.subst({k: Size.of(v) for k, v in env.items()}).value

    # ---- text
    def __str__(self) -> str:
        return self.render(lambda n: n)

    def render(self, name_of, floordiv="//") -> str:
        """Render as an expression; `name_of` maps a dynamic axis name to its text."""
        parts: list[str] = []
        for atom, c in self.terms:
            if isinstance(atom, Dim):
                base = name_of(atom.name)
            else:
                inner = atom.num.render(name_of, floordiv)
                inner = inner if atom.num.bare_symbol() else f"({inner})"
                base = f"{inner} {floordiv} {atom.den}"
            if c == 1:
                parts.append(base)
            elif c.denominator == 1:
                parts.append(f"{c.numerator} * {base}")
            else:
                parts.append(f"{c.numerator} * {base} {floordiv} {c.denominator}")
        if self.const or not parts:
            parts.append(str(self.const))
        text = " + ".join(parts)
        return text.replace("+ -", "- ")


def _lift(v) -> Size:
    if isinstance(v, Size):
        return v
    if isinstance(v, (int, Fraction)):
        return Size(Fraction(v))
    raise TypeError(f"not a size: {v!r}")


def _atom_key(item):
    atom = item[0]
    if isinstance(atom, Dim):
        return (0, atom.name, atom.multiple, "")
    return (1, "", atom.den, str(atom.num))

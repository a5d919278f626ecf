"""Types of the IR: named axes, tensor types, and hyperparameter values that remember the
expression they came from (so generated code stays parametric)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nncircuit.errors import ShapeError
from nncircuit.types.expr import Expr, HyperValue, const, is_scalar
from nncircuit.types.sizes import Size

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class Axis:
    name: str
    size: Size
    # expression of a static size over the enclosing block's hyperparameters, when it
    # depends on one; not part of the type's identity.
    code: Expr | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ShapeError(f"axis name {self.name!r} is not an identifier")

    def size_code(self) -> Expr | None:
        """The expression of a static size (its constant when it has no code), else None."""
        if self.code is not None:
            return self.code
        return const(self.size.value) if self.size.is_static else None

    def __str__(self) -> str:
        if not self.size.is_static and str(self.size) == self.name:
            return self.name
        return f"{self.name}: {self.size}"


@dataclass(frozen=True)
class TensorType:
    axes: tuple[Axis, ...]
    dtype: str = "float32"

    def __post_init__(self):
        names = [a.name for a in self.axes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ShapeError(f"axis {dup[0]!r} appears twice in {self}")
        if self.dtype not in DTYPES:
            raise ShapeError(f"unknown dtype {self.dtype!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def rank(self) -> int:
        return len(self.axes)

    def has(self, name: str) -> bool:
        return name in self.names

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise ShapeError(f"{self} has no axis {name!r}")

    def index(self, name: str) -> int:
        return self.names.index(name)

    def with_axes(self, axes) -> TensorType:
        return TensorType(tuple(axes), self.dtype)

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.axes, dtype)

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for a in self.axes:
            out |= a.size.symbols()
        return out

    def subst(self, mapping: dict[str, Size], axes: dict[str, Axis] | None = None) -> TensorType:
        """Bind dynamic sizes. An axis whose size is a bare symbol keeps the caller's code
        for it (`axes`, by symbol); other codes are dropped: they are in the callee's terms."""
        out = []
        for a in self.axes:
            sym = a.size.bare_symbol()
            if axes and sym in axes:
                out.append(Axis(a.name, axes[sym].size, axes[sym].code))
            else:
                out.append(Axis(a.name, a.size.subst(mapping)))
        return TensorType(tuple(out), self.dtype)

    def __str__(self) -> str:
        body = ", ".join(str(a) for a in self.axes)
        suffix = "" if self.dtype == "float32" else f" {self.dtype}"
        return f"[{body}]{suffix}"


@dataclass(frozen=True)
class HVal:
    """A hyperparameter-derived value and the expression (over the enclosing block's
    hyperparameters) that computes it, so generated code stays parametric."""

    value: HyperValue  # a tuple or None only for a tuple-valued or unset hyperparameter
    expr: Expr

    def __post_init__(self):
        if not is_scalar(self.value):
            raise TypeError(f"HVal of {type(self.value).__name__}")
        if not isinstance(self.expr, Expr):
            raise TypeError(f"HVal expression of {type(self.expr).__name__}")

    @staticmethod
    def const(value) -> HVal:
        return HVal(value, const(value))

    def __float__(self) -> float:  # backends that fold (ONNX) read the value
        if not isinstance(self.value, (int, float)):
            raise TypeError(f"{self.value!r} is not a number")
        return float(self.value)

    @property
    def is_const(self) -> bool:
        return not self.expr.refs()

    def __str__(self) -> str:
        return repr(self.value)

"""Spec names as safe Python identifiers: a name from a spec can never become code."""

from __future__ import annotations

import builtins
import keyword

# Names the generated code uses itself; a spec name equal to one of them gets a suffix.
RESERVED = frozenset(
    {"self", "torch", "nn", "F", "math", "super", "forward"}
    | set(dir(builtins))
)


def pyname(name: str) -> str:
    """The Python identifier that stands for spec name `name` in generated code."""
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"not an identifier: {name!r}")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in RESERVED:
        return name + "_"
    if name.startswith("__"):
        return "h" + name
    return name

"""The op registry and the op families that register in it. Importing this package (which any
import of `nncircuit.ops.registry` does first) registers every op."""

from nncircuit.ops import registry
from nncircuit.ops import core, fused, nn  # noqa: F401  (each registers its ops on import)
from nncircuit.ops import activations, compare, fill, norms, routing, state, surgery  # noqa: F401
from nncircuit.ops import recurrence  # noqa: F401
from nncircuit.ops import cells  # noqa: F401

__all__ = ["registry"]

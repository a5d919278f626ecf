"""The ONNX lowering table: one entry per registry op, from the plain ops (ops.py) and the
optimizer's fused ops (fused.py)."""

from nncircuit.backends.onnx.fused import FUSED_ONNX_LOWERINGS
from nncircuit.backends.onnx.ops import CORE_LOWERINGS, Lowering

ONNX_LOWERINGS: dict[str, Lowering] = {**CORE_LOWERINGS, **FUSED_ONNX_LOWERINGS}

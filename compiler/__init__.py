"""nncircuit: compile .nn architecture specs to PyTorch, ONNX and diagrams."""

from nncircuit import zoo
from nncircuit.api import Spec, compile, export_onnx, load, models
from nncircuit.errors import NNError
from nncircuit.version import __version__

__all__ = ["NNError", "Spec", "__version__", "compile", "export_onnx", "load", "models", "zoo"]

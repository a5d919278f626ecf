"""nncircuit: compile .nn architecture specs to PyTorch, ONNX and diagrams."""

from .api import Spec, compile, load, models
from .errors import NNError

__all__ = ["NNError", "Spec", "compile", "load", "models", "export_onnx"]
__version__ = "0.1.0"


def export_onnx(path, out, model=None, state_dict=None, **kwargs):
    """Lower a spec straight to an ONNX file (no torch needed without a state_dict)."""
    from .backends.onnx_export import export_onnx as _export

    return _export(path, out, model=model, state_dict=state_dict, **kwargs)

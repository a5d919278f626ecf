"""The optimizer: named passes over the IR and the manager that runs a pipeline of them."""

from nncircuit.passes.base import PASSES, Pass, PipelineError, register_pass
from nncircuit.passes.manager import CLEANUP, LEVELS, VERIFY_MODES, PassManager, default_verify_mode, optimize, pipeline

__all__ = [
    "CLEANUP", "LEVELS", "PASSES", "VERIFY_MODES", "Pass", "PassManager", "PipelineError", "default_verify_mode",
    "optimize", "pipeline",
    "register_pass",
]

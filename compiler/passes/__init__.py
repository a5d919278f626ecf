"""The optimizer: named passes over the IR and the manager that runs a pipeline of them."""

from nncircuit.passes.base import PASSES, Pass, PipelineError, register_pass
from nncircuit.passes.manager import CLEANUP, LEVELS, PassManager, optimize, pipeline

__all__ = [
    "CLEANUP", "LEVELS", "PASSES", "Pass", "PassManager", "PipelineError", "optimize", "pipeline",
    "register_pass",
]

"""The pass manager: runs a pipeline of named passes over a model's graphs (callees first,
each shared graph once), verifies the IR after each, and can report after each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nncircuit.errors import InternalError, NNError, did_you_mean
from nncircuit.ir.graph import Graph
from nncircuit.ir.printer import all_graphs
from nncircuit.passes.base import PASSES, Pass, PipelineError
# the passes register on import
from nncircuit.passes import cleanup, fusions  # noqa: F401


CLEANUP = "canonicalize,cse,dce"
LEVELS = {
    0: "",
    1: CLEANUP,
    2: f"{CLEANUP},fuse-attention,fuse-linear,einsum-to-matmul,{CLEANUP}",
}


def pipeline(passes: str | None = None, opt: int | None = None) -> list[Pass]:
    """The passes named by a comma-separated list, else those of an optimisation level."""
    if passes is not None and opt is not None:
        raise PipelineError("give either a pass list or an optimisation level, not both")
    if passes is None:
        level = 0 if opt is None else opt
        if level not in LEVELS:
            raise PipelineError(f"unknown optimisation level {level}; levels: {', '.join(map(str, LEVELS))}")
        passes = LEVELS[level]
    out = []
    for name in (p.strip() for p in passes.split(",")):
        if not name:
            continue
        if name not in PASSES:
            raise PipelineError(
                f"unknown pass '{name}'{did_you_mean(name, PASSES)}; passes: {', '.join(sorted(PASSES))}"
            )
        out.append(PASSES[name]())
    return out


@dataclass
class PassManager:
    passes: list[Pass]
    verify: bool = True
    # called after each pass with (pass name, whether it changed the IR, the root graph)
    after: Callable[[str, bool, Graph], None] | None = None
    log: list[tuple[str, bool]] = field(default_factory=list)

    def run(self, root: Graph) -> bool:
        changed_any = False
        for p in self.passes:
            changed = False
            for g in all_graphs(root):
                changed |= bool(p.run(g))
            if self.verify:
                try:
                    root.verify()
                except NNError as e:
                    raise InternalError(f"the IR does not verify after pass '{p.name}': {e.message}") from None
            self.log.append((p.name, changed))
            changed_any |= changed
            if self.after is not None:
                self.after(p.name, changed, root)
        return changed_any


def optimize(root: Graph, passes: str | None = None, opt: int | None = None, *, verify: bool = True) -> Graph:
    """Run a pipeline over `root` (in place) and return it."""
    PassManager(pipeline(passes, opt), verify=verify).run(root)
    return root

"""The pass manager: runs a pipeline of named passes over a model's graphs (callees first,
each shared graph once), verifies the IR after each, and can report after each."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from nncircuit.errors import InternalError, NNError, did_you_mean
from nncircuit.ir.graph import BodyNode, Graph
from nncircuit.ir.printer import all_graphs
from nncircuit.passes.base import PASSES, Pass, PipelineError
# the passes register on import
from nncircuit.passes import cleanup, fusions, recurrence  # noqa: F401


CLEANUP = "canonicalize,cse,dce"
LEVELS = {
    0: "",
    1: CLEANUP,
    2: f"{CLEANUP},parallel-scan,fuse-scan-readout,fuse-attention,fuse-linear,einsum-to-matmul,{CLEANUP}",
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


VERIFY_MODES = ("changed", "all")


def default_verify_mode() -> str:
    """`NNC_VERIFY=all` re-verifies every graph after every pass (the test suite sets it);
    the default verifies what a pass changed."""
    mode = os.environ.get("NNC_VERIFY", "changed")
    if mode not in VERIFY_MODES:
        raise PipelineError(f"NNC_VERIFY={mode!r}: choose one of {', '.join(VERIFY_MODES)}")
    return mode


@dataclass
class PassManager:
    """Runs passes over every graph, callees first. After each pass it verifies, in mode
    `changed`, each graph the pass changed and each graph calling one (a pass that changed
    nothing costs no verification), and in those re-derives only the types of nodes whose
    inputs or attributes are new objects (Graph.verify(incremental=True)); in mode `all`,
    every graph and every type. `verify=False` skips it."""

    passes: list[Pass]
    verify: bool = True
    # called after each pass with (pass name, whether it changed the IR, the root graph)
    after: Callable[[str, bool, Graph], None] | None = None
    log: list[tuple[str, bool]] = field(default_factory=list)
    mode: str = field(default_factory=default_verify_mode)

    def run(self, root: Graph) -> bool:
        if self.mode not in VERIFY_MODES:
            raise PipelineError(f"unknown verification mode {self.mode!r}")
        changed_any = False
        for p in self.passes:
            graphs = all_graphs(root)
            touched = [g for g in graphs if p.run(g)]
            changed = bool(touched)
            if self.verify and (changed or self.mode == "all"):
                try:
                    self._verify(root, graphs, touched)
                except NNError as e:
                    raise InternalError(f"the IR does not verify after pass '{p.name}': {e.message}") from None
            self.log.append((p.name, changed))
            changed_any |= changed
            if self.after is not None:
                self.after(p.name, changed, root)
        return changed_any

    def _verify(self, root: Graph, graphs: list[Graph], touched: list[Graph]) -> None:
        if self.mode == "all":
            root.verify()
            return
        stale = set(touched)
        for g in graphs:  # callees come first, so a caller of a caller is reached too
            if any(n.callee in stale for n in g.nodes() if isinstance(n, BodyNode)):
                stale.add(g)
        # a graph marked done is not re-verified when a stale caller reaches it
        done = {g for g in graphs if g not in stale}
        for g in graphs:
            if g in stale:
                g.verify(done, incremental=True)


def optimize(root: Graph, passes: str | None = None, opt: int | None = None, *, verify: bool = True) -> Graph:
    """Run a pipeline over `root` (in place) and return it."""
    PassManager(pipeline(passes, opt), verify=verify).run(root)
    return root

"""`nnc summary` and `Spec.summary()`: a table of parameters, FLOPs, activation memory and
output type per block of a model, for one forward pass at concrete input sizes (batch 1
and each dynamic axis at its declared typical size, unless given)."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass

from nncircuit.analysis.cost import BlockCost, Cost, costs, param_count
from nncircuit.errors import HyperparameterError, did_you_mean
from nncircuit.ir.graph import Graph

NOTE = (
    "FLOPs count a multiply-add as 2 and only matrix products, convolutions and attention "
    "(as torch's FlopCounterMode); activations sum the bytes of every op's result (views "
    "excluded) over the pass; rows under a repeat sum all its iterations."
)


@dataclass(frozen=True)
class Summary:
    """The cost of one forward pass of a model, per block."""

    model: str
    source: str
    sizes: tuple[tuple[str, int], ...]  # the dynamic axes' sizes used
    rows: tuple[BlockCost, ...]
    total: Cost
    buffers: int

    @property
    def params(self) -> int:
        return self.total.params

    @property
    def flops(self) -> int:
        return self.total.flops

    @property
    def activations(self) -> int:
        return self.total.activations

    def flops_by_op(self) -> dict[str, int]:
        return dict(self.total.by_op)

    def __str__(self) -> str:
        """The table `nnc summary` prints (top-level blocks)."""
        return self.render().rstrip("\n")

    def __repr__(self) -> str:
        return (f"<Summary {self.model}: {self.params:,} parameters, {_si(self.flops)}FLOPs, "
                f"{_mem(self.activations)} activations>")

    def _repr_html_(self, depth: int = 1) -> str:
        """The same table as HTML, for notebooks (escaped: names come from the spec)."""
        table = self._table(depth)
        e = html.escape
        out = [f'<table class="nncircuit-summary"><caption>{e(self._caption())}</caption>',
               "<thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in table[0]) + "</tr></thead><tbody>"]
        for i, row in enumerate(table[1:], 1):
            tag = "th" if i == len(table) - 1 else "td"
            cells = []
            for j, c in enumerate(row):
                style = ' style="text-align:right"' if j in (2, 3, 4) else ""
                text = e(c.strip()) if j else "&nbsp;" * (len(c) - len(c.lstrip())) + e(c.strip())
                cells.append(f"<{tag}{style}>{text}</{tag}>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        if self.buffers:
            out.append(f"<p>buffers: {self.buffers:,} (running statistics and Buffers, not parameters)</p>")
        out.append(f"<p><small>{e(NOTE)}</small></p>")
        return "\n".join(out)

    def _caption(self) -> str:
        sizes = ", ".join(f"{k} = {v}" for k, v in self.sizes) or "no dynamic axes"
        return f"{self.model} ({self.source}), {sizes}"

    def _table(self, depth: int) -> list[tuple[str, ...]]:
        """Header, one row per block down to `depth`, and the total."""
        table: list[tuple[str, ...]] = [("block", "op", "params", "FLOPs", "activations", "output")]
        for r in self.rows:
            if r.depth > depth:
                continue
            name = "  " * (r.depth - 1) + r.path.rsplit(".", 1)[-1] if r.depth > 1 else r.path
            c = r.cost
            table.append((name, r.op, f"{c.params:,}", _si(c.flops), _mem(c.activations), r.output))
        table.append(("total", "", f"{self.params:,}", _si(self.flops), _mem(self.activations), ""))
        return table

    def render(self, depth: int = 1) -> str:
        lines = [self._caption()]
        table = self._table(depth)
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        right = (False, False, True, True, True, False)
        rule = "  ".join("-" * w for w in widths[:5]) + "  " + "-" * min(widths[5], 30)
        for i, row in enumerate(table):
            cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)]
            if i == len(table) - 1:
                lines.append(rule)
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append(rule)
        if self.buffers:
            lines.append(f"buffers: {self.buffers:,} (running statistics and Buffers, not parameters)")
        lines.append(NOTE)
        return "\n".join(lines) + "\n"


def input_sizes(g: Graph, given: dict[str, int] | None = None) -> dict[str, int]:
    """Sizes of the model's dynamic axes: `given`, else the declared typical size (batch 1)."""
    given = dict(given or {})
    symbols: list[str] = []
    for nid in g.inputs:
        for s in sorted(g.node(nid).type.symbols()):
            if s not in symbols:
                symbols.append(s)
    unknown = sorted(k for k in given if k not in symbols)
    if unknown:
        raise HyperparameterError(
            f"--input: model {g.name} has no dynamic axis '{unknown[0]}'{did_you_mean(unknown[0], symbols)}; "
            f"its dynamic axes: {', '.join(symbols) or 'none'}"
        )
    env = {}
    for s in symbols:
        size = given.get(s, g.dims.get(s, 0))
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            if s in given:
                raise HyperparameterError(f"--input: axis '{s}' needs a positive integer size, found {size!r}")
            raise HyperparameterError(
                f"axis '{s}' of model {g.name} has no typical size; declare it as '{s}: ~N' "
                f"or give one with --input {s}=N",
                _declaration(g, s),
            )
        env[s] = size
    return env


def parse_inputs(g: Graph, items: list[str]) -> dict[str, int]:
    """`AXIS=SIZE` (a dynamic axis) or `INPUT=SHAPE` (`tokens=1x256`: every axis of an input)."""
    out: dict[str, int] = {}
    inputs = {g.input_node(i).input_name: g.node(i).type for i in g.inputs}
    axes = set().union(*(t.symbols() for t in inputs.values())) if inputs else set()
    for text in items:
        key, sep, val = text.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key:
            raise HyperparameterError(f"--input expects AXIS=SIZE or INPUT=SHAPE, found '{text}'")
        parts = [p for p in val.strip("[]()").replace("x", ",").replace("×", ",").split(",") if p.strip()]
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise HyperparameterError(f"--input {text}: sizes must be integers") from None
        if key in inputs and (key not in axes or len(nums) != 1):
            t = inputs[key]
            if len(nums) != t.rank:
                raise HyperparameterError(f"--input {text}: input '{key}' has {t.rank} axes {t}, found {len(nums)} sizes")
            for ax, n in zip(t.axes, nums):
                sym = ax.size.bare_symbol()
                if sym is not None:
                    out[sym] = n
                elif ax.size.is_static and ax.size.value != n:
                    raise HyperparameterError(f"--input {text}: axis '{ax.name}' of '{key}' has the fixed size {ax.size.value}")
            continue
        if len(nums) != 1:
            raise HyperparameterError(f"--input {text}: '{key}' is an axis, give one size")
        out[key] = nums[0]
    return out


def summarize(graph: Graph, sizes: dict[str, int] | None = None, *, source: str = "") -> Summary:
    """The summary of a model graph with its dynamic axes at `sizes` (see input_sizes)."""
    env = input_sizes(graph, sizes)
    total, rows = costs(graph, env)
    return Summary(
        graph.name, source or os.path.basename(graph.file), tuple(env.items()), tuple(rows), total,
        param_count(graph, buffers=True),
    )


def _si(n: int) -> str:
    """A count in SI units, three significant digits: 1.23 G, 456 M, 12.3 k."""
    for unit, div in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return str(n)


def _mem(b: int) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= div:
            return f"{b / div:.3g} {unit}"
    return f"{b} B"


def _declaration(g, symbol: str):
    """The span of the input that declares dynamic axis `symbol` (else the model's)."""
    for nid in g.inputs:
        node = g.node(nid)
        if any(a.size.bare_symbol() == symbol for a in node.type.axes):
            return node.span
    return g.span

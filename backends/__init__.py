"""The backends: the table of compile targets that the CLI (`nnc compile --to NAME`) and the
API read. A backend is a sub-package with one lowering table (op name -> lowering, an entry
for every registry op: tests/backends/test_backends.py fails otherwise) and an `emit` function that
writes a checked spec to a file and returns a one-line report. Adding a backend (say JAX or
MLX) is its own sub-package plus one row here. Rows name their modules as strings so that
`nnc check` imports no backend (nor torch, nor onnx)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    doc: str
    extensions: tuple[str, ...]  # output file extensions that select this backend
    table: str  # "module:ATTRIBUTE" of the lowering table
    emitter: str  # "module:function" of emit(spec, out, **options) -> report
    options: tuple[str, ...] = ()  # the options `emit` takes (CLI flags of the same names)

    def lowerings(self) -> dict:
        return _load(self.table)

    def emit(self, spec, out: str, **options) -> str:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"the {self.name} backend takes no option {unknown[0]!r}")
        return _load(self.emitter)(spec, out, **options)


def _load(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "torch", "readable standalone PyTorch source: one nn.Module class per block", (".py",),
            "nncircuit.backends.torch.ops:TORCH_LOWERINGS", "nncircuit.backends.torch.codegen:emit",
        ),
        Backend(
            "onnx", "an ONNX model, lowered directly (no tracing), for onnxruntime", (".onnx",),
            "nncircuit.backends.onnx.table:ONNX_LOWERINGS", "nncircuit.backends.onnx.export:export_spec",
            ("seed", "weights", "opset", "functions", "fp16", "quantize", "external_data", "state_dict"),
        ),
    )
}


def by_extension(path: str) -> Backend | None:
    """The backend whose output extension `path` has, if any."""
    ext = path[path.rfind("."):].lower() if "." in path.rsplit("/", 1)[-1] else ""
    for b in BACKENDS.values():
        if ext in b.extensions:
            return b
    return None

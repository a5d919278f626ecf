"""The Python API: load and check a spec, get its IR, compile it to a torch module."""

from __future__ import annotations

import builtins
import hashlib
import html
import linecache
import math
import os
import sys
import types
from dataclasses import dataclass, field

from nncircuit.analysis import cost as analysis
from nncircuit.lang.elaborate import elaborate
from nncircuit.errors import HyperparameterError, ResourceError
from nncircuit.ir.graph import Graph
from nncircuit.lang.program import Program, load as load_program

DEFAULT_MAX_PARAMS = 2_000_000_000  # 8 GB of float32 weights


def parse_param(text: str) -> tuple[str, object]:
    """`NAME=VALUE` from the command line: ints, floats, true/false, none, tuples (`2,2,18,2`),
    else a string."""
    if "=" not in text:
        raise HyperparameterError(f"-p expects NAME=VALUE, found '{text}'")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise HyperparameterError(f"-p: '{name}' is not a hyperparameter name")
    return name, parse_value(raw.strip())


def parse_value(raw: str):
    """A number, true/false, none, a tuple (`2,2,18,2` or `(2, 2, 18, 2)`), else a string."""
    inner = raw[1:-1] if raw.startswith("(") and raw.endswith(")") else raw
    if "," in inner:
        items = tuple(parse_value(x.strip()) for x in inner.split(",") if x.strip())
        if not items:
            raise HyperparameterError(f"'{raw}': a tuple needs at least one value")
        return items
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for conv in (int, float):
        try:
            v = conv(raw)
        except ValueError:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            shown = raw if len(raw) <= 24 else raw[:20] + "..."
            raise HyperparameterError(f"'{shown}' is not a finite number")
        return v
    return raw


@dataclass
class Spec:
    """A checked spec: the loaded program, one model's hyperparameters and its IR."""

    program: Program
    model: str
    params: dict
    graph: Graph
    max_params: int = DEFAULT_MAX_PARAMS
    _source: str | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return self.program.root

    def __repr__(self) -> str:
        """One line: model, file, parameters, inputs -> outputs (the whole dump was 18-30 KB)."""
        ins = ", ".join(f"{n}: {t}" for n, t in self.inputs())
        outs = ", ".join(f"{n}: {t}" for n, t in self.outputs())
        return (f"<Spec {self.model} from {os.path.basename(self.path)}: "
                f"{self.param_count():,} parameters; {ins} -> {outs}>")

    def _repr_html_(self) -> str:
        """A notebook shows a Spec as its circuit diagram above its summary table."""
        from nncircuit.errors import NNError

        head = html.escape(repr(self)[1:-1])
        try:
            table = self.summary()._repr_html_()
        except NNError as e:  # an axis with no typical size: say so instead of a traceback
            table = f"<p>no summary table: {html.escape(e.message)}</p>"
        return f'<div class="nncircuit-spec"><p><code>{head}</code></p>\n{self._repr_svg_()}\n{table}</div>'

    def summary(self, inputs: dict[str, int] | None = None):
        """Parameters, FLOPs and activation memory per block for one forward pass, with the
        dynamic axes at `inputs` (by axis name; default batch 1, others their typical size)."""
        from nncircuit.analysis.summary import summarize

        return summarize(self.graph, inputs, source=os.path.basename(self.path))

    def param_count(self) -> int:
        return analysis.param_count(self.graph)

    def inputs(self):
        g = self.graph
        return [(g.input_node(i).input_name, g.node(i).type) for i in g.inputs]

    def outputs(self):
        g = self.graph
        return [(name, g.type_of(v)) for name, v in g.outputs]

    def torch_source(self) -> str:
        from nncircuit.backends.torch.codegen import generate

        if self._source is None:
            self._source = generate(self.graph, os.path.basename(self.path))
        return self._source

    def write(self, out: str, to: str | None = None, **options) -> str:
        """Compile to a file with a backend of the backend table (`to`, else the one that
        `out`'s extension names: .py torch, .onnx ONNX); returns the backend's report."""
        from nncircuit.backends import BACKENDS, by_extension

        backend = BACKENDS.get(to) if to is not None else by_extension(out)
        if backend is None:
            known = ", ".join(f"{b.name} ({' '.join(b.extensions)})" for b in BACKENDS.values())
            what = f"named {to!r}" if to is not None else f"writes {out!r}"
            raise ValueError(f"no backend {what}; backends: {known}")
        return backend.emit(self, out, **options)

    def _repr_svg_(self) -> str:
        """The circuit diagram, so that a notebook shows a Spec as a picture."""
        from nncircuit.backends.diagram.render import svg

        return svg(self)

    def torch_class(self):
        """The model's nn.Module class, from the generated source (see generated_module:
        instances pickle and `torch.jit.script` like classes from a written file)."""
        _need_torch()
        from nncircuit.backends.structure import class_name

        mod = generated_module(self.torch_source(), os.path.basename(self.path))
        return getattr(mod, class_name(self.graph))  # named first: never renamed

    def module(self, seed: int | None = None):
        """A fresh torch module built with this spec's hyperparameters."""
        _need_torch()
        import torch

        cls = self.torch_class()
        kwargs = {_py(h.name): h.value.value for h in self.graph.hyper}
        if seed is not None:
            torch.manual_seed(seed)
        return cls(**kwargs)


TORCH_MISSING = 'the PyTorch backend needs torch, which is not installed: pip install "nncircuit[torch]"'


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        from nncircuit.errors import NNError

        raise NNError(TORCH_MISSING) from None


GENERATED_PREFIX = "nncircuit_generated_"


def generated_module(source: str, label: str) -> types.ModuleType:
    """Exec generated torch source as a module registered in sys.modules under a name made
    from a hash of the source (the same source is one module), with its text in linecache,
    so that `inspect.getsource` (and so `torch.jit.script`) finds it. Each nn.Module class
    it defines pickles as (its source, its name) plus the module state: unpickling, in any
    process that can import nncircuit, re-executes the source, so `torch.save(model)` and
    `torch.load(path, weights_only=False)` round-trip without a written file."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    name = GENERATED_PREFIX + digest
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__nnc_source__", None) == source:
        return mod
    import torch

    mod = types.ModuleType(name)
    mod.__file__ = f"<nncircuit {label} {digest}>"
    vars(mod).update(__nnc_source__=source, __nnc_label__=label)
    lines = source.splitlines(keepends=True)
    linecache.cache[mod.__file__] = (len(source), None, lines, mod.__file__)  # mtime None: kept
    code = builtins.compile(source, mod.__file__, "exec")
    sys.modules[name] = mod  # before exec: the classes' __module__ must resolve
    try:
        exec(code, mod.__dict__)  # our own generated code; spec names cannot reach it as code
    except BaseException:
        del sys.modules[name]
        raise
    for obj in list(vars(mod).values()):
        if isinstance(obj, type) and obj.__module__ == name and issubclass(obj, torch.nn.Module):
            # a method installed on a class made at run time (mypy refuses the assignment form)
            setattr(obj, "__reduce_ex__", _reduce_generated)  # noqa: B010
    return mod


def _reduce_generated(self, protocol):
    cls = type(self)
    mod = sys.modules[cls.__module__]
    return (_new_generated, (mod.__nnc_source__, mod.__nnc_label__, cls.__qualname__), self.__getstate__())


def _new_generated(source: str, label: str, qualname: str):
    """Unpickling: the class `qualname` of the generated `source`, an empty instance of it
    (pickle then restores its state as nn.Module does). Saved models name this function:
    keep its module, name and arguments."""
    cls = getattr(generated_module(source, label), qualname)
    return cls.__new__(cls)


def _py(name: str) -> str:
    from nncircuit.names import pyname

    return pyname(name)


def load(
    path: str,
    model: str | None = None,
    *,
    text: str | None = None,
    max_params: int | None = DEFAULT_MAX_PARAMS,
    opt: int | None = None,
    passes: str | None = None,
    **params,
) -> Spec:
    """Parse, elaborate and type-check one model of a spec file; then optimise its IR at
    level `opt` (0, 1, 2) or with a pass list (`passes="canonicalize,cse,dce"`), if given."""
    program = load_program(path, text)
    graph = elaborate(program, model, params)
    if opt or passes:
        from nncircuit.passes import optimize

        optimize(graph, passes, opt)
    spec = Spec(program, graph.name, dict(params), graph, max_params or 0)
    if max_params:
        n = spec.param_count()
        if n > max_params:
            raise ResourceError(
                f"model {graph.name} has {n:,} parameters, over the budget of {max_params:,} "
                "(raise it with --max-params)",
                graph.span,
            )
    return spec


def models(path: str, text: str | None = None) -> list[str]:
    return [b.name for b in load_program(path, text).models()]


def compile(path: str, model: str | None = None, *, seed: int | None = None, opt: int = 2, **params):
    """Compile a spec to a torch.nn.Module (hyperparameters as keyword arguments), optimised
    at level `opt` (default 2; its state_dict is that of -O0)."""
    return load(path, model, opt=opt, **params).module(seed=seed)


def export_onnx(path, out, model=None, state_dict=None, **kwargs) -> str:
    """Lower a spec straight to an ONNX file (no torch needed without a state_dict).
    `kwargs` holds export options (seed, weights, opset, functions, fp16, quantize); every
    other keyword is a hyperparameter. Returns the export's report."""
    from nncircuit.backends import BACKENDS

    onnx = BACKENDS["onnx"]
    options = {k: kwargs.pop(k) for k in onnx.options if k in kwargs}
    spec = load(path, model, **kwargs)
    return onnx.emit(spec, out, state_dict=state_dict, **options)

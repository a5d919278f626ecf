"""Weights for the ONNX backend: the PyTorch state_dict name of every parameter, seeded
initial values drawn with numpy (following each ParamSpec's `init`), and loading weights
safely (safetensors, or `torch.load(weights_only=True)`; never a plain pickle), checked
against the names and shapes the spec expects; and how a graph being lowered refers to its
weights (initializers of the model, inputs of a local function)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import numpy as np

from nncircuit.errors import InternalError, LoweringError
from nncircuit.ir.graph import Node
from nncircuit.names import pyname
from nncircuit.ops import registry
from nncircuit.ops.registry import ParamSpec

from nncircuit.backends.onnx.builder import Builder

# Entries of a torch state_dict that no forward pass reads (BatchNorm's step counter).
IGNORED_SUFFIXES = (".num_batches_tracked",)


def state_dict_key(node: Node, prefix: str, pname: str, *, inside: bool = False) -> str:
    """The state_dict name of parameter `pname` of `node`, under module path `prefix`
    (`h.3.`). A `Param`, and the bias of a tied Linear, are an nn.Parameter themselves (a
    `Buffer` a buffer itself); `inside`: a dotted name is a path inside the node's own module
    (ParamSpec.inside)."""
    if "." in pname and not inside:  # `k.weight`: a fused op's parameter of another module of the block
        return prefix + pname
    mod = prefix + pyname(node.owner)
    if node.op in ("Param", "Buffer") or registry.get(node.op).ties(node.attrs) is not None:
        return mod
    return f"{mod}.{pname}"


def shape_of(spec: ParamSpec) -> tuple[int, ...]:
    return tuple(int(s.value) for s in spec.shape)


CHUNK = 1 << 20  # values drawn at a time: 8 MiB of float64 beside the float32 tensor


def init_param(name: str, spec: ParamSpec, seed: int) -> np.ndarray:
    """The seeded initial value of one parameter, drawn from the distribution its Init names
    (fans computed as torch.nn.init computes them). Each tensor draws from its own stream,
    keyed by seed and name, so adding a layer does not change the others. The float32 array
    is filled CHUNK values at a time (the same values one draw of the whole shape gives), so
    making a tensor takes its own size in memory and no float64 copy of it."""
    shape = shape_of(spec)
    digest = hashlib.sha256(name.encode()).digest()
    rng = np.random.default_rng(
        [seed & 0xFFFFFFFF, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()]
    )
    init = spec.init
    kind = init.kind
    fan_in, fan_out = _fans(shape)
    if kind in ("ones", "zeros", "constant"):
        value = {"ones": 1.0, "zeros": 0.0}.get(kind) if kind != "constant" else init.arg("value")
        return np.full(shape, value, dtype=np.float32)
    if kind == "fan_in_uniform":
        bound = 1.0 / np.sqrt(spec.fan_in or fan_in or 1)
        draw = lambda n: rng.uniform(-bound, bound, n)  # noqa: E731
    elif kind == "normal":
        std, mean = init.arg("std"), init.arg("mean")
        draw = lambda n: rng.standard_normal(n) * std + mean  # noqa: E731
    elif kind == "uniform":
        low, high = init.arg("low"), init.arg("high")
        draw = lambda n: rng.uniform(low, high, n)  # noqa: E731
    elif kind in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"):
        if kind.startswith("xavier"):
            std = init.arg("gain") * np.sqrt(2.0 / max(fan_in + fan_out, 1))
        else:
            a = init.arg("a")
            fan = fan_in if init.mode == "fan_in" else fan_out
            std = np.sqrt(2.0 / (1 + a * a)) / np.sqrt(max(fan, 1))
        if kind.endswith("uniform"):
            draw = lambda n: rng.uniform(-np.sqrt(3.0) * std, np.sqrt(3.0) * std, n)  # noqa: E731
        else:
            draw = lambda n: rng.standard_normal(n) * std  # noqa: E731
    else:
        raise LoweringError(f"parameter '{name}': unknown initialisation '{kind}'")
    out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1)
    for start in range(0, flat.size, CHUNK):
        n = min(CHUNK, flat.size - start)
        flat[start:start + n] = draw(n)
    return out


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """torch.nn.init's fans: dim 1 times the receptive field in, dim 0 times it out."""
    if len(shape) < 2:
        return (shape[0] if shape else 1), (shape[0] if shape else 1)
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def load_weights(path: str) -> dict[str, np.ndarray]:
    """Read a .safetensors file (numpy only) or a torch .pt/.pth/.bin state_dict
    (`torch.load(weights_only=True)`, torch imported only here)."""
    if not os.path.isfile(path):
        raise LoweringError(f"weights file '{path}' does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return {k: np.asarray(v) for k, v in load_file(path).items()}
        except (SafetensorError, TypeError, ValueError) as e:
            raise LoweringError(f"cannot read weights '{path}': {e}") from None
    if ext in (".pt", ".pth", ".bin"):
        try:
            import torch
        except ImportError:
            raise LoweringError(
                f"reading '{path}' needs torch; save the weights as .safetensors"
            ) from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds (UnpicklingError, RuntimeError, ...)
            raise LoweringError(f"cannot read weights '{path}' as a state_dict: {e}") from None
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]
        return from_state_dict(obj, source=path)
    raise LoweringError(
        f"weights '{path}': expected a .safetensors or .pt file, found '{ext or 'no extension'}'"
    )


def from_state_dict(sd, *, source: str = "state_dict") -> dict[str, np.ndarray]:
    """numpy arrays from a mapping of names to torch tensors or arrays."""
    if not isinstance(sd, Mapping):
        raise LoweringError(
            f"{source}: expected a mapping of names to tensors, found {type(sd).__name__}"
        )
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise LoweringError(f"{source}: parameter names must be strings, found {k!r}")
        if hasattr(v, "detach"):  # a torch tensor, without importing torch
            layout = str(getattr(v, "layout", "torch.strided"))
            if layout != "torch.strided":
                kind = layout.removeprefix("torch.").removesuffix("_coo").replace("_", " ")
                raise LoweringError(
                    f"{source}: '{k}' is a {kind} tensor; save it dense (tensor.to_dense())"
                )
            try:
                v = v.detach().cpu()
                if str(v.dtype) == "torch.bfloat16":
                    v = v.float()
                v = v.numpy()
            except (RuntimeError, TypeError, ValueError) as e:  # quantized, meta, ...
                raise LoweringError(
                    f"{source}: '{k}' ({v.dtype}) cannot be read as an array: {e}"
                ) from None
        if not isinstance(v, np.ndarray):
            raise LoweringError(f"{source}: '{k}' is a {type(v).__name__}, not a tensor")
        out[k] = v
    return out


def bind(
    params: dict[str, ParamSpec],
    given: dict[str, np.ndarray] | None,
    seed: int,
    declared: dict[str, ParamSpec] | None = None,
) -> dict[str, np.ndarray]:
    """float32 values for every parameter the model uses: `given` checked against the
    expected names, shapes and types (floating point, finite in float32 where finite in the
    file), or seeded initial values. `declared` parameters belong to
    modules that are never applied: a weights file may hold them (checked), none is made."""
    if given is None:
        return {name: init_param(name, spec, seed) for name, spec in params.items()}
    declared = declared or {}
    expected = {**declared, **params}
    given = {k: v for k, v in given.items() if not k.endswith(IGNORED_SUFFIXES)}
    missing = [n for n in params if n not in given]
    extra = sorted(n for n in given if n not in expected)
    problems = []
    if missing:
        problems.append(f"missing {_list(missing)}")
    if extra:
        problems.append(f"unexpected {_list(extra)}")
    bad, rejected = [], set()
    for name, spec in expected.items():
        if name in given:
            want, have = shape_of(spec), tuple(given[name].shape)
            rejected.add(name)
            if want != have:
                bad.append(f"'{name}' has shape {list(have)} but the spec needs {list(want)}")
            elif given[name].dtype.kind != "f" and not (spec.buffer and name not in params):
                # int8 weights would become small integers (an int64 buffer the graph
                # computes itself, BERT's position_ids, is only checked)
                bad.append(
                    f"'{name}' has dtype {given[name].dtype}, but the spec's parameters are "
                    "floating point (dequantize it first)"
                )
            else:
                rejected.discard(name)
    out = {}
    for name in params:
        if name in given and name not in rejected:
            src = given[name]
            with np.errstate(over="ignore", invalid="ignore"):
                # not np.ascontiguousarray: it makes a scalar (Param([])) one-dimensional
                out[name] = np.asarray(src, dtype=np.float32, order="C")
            overflow = np.isinf(out[name]) & np.isfinite(src)
            if overflow.any():
                at = tuple(int(i) for i in np.argwhere(overflow)[0])
                bad.append(
                    f"'{name}' holds {float(src[at]):g} at {list(at)}, beyond float32 "
                    f"(largest {float(np.finfo(np.float32).max):.4g})"
                )
    problems += bad[:5] + ([f"{len(bad) - 5} more tensors differ"] if len(bad) > 5 else [])
    if problems:
        raise LoweringError("weights do not match the spec: " + "; ".join(problems))
    return out


def _list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{shown}{more}"


# ---- where a graph's weights come from ---------------------------------------------------


class ModelWeights:
    """Weights of the main graph: initializers, named as in the torch state_dict."""

    def __init__(self, b: Builder, inputs: set[str]):
        self.b = b
        self.inputs = inputs
        self.params: dict[str, ParamSpec] = {}
        self.declared: dict[str, ParamSpec] = {}

    def resolve(self, name: str, spec: ParamSpec) -> str:
        if name in self.params:
            if shape_of(self.params[name]) != shape_of(spec):
                raise InternalError(f"parameter '{name}' is used with two shapes")
            return name
        if name in self.inputs:
            raise LoweringError(f"the parameter '{name}' has the name of a model input; rename one")
        self.params[name] = spec
        self.b.claim(name)
        return name

    def declare(self, name: str, spec: ParamSpec) -> None:
        self.declared.setdefault(name, spec)


class FunctionWeights:
    """Weights inside a local function: formal inputs, named relative to the block."""

    def __init__(self, b: Builder):
        self.b = b
        self.formal: dict[str, tuple[str, ParamSpec]] = {}
        self.declared: dict[str, ParamSpec] = {}

    def resolve(self, name: str, spec: ParamSpec) -> str:
        if name not in self.formal:
            self.formal[name] = (self.b.values.fresh(name), spec)
        return self.formal[name][0]

    def declare(self, name: str, spec: ParamSpec) -> None:
        self.declared.setdefault(name, spec)


class DeclaredWeights:
    """Weights of modules that exist but are never applied (the body of a `repeat 0
    shared`): they are in the torch state_dict, so a weights file may hold them and they
    are checked, but no initializer is made."""

    def __init__(self, inner):
        self.inner = inner

    def resolve(self, name: str, spec: ParamSpec) -> str:
        self.inner.declare(name, spec)
        return name

    def declare(self, name: str, spec: ParamSpec) -> None:
        self.inner.declare(name, spec)

"""Reduced precision for the ONNX backend: dynamic 8-bit quantization through
onnxruntime.quantization (after folding constant weight transposes), and the accuracy a
float16 or int8 model costs, measured in onnxruntime against the float32 model."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper

from nncircuit.errors import InternalError
from nncircuit.ops.nn import embedding_rows


def fold_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Compute the Transpose and Concat nodes whose inputs are all initializers (a Linear's
    `W.T`, a fused LinearGroup's joined weights) into initializers, so the quantizer sees
    MatMul weights as constants. A transposed weight is named `W.T`."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    original = set(values)
    renamed: dict[str, str] = {}
    keep = []
    for node in g.node:
        ins = [renamed.get(v, v) for v in node.input]
        node.input[:] = ins
        if node.op_type not in ("Transpose", "Concat") or not all(v in values for v in ins):
            keep.append(node)
            continue
        onnx_attr = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Transpose":
            arr = np.transpose(values[ins[0]], onnx_attr.get("perm"))
            name = f"{ins[0]}.T" if ins[0] in original else node.output[0]
        else:
            arr = np.concatenate([values[v] for v in ins], axis=onnx_attr["axis"])
            name = node.output[0]
        values[name] = np.ascontiguousarray(arr)
        renamed[node.output[0]] = name
        g.initializer.append(numpy_helper.from_array(values[name], name))
    del g.node[:]
    g.node.extend(keep)
    for out in g.output:
        if out.name in renamed:
            raise InternalError(f"graph output {out.name} is a constant")
    used = {v for n in g.node for v in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)
    return model


def quantize_int8(model: onnx.ModelProto) -> tuple[bytes, str]:
    """Dynamic 8-bit quantization (onnxruntime.quantization): MatMul and Gather weights as
    int8 per output channel, Conv weights as uint8 (the only kind onnxruntime's CPU
    ConvInteger takes), both in the 7-bit range that keeps x86's u8×s8 kernels from
    saturating; activations are quantized at run time. Returns the model and what changed."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = fold_weights(model)
    present = {n.op_type for n in folded.graph.node}
    stages = [(["MatMul", "Gather"], QuantType.QInt8, True), (["Conv"], QuantType.QUInt8, False)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice through the root logger
    try:
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "model.onnx")
            onnx.save(folded, src)
            for i, (ops, weight_type, per_channel) in enumerate(stages):
                if not present & set(ops):
                    continue
                dst = os.path.join(d, f"stage{i}.onnx")
                quantize_dynamic(
                    src,
                    dst,
                    op_types_to_quantize=ops,
                    weight_type=weight_type,
                    per_channel=per_channel,
                    reduce_range=True,
                )
                src = dst
            with open(src, "rb") as f:
                data = f.read()
    finally:
        root.setLevel(level)
    kinds = {"MatMulInteger": "MatMul", "ConvInteger": "Conv"}
    counts: dict[str, int] = {}
    for n in onnx.load_model_from_string(data).graph.node:
        kind = kinds.get(n.op_type) or (
            "Gather" if n.op_type == "Gather" and n.input[0].endswith("_quantized") else None
        )
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    what = (
        ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        or "nothing (no MatMul, Gather or Conv weights)"
    )
    return data, what


def sample_inputs(spec, seed: int = 0, cap: int = 32) -> tuple[dict[str, np.ndarray], str]:
    """Random inputs for a spec: batch 2, other dynamic axes their typical size (at most
    `cap`); integer inputs below the smallest embedding table."""
    rng = np.random.default_rng(seed)
    g = spec.graph
    tables = [
        int(embedding_rows(n.attrs).value) for _, sub in g.walk() for n in sub.nodes() if n.op == "Embedding"
    ]
    high = min(tables) if tables else 2
    feeds, sizes = {}, {}
    for name, t in spec.inputs():
        shape = []
        for ax in t.axes:
            if ax.size.is_static:
                shape.append(ax.size.value)
                continue
            sym = ax.size.bare_symbol() or ax.name
            n = 2 if sym == "batch" else min(g.dims.get(sym) or 16, cap)
            sizes[sym] = n
            shape.append(n)
        if t.dtype in ("int64", "int32"):
            feeds[name] = rng.integers(0, high, shape).astype(t.dtype)
        elif t.dtype == "bool":
            feeds[name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds, ", ".join(f"{k}={v}" for k, v in sizes.items())


def accuracy(spec, reference: bytes, candidate: bytes) -> str:
    """Max abs and relative error (max |a - b| / max |a|) of `candidate` against the float32
    model on one random input, measured in onnxruntime."""
    import onnxruntime as ort

    feeds, sizes = sample_inputs(spec)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        ref = ort.InferenceSession(reference, opts, providers=["CPUExecutionProvider"]).run(
            None, feeds
        )
        got = ort.InferenceSession(candidate, opts, providers=["CPUExecutionProvider"]).run(
            None, feeds
        )
    except Exception as e:  # onnxruntime raises its own exception types
        return f"accuracy not measured ({str(e).splitlines()[0][:200]})"
    err, scale = 0.0, 0.0
    for a, c in zip(ref, got):
        a64, c64 = np.asarray(a, dtype=np.float64), np.asarray(c, dtype=np.float64)
        err = max(err, float(np.max(np.abs(a64 - c64), initial=0.0)))
        scale = max(scale, float(np.max(np.abs(a64), initial=0.0)))
    rel = err / scale if scale else 0.0
    where = f" ({sizes})" if sizes else ""
    return f"max abs error {err:.3g}, relative {rel:.3g} vs float32 on a random input{where}"

"""Write an ONNX model without ever building the protobuf that holds its weights: the graph
is serialised on its own and each initializer's bytes go from its array straight to the file,
either inline (spliced into the protobuf wire format, byte for byte what `SerializeToString`
of the whole model gives) or as ONNX external data in a `.data` file beside the model."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from nncircuit.errors import InternalError

ALIGN = 4096  # external tensors start on a page, so onnxruntime can map them in place

# field numbers of onnx.proto3 (ModelProto.graph, GraphProto.initializer, TensorProto.raw_data)
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW = 7, 5, 9
_LEN = 2  # protobuf wire type of a length-delimited field


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int) -> bytes:
    return varint(field << 3 | _LEN)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n, shift = 0, 0
    while True:
        if i >= len(buf):
            raise InternalError("truncated varint in a serialised ONNX message")
        byte = buf[i]
        n |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return n, i


def split_after(buf: bytes, field: int) -> tuple[bytes, bytes]:
    """`buf` (a serialised message, fields in number order as protobuf writes them) cut
    before its first field numbered above `field`."""
    i = 0
    while i < len(buf):
        start = i
        tag, i = _read_varint(buf, i)
        if tag >> 3 > field:
            return buf[:start], buf[start:]
        wire = tag & 7
        if wire == 0:
            _, i = _read_varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 2:
            n, i = _read_varint(buf, i)
            i += n
        elif wire == 5:
            i += 4
        else:
            raise InternalError(f"unexpected protobuf wire type {wire} in an ONNX message")
    return buf, b""


@dataclass(frozen=True)
class Weight:
    """One initializer to be written: its name, ONNX element type, shape and a function that
    makes its array (called once, when its bytes are written, so a caller may make weights
    one at a time)."""

    name: str
    elem: int
    shape: tuple[int, ...]
    nbytes: int
    make: Callable[[], np.ndarray]


def _header(w: Weight) -> TensorProto:
    return TensorProto(name=w.name, dims=list(w.shape), data_type=w.elem)


def _bytes_of(w: Weight) -> memoryview:
    arr = np.ascontiguousarray(w.make())
    if arr.nbytes != w.nbytes or arr.dtype.byteorder == ">":
        raise InternalError(f"weight '{w.name}': {arr.nbytes} bytes, expected {w.nbytes}")
    # numpy declares the buffer protocol (__buffer__) to type checkers only for Python 3.12+
    return memoryview(arr).cast("B")  # type: ignore[arg-type]


def checkable(model: onnx.ModelProto, weights: list[Weight]) -> onnx.ModelProto:
    """A copy of the weightless `model` in which each initializer is a typed graph input,
    so `onnx.checker` checks every node without any weight being serialised."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.initializer[:]
    m.graph.input.extend(helper.make_tensor_value_info(w.name, w.elem, w.shape) for w in weights)
    return m


def inline_parts(model: onnx.ModelProto, weights: list[Weight]) -> Iterator[bytes | memoryview]:
    """The bytes of `model` (which holds no initializers) with `weights` as its initializers,
    in pieces: the same bytes `SerializeToString` gives for the model holding them."""
    g_head, g_tail = split_after(model.graph.SerializeToString(), _GRAPH_INITIALIZER)
    shell = onnx.ModelProto()
    shell.CopyFrom(model)
    shell.ClearField("graph")
    m_head, m_tail = split_after(shell.SerializeToString(), _MODEL_GRAPH)
    heads = [_header(w).SerializeToString() for w in weights]
    sizes = [len(h) + len(_key(_TENSOR_RAW)) + len(varint(w.nbytes)) + w.nbytes
             for h, w in zip(heads, weights)]
    init = sum(len(_key(_GRAPH_INITIALIZER)) + len(varint(s)) + s for s in sizes)
    yield m_head
    yield _key(_MODEL_GRAPH) + varint(len(g_head) + init + len(g_tail))
    yield g_head
    for w, h, s in zip(weights, heads, sizes):
        yield _key(_GRAPH_INITIALIZER) + varint(s) + h + _key(_TENSOR_RAW) + varint(w.nbytes)
        yield _bytes_of(w)
    yield g_tail
    yield m_tail


def external_layout(weights: list[Weight], location: str) -> list[TensorProto]:
    """Initializers that point into the data file `location` (relative to the model), each
    tensor at an offset aligned to ALIGN."""
    out, offset = [], 0
    for w in weights:
        t = _header(w)
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(offset)), ("length", str(w.nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        out.append(t)
        offset += -(-w.nbytes // ALIGN) * ALIGN
    return out


def data_parts(weights: list[Weight]) -> Iterator[bytes | memoryview]:
    """The data file of `external_layout`: each tensor's bytes, padded to ALIGN."""
    for w in weights:
        yield _bytes_of(w)
        pad = -w.nbytes % ALIGN
        if pad:
            yield bytes(pad)


def data_location(out: str) -> str:
    """The data file's name, relative to the model file as ONNX requires."""
    return os.path.basename(out) + ".data"

"""Helpers the tests share: random inputs for a spec's declared inputs, and the check that a
user's mistake is a positioned error."""

from __future__ import annotations

import re

import pytest
import torch


def random_inputs(spec, sizes: dict[str, int] | None = None, seed: int = 0):
    """One random tensor per declared input. Dynamic axes take `sizes` (by axis name), else
    batch 2 and the spec's typical size capped at 24. Integer inputs stay below the smallest
    embedding table of the model."""
    g = torch.Generator().manual_seed(seed)
    sizes = dict(sizes or {})
    out = []
    for _, t in spec.inputs():
        shape = []
        for ax in t.axes:
            if ax.size.is_static:
                shape.append(ax.size.value)
            elif ax.name in sizes:
                shape.append(sizes[ax.name])
            elif ax.name == "batch":
                shape.append(2)
            else:
                shape.append(min(spec.graph.dims.get(ax.size.bare_symbol(), 0) or 16, 24))
        if t.dtype in ("int64", "int32"):
            out.append(torch.randint(0, _smallest_table(spec), shape, generator=g))
        else:
            out.append(torch.randn(*shape, generator=g))
    return out


def _smallest_table(spec) -> int:
    sizes = [
        int(n.attrs["num"].value)
        for _, g in spec.graph.walk()
        for n in g.nodes()
        if n.op == "Embedding"
    ]
    return min(sizes) if sizes else 2


def assert_positioned_error(load, text: str, msg: str, line: int, col: int):
    """`load(text)` fails with an NNError whose message matches `msg`, at `line`:`col`, and
    whose text shows the caret under the source line."""
    from nncircuit.errors import NNError

    with pytest.raises(NNError) as info:
        load(text)
    e = info.value
    assert re.search(msg, e.message), e.message
    assert (e.span.line, e.span.col) == (line, col), str(e)
    assert "^" in str(e)


def assert_error_on_line(text: str, message: str, line: int):
    """Loading `text` fails with an NNError whose message contains `message`, positioned on
    `line` past its first column (the call, not the statement), with the caret under it."""
    import nncircuit
    from nncircuit.errors import NNError

    with pytest.raises(NNError) as info:
        nncircuit.load("m.nn", text=text)
    err = info.value
    assert message in str(err), str(err)
    assert err.span is not None and err.span.line == line and err.span.col > 1, err.span
    assert "^" in err.render()


def onnxruntime_outputs(spec, xs, tmp_path):
    """The spec written to ONNX (its seeded initial weights) and run by onnxruntime on the
    tensors `xs`, in the order of the model's inputs: its outputs as numpy arrays."""
    ort = pytest.importorskip("onnxruntime")
    out = str(tmp_path / "model.onnx")
    spec.write(out)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, (x.numpy() for x in xs))))


def onnxruntime_against_torch(path: str, model: str, module, params: dict, inputs, tmp_path):
    """`module`'s weights exported to ONNX from the spec at `path` (model, hyperparameters
    `params`) and run by onnxruntime: for each tuple of tensors in `inputs`, the pair (the
    module's first output, onnxruntime's first output) as numpy arrays."""
    import nncircuit

    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    out = str(tmp_path / f"{model}.onnx")
    nncircuit.export_onnx(path, out, model, state_dict=module.state_dict(), **params)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    pairs = []
    for xs in inputs:
        with torch.no_grad():
            want = module(*xs)
        want = want[0] if isinstance(want, (tuple, list)) else want
        pairs.append((want.numpy(), sess.run(None, dict(zip(names, (x.numpy() for x in xs))))[0]))
    return pairs


def token_batches(lengths, vocab: int = 97, batch: int = 2):
    """One (ids,) tuple per length: seeded random token ids [batch, length] below `vocab`."""
    import torch

    return [(torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(n)),) for n in lengths]

"""What `pip install nncircuit` (no torch) must do, run in an environment without torch:
check, ONNX export with safetensors weights made with numpy, an onnxruntime run that uses
those weights, an SVG diagram, the summary, a user spec importing a zoo block, and a one-line
error for the PyTorch backend. Exit 0 when all hold. CI (`.ci/run`) runs it in a fresh venv.

    python scripts/smoke_no_torch.py
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile


def fail(msg: str) -> None:
    print(f"smoke_no_torch: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def nnc(*argv: str) -> str:
    from nncircuit.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(list(argv))
    if rc != 0:
        fail(f"nnc {' '.join(argv)} exited {rc}")
    return out.getvalue()


def main() -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        fail("torch is importable here; run this where torch is not installed")
    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import save_file

    import nncircuit
    from nncircuit.io import write_atomic

    steps = []
    tmp = tempfile.mkdtemp(prefix="nnc-smoke-")
    mlp = nncircuit.zoo.path("mlp.nn")
    line = nnc("check", mlp, nncircuit.zoo.path("transformer.nn"))
    if "MLP: 669,706 parameters" not in line or "GPT2: 124,439,808 parameters" not in line:
        fail(f"nnc check printed {line!r}")
    steps.append("check")

    # weights: every initializer of a first export, random, written with numpy + safetensors
    first = os.path.join(tmp, "seeded.onnx")
    nnc("compile", mlp, "-o", first)
    rng = np.random.default_rng(0)
    weights = {
        init.name: rng.standard_normal(tuple(init.dims)).astype(np.float32)
        for init in onnx.load(first).graph.initializer
        if init.data_type == onnx.TensorProto.FLOAT and init.dims
    }
    wfile = os.path.join(tmp, "w.safetensors")
    save_file(weights, wfile)
    out = os.path.join(tmp, "mlp.onnx")
    nnc("compile", mlp, "-o", out, "--weights", wfile)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    for k, v in weights.items():
        if k not in inits or not np.array_equal(inits[k], v):
            fail(f"weight {k} did not reach the ONNX file")
    steps.append(f"onnx export with {len(weights)} safetensors weights")

    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    (probs,) = sess.run(None, {"image": rng.standard_normal((3, 28, 28)).astype(np.float32)})
    if probs.shape != (3, 10) or not np.allclose(probs.sum(-1), 1, atol=1e-5):
        fail(f"onnxruntime gave {probs.shape}")
    steps.append("onnxruntime run")

    svg = os.path.join(tmp, "mlp.svg")
    nnc("render", mlp, "-o", svg)
    with open(svg, encoding="utf-8") as f:
        if "<svg" not in f.read(2000):
            fail("the SVG is not an SVG")
    steps.append("render svg")

    if "total" not in nnc("summary", mlp):
        fail("nnc summary printed no total")
    steps.append("summary")

    user = os.path.join(tmp, "mine.nn")
    write_atomic(user, 'from "zoo:lib/attention.nn" import Attention\n'
                 "model Mine(dh = 8) {\n    in x: [batch, seq, dh]\n    k = x rename seq -> key\n"
                 "    out Attention(dh)(x, k, k rename dh -> dv)\n}\n")
    if not nnc("check", user).startswith("Mine: 0 parameters"):
        fail("a user spec could not import the zoo's Attention")
    steps.append("zoo import")

    try:
        nncircuit.compile(mlp)
    except nncircuit.NNError as e:
        if "nncircuit[torch]" not in str(e):
            fail(f"the torch backend's error does not say how to install torch: {e}")
    else:
        fail("nncircuit.compile worked without torch")
    steps.append("torch backend refused in one line")

    if "torch" in sys.modules and sys.modules["torch"] is not None:
        fail("torch was imported")
    print(f"smoke_no_torch: ok ({', '.join(steps)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

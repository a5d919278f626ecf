"""Exporting a model with a huge parameter takes about that parameter's size in memory: the
seeded initial weights are drawn into their float32 array a chunk at a time (no float64 copy
of the whole tensor), and each streams to the file before the next is made. The fuzzer found
a 1e9-wide axis taking 11.8 GB (three times the 4 GB tensor) to export."""

import tracemalloc

import numpy as np
import onnx
import pytest

import nncircuit
from nncircuit.backends.onnx import export as E
from nncircuit.backends.onnx import weights as W

N = 4_000_000  # 16 MB of float32: seconds to draw, far above the chunk size
BIG = f"""
model Big(n = {N}) {{
    in  x: [batch, d: 1]
    w = Param([e: n], init = uniform(0.1))
    v = Param([e: n], init = normal(0.0, 0.02))
    out x * sum(w * v, over e)
}}
"""


def _peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("param", ["w", "v"])
def test_a_seeded_weight_is_drawn_without_a_float64_copy(param):
    low = E.lower(nncircuit.load("big.nn", text=BIG), opset=17, functions=False, fp16=False)
    (name, spec), = [(k, p) for k, p in low.params.items() if k == param]
    arr, peak = _peak(lambda: W.init_param(name, spec, 0))
    assert arr.dtype == np.float32 and arr.shape == (N,)
    # the array itself (16 MB) and one chunk of float64 draws (8 MB); one draw of the whole
    # shape in float64 (32 MB) then cast (16 MB) peaked at 48 MB
    assert peak < arr.nbytes + W.CHUNK * 8 + 2**20, f"{peak / 2**20:.1f} MiB"


def test_chunked_draws_equal_one_draw_of_the_whole_shape(monkeypatch):
    low = E.lower(nncircuit.load("big.nn", text=BIG, n=1000), opset=17, functions=False, fp16=False)
    whole = {k: W.init_param(k, p, 7) for k, p in low.params.items()}
    monkeypatch.setattr(W, "CHUNK", 37)  # many chunks, the last one short
    for k, p in low.params.items():
        np.testing.assert_array_equal(W.init_param(k, p, 7), whole[k])
    # the values one numpy draw of the whole shape gives (what the export always wrote)
    rng = np.random.default_rng([7, *np.frombuffer(__import__("hashlib").sha256(b"w").digest()[:16],
                                                   dtype=np.uint32).tolist()])
    np.testing.assert_array_equal(whole["w"], rng.uniform(-0.1, 0.1, 1000).astype(np.float32))


@pytest.mark.parametrize("external", [False, True])
def test_exporting_two_big_weights_peaks_near_one_of_them(tmp_path, external):
    spec = nncircuit.load("big.nn", text=BIG)
    out = tmp_path / "big.onnx"
    _, peak = _peak(lambda: E.export_spec(spec, str(out), seed=0, external_data=external))
    tensor = N * 4
    # two 16 MB weights, made and written one after the other: at most one of them and a
    # chunk of draws live at once (before: 3 x 16 MB)
    assert peak < 1.25 * tensor + W.CHUNK * 8 + 4 * 2**20, f"{peak / 2**20:.1f} MiB"
    m = onnx.load(str(out), load_external_data=False)
    assert [i.name for i in m.graph.initializer] == ["w", "v"]

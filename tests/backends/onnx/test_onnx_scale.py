"""ONNX export at scale: weights streamed into the file (inline, byte for byte what the
in-memory ModelProto serialises to, or as external data beside it), both layouts loading
in onnxruntime; the optimizer's verification policy; the fused q/k/v weight."""

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import nncircuit
from conftest import SMALL, SPECS
from nncircuit.backends.onnx import export as E
from nncircuit.backends.onnx import stream as S
from nncircuit.errors import LoweringError, NNError

GPT2 = os.path.join(SPECS, "transformer.nn")
TOKENS = np.arange(10, dtype=np.int64).reshape(2, 5) % 97


def small_gpt2(**kw):
    return nncircuit.load(GPT2, "GPT2", **{**SMALL[("transformer.nn", "GPT2")], **kw})


def run(path_or_bytes) -> np.ndarray:
    sess = ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {"tokens": TOKENS})[0]


# ---- the wire format -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**31, 2**40 + 5])
def test_varint_matches_protobuf(n):
    t = onnx.TensorProto(dims=[n])  # dims (proto2, unpacked): the key byte, then the varint
    assert t.SerializeToString()[1:] == S.varint(n)


def test_split_after_cuts_before_the_first_later_field():
    g = onnx.helper.make_graph([], "g", [], [], doc_string="doc")
    buf = g.SerializeToString()
    head, tail = S.split_after(buf, 5)
    assert head + tail == buf
    assert onnx.GraphProto.FromString(head).name == "g"
    assert onnx.GraphProto.FromString(tail).doc_string == "doc"


# ---- inline layout: the same bytes as before, without the copies ---------------------------


@pytest.mark.parametrize("functions", [False, True])
def test_streamed_file_is_byte_identical_to_the_in_memory_model(tmp_path, functions):
    spec = small_gpt2()
    out = tmp_path / "m.onnx"
    E.export_spec(spec, str(out), seed=3, functions=functions)
    assert out.read_bytes() == E.build(spec, seed=3, functions=functions).SerializeToString()
    assert not (tmp_path / "m.onnx.data").exists()


def test_streamed_file_with_given_weights_is_byte_identical(tmp_path):
    spec = small_gpt2()
    sd = spec.module(seed=5).state_dict()
    out = tmp_path / "m.onnx"
    E.export_spec(spec, str(out), state_dict=sd)
    assert out.read_bytes() == E.build(spec, state_dict=sd).SerializeToString()


# ---- external data --------------------------------------------------------------------------


def test_external_data_loads_in_onnxruntime_and_computes_the_same(tmp_path):
    spec = small_gpt2()
    inline, ext = tmp_path / "inline.onnx", tmp_path / "ext.onnx"
    E.export_spec(spec, str(inline))
    report = E.export_spec(spec, str(ext), external_data=True)
    assert "external data: ext.onnx.data" in report
    data = tmp_path / "ext.onnx.data"
    assert data.exists()
    # the model file holds no weight bytes; every initializer points into the data file
    model = onnx.load(str(ext), load_external_data=False)
    assert ext.stat().st_size < 100_000 < data.stat().st_size
    offsets = []
    for t in model.graph.initializer:
        assert t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data
        entry = {e.key: e.value for e in t.external_data}
        assert entry["location"] == "ext.onnx.data"
        offsets.append(int(entry["offset"]))
        assert int(entry["offset"]) % S.ALIGN == 0
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    onnx.checker.check_model(str(ext))  # the path form checks the data file too
    # the same tensors as the inline file, and onnxruntime computes the same
    full = onnx.load(str(ext))
    ref = onnx.load(str(inline))
    got = {t.name: onnx.numpy_helper.to_array(t) for t in full.graph.initializer}
    for t in ref.graph.initializer:
        np.testing.assert_array_equal(got[t.name], onnx.numpy_helper.to_array(t))
    np.testing.assert_array_equal(run(str(ext)), run(str(inline)))


def test_external_data_is_chosen_above_the_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "EXTERNAL_THRESHOLD", 1000)
    out = tmp_path / "m.onnx"
    E.export_spec(small_gpt2(), str(out))
    assert (tmp_path / "m.onnx.data").exists()
    run(str(out))
    # and refused when the caller insists on one file past what one protobuf holds
    monkeypatch.setattr(E, "PROTOBUF_LIMIT", 1000)
    with pytest.raises(LoweringError, match="at most 2 GiB: allow external data"):
        E.export_spec(small_gpt2(), str(tmp_path / "n.onnx"), external_data=False)
    assert not (tmp_path / "n.onnx").exists()


def test_external_data_from_the_command_line(tmp_path):
    out = tmp_path / "m.onnx"
    params = [a for k, v in SMALL[("transformer.nn", "GPT2")].items() for a in ("-p", f"{k}={v}")]
    r = subprocess.run(
        [sys.executable, "-m", "nncircuit.cli", "compile", GPT2, "--to", "onnx", "-o", str(out),
         "--external-data", *params],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "external data: m.onnx.data" in r.stdout
    assert run(str(out)).shape == (2, 5, 97)


def test_external_data_refused_with_reduced_precision(tmp_path):
    with pytest.raises(LoweringError, match="not supported with --fp16"):
        E.export_spec(small_gpt2(), str(tmp_path / "m.onnx"), fp16=True, external_data=True)


def test_a_failing_weight_leaves_no_file(tmp_path, monkeypatch):
    def boom(name, spec, seed):
        raise LoweringError(f"cannot make {name}")

    monkeypatch.setattr(E.W, "init_param", boom)
    for ext in (False, True):
        with pytest.raises(NNError, match="cannot make"):
            E.export_spec(small_gpt2(), str(tmp_path / "m.onnx"), external_data=ext)
        assert sorted(os.listdir(tmp_path)) == []


def test_seeded_weights_are_made_one_at_a_time(tmp_path, monkeypatch):
    """Each weight is made when it is written and dropped after: never all at once."""
    live, peak = [0], [0]
    real = E.W.init_param

    class Tracked(np.ndarray):
        def __del__(self):
            live[0] -= 1

    def tracked(name, spec, seed):
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        return real(name, spec, seed).view(Tracked)

    monkeypatch.setattr(E.W, "init_param", tracked)
    E.export_spec(small_gpt2(), str(tmp_path / "m.onnx"), external_data=True)
    assert peak[0] == 1 and live[0] == 0


# ---- verification after passes ------------------------------------------------------------


from nncircuit.errors import InternalError  # noqa: E402
from nncircuit.ir.graph import Graph  # noqa: E402
from nncircuit.passes import PassManager, Pass, pipeline  # noqa: E402


def _count_verifies(monkeypatch) -> list:
    calls = []
    real = Graph.verify

    def counting(self, _done=None, **kw):
        if _done is None or self not in _done:
            calls.append(self.name)
        return real(self, _done, **kw)

    monkeypatch.setattr(Graph, "verify", counting)
    return calls


def test_the_tests_verify_everything_after_every_pass():
    assert os.environ["NNC_VERIFY"] == "all"
    assert PassManager([]).mode == "all"


class _Silent(Pass):
    """Breaks a type and (wrongly) says it changed nothing: only a full verify sees it."""

    name = "silent"

    def run(self, graph):
        for n in graph.nodes():
            if n.op == "relu":
                n.types = (n.type.with_dtype("float64"),)
        return False


def test_verify_mode_all_checks_graphs_a_pass_says_it_left_alone():
    spec = nncircuit.load(os.path.join(SPECS, "mlp.nn"), "MLP", opt=0)
    with pytest.raises(InternalError, match="after pass 'silent'"):
        PassManager([_Silent()], mode="all").run(spec.graph)
    spec = nncircuit.load(os.path.join(SPECS, "mlp.nn"), "MLP", opt=0)
    PassManager([_Silent()], mode="changed").run(spec.graph)  # trusts the pass's answer


def test_verify_mode_changed_verifies_only_changed_graphs_and_their_callers(monkeypatch):
    spec = nncircuit.load(GPT2, "GPT2", opt=0, **SMALL[("transformer.nn", "GPT2")])
    calls = _count_verifies(monkeypatch)
    pm = PassManager(pipeline(None, 2), mode="changed")
    pm.run(spec.graph)
    changed = [name for name, c in pm.log if c]
    assert changed and len(changed) < len(pm.log)
    # nothing is verified after a pass that changed nothing; after the others, only the
    # changed graphs and the graphs above them, each once
    incremental = list(calls)
    spec2 = nncircuit.load(GPT2, "GPT2", opt=0, **SMALL[("transformer.nn", "GPT2")])
    calls.clear()
    PassManager(pipeline(None, 2), mode="all").run(spec2.graph)
    assert calls.count("GPT2") == len(pm.log)  # the whole model after every pass
    assert incremental.count("GPT2") == len(changed)  # the root is above every graph
    assert len(incremental) <= len(changed) * len(set(calls)) < len(calls)
    # and the result is the same IR
    from nncircuit.ir.printer import print_ir

    assert print_ir(spec.graph) == print_ir(spec2.graph)


def test_unknown_verify_mode_is_refused(monkeypatch):
    from nncircuit.passes import PipelineError

    monkeypatch.setenv("NNC_VERIFY", "sometimes")
    with pytest.raises(PipelineError, match="NNC_VERIFY='sometimes'"):
        PassManager([])


# ---- the fused q/k/v weight -------------------------------------------------------------------


import torch  # noqa: E402


def _gpt2_modules():
    small = SMALL[("transformer.nn", "GPT2")]
    m0 = nncircuit.load(GPT2, "GPT2", opt=0, **small).module(seed=0)
    m2 = nncircuit.load(GPT2, "GPT2", opt=2, **small).module(seed=1)
    return m0, m2


def _count_cat(monkeypatch) -> list:
    calls = []
    real = torch.cat

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(torch, "cat", counting)
    return calls


def test_fused_qkv_trains_like_separate_layers_without_joining_per_call(monkeypatch):
    m0, m2 = _gpt2_modules()
    assert "_linear_group" in type(m2.h[0].attn).forward.__globals__
    m2.load_state_dict(m0.state_dict(), strict=True)
    x = torch.randint(0, 97, (2, 12))
    # (not Adam: the key bias's gradient is zero up to rounding, which Adam would amplify)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (m0, m2)]
    cats = _count_cat(monkeypatch)
    for step in range(3):
        for m, opt in zip((m0, m2), opts):
            opt.zero_grad()
            cats.clear()
            loss = m(x).logsumexp(-1).mean()
            loss.backward()
            opt.step()
        assert (cats == []) == (step > 0)  # after the first call, no concatenation
        torch.testing.assert_close(m2(x), m0(x), rtol=1e-4, atol=1e-5)
    for (k, a), (k2, b) in zip(sorted(m0.state_dict().items()), sorted(m2.state_dict().items())):
        assert k == k2
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)


def test_fused_qkv_checkpoints_load_both_ways():
    m0, m2 = _gpt2_modules()
    x = torch.randint(0, 97, (2, 7))
    m2(x)  # the first call packs q, k, v into one tensor
    assert set(m2.state_dict()) == set(m0.state_dict())
    attn = m2.h[0].attn
    assert {"q.weight", "k.weight", "v.weight"} <= set(attn.state_dict())
    # -O2 → -O0: the separate layers' checkpoint
    m0.load_state_dict(m2.state_dict(), strict=True)
    torch.testing.assert_close(m0(x), m2(x), rtol=1e-4, atol=1e-5)
    # -O0 → -O2 after packing: load_state_dict copies into the packed views
    fresh, _ = _gpt2_modules()
    m2.load_state_dict(fresh.state_dict(), strict=True)
    torch.testing.assert_close(m2(x), fresh(x), rtol=1e-4, atol=1e-5)


def test_fused_qkv_after_to_and_under_functional_call():
    m0, m2 = _gpt2_modules()
    m2.load_state_dict(m0.state_dict())
    x = torch.randint(0, 97, (2, 7))
    m2(x)
    m0, m2 = m0.double(), m2.double()  # new storage per parameter: packed again
    torch.testing.assert_close(m2(x), m0(x))
    params = {k: v.detach().clone().requires_grad_() for k, v in m2.named_parameters()}
    out = torch.func.functional_call(m2, params, (x,))
    out.sum().backward()
    torch.testing.assert_close(out, m0(x))
    assert params["h.0.attn.k.weight"].grad is not None


# ---- long repeats: one local function, called once per iteration --------------------------


REPEATS = """
block Step(d) {
    in  x: [d]
    out x + tanh(Linear(x, d -> d))
}

model Deep(d = 4, n = 6) {
    in  x: [batch, d], y: [batch, d]
    repeat n as plain { x = tanh(Linear(x, d -> d)) }
    repeat n as blocks { y = Step(d)(y) }
    repeat n shared as tied { x = Linear(x, d -> d) + y }
    out x, y
}
"""


def test_a_long_repeat_is_one_local_function_and_computes_the_same(tmp_path, monkeypatch):
    spec = nncircuit.load("deep.nn", text=REPEATS)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    feeds = {"x": x, "y": x[::-1].copy()}

    def export(name):
        out = tmp_path / name
        report = E.export_spec(spec, str(out), seed=2)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        return onnx.load(str(out)), sess.run(None, feeds), report

    inline, want, _ = export("inline.onnx")
    assert not inline.functions
    monkeypatch.setattr(E, "REPEAT_AS_FUNCTION", 6)
    fused, got, report = export("fn.onnx")
    # one function per distinct body; the graph has one call node per iteration
    assert "local functions" in report
    assert len(fused.functions) == 3
    calls = [n for n in fused.graph.node if n.domain == "nncircuit"]
    assert len(calls) == 3 * 6
    assert len(fused.graph.node) < len(inline.graph.node) / 2
    # the same initializers (state_dict names), and the same results
    assert [t.name for t in fused.graph.initializer] == [t.name for t in inline.graph.initializer]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # and what the torch module computes with those weights
    import torch

    module = spec.module(seed=0)
    sd = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy()) for t in inline.graph.initializer}
    module.load_state_dict(sd, strict=True)
    with torch.no_grad():
        ref = module(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["y"]))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5)


def test_a_thousand_layers_lower_to_a_thousand_calls(tmp_path):
    """Size, not time: the graph grows by one call node per layer (the timing is in
    bench/onnx_scale.py --deep)."""
    spec = nncircuit.load("deep.nn", text="model D(n = 1000, d = 2) {\n in x: [d]\n"
                          " repeat n { x = Linear(x, d -> d) }\n out x\n}")
    low = E.lower(spec)
    assert len(low.functions) == 1
    assert len(low.nodes) <= 1000 + 5


class _Loud(_Silent):
    """Breaks a type and says so."""

    name = "loud"

    def run(self, graph):
        super().run(graph)
        return any(n.op == "relu" for n in graph.nodes())


def test_verify_mode_changed_rederives_what_a_pass_touched():
    spec = nncircuit.load(os.path.join(SPECS, "mlp.nn"), "MLP", opt=0)
    spec.graph.verify()  # every node's derivation is now known, so only new objects are checked
    with pytest.raises(InternalError, match="after pass 'loud'.*relu"):
        PassManager([_Loud()], mode="changed").run(spec.graph)


def test_incremental_verify_still_checks_structure():
    spec = nncircuit.load(os.path.join(SPECS, "mlp.nn"), "MLP", opt=0)
    g = spec.graph
    g.verify()
    nodes = g.nodes()
    dup = nodes[-1]
    dup.name = nodes[-2].name
    with pytest.raises(InternalError, match="used twice"):
        g.verify(incremental=True)

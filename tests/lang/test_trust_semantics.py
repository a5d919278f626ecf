"""Silent wrong results the trust issue found in the elaborator and the op rules: each test
here failed on the code before its fix. Both backends are compared where a value is computed."""

import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch

import nncircuit
from helpers import random_inputs
from nncircuit.backends.onnx.export import build
from nncircuit.errors import ShapeError


def load(src: str, model=None, **params):
    return nncircuit.load("test.nn", model, text=textwrap.dedent(src), **params)


def run_both(spec, inputs=None, sizes=None):
    """The torch module's outputs and onnxruntime's on the ONNX export, as numpy arrays."""
    module = spec.module(seed=0).eval()
    inputs = inputs if inputs is not None else random_inputs(spec, sizes)
    with torch.no_grad():
        ref = module(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    sess = ort.InferenceSession(
        build(spec, state_dict=module.state_dict()).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    got = sess.run(None, {name: x.numpy() for (name, _), x in zip(spec.inputs(), inputs)})
    return [r.numpy() for r in ref], got


# ---- 1. each carried name of a repeat is its own value ---------------------------------------


ALIASED = """
    model M() {
        in  x: [batch, d: 3]
        a = x * 0
        b = a
        repeat 2 shared {
            a = a + 1
            b = b + 5
        }
        out a, b
    }
"""


@pytest.mark.parametrize("opt", [0, 2])
def test_aliased_carried_values_are_separate(opt):
    spec = nncircuit.load("test.nn", text=textwrap.dedent(ALIASED), opt=opt)
    ref, got = run_both(spec)
    for outs in (ref, got):
        np.testing.assert_array_equal(outs[0], np.full((2, 3), 2.0, np.float32))
        np.testing.assert_array_equal(outs[1], np.full((2, 3), 10.0, np.float32))


def test_read_only_alias_of_a_carried_value_keeps_its_first_value():
    # `c` is the value `a` had before the loop; it is read, never updated
    spec = load("""
        model M() {
            in  x: [batch, d: 3]
            a = x
            c = a
            repeat 3 { a = a + c }
            out a
        }
    """)
    x = torch.randn(2, 3)
    ref, got = run_both(spec, [x])
    for outs in (ref, got):
        np.testing.assert_allclose(outs[0], (4 * x).numpy(), rtol=1e-6)


def test_aliased_carried_values_in_nested_repeats():
    spec = load("""
        model M() {
            in  x: [batch, d: 3]
            a = x * 0
            b = a
            repeat 2 {
                repeat 3 shared { a = a + 1 }
                b = b + a
            }
            out a, b
        }
    """)
    ref, got = run_both(spec)
    for outs in (ref, got):
        np.testing.assert_array_equal(outs[0], np.full((2, 3), 6.0, np.float32))
        np.testing.assert_array_equal(outs[1], np.full((2, 3), 9.0, np.float32))


# ---- 2. a learned op inside exp/log/sqrt/abs/min/max is made once ---------------------------


@pytest.mark.parametrize("expr, n", [
    ("exp(Linear(x, c -> c))", 1),
    ("log(1 + exp(Linear(x, c -> c)))", 1),
    ("sqrt(abs(Linear(x, c -> c)))", 1),
    ("max(Linear(x, c -> c), over c) + min(Linear(x, c -> c), over c)", 2),
    ("exp(Linear(x, c -> c)) + exp(2.0) + log(c)", 1),
])
def test_learned_op_inside_a_scalar_function_is_made_once(expr, n):
    spec = load(f"""
        model M(c = 4) {{
            in  x: [batch, c]
            out {expr}
        }}
    """)
    assert spec.param_count() == n * (4 * 4 + 4)
    assert len(spec.module().state_dict()) == 2 * n
    ref, got = run_both(spec)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)


def test_scalar_functions_still_compute_on_numbers():
    spec = load("""
        model M(c = 4, s = sqrt(16) + exp(0) + log(1) + abs(-2) + min(3, 1) + max(3, 1)) {
            in  x: [batch, c]
            out x * s
        }
    """)
    assert spec.graph.hyper[1].value.value == 4.0 + 1.0 + 0.0 + 2 + 1 + 3


# ---- 9. Param([]), repeat ... as layer, eps, output_padding ------------------------------


@pytest.mark.parametrize("init", ["normal", "ones", "zeros"])
def test_scalar_param_builds_and_both_backends_agree(init):
    spec = load(f"""
        model M() {{
            in  x: [batch, d: 3]
            p = Param([], init = "{init}")
            out x * p
        }}
    """)
    assert spec.module().state_dict()["p"].shape == ()
    ref, got = run_both(spec)
    assert got[0].shape == ref[0].shape == (2, 3)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)


def test_repeat_named_layer_keeps_its_name_in_the_state_dict():
    spec = load("""
        model M() {
            in  x: [batch, d: 3]
            repeat 2 as layer { x = Linear(x, d -> d: 3) |> relu }
            out x
        }
    """)
    keys = list(spec.module().state_dict())
    assert keys == ["layer.0.linear.weight", "layer.0.linear.bias", "layer.1.linear.weight", "layer.1.linear.bias"]
    ref, got = run_both(spec)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call", [
    "LayerNorm(x, over d, eps = -1)", "LayerNorm(x, over d, eps = 0)", "RMSNorm(x, over d, eps = -1e-6)",
    "BatchNorm(x, d, eps = -1)",
])
def test_non_positive_eps_is_refused_at_its_call(call):
    with pytest.raises(ShapeError, match="eps must be a positive number") as e:
        load(f"""
            model M() {{
                in  x: [batch, d: 3]
                out {call}
            }}
        """)
    assert (e.value.span.line, e.value.span.col) == (4, 9)


@pytest.mark.parametrize("kw", ["stride = 2, output_padding = 2", "stride = 1, dilation = 2, output_padding = 1"])
def test_conv_transpose_output_padding_must_be_below_the_stride(kw):
    with pytest.raises(ShapeError, match="output_padding on 'h' must be smaller than the stride"):
        load(f"""
            model M() {{
                in  x: [batch, c: 2, h: 8]
                out ConvTranspose(x, c -> c: 2, kernel = 3, {kw}, over h)
            }}
        """)


def test_conv_transpose_output_padding_below_the_stride_runs_in_both_backends():
    spec = load("""
        model M() {
            in  x: [batch, c: 2, h: 8]
            out ConvTranspose(x, c -> c: 2, kernel = 3, stride = 3, dilation = 2, output_padding = 2, over h)
        }
    """)
    ref, got = run_both(spec)
    assert ref[0].shape == (2, 2, 28)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-5)


# ---- 4. causal lines the mask up at the end (bottom-right) ------------------------------------


DECODE = """
    model Decode(d = 4) {
        in  q: [batch, seq, d], k: [batch, key, d], v: [batch, key, d]
        w = softmax(causal(einsum(q, k -> [batch, seq, key]) / 2.0, over [seq, key]), over key)
        out einsum(w, v, over key)
    }
"""


@pytest.mark.parametrize("opt", [0, 2])
@pytest.mark.parametrize("seq, key", [(3, 7), (1, 5), (4, 4)])
def test_causal_aligns_queries_with_the_end_of_a_longer_key(opt, seq, key):
    spec = nncircuit.load("test.nn", text=textwrap.dedent(DECODE), opt=opt)
    assert (opt == 2) == any(n.op == "attention" for n in spec.graph.nodes())
    assert (opt == 2) == ("_causal_attention(" in spec.torch_source())  # not SDPA's is_causal
    ref, got = run_both(spec, sizes={"seq": seq, "key": key})
    q, k, v = random_inputs(spec, {"seq": seq, "key": key})
    # query i stands at key position i + (key - seq): it sees keys 0 .. i + key - seq
    visible = torch.ones(seq, key, dtype=torch.bool).tril(key - seq)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=visible, scale=0.5).numpy()
    np.testing.assert_allclose(ref[0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


def test_causal_self_attention_keeps_the_plain_forms():
    # seq renamed to key: one size by type, so the fused path keeps is_causal=True
    src = textwrap.dedent("""
        model Self(d = 4) {
            in  x: [batch, seq, d]
            k = x rename seq -> key
            w = softmax(causal(einsum(x, k -> [batch, seq, key]), over [seq, key]), over key)
            out einsum(w, k, over key)
        }
    """)
    assert ".triu(1)" in nncircuit.load("test.nn", text=src).torch_source()
    spec = nncircuit.load("test.nn", opt=2, text=src)
    assert "is_causal=True" in spec.torch_source() and "attn_mask" not in spec.torch_source()
    ref, got = run_both(spec, sizes={"seq": 5})
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)


# ---- 5. no silent contraction of a run-time axis, no silent outer broadcast ------------------


DIN = """
    model Pool(e = 4) {{
        in  w: [batch, seq], k: [batch, seq, e]
        out {expr}
    }}
"""


def test_einsum_refuses_to_sum_a_run_time_axis_every_input_carries():
    with pytest.raises(ShapeError) as e:
        load(DIN.format(expr="einsum(w, k -> [e])"))
    msg = str(e.value)
    assert "einsum would sum over axes 'batch', 'seq', run-time axes that every input carries" in msg
    assert "add ', over [batch, seq]'" in msg and "einsum(..., over [batch, seq])" in msg
    assert "-> [e, batch, seq]" in msg
    assert (e.value.span.line, e.value.span.col) == (4, 9)  # the einsum, in the user's file
    with pytest.raises(ShapeError, match="would sum over axis 'seq'"):
        load(DIN.format(expr="einsum(w, k -> [batch, e])"))


@pytest.mark.parametrize("expr", [
    "einsum(w, k, over seq)", "einsum(w, k -> [batch, e], over seq)", "einsum(k, w, over [seq])",
])
def test_einsum_over_names_the_summed_axes_and_keeps_the_rest(expr):
    spec = load(DIN.format(expr=expr))
    assert [str(t) for _, t in spec.outputs()] == ["[batch, e: 4]"]
    w, k = torch.randn(3, 5), torch.randn(3, 5, 4)
    ref, got = run_both(spec, [w, k])
    want = torch.einsum("bs,bse->be", w, k).numpy()
    np.testing.assert_allclose(ref[0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


def test_einsum_sum_over_batch_when_it_is_meant():
    spec = load(DIN.format(expr="einsum(w, k -> [e], over [batch, seq])"))
    w, k = torch.randn(3, 5), torch.randn(3, 5, 4)
    ref, got = run_both(spec, [w, k])
    np.testing.assert_allclose(got[0], torch.einsum("bs,bse->e", w, k).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref[0], got[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("expr, message", [
    ("einsum(w, k -> [e], over seq)", "axis 'batch' in neither the output nor 'over'"),
    ("einsum(w, k -> [batch, e], over [seq, e])", "axis 'e' is both kept"),
    ("einsum(w, k, over key)", "axis 'key' to sum over is in no input"),
    ("einsum(w, k)", "einsum needs its output axes"),
])
def test_einsum_over_mistakes_are_positioned_errors(expr, message):
    with pytest.raises(ShapeError, match=message) as e:
        load(DIN.format(expr=expr))
    assert e.value.span.line == 4


def test_einsum_may_still_sum_static_axes_and_axes_one_input_lacks():
    # the query-key product sums the static feature axis: unchanged
    spec = load("""
        model M(dh = 4) {
            in  q: [batch, seq, dh], k: [batch, key, dh]
            out einsum(q, k -> [batch, seq, key])
        }
    """)
    assert [str(t) for _, t in spec.outputs()] == ["[batch, seq, key]"]


def test_outer_broadcast_is_an_error_that_says_how_to_write_it():
    with pytest.raises(ShapeError) as e:
        load("""
            model M(d = 3, hidden = 5) {
                in  x: [batch, seq, d]
                out x + Linear(x, d -> hidden)
            }
        """)
    msg = str(e.value)
    assert "'+': each side has an axis the other lacks ([batch, seq, d: 3] has d; [batch, seq, hidden: 5] has hidden)" in msg
    assert "add(a, b, outer = true)" in msg
    assert (e.value.span.line, e.value.span.col) == (4, 9)


def test_explicit_outer_broadcast_and_implicit_subset_broadcast():
    spec = load("""
        model M(d = 3, hidden = 5) {
            in  x: [batch, seq, d], bias: [d], pos: [seq, d]
            h = Linear(x, d -> hidden)
            out add(x, h, outer = true), mul(x[seq = 0], h, outer = true), x + bias + pos, pos - x
        }
    """)
    assert [str(t) for _, t in spec.outputs()] == [
        "[batch, seq, d: 3, hidden: 5]", "[batch, seq, hidden: 5, d: 3]", "[batch, seq, d: 3]", "[batch, seq, d: 3]",
    ]
    x, bias, pos = torch.randn(2, 4, 3), torch.randn(3), torch.randn(4, 3)
    ref, got = run_both(spec, [x, bias, pos])
    h = spec.module(seed=0).eval().h(x).detach()
    np.testing.assert_allclose(ref[0], (x[..., :, None] + h[..., None, :]).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref[1], (x[:, 0][:, None, None, :] * h[..., None]).numpy(), rtol=1e-5, atol=1e-6)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_add_by_name_takes_two_tensors():
    # `add(x)` was an internal error (a Python unpacking error reached the user)
    with pytest.raises(ShapeError, match="add takes two tensors, found 1"):
        load("model M() { in x: [batch, d: 3]\n out add(x) }")


def test_explicit_forms_survive_the_textual_ir():
    from nncircuit.backends.torch.codegen import generate
    from nncircuit.ir.parser import parse_ir
    from nncircuit.ir.printer import print_ir

    spec = load("""
        model M(e = 4) {
            in  w: [batch, seq], k: [batch, seq, e]
            out einsum(w, k, over seq), einsum(w, k -> [e], over [batch, seq]), add(w, k[seq = 0], outer = true)
        }
    """)
    text = print_ir(spec.graph)
    assert "einsum(%w, %k, over [seq])" in text and "], over [batch, seq])" in text and "outer = true" in text
    back = parse_ir(text)
    assert print_ir(back) == text
    assert generate(back, "m.nn") == generate(spec.graph, "m.nn")


# ---- found on the way: the differential run at 300 seeds ------------------------------------


def test_onnx_lifts_a_block_output_that_ignores_the_inputs():
    # torch expands such an output to the call's lifted axes; ONNX refused the export
    spec = load("""
        block B() {
            in  x: [c: 3]
            y = pad_to(cast(positions(c), to = "float32"), x, over c)
            out gelu(y), Param([c: 3], init = "ones") * 2
        }
        model M() {
            in  x: [batch, s: 5, c: 3]
            p, q = B()(x)
            out p + x, q
        }
    """)
    x = torch.randn(2, 5, 3)
    ref, got = run_both(spec, [x])
    assert got[0].shape == ref[0].shape == (2, 5, 3) and got[1].shape == ref[1].shape == (2, 5, 3)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)

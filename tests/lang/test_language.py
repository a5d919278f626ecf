"""Every construct of the language, each elaborated, compiled and run."""

import textwrap

import pytest
import torch

import nncircuit
from nncircuit.analysis.cost import param_count


def load(src: str, model=None, **params):
    return nncircuit.load("test.nn", model, text=textwrap.dedent(src), **params)


def run(spec, *inputs):
    m = spec.module(seed=0).eval()
    with torch.no_grad():
        return m(*inputs)


def test_named_axes_and_lifting_over_extra_axes():
    spec = load("""
        block Proj(d, e) {
            in  x: [d]
            out Linear(x, d -> e)
        }
        model M(d = 8, e = 3) {
            in  x: [batch, seq, d]
            out y = Proj(d, e)(x)
        }
    """)
    assert [str(t) for _, t in spec.outputs()] == ["[batch, seq, e: 3]"]
    assert run(spec, torch.randn(2, 5, 8)).shape == (2, 5, 3)
    # the block itself knows nothing of batch or seq
    call = next(n for n in spec.graph.nodes() if n.op == "call")
    assert call.attrs["lift"] == ("batch", "seq")
    assert [str(call.callee.node(i).type) for i in call.callee.inputs] == ["[d: 8]"]


def test_hyperparameter_defaults_depend_on_earlier_ones():
    spec = load("""
        block B(d, hidden = 4 * d, mid = hidden / 2) {
            in  x: [d]
            out x |> Linear(d -> mid) |> Linear(mid -> d)
        }
        model M(d = 6) {
            in  x: [batch, d]
            out B(d)(x)
        }
    """)
    assert param_count(spec.graph) == (6 * 12 + 12) + (12 * 6 + 6)
    src = spec.torch_source()
    assert "def __init__(self, d, hidden=None, mid=None):" in src
    assert "hidden = 4 * d" in src and "mid = hidden // 2" in src


def test_params_override_and_unknown_lists_known():
    spec = load("model M(n = 4) { in x: [batch, n] out Linear(x, n -> m: 2) }", n=5)
    assert spec.param_count() == 5 * 2 + 2
    with pytest.raises(nncircuit.errors.HyperparameterError, match=r"no hyperparameter 'nn' \(did you mean 'n'\?\); known: n"):
        load("model M(n = 4) { in x: [batch, n] out Linear(x, n -> m: 2) }", nn=5)


def test_nested_blocks_pipelines_and_named_instances():
    spec = load("""
        block Inner(d) {
            in  x: [d]
            out x |> Linear(d -> d) |> relu
        }
        block Outer(d) {
            in  x: [d]
            first = Inner(d)
            out x |> first |> Inner(d) |> tanh
        }
        model M(d = 4) {
            in  x: [batch, d]
            out Outer(d)(x)
        }
    """)
    keys = set(spec.module(seed=0).state_dict())
    assert {"outer.first.linear.weight", "outer.inner.linear.bias"} <= keys
    assert run(spec, torch.randn(3, 4)).shape == (3, 4)


def test_tuples_multi_input_and_multi_output_blocks():
    spec = load("""
        block Split(d) {
            in  x: [d]
            out a = Linear(x, d -> d), b = Linear(x, d -> d)
        }
        block Join(d) {
            in  a: [d], b: [d]
            out a * b
        }
        model M(d = 4) {
            in  x: [batch, d]
            p, q = Split(d)(x)
            pair = (p, q)
            out y = pair |> Join(d), z = q
        }
    """)
    m = spec.module(seed=0).eval()
    y, z = m(torch.randn(2, 4))
    assert y.shape == z.shape == (2, 4)
    assert [n for n, _ in spec.outputs()] == ["y", "z"]


def test_repeat_independent_and_shared_weights():
    body = "x = x |> Linear(d -> d) |> relu"
    indep = load(f"model M(d = 4, n = 3) {{ in x: [batch, d] repeat n {{ {body} }} out x }}")
    shared = load(f"model M(d = 4, n = 3) {{ in x: [batch, d] repeat n shared {{ {body} }} out x }}")
    assert indep.param_count() == 3 * 20 and shared.param_count() == 20
    m = shared.module(seed=0)
    lin = m.layers.linear
    x = torch.randn(2, 4)
    expected = x
    for _ in range(3):
        expected = torch.relu(lin(expected))
    assert torch.allclose(m(x), expected)
    assert len(indep.module(seed=0).layers) == 3


def test_repeat_reads_outer_values_and_names_the_module_list():
    spec = load("""
        model M(d = 4) {
            in  x: [batch, d], bias: [d]
            repeat 2 as blocks {
                x = Linear(x, d -> d) + bias
            }
            out x
        }
    """)
    m = spec.module(seed=0).eval()
    assert "blocks.1.linear.weight" in m.state_dict()
    x, b = torch.randn(2, 4), torch.randn(4)
    expected = x
    for layer in m.blocks:
        expected = layer.linear(expected) + b
    assert torch.allclose(m(x, b), expected)


def test_weight_tying():
    spec = load("""
        model LM(vocab = 11, d = 4) {
            in  t: [batch, seq] int64
            emb = Embedding(vocab -> d)
            out emb(t) |> Linear(d -> vocab, bias = false, tied = emb)
        }
    """)
    assert spec.param_count() == 44
    m = spec.module(seed=0)
    t = torch.randint(0, 11, (2, 3))
    assert torch.allclose(m(t), m.emb(t) @ m.emb.weight.T)


def test_shared_instance_applied_twice_counts_once():
    spec = load("""
        model M(d = 4) {
            in  x: [batch, d]
            f = Linear(d -> d)
            out f(f(x))
        }
    """)
    assert spec.param_count() == 20
    m = spec.module(seed=0)
    x = torch.randn(2, 4)
    assert torch.allclose(m(x), m.f(m.f(x)))


def test_imports_all_and_some(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "layers.nn").write_text(
        "block Double(d) { in x: [d] out x * 2 }\nblock Neg(d) { in x: [d] out -x }\n"
    )
    (tmp_path / "a.nn").write_text(
        'import "lib/layers.nn"\nmodel A(d = 2) { in x: [batch, d] out Neg(d)(Double(d)(x)) }\n'
    )
    (tmp_path / "b.nn").write_text(
        'from "lib/layers.nn" import Double\nmodel B(d = 2) { in x: [batch, d] out Double(d)(x) }\n'
    )
    x = torch.ones(1, 2)
    assert torch.equal(nncircuit.compile(str(tmp_path / "a.nn"))(x), -2 * x)
    assert torch.equal(nncircuit.compile(str(tmp_path / "b.nn"))(x), 2 * x)
    (tmp_path / "c.nn").write_text(
        'from "lib/layers.nn" import Double\nmodel C(d = 2) { in x: [batch, d] out Neg(d)(x) }\n'
    )
    with pytest.raises(nncircuit.errors.NameResolutionError, match="unknown name 'Neg'"):
        nncircuit.load(str(tmp_path / "c.nn"))


def test_comments_and_doc_comments_reach_the_generated_code():
    spec = load("""
        # a plain comment
        ## Doubles its input.
        ## Second line of the doc.
        model M(d = 2) {   # trailing comment
            in  x: [batch, d]
            out x * 2   ## a doc comment here is just a comment
        }
    """)
    assert spec.graph.doc == "Doubles its input.\nSecond line of the doc."
    assert "'Doubles its input.\\nSecond line of the doc.'" in spec.torch_source()


def test_rename_index_concat_einsum_and_axis_ops():
    spec = load("""
        model M(d = 4) {
            in  x: [batch, seq: 10, d]
            k = x rename seq -> key
            s = softmax(einsum(x, k -> [batch, seq, key]), over key)
            y = einsum(s, k -> [batch, seq, d])
            first = y[seq = 0]
            both = concat(first, y, over seq)
            flat = both |> flatten([seq, d] -> f)
            out flat |> unflatten(f -> [a: 2, b: (flat_size)])
        }
    """.replace("(flat_size)", "22"))
    out = run(spec, torch.randn(2, 10, 4))
    assert out.shape == (2, 2, 22)


def test_positions_causal_and_learned_params():
    spec = load("""
        model M(d = 4, n = 6) {
            in  x: [batch, seq: ~5, d]
            pos = Param([seq: n, d], std = 0.02)
            idx = positions(seq)
            k = x rename seq -> key
            s = causal(einsum(x, k -> [batch, seq, key]), over [seq, key])
            out s, idx
        }
    """)
    s, idx = run(spec, torch.randn(1, 3, 4))
    assert torch.equal(idx, torch.arange(3))
    assert torch.isinf(s[0, 0, 1]) and not torch.isinf(s[0, 1, 0])
    assert spec.param_count() == 24


def test_int_division_must_be_exact_and_float_division_is_float():
    with pytest.raises(nncircuit.errors.HyperparameterError, match="7 is not divisible by 2"):
        load("model M(a = 7, b = a / 2) { in x: [batch, a] out x }")
    spec = load("model M(a = 7, s = 1.0 / 2) { in x: [batch, a] out x * s }")
    assert torch.equal(run(spec, torch.ones(1, 7)), torch.full((1, 7), 0.5))


def test_shared_dynamic_axes_must_agree_across_inputs():
    block = "block Add() { in a: [n], b: [n] out a + b }\n"
    ok = load(block + "model M() { in a: [batch, n], b: [batch, n] out Add()(a, b) }")
    assert run(ok, torch.ones(1, 3), torch.ones(1, 3)).shape == (1, 3)
    # two run-time sizes the checker cannot prove equal are refused before anything runs
    with pytest.raises(nncircuit.errors.ShapeError, match="axis 'n' has size m here but n in another input"):
        load(block + "model M() { in a: [batch, n], b: [batch, m] out Add()(a, b rename m -> n) }")


def test_module_names_never_shadow_nn_module_methods():
    spec = load("""
        block Double(d) { in x: [d] out x * 2 }
        model M(d = 2) {
            in  x: [batch, d]
            eval = Linear(d -> d)
            out Double(d)(eval(x))
        }
    """)
    m = spec.module(seed=0)
    assert isinstance(m.eval_, torch.nn.Linear) and callable(m.eval) and callable(m.double)
    assert m(torch.ones(1, 2)).shape == (1, 2)


def test_top_k_and_gather_route_by_data():
    spec = load("""
        model Router(experts = 4, d = 3) {
            in  x: [batch, d]
            scores = Linear(x, d -> experts)
            vals, idx = top_k(scores, over experts, k = 2, into = chosen)
            out vals, idx, gather(scores, idx rename chosen -> experts, over experts)
        }
    """)
    types = [str(t) for _, t in spec.outputs()]
    assert types == ["[batch, chosen: 2]", "[batch, chosen: 2] int64", "[batch, experts: 2]"]
    vals, idx, picked = run(spec, torch.randn(5, 3))
    assert torch.equal(vals, picked)
    assert (idx >= 0).all() and (idx < 4).all()


def test_a_given_hyperparameter_does_not_evaluate_its_default():
    """specs/linear_attention.nn has `dk = d / heads`: compiling it with heads not dividing d
    but dk given refused with the default's error, while the generated class built it."""
    text = "model M(d = 32, heads = 4, dk = d / heads) {\n    in  x: [e: d]\n    out Linear(x, e -> k: dk)\n}\n"
    spec = nncircuit.load("m.nn", text=text, d=2, heads=8, dk=3)
    assert [h.value.value for h in spec.graph.hyper] == [2, 8, 3]
    with pytest.raises(nncircuit.NNError, match="not divisible"):
        nncircuit.load("m.nn", text=text, d=2, heads=8)

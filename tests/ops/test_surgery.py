"""Axis surgery and the remaining normalisations: slices, split/chunk, roll/reverse/shift,
cumsum/cumprod, stack, flatten that moves axes, einsum operands that are expressions,
GroupNorm/InstanceNorm, LayerNorm/RMSNorm over run-time axes, upsample. Each op against
torch's own function (and torch.nn's module, weights loaded by name), torch against
onnxruntime (also at other run-time sizes), its positioned errors, and the generated class
built with other hyperparameters."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nncircuit
from nncircuit.errors import NNError

HEAD = "model M(c = 8, a = 2, g = 4) {\n    in x: [b, c: c, n: 6], s: [b, seq, c: c], im: [b, c: c, h: 5, w: 6]\n"
SIZES = {"b": 3, "seq": 7}


def _spec(body: str, **params):
    return nncircuit.load("t.nn", text=HEAD + "    " + body + "\n}\n", **params)


def _inputs(spec, sizes=SIZES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*[a.size.value if a.size.is_static else sizes[a.name] for a in t.axes], generator=g)
            for _, t in spec.inputs()]


def _outputs(module, xs):
    with torch.no_grad():
        out = module(*xs)
    return list(out) if isinstance(out, tuple) else [out]


def _torch(body: str, sizes=SIZES, **params):
    spec = _spec(body, **params)
    xs = _inputs(spec, sizes)
    return xs, _outputs(spec.module(seed=0).eval(), xs)


# ---- each op against torch's own function ---------------------------------------------------


def test_slices_are_python_slices():
    (x, s, _), out = _torch("out x[c = a:c - 1], x[c = :-1], x[c = -3:], x[c = -20:2], s[seq = 1:], s[seq = :-2], x[n = 4:99]")
    want = [x[:, 2:7], x[:, :-1], x[:, -3:], x[:, -20:2], s[:, 1:], s[:, :-2], x[:, :, 4:99]]
    assert [tuple(o.shape) for o in out] == [tuple(w.shape) for w in want]
    for o, w in zip(out, want):
        assert torch.equal(o, w)


def test_slice_types():
    spec = _spec("out x[c = a:c - 1], s[seq = 1:], s[seq = :-2], s[seq = 2:5], x[c = -3:]")
    assert [str(t) for _, t in spec.outputs()] == [
        "[b, c: 5, n: 6]", "[b, seq: seq - 1, c: 8]", "[b, seq: seq - 2, c: 8]", "[b, seq: 3, c: 8]",
        "[b, c: 3, n: 6]",
    ]


def test_split_and_chunk():
    (x, _, _), out = _torch("p, q, r = split(x, over c, (a, 1, c - a - 1))\n    u, v = chunk(x, 2, over c)\n    out p, q, r, u, v")
    want = list(torch.split(x, [2, 1, 5], dim=1)) + list(torch.chunk(x, 2, dim=1))
    for o, w in zip(out, want):
        assert torch.equal(o, w)


def test_roll_reverse_shift():
    (x, s, _), out = _torch("out roll(x, 2, over n), roll(s, -3, over seq), roll(x, 13, over n), reverse(s, over seq), "
                            "shift(x, 2, over n), shift(s, -3, over seq, fill = 0.5), shift(x, 9, over n)")
    shifted = torch.zeros_like(x)
    shifted[:, :, 2:] = x[:, :, :-2]
    back = torch.full_like(s, 0.5)
    back[:, :-3] = s[:, 3:]
    want = [torch.roll(x, 2, 2), torch.roll(s, -3, 1), torch.roll(x, 13, 2), torch.flip(s, (1,)),
            shifted, back, torch.zeros_like(x)]
    for o, w in zip(out, want):
        assert torch.equal(o, w)


def test_cumsum_cumprod():
    (x, s, _), out = _torch("out cumsum(x, over n), cumprod(s, over seq), cumsum(s, over c)")
    for o, w in zip(out, [torch.cumsum(x, 2), torch.cumprod(s, 1), torch.cumsum(s, 2)]):
        torch.testing.assert_close(o, w)


def test_stack_matches_by_name():
    (x, _, _), out = _torch("y = transpose(relu(x), c, n)\n    out stack(x, y, x, over k: 3), stack(x, y, over k)")
    want = torch.stack([x, torch.relu(x), x])
    assert torch.equal(out[0], want) and torch.equal(out[1], want[:2])
    spec = _spec("out stack(x, x, over k)")
    assert [str(t) for _, t in spec.outputs()] == ["[k: 2, b, c: 8, n: 6]"]


def test_flatten_moves_axes_that_are_not_adjacent():
    (x, _, im), out = _torch("out flatten(x, [n, c] -> m), flatten(im, [c, w] -> m), flatten(im, [h, c] -> m)")
    assert torch.equal(out[0], x.permute(0, 2, 1).reshape(3, 48))
    assert torch.equal(out[1], im.permute(0, 1, 3, 2).reshape(3, 48, 5))
    assert torch.equal(out[2], im.permute(0, 2, 1, 3).reshape(3, 40, 6))
    spec = _spec("out flatten(im, [c, w] -> m), flatten(im, [w, b] -> m)")
    assert [str(t) for _, t in spec.outputs()] == ["[b, m: 48, h: 5]", "[m: 6 * b, c: 8, h: 5]"]


def test_einsum_operand_may_be_any_expression():
    (x, s, _), out = _torch("out einsum(x, relu(x) * 2 -> [b, c]), einsum(s, transpose(s, seq, c) -> [b, seq])")
    torch.testing.assert_close(out[0], torch.einsum("bcn,bcn->bc", x, torch.relu(x) * 2))
    torch.testing.assert_close(out[1], (s * s).sum(-1))


def _loaded(ref: torch.nn.Module, spec_module, prefix: str):
    """The spec's parameters under `prefix` loaded into the torch module (names as torch's)."""
    sd = {k[len(prefix) + 1:]: v for k, v in spec_module.state_dict().items() if k.startswith(prefix + ".")}
    ref.load_state_dict(sd)
    return ref.eval()


def test_groupnorm_equals_torch_groupnorm():
    spec = _spec("out GroupNorm(im, g, over c, init = normal(1.0), bias_init = normal(1.0)), "
                 "GroupNorm(im, 2, over [c, h, w], affine = false, eps = 1e-3)")
    m = spec.module(seed=0).eval()
    assert sorted(m.state_dict()) == ["group_norm.bias", "group_norm.weight"]
    xs = _inputs(spec)
    out = _outputs(m, xs)
    ref = _loaded(torch.nn.GroupNorm(4, 8), m, "group_norm")
    with torch.no_grad():
        torch.testing.assert_close(out[0], ref(xs[2]))
        torch.testing.assert_close(out[1], torch.nn.GroupNorm(2, 8, eps=1e-3, affine=False)(xs[2]))


def test_instancenorm_equals_torch_instancenorm():
    spec = _spec("out InstanceNorm(im, over [h, w]), InstanceNorm(im, over [h, w], affine = true, channel = c, "
                 "init = normal(1.0), bias_init = normal(1.0)), InstanceNorm(transpose(s, seq, c), over seq)")
    m = spec.module(seed=0).eval()
    assert sorted(m.state_dict()) == ["instance_norm_1.bias", "instance_norm_1.weight"]
    xs = _inputs(spec)
    out = _outputs(m, xs)
    ref = _loaded(torch.nn.InstanceNorm2d(8, affine=True), m, "instance_norm_1")
    with torch.no_grad():
        torch.testing.assert_close(out[0], torch.nn.InstanceNorm2d(8)(xs[2]))
        torch.testing.assert_close(out[1], ref(xs[2]))
        torch.testing.assert_close(out[2], torch.nn.InstanceNorm1d(8)(xs[1].transpose(1, 2)))


def test_layernorm_rmsnorm_over_run_time_axes_without_affine():
    (_, s, _), out = _torch("out LayerNorm(s, over seq, affine = false), RMSNorm(s, over [seq, c], affine = false), "
                            "LayerNorm(s, over c, affine = false)")
    torch.testing.assert_close(out[0], F.layer_norm(s.transpose(1, 2), (7,)).transpose(1, 2))
    torch.testing.assert_close(out[1], F.rms_norm(s, (7, 8), eps=1e-6))
    torch.testing.assert_close(out[2], F.layer_norm(s, (8,)))
    assert _spec("out LayerNorm(s, over seq, affine = false)").param_count() == 0


def test_upsample_equals_torch_upsample():
    (x, s, im), out = _torch("out upsample(im, 2, over [h, w]), upsample(im, 3, over [h, w], mode = bilinear), "
                             "upsample(s, 2, over seq, mode = bilinear), upsample(transpose(im, c, w), 2, over [c, h])")
    torch.testing.assert_close(out[0], torch.nn.Upsample(scale_factor=2)(im))
    torch.testing.assert_close(out[1], torch.nn.Upsample(scale_factor=3, mode="bilinear")(im))
    torch.testing.assert_close(out[2], torch.nn.Upsample(scale_factor=2, mode="linear")(s.transpose(1, 2)).transpose(1, 2))
    want = torch.nn.Upsample(scale_factor=2)(im.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # [b, w, h, c]
    torch.testing.assert_close(out[3], want.transpose(1, 3))
    spec = _spec("out upsample(s, 2, over seq), upsample(im, 2, over [h, w])")
    assert [str(t) for _, t in spec.outputs()] == ["[b, seq: 2 * seq, c: 8]", "[b, c: 8, h: 10, w: 12]"]


# ---- torch against onnxruntime, also at other run-time sizes --------------------------------

ONNX_CASES = [
    "out x[c = a:c - 1], x[c = :-1], x[c = -3:], s[seq = 1:], s[seq = 2:-1], s[seq = -2:]",
    "p, q = split(x, over c, (a, c - a))\n    u, v, w, z = chunk(x, 4, over c)\n    out p, q, u, v, w, z",
    "out roll(x, 2, over n), roll(s, -3, over seq), roll(s, 10, over seq), reverse(s, over seq), reverse(x, over c)",
    "out shift(x, 2, over n), shift(s, -3, over seq, fill = 0.5), shift(s, 20, over seq), shift(x, -1, over c, fill = -1)",
    "out cumsum(x, over n), cumsum(s, over seq), cumprod(x * 0.5, over c), cumprod(s, over seq)",
    "out stack(x, transpose(relu(x), c, n), over k: 2), stack(s, s * 2, s, over k)",
    "out flatten(x, [n, c] -> m), flatten(im, [c, w] -> m), flatten(s, [c, seq] -> m)",
    "out einsum(x, relu(x) * 2 -> [b, c]), einsum(s, LayerNorm(s, over c) -> [b, seq])",
    "out GroupNorm(im, g, over c, init = normal(1.0), bias_init = normal(1.0)), GroupNorm(s, 2, over [c, seq], affine = false)",
    "out InstanceNorm(im, over [h, w]), InstanceNorm(im, over w, affine = true, channel = c, init = normal(1.0), "
    "bias_init = normal(1.0)), InstanceNorm(s, over seq)",
    "out LayerNorm(s, over seq, affine = false), RMSNorm(s, over [seq, c], affine = false), LayerNorm(s, over [b, seq], affine = false)",
    "out upsample(im, 2, over [h, w]), upsample(im, 3, over [h, w], mode = bilinear), upsample(s, 2, over seq, mode = bilinear), "
    "upsample(s, 2, over seq), upsample(transpose(im, c, w), 2, over [w, h, c], mode = bilinear)",
]


@pytest.mark.parametrize("body", ONNX_CASES)
def test_torch_matches_onnxruntime_at_two_sizes(body, tmp_path):
    import onnxruntime as ort

    src = tmp_path / "m.nn"
    src.write_text(HEAD + "    " + body + "\n}\n", encoding="utf-8")
    spec = nncircuit.load(str(src))
    module = spec.module(seed=0).eval()
    nncircuit.export_onnx(str(src), str(tmp_path / "m.onnx"), state_dict=module.state_dict())
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for sizes in (SIZES, {"b": 2, "seq": 11}):
        xs = _inputs(spec, sizes, seed=sizes["seq"])
        want = _outputs(module, xs)
        got = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), xs)})
        assert len(got) == len(want)
        for w, o in zip(want, got):
            assert w.shape == o.shape, (sizes, w.shape, o.shape)
            np.testing.assert_allclose(o, w.numpy(), rtol=1e-5, atol=1e-5)


def test_roll_and_shift_of_an_empty_run_time_axis_in_onnxruntime(tmp_path):
    """A run-time axis of length 0: torch rolls and shifts nothing; ONNX's roll took the shift
    modulo the length, a division by zero in onnxruntime (the Mamba mixer at length 0)."""
    import onnxruntime as ort

    src = tmp_path / "m.nn"
    src.write_text(HEAD + "    " + ONNX_CASES[2] + ", " + ONNX_CASES[3][4:] + "\n}\n", encoding="utf-8")
    spec = nncircuit.load(str(src))
    module = spec.module(seed=0).eval()
    nncircuit.export_onnx(str(src), str(tmp_path / "m.onnx"), state_dict=module.state_dict())
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    xs = _inputs(spec, {"b": 2, "seq": 0}, seed=0)
    want = _outputs(module, xs)
    got = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), xs)})
    assert [tuple(w.shape) for w in want] == [o.shape for o in got]
    assert any(0 in o.shape for o in got)
    for w, o in zip(want, got):
        np.testing.assert_array_equal(o, w.numpy())


# ---- positioned errors ----------------------------------------------------------------------

ERRORS = [
    ("out x[c = 5:3]", "slice c = 5:3 of axis 'c' of size 8 is empty"),
    ("out x[q = 1:2]", "has no axis 'q'"),
    ("out x[c = 0.5:]", "the start of the slice of 'c' must be an integer"),
    ("out s[seq = 3:3]", "slice seq = 3:3 of axis 'seq' is empty"),
    ("out x[c = x:]", "a slice's ends are numbers, found a tensor"),
    ("p, q = split(x, over c, (2, 3))\n    out p", "the sizes 2, 3 add up to 5, but axis 'c' has size 8"),
    ("p, q = split(s, over seq, (2, 3))\n    out p", "split needs a fixed size for axis 'seq'"),
    ("out split(x, over c)", "split needs the sizes of its parts"),
    ("u, v, w = chunk(x, 3, over c)\n    out u", "axis 'c' of size 8 does not divide into 3 equal chunks"),
    ("out chunk(x, over c)", "chunk needs the number of chunks as one number"),
    ("out roll(x, over n)", "roll needs the shift as one number"),
    ("out roll(x, 1, over [c, n])", "roll acts on exactly one axis"),
    ("out shift(x, 1.5, over n)", "the shift must be an integer, found 1.5"),
    ("out shift(x, 1, over n, fill = \"a\")", "shift: fill must be a number"),
    ("out reverse(x, over q)", "reverse expects an axis 'q'"),
    ("out cumsum(x > 0, over n)", "cumsum needs a tensor of numbers"),
    ("out stack(x, over k)", "stack needs at least two tensors"),
    ("out stack(x, s, over k)", "stack: the inputs must have the same axes"),
    ("out stack(x, x, over c)", "the new axis 'c' already exists"),
    ("out stack(x, x, over k: 3)", "the new axis 'k' has size 3 but 2 tensors are stacked"),
    ("out flatten(s, [b, seq] -> m)", "cannot merge two run-time sized axes"),
    ("out Linear(x, relu(x) -> e: 4)", "Linear takes axis names on the left of '->', found an expression"),
    ("out GroupNorm(im, 3, over c)", "GroupNorm: 3 groups do not divide the channel axis 'c' of size 8"),
    ("out GroupNorm(im, over c)", "GroupNorm needs its number of groups"),
    ("out GroupNorm(s, 2, over seq)", "GroupNorm needs a fixed size for axis 'seq'"),
    ("out InstanceNorm(im, over [h, w], affine = true)", "affine = true needs the channel axis"),
    ("out InstanceNorm(im, over [h, w], channel = h)", "the channel axis 'h' is also a spatial axis"),
    ("out LayerNorm(s, over seq)", "LayerNorm over the run-time axis 'seq' (seq) has no fixed size for its weights"),
    ("out upsample(im, 0, over h)", "upsample: the scale must be at least 1, found 0"),
    ("out upsample(im, 2, over h, mode = cubic)", "upsample: mode must be nearest or bilinear, found 'cubic'"),
    ("out upsample(im, 2, over [b, c, h, w])", "upsample acts on one to three axes, found 4"),
]


@pytest.mark.parametrize("body, message", ERRORS)
def test_positioned_errors(body, message):
    with pytest.raises(NNError) as info:
        _spec(body)
    err = info.value
    assert message in str(err), str(err)
    assert err.span is not None and err.span.line == 3 and err.span.col > 1, err.span
    text = err.render()
    assert "^" in text


# ---- generated code under other hyperparameters ---------------------------------------------

HYPER = ("p, q = split(x, over c, (a, c - a))\n    u, v = chunk(s, 2, over c)\n"
         "    out x[c = a:c - 1], p, q, u, v, roll(x, a, over n), shift(s, a, over seq), stack(x, relu(x), over k), "
         "flatten(x, [n, c] -> m), GroupNorm(im, g, over c), InstanceNorm(im, over [h, w], affine = true, channel = c), "
         "upsample(im, a, over [h, w], mode = bilinear), x[c = -a:], reverse(cumsum(x, over c), over n), "
         "cumprod(tanh(s), over seq), einsum(x, relu(x) * 2 -> [b, c]), LayerNorm(s, over seq, affine = false)")


def test_generated_class_keeps_hyperparameters(tmp_path):
    spec = _spec(HYPER)
    path = tmp_path / "gen.py"
    path.write_text(spec.torch_source(), encoding="utf-8")
    mod_spec = importlib.util.spec_from_file_location("gen_surgery", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    built = 0
    for hp in ({"c": 12, "a": 3, "g": 6}, {"c": 4, "a": 1, "g": 2}, {"c": 16, "a": 5, "g": 8}):
        ref_spec = _spec(HYPER, **hp)
        ref = ref_spec.module(seed=0).eval()
        mine = mod.M(**hp).eval()
        mine.load_state_dict(ref.state_dict())
        xs = _inputs(ref_spec)
        for w, o in zip(_outputs(ref, xs), _outputs(mine, xs)):
            assert w.shape == o.shape, hp
            torch.testing.assert_close(o, w)
        built += 1
    assert built == 3
    # what the checker refuses the class refuses with the same sentence
    for hp in ({"c": 6, "g": 4}, {"c": 2, "a": 2}):
        with pytest.raises(NNError) as caught:
            _spec(HYPER, **hp)
        with pytest.raises(ValueError) as refused:
            mod.M(**hp)
        assert str(refused.value) == caught.value.message, hp


def test_ir_text_and_fmt_round_trip():
    from nncircuit.backends.torch.codegen import generate
    from nncircuit.editor.fmt import format_text
    from nncircuit.ir.parser import parse_ir
    from nncircuit.ir.printer import print_ir

    text = HEAD + "    " + HYPER + "\n    e = einsum(x, relu(x) -> [b, c])\n}\n"
    g = nncircuit.load("t.nn", text=text).graph
    ir = print_ir(g)
    assert print_ir(parse_ir(ir)) == ir
    assert generate(parse_ir(ir), "m.nn") == generate(g, "m.nn")
    formatted = format_text(text)
    assert "x[c = a:c - 1]" in formatted and "x[c = -a:]" in formatted and "einsum(x, relu(x) -> [b, c])" in formatted
    assert format_text(formatted) == formatted


def test_bombs_are_refused_before_they_allocate():
    text = "model M() {\n    in x: [c: 4294967296, h: 4]\n    out %s\n}\n"
    for body, message in (("chunk(x, 4294967296, over c)", "more than the limit of 1024"),
                          ("upsample(x, 4294967296, over h)", "longer than the limit")):
        with pytest.raises(NNError) as info:
            nncircuit.load("t.nn", text=text % body)
        assert message in str(info.value) and info.value.span.line == 3

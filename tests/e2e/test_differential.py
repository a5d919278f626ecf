"""Differential tests on random well-typed specs (tests/specgen.py): every generated spec
must check, with the output types the generator predicts, and then agree with itself

- the torch module built in memory vs the generated source written to a file and imported
  as a fresh module (same weights, bit-identical outputs);
- the torch module vs onnxruntime running the ONNX export of the same weights;
- the torch module at -O0 vs -O2 (the optimised module loads the -O0 state_dict).

A disagreement fails and prints the spec (and the seed that regenerates it)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import nncircuit
import specgen

SEEDS = range(int(os.environ.get("NNC_DIFF_SEEDS", "150")))


def _load(gs: specgen.GenSpec, path: str | None = None, **kw):
    if path is None:
        return nncircuit.load("generated.nn", text=gs.text, **gs.params, **kw)
    return nncircuit.load(path, **gs.params, **kw)


def _run(module, gs: specgen.GenSpec):
    with torch.no_grad():
        out = module.eval()(*specgen.make_inputs(gs))
    return out if isinstance(out, tuple) else (out,)


def _fail(gs: specgen.GenSpec, what: str):
    pytest.fail(f"{what}\n--- the generated spec ---\n{gs.describe()}", pytrace=False)


def _same(gs: specgen.GenSpec, what: str, got, want, *, exact=False, reference=None):
    """Fail unless `got` equals `want`. `reference`: the torch module `want` came from; a
    disagreement on a spec whose float32 arithmetic overflows (specgen.float32_overflow) is
    skipped, not failed: its results depend on the order of evaluation."""
    if len(got) != len(want):
        _fail(gs, f"{what}: {len(got)} outputs, expected {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = torch.as_tensor(g), torch.as_tensor(w)
        if tuple(g.shape) != tuple(w.shape) or g.dtype != w.dtype:
            _fail(gs, f"{what}: output {i} is {g.dtype}{list(g.shape)}, expected {w.dtype}{list(w.shape)}")
        if exact or not w.is_floating_point():
            ok = torch.equal(g, w)
        else:
            scale = float(w.abs().max()) if w.numel() and torch.isfinite(w).all() else 1.0
            # float32 sums in another order (another engine, fused ops) differ by rounding,
            # which cancellation makes large next to small results: tolerate it, not more
            ok = torch.allclose(g, w, rtol=1e-3, atol=1e-4 * max(1.0, scale), equal_nan=True)
        if not ok and reference is not None:
            why = specgen.float32_overflow(reference, specgen.make_inputs(gs))
            if why:
                pytest.skip(f"{what}: not comparable, the spec overflows float32: {why}")
        if not ok:
            diff = (g.double() - w.double()).abs().nan_to_num(0).max().item()
            _fail(gs, f"{what}: output {i} differs (max abs difference {diff:.3g})")


def _checked(seed: int):
    """The generated spec, loaded, after checking its output types."""
    gs = specgen.generate(seed, size=4 + seed % 11)
    try:
        spec = _load(gs)
    except nncircuit.NNError as e:
        _fail(gs, f"a generated spec does not check:\n{e}")
    got = [(n, t.names, tuple(a.size.value if a.size.is_static else None for a in t.axes)) for n, t in spec.outputs()]
    want = [(n, names, shape) for n, names, shape in gs.outputs]
    for (gn, gnames, gsizes), (wn, wnames, wshape) in zip(got, want):
        if (gn, gnames) != (wn, wnames) or any(s is not None and s != w for s, w in zip(gsizes, wshape)):
            _fail(gs, f"the compiler's output types {got} differ from the generator's {want}")
    return gs, spec


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_file_matches_memory(seed, tmp_path):
    """The in-memory module and the generated file imported as a module are one model."""
    gs, spec = _checked(seed)
    source = spec.torch_source()
    if _load(gs).torch_source() != source:
        _fail(gs, "two compilations of one spec give different source")
    try:
        mem = spec.module(seed=seed)
        out = _run(mem, gs)
    except Exception as e:  # noqa: BLE001 - any failure of generated code is the finding
        _fail(gs, f"the generated module fails: {type(e).__name__}: {e}")
    shapes = [shape for _, _, shape in gs.outputs]
    if [tuple(o.shape) for o in out] != shapes:
        _fail(gs, f"run-time shapes {[tuple(o.shape) for o in out]}, the types say {shapes}")

    path = tmp_path / "generated_model.py"
    path.write_text(source, encoding="utf-8")
    modspec = importlib.util.spec_from_file_location(f"nnc_generated_{seed}", path)
    module = importlib.util.module_from_spec(modspec)
    modspec.loader.exec_module(module)
    cls = getattr(module, spec.graph.name)
    kwargs = {nncircuit.names.pyname(h.name): h.value.value for h in spec.graph.hyper}
    torch.manual_seed(seed)
    from_file = cls(**kwargs)
    sd_mem, sd_file = mem.state_dict(), from_file.state_dict()
    if list(sd_mem) != list(sd_file) or not all(torch.equal(sd_mem[k], sd_file[k]) for k in sd_mem):
        _fail(gs, "the imported file's state_dict differs from the in-memory module's")
    _same(gs, "imported file vs in-memory module", _run(from_file, gs), out, exact=True)


def _onnx_export():
    try:
        from nncircuit.backends.onnx import export as onnx_export
    except ImportError:
        return None
    return onnx_export


@pytest.mark.parametrize("seed", SEEDS)
def test_torch_matches_onnxruntime(seed, tmp_path):
    if _onnx_export() is None:
        pytest.skip("the ONNX backend is not there yet")
    import onnxruntime as ort

    gs, spec = _checked(seed)
    module = spec.module(seed=seed)
    want = _run(module, gs)
    src = tmp_path / "generated.nn"
    src.write_text(gs.text, encoding="utf-8")
    out = tmp_path / "generated.onnx"
    try:
        nncircuit.export_onnx(str(src), str(out), state_dict=module.state_dict(), **gs.params)
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        _fail(gs, f"ONNX export or loading fails: {type(e).__name__}: {e}")
    names = [i.name for i in session.get_inputs()]
    expected_names = [n for n, _ in spec.inputs()]
    if names != expected_names:
        _fail(gs, f"ONNX inputs {names}, the spec's {expected_names}")
    feeds = {n: x.numpy() for n, x in zip(names, specgen.make_inputs(gs))}
    got = session.run(None, feeds)
    _same(gs, "onnxruntime vs torch", [torch.from_numpy(g) for g in got], want, reference=module)


def _optimizes() -> bool:
    try:
        nncircuit.load("probe.nn", text="model M() { in x: [d: 2]\n out relu(x) }", opt=2)
    except (ImportError, TypeError, nncircuit.NNError):
        return False
    return True


@pytest.mark.parametrize("seed", SEEDS)
def test_O0_matches_O2(seed):
    if not _optimizes():
        pytest.skip("the optimiser (opt=2) is not there yet")
    gs, spec = _checked(seed)
    base = spec.module(seed=seed)
    want = _run(base, gs)
    try:
        opt = _load(gs, opt=2)
        module = opt.module(seed=seed)
        module.load_state_dict(base.state_dict())
        got = _run(module, gs)
    except Exception as e:  # noqa: BLE001
        _fail(gs, f"the -O2 module fails: {type(e).__name__}: {e}")
    if [(n, str(t)) for n, t in opt.outputs()] != [(n, str(t)) for n, t in spec.outputs()]:
        _fail(gs, f"-O2 changes the output types: {opt.outputs()} vs {spec.outputs()}")
    _same(gs, "-O2 vs -O0", got, want, reference=base)


@pytest.mark.parametrize("seed", range(20))
def test_generator_is_deterministic(seed):
    assert specgen.generate(seed).text == specgen.generate(seed).text


# ---- the bugs differential testing found, each pinned by a small spec ----------------------


def test_generator_types_a_masked_fill_that_ignores_its_second_value():
    """The long fuzz (seed 2027) found the generator typing `maximum(where(x != -inf, x,
    -inf), -30)` with the axes of a value the condition never read; pad_to over that axis then
    failed to check. The generator's own model of the types is what is tested here."""
    text = (
        "model Net() {\n    in  x: [batch, s: ~4, g: 1, d: 5]\n    t1 = x rename batch -> v\n"
        "    t2 = maximum(where(x != -inf, x, -inf), -30)\n    out pad_to(t1, t2, over [v])\n}\n"
    )
    with pytest.raises(nncircuit.NNError, match="has no axis 'v'"):
        nncircuit.load("generated.nn", text=text)  # the compiler was right
    for seed in range(2027000590, 2027000600):  # the generator now types it as the compiler does
        for size in range(4, 15):
            _load(specgen.generate(seed, size=size))


def test_generator_lays_out_a_selection_as_the_language_does():
    """The long fuzz (seed 2028) found the generator laying out `where(m, 0.5, b) * a`, with
    a and b of the same axes in another order, as a's layout; the language lays out
    where(m, x, y) as its values (b) and a product as its left operand."""
    for seed in range(2028005280, 2028005290):
        for size in range(4, 15):
            gs = specgen.generate(seed, size=size)
            spec = _load(gs)
            assert [(n, t.names) for n, t in spec.outputs()] == [(n, names) for n, names, _ in gs.outputs], gs.text


def _module_and_source(text: str, **params):
    spec = nncircuit.load("regression.nn", text=text, **params)
    return spec, spec.module(seed=0).eval()


def test_builtins_in_hyperparameter_code_stay_builtins():
    """`abs`, `min`, `max` of hyperparameters in forward were emitted as `self.abs(...)`."""
    spec, m = _module_and_source("model M(k = 3) { in x: [d: 4]\n out x * max(k, 2) + abs(k) - min(k, 1) }")
    x = torch.randn(4)
    assert torch.allclose(m(x), x * 3 + 3 - 1)


def test_scalar_expressions_keep_their_parentheses():
    """`x * (2 ** 2 - 2)` was emitted as `x * 2 ** 2 - 2`."""
    _, m = _module_and_source("model M(k = 3) { in x: [d: 4]\n out x * (2 ** 2 - 2) + x / (k + 1) - (k - 1) * x }")
    x = torch.randn(4)
    assert torch.allclose(m(x), x * 2 + x / 4 - 2 * x)


def test_lifted_broadcast_adds_missing_axes():
    """Inside a lifted block, `[g, h] + [h]` and `[h] + rank-0` were left to broadcasting
    from the left, which pairs the lift axis with `g` (wrong when the sizes are equal)."""
    text = """
block B() {
    in a: [g: 3, h: 2], b: [h: 2]
    out (a + b) + mean(b, over h)
}
model M() {
    in a: [l: 3, g: 3, h: 2], b: [l: 3, h: 2]
    out B()(a, b)
}
"""
    _, m = _module_and_source(text)
    a, b = torch.randn(3, 3, 2), torch.randn(3, 2)
    want = a + b[:, None, :] + b.mean(-1)[:, None, None]
    assert torch.allclose(m(a, b), want)


def test_block_outputs_that_ignore_the_inputs_get_the_lift():
    """A block returning positions or a Param returned it without the lift axes."""
    text = """
block B() {
    in x: [d: 3]
    out cast(positions(d), to = "float32"), Param([d: 3], init = "ones")
}
model M() {
    in x: [batch, s: 5, d: 3]
    p, q = B()(x)
    out p + q
}
"""
    _, m = _module_and_source(text)
    y = m(torch.randn(2, 5, 3))
    assert y.shape == (2, 5, 3) and torch.equal(y[1, 4], torch.arange(3.0) + 1)


def test_nested_repeat_updates_an_outer_value():
    """A repeat whose body only holds another repeat was 'a repeat that updates nothing'."""
    _, m = _module_and_source("model M() { in x: [d: 2]\n repeat 3 { repeat 2 { x = x * 2 } }\n out x }")
    x = torch.randn(2)
    assert torch.allclose(m(x), x * 64)


def test_a_module_named_like_a_hyperparameter():
    """`repeat layers shared` is `self.layers`, which hid the hyperparameter `layers`."""
    text = "model M(layers = 3) { in x: [d: 2]\n repeat layers shared { x = x + 1 }\n out x * layers }"
    _, m = _module_and_source(text)
    x = torch.randn(2)
    assert torch.allclose(m(x), (x + 3) * 3)


def test_lowering_errors_point_at_the_spec():
    """A valid spec the torch backend cannot lower gets a positioned diagnostic."""
    text = ('model M() { in x: [batch, d: 2], y: [batch, s: ~4]\n repeat 2 {\n'
            '  x = relu(x) + mean(cast(positions(s), to = "float32"), over s) }\n out x }\n')
    spec = nncircuit.load("regression.nn", text=text)
    try:
        spec.torch_source()
    except nncircuit.NNError as e:
        assert e.span is not None and e.span.line == 3


def test_instances_whose_sizes_the_class_cannot_express():
    """One class per block definition: a size computed through a pooling is an expression
    of the hyperparameters, so one class serves instances with other values."""
    text = """
block B(k) {
    in  x: [h: k]
    out maxpool(x, kernel = 2, stride = 2, padding = 1, over h) |> Linear(h -> e: 2)
}
model M() {
    in  x: [batch, h: 4], y: [batch, h: 3]
    out B(4)(x), B(3)(y)
}
"""
    spec, m = _module_and_source(text)
    a, b = m(torch.randn(2, 4), torch.randn(2, 3))
    assert a.shape == (2, 2) and b.shape == (2, 2)
    assert spec.torch_source().count("nn.Linear(") == 1
    assert "nn.Linear(k // 2 + 1, 2)" in spec.torch_source()


def test_lift_of_a_repeat_that_never_reads_the_inputs():
    """A block output carried by a repeat from positions has no lift prefix either, though
    the repeat also reads an input."""
    text = """
block B() {
    in  x: [z]
    p = cast(positions(z), to = "float32")
    repeat 2 shared {
        q = x * 2
        p = p + 1
    }
    out p
}
model M() {
    in  x: [batch, z: ~5]
    out B()(x)
}
"""
    _, m = _module_and_source(text)
    y = m(torch.randn(3, 5))
    assert y.shape == (3, 5) and torch.equal(y[2], torch.arange(5.0) + 2)


def test_lift_of_a_value_padded_to_a_lifted_one():
    """pad_to reads only the shape of its second input: padding positions to the size of
    an input leaves them without the lift prefix."""
    text = """
block B() {
    in  x: [c]
    p = cast(positions(c), to = "float32")
    out pad_to(p, x, over [c]) - p
}
model M() {
    in  x: [batch, c: ~7]
    out B()(x)
}
"""
    _, m = _module_and_source(text)
    assert m(torch.randn(2, 7)).shape == (2, 7)


def test_generator_rounds_only_model_inputs():
    """The 30-minute fuzz (seed 2029) found floor(t * 4) / 4 off by 0.25 and sign(...) off by
    1 between torch and onnxruntime: steps of computed values turn last-bit differences of two
    correct backends (a sigmoid one of them underflows to 0) into whole steps. The generator
    applies them to model inputs only, whose numbers both backends share exactly."""
    steps = ("floor(", "ceil(", "round(", "sign(", "|> floor", "|> ceil", "|> round", "|> sign")
    seen = 0
    for seed in range(200):
        gs = specgen.generate(seed, size=4 + seed % 11)
        inputs = {name for name, *_ in gs.inputs}
        for line in gs.text.splitlines():
            if any(s in line for s in steps):
                seen += 1
                operand = line.split("=", 1)[1].strip()
                for s in steps:
                    operand = operand.replace(s, "\0")
                assert any(f"\0{x} " in operand or f"\0{x})" in operand or operand.startswith(f"{x} \0")
                           for x in inputs), line
    assert seen > 10


def test_a_spec_that_overflows_float32_is_told_apart_from_a_disagreement():
    """The 24-minute fuzz (seed 2030) found torch and onnxruntime disagreeing on a spec that
    squares its state k times in a shared repeat: float32 overflowed, and a LayerNorm over a
    row holding inf gave NaN in torch but finite values in onnxruntime (which summed in
    another order). Such a spec is not comparable; the test must see that, and must not take
    a NaN the spec makes on purpose from -inf (0 x -inf) for an overflow."""
    grows = (
        "model Net() {\n    in  x: [batch, d: 3]\n    repeat 12 shared {\n"
        "        x = x + einsum(x, x -> [d, batch])\n    }\n    out LayerNorm(x, over d) - x\n}\n"
    )
    gs = specgen.GenSpec(text=grows, model="Net", params={}, inputs=(("x", (5, 3), "float32", 0),), outputs=())
    module = nncircuit.load("grows.nn", text=grows).module(seed=0)
    assert "leaves float32's range" in specgen.float32_overflow(module, specgen.make_inputs(gs))
    masked = (
        "model Net() {\n    in  x: [batch, d: 3]\n    m = where(x > 0, x, -inf)\n"
        "    out m * 0.0 + x\n}\n"
    )
    module = nncircuit.load("masked.nn", text=masked).module(seed=0)
    out = module.eval()(*specgen.make_inputs(gs))
    assert torch.isnan(out).any()  # 0 x -inf: the kind of NaN the comparison must still see
    assert specgen.float32_overflow(module, specgen.make_inputs(gs)) is None


def test_a_shared_block_called_on_a_value_without_the_callers_lifted_axes():
    """The 30-minute fuzz (seed 2031) found a block class shared by a call lifted over batch
    and a call, inside another lifted block, on a value made from `positions` (no batch
    axis at run time): the class took every use to have the batch axis in front and called
    nn.BatchNorm1d on a 1-D tensor. A class now takes the fast (N, C) path only when every
    use's inputs carry the same lifted axes."""
    text = (
        "block Norm(k) {\n    in  x: [w: k]\n    out BatchNorm(x, w)\n}\n\n"
        "block Outer(k) {\n    in  x: [w: k]\n    p = cast(positions(w), to = \"float32\")\n"
        "    out Norm(k)(p) + x\n}\n\n"
        "model Net() {\n    in  x: [batch, w: 4]\n    out Norm(4)(x) + Outer(4)(x)\n}\n"
    )
    x = torch.randn(3, 4)
    scale = 1 / (1 + 1e-5) ** 0.5  # BatchNorm in eval: running mean 0, variance 1
    want = x * scale + (torch.arange(4.0) * scale + x)
    spec = nncircuit.load("shared.nn", text=text)
    for module in (spec.module(seed=0), nncircuit.load("shared.nn", text=text, opt=2).module(seed=0)):
        with torch.no_grad():
            assert torch.allclose(module.eval()(x), want, atol=1e-6)

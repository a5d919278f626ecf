"""The optimizer: each pass on textual IR in / textual IR out; the pass manager (pipelines
by name and level, verification after every pass, --print-after-all); and, numerically,
-O2 against -O0 for every model in specs/ (same state_dict, eval mode, float32), in torch
and through ONNX."""

import io
import os
import re
import types

import pytest
import torch
from conftest import SMALL, SPECS
from helpers import random_inputs
from hypothesis import HealthCheck, given, settings

import nncircuit
import specgen
from nncircuit import cli
from nncircuit.backends.structure import class_name
from nncircuit.backends.torch.codegen import generate
from nncircuit.errors import InternalError
from nncircuit.ir.graph import Graph
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import print_ir
from nncircuit.passes import LEVELS, PASSES, Pass, PassManager, PipelineError, optimize, pipeline

# (name, pipeline, IR in, IR out): every case was checked by hand against what the pass
# should do; the text after the pass is compared line by line.
CASES = [
    (
        "identities",
        "canonicalize",
        """\
model @M = M(k = 1@k) {
  in %x
  %x = input x : [seq, d: 8]
  %a = mul(%x, scalar = 1, side = right) : [seq, d: 8]
  %b = add(%a, scalar = 0, side = left) : [seq, d: 8]
  %c = neg(%b) : [seq, d: 8]
  %e = neg(%c) : [seq, d: 8]
  %f = cast(%e, to = float32) : [seq, d: 8]
  %g = pow(%f, scalar = 1, side = right) : [seq, d: 8]
  %h = dropout(%g, p = 0.0) : [seq, d: 8]
  %i = mul(%h, scalar = 1@k, side = right) : [seq, d: 8]
  out y = %i
}
""",
        """\
model @M = M(k = 1@k) {
  in %x
  %x = input x : [seq, d: 8]
  %i = mul(%x, scalar = 1@k, side = right) : [seq, d: 8]
  out y = %i
}
""",
    ),
    (
        "fold",
        "canonicalize",
        """\
model @M = M(dh = 16@dh) {
  in %x
  %x = input x : [seq, d: 8]
  %a = div(%x, scalar = 4.0@"sqrt(dh)", side = right) : [seq, d: 8]
  %b = mul(%a, scalar = 2, side = right) : [seq, d: 8]
  %c = add(%b, scalar = 1, side = right) : [seq, d: 8]
  %e = sub(%c, scalar = 3, side = right) : [seq, d: 8]
  %f = sub(%e, scalar = 1, side = left) : [seq, d: 8]
  out y = %f
}
""",
        """\
model @M = M(dh = 16@dh) {
  in %x
  %x = input x : [seq, d: 8]
  %b_1 = mul(%x, scalar = 0.5@"2 / sqrt(dh)", side = right) : [seq, d: 8]
  %e_1 = add(%b_1, scalar = -2, side = right) : [seq, d: 8]
  %f = sub(%e_1, scalar = 1, side = left) : [seq, d: 8]
  out y = %f
}
""",
    ),
    (
        "layout",
        "canonicalize",
        """\
model @M = M() {
  in %x, %z
  %x = input x : [seq, d: 8]
  %z = input z : [seq, d: 8@d]
  %a = rename(%x, new = key, old = seq) : [key: seq, d: 8]
  %b = rename(%a, new = pos, old = key) : [pos: seq, d: 8]
  %c = rename(%x, new = key, old = seq) : [key: seq, d: 8]
  %e = rename(%c, new = seq, old = key) : [seq, d: 8]
  %t = transpose(%e, seq, d) : [d: 8, seq]
  %u = transpose(%t, d, seq) : [seq, d: 8]
  %v = unflatten(%u, [d] -> [h: 2, w: 4]) : [seq, h: 2@2, w: 4@4]
  %w = flatten(%v, [h, w] -> [d]) : [seq, d: 8]
  %p = unflatten(%z, [d] -> [h: 2, w: 4]) : [seq, h: 2@2, w: 4@4]
  %q = flatten(%p, [h, w] -> [d]) : [seq, d: 8]
  %r = transpose(%q, seq, d) : [d: 8, seq]
  out b = %b, w = %w, r = %r
}
""",
        """\
model @M = M() {
  in %x, %z
  %x = input x : [seq, d: 8]
  %z = input z : [seq, d: 8@d]
  %p = unflatten(%z, [d] -> [h: 2, w: 4]) : [seq, h: 2@2, w: 4@4]
  %q = flatten(%p, [h, w] -> [d]) : [seq, d: 8]
  %r = transpose(%q, seq, d) : [d: 8, seq]
  %b_1 = rename(%x, new = pos, old = seq) : [pos: seq, d: 8]
  out b = %b_1, w = %x, r = %r
}
""",
    ),
    (
        "cse",
        "cse",
        """\
model @M = M() {
  in %x
  %x = input x : [seq, d: 8]
  %a = relu(%x) : [seq, d: 8]
  %b = relu(%x) : [seq, d: 8]
  %l = Linear(%a, [d] -> [e: 4]) : [seq, e: 4@4] module l
  %l_1 = Linear(%b, [d] -> [e: 4]) : [seq, e: 4@4] module l
  %m = Linear(%b, [d] -> [e: 4]) : [seq, e: 4@4] module m
  %p = dropout(%x, p = 0.1) : [seq, d: 8]
  %q = dropout(%x, p = 0.1) : [seq, d: 8]
  out l = %l, l1 = %l_1, m = %m, p = %p, q = %q
}
""",
        """\
model @M = M() {
  in %x
  %x = input x : [seq, d: 8]
  %a = relu(%x) : [seq, d: 8]
  %l = Linear(%a, [d] -> [e: 4]) : [seq, e: 4@4] module l
  %m = Linear(%a, [d] -> [e: 4]) : [seq, e: 4@4] module m
  %p = dropout(%x, p = 0.1) : [seq, d: 8]
  %q = dropout(%x, p = 0.1) : [seq, d: 8]
  out l = %l, l1 = %l, m = %m, p = %p, q = %q
}
""",
    ),
    (
        "dce",
        "dce",
        """\
model @M = M() {
  in %x
  %x = input x : [seq, d: 8]
  %a = relu(%x) : [seq, d: 8]
  %b = sigmoid(%a) : [seq, d: 8]
  %l = Linear(%x, [d] -> [e: 4]) : [seq, e: 4@4] module l
  %m = Linear(%x, [d] -> [e: 4]) : [seq, e: 4@4] module m
  %m_1 = Linear(%a, [d] -> [e: 4]) : [seq, e: 4@4] module m
  %n = Linear(%x, [d] -> [e: 4], bias = false, tied = l) : [seq, e: 4@4] module n
  %bn = BatchNorm(%x, d) : [seq, d: 8] module bn
  %bn_1 = BatchNorm(%x, d) : [seq, d: 8] module bn
  out y = %m, z = %bn
}
""",
        """\
model @M = M() {
  in %x
  %x = input x : [seq, d: 8]
  %l = Linear(%x, [d] -> [e: 4]) : [seq, e: 4@4] module l
  %m = Linear(%x, [d] -> [e: 4]) : [seq, e: 4@4] module m
  %bn = BatchNorm(%x, d) : [seq, d: 8] module bn
  %bn_1 = BatchNorm(%x, d) : [seq, d: 8] module bn
  out y = %m, z = %bn
}
""",
    ),
    (
        "fuse-linear",
        "fuse-linear",
        """\
model @M = M(d = 8@d, heads = 2@heads) {
  in %x, %y
  %x = input x : [batch, seq, d: 8@d]
  %y = input y : [batch, c: 3, d: 8@d]
  %q = Linear(%x, [d: 8@d] -> [heads: 2@heads, dh: 4]) : [batch, seq, heads: 2@heads, dh: 4@4] module q
  %k = Linear(%x, [d: 8@d] -> [heads: 2@heads, dh: 4]) : [batch, seq, heads: 2@heads, dh: 4@4] module k
  %v = Linear(%x, [d: 8@d] -> [e: 8]) : [batch, seq, e: 8@8] module v
  %n = Linear(%x, [d: 8@d] -> [e: 8], bias = false) : [batch, seq, e: 8@8] module n
  %s = Linear(%y, [c] -> [t: 5]) : [batch, t: 5@5, d: 8@d] module s
  %t = Linear(%y, [c] -> [u: 2]) : [batch, u: 2@2, d: 8@d] module t
  %o = Linear(%q, [heads, dh] -> [d: 8@d]) : [batch, seq, d: 8@d] module o
  out q = %o, k = %k, v = %v, n = %n, s = %s, t = %t
}
""",
        """\
model @M = M(d = 8@d, heads = 2@heads) {
  in %x, %y
  %x = input x : [batch, seq, d: 8@d]
  %y = input y : [batch, c: 3, d: 8@d]
  %n = Linear(%x, [d: 8@d] -> [e: 8], bias = false) : [batch, seq, e: 8@8] module n
  %s = Linear(%y, [c] -> [t: 5]) : [batch, t: 5@5, d: 8@d] module s
  %t = Linear(%y, [c] -> [u: 2]) : [batch, u: 2@2, d: 8@d] module t
  %q_k_v = LinearGroup(%x, members = (q, k, v), parts = (Linear([d: 8@d] -> [heads: 2@heads, dh: 4]), Linear([d: 8@d] -> [heads: 2@heads, dh: 4]), Linear([d: 8@d] -> [e: 8]))) : [batch, seq, heads: 2@heads, dh: 4@4], [batch, seq, heads: 2@heads, dh: 4@4], [batch, seq, e: 8@8] module q
  %o = Linear(%q_k_v.0, [heads, dh] -> [d: 8@d]) : [batch, seq, d: 8@d] module o
  out q = %o, k = %q_k_v.1, v = %q_k_v.2, n = %n, s = %s, t = %t
}
""",
    ),
    (
        "fuse-attention",
        "fuse-attention",
        """\
block @Attention = Attention(dh = 16@dh) {
  in %q, %k, %v
  %q = input q : [seq, dh: 16@dh]
  %k = input k : [key, dh: 16@dh]
  %v = input v : [key, dv]
  %einsum = einsum(%q, %k -> [seq, key]) : [seq, key]
  %div = div(%einsum, scalar = 4.0@"sqrt(dh)", side = right) : [seq, key]
  %scores = causal(%div, over [seq, key]) : [seq, key]
  %softmax = softmax(%scores, over [key]) : [seq, key]
  %einsum_1 = einsum(%softmax, %v -> [seq, dv], over [key]) : [seq, dv]
  out out = %einsum_1
}
""",
        """\
block @Attention = Attention(dh = 16@dh) {
  in %q, %k, %v
  %q = input q : [seq, dh: 16@dh]
  %k = input k : [key, dh: 16@dh]
  %v = input v : [key, dv]
  %attention = attention(%q, %k, %v, [dh] -> [dv], over [seq, key], causal = true, scale = 0.25@"1 / sqrt(dh)") : [seq, dv]
  out out = %attention
}
""",
    ),
    (
        "fuse-attention-heads",
        "fuse-attention",
        """\
model @M = M(s = 0.5@s) {
  in %q, %k, %v
  %q = input q : [batch, seq, heads: 2, e: 4]
  %k = input k : [batch, key, heads: 2, e: 4]
  %v = input v : [batch, key, heads: 2, f: 3]
  %w = einsum(%k, %q -> [batch, heads, seq, key]) : [batch, heads: 2, seq, key]
  %ws = mul(%w, scalar = 0.5@s, side = left) : [batch, heads: 2, seq, key]
  %p = softmax(%ws, over [key]) : [batch, heads: 2, seq, key]
  %o = einsum(%v, %p -> [batch, seq, heads, f], over [key]) : [batch, seq, heads: 2, f: 3]
  out o = %o
}
""",
        """\
model @M = M(s = 0.5@s) {
  in %q, %k, %v
  %q = input q : [batch, seq, heads: 2, e: 4]
  %k = input k : [batch, key, heads: 2, e: 4]
  %v = input v : [batch, key, heads: 2, f: 3]
  %attention = attention(%q, %k, %v, [e] -> [f], over [seq, key], causal = false, scale = 0.5@s) : [batch, seq, heads: 2, f: 3]
  out o = %attention
}
""",
    ),
    (
        "fuse-attention-kept",
        "fuse-attention",
        """\
model @M = M() {
  in %q, %k, %v
  %q = input q : [seq, e: 4]
  %k = input k : [key, e: 4]
  %v = input v : [key, f: 3]
  %w = einsum(%q, %k -> [seq, key]) : [seq, key]
  %p = softmax(%w, over [key]) : [seq, key]
  %o = einsum(%p, %v -> [seq, f], over [key]) : [seq, f: 3]
  %o2 = einsum(%p, %v -> [f, seq], over [key]) : [f: 3, seq]
  out o = %o, o2 = %o2
}
""",
        """\
model @M = M() {
  in %q, %k, %v
  %q = input q : [seq, e: 4]
  %k = input k : [key, e: 4]
  %v = input v : [key, f: 3]
  %w = einsum(%q, %k -> [seq, key]) : [seq, key]
  %p = softmax(%w, over [key]) : [seq, key]
  %o = einsum(%p, %v -> [seq, f], over [key]) : [seq, f: 3]
  %o2 = einsum(%p, %v -> [f, seq], over [key]) : [f: 3, seq]
  out o = %o, o2 = %o2
}
""",
    ),
    (
        "einsum-to-matmul",
        "einsum-to-matmul",
        """\
model @M = M() {
  in %a, %b, %c
  %a = input a : [batch, i: 3, k: 4]
  %b = input b : [k: 4, batch, j: 5]
  %c = input c : [k: 4, i: 3]
  %ab = einsum(%a, %b -> [j, batch, i]) : [j: 5, batch, i: 3]
  %ac = einsum(%a, %c -> [batch]) : [batch]
  %abc = einsum(%a, %b, %c -> [batch, j]) : [batch, j: 5]
  out ab = %ab, ac = %ac, abc = %abc
}
""",
        """\
model @M = M() {
  in %a, %b, %c
  %a = input a : [batch, i: 3, k: 4]
  %b = input b : [k: 4, batch, j: 5]
  %c = input c : [k: 4, i: 3]
  %ac = einsum(%a, %c -> [batch]) : [batch]
  %abc = einsum(%a, %b, %c -> [batch, j]) : [batch, j: 5]
  %ab_1 = matmul(%a, %b -> [j, batch, i]) : [j: 5, batch, i: 3]
  out ab = %ab_1, ac = %ac, abc = %abc
}
""",
    ),
]


def _after(passes: str, text: str) -> str:
    g = parse_ir(text)
    assert print_ir(g, locs=False) == "# nncircuit IR\n\n" + text, "the input is not in printed form"
    optimize(g, passes)
    out = print_ir(g, locs=False)
    assert print_ir(parse_ir(out), locs=False) == out
    return out.split("\n\n", 1)[1]


@pytest.mark.parametrize("name, passes, before, after", CASES, ids=[c[0] for c in CASES])
def test_pass_on_textual_ir(name, passes, before, after):
    got = _after(passes, before)
    assert got.splitlines() == after.splitlines()


@pytest.mark.parametrize("name, passes, before, after", CASES, ids=[c[0] for c in CASES])
def test_passes_reach_a_fixed_point(name, passes, before, after):
    assert _after(passes, after) == after


def _module_of(g: Graph):
    """The torch module of a graph (parsed from text), built from its generated source."""
    mod = types.ModuleType("nnc_test_module")
    exec(compile(generate(g, "test.nn"), "<test>", "exec"), mod.__dict__)
    kwargs = {h.name: h.value.value for h in g.hyper}
    return getattr(mod, class_name(g))(**kwargs).eval()


@pytest.mark.parametrize("name", ["fuse-attention-heads", "einsum-to-matmul", "fuse-linear", "fold", "layout"])
def test_rewritten_text_computes_the_same(name):
    _, passes, before, _ = next(c for c in CASES if c[0] == name)
    g0, g1 = parse_ir(before), optimize(parse_ir(before), passes)
    m0, m1 = _module_of(g0), _module_of(g1)
    m1.load_state_dict(m0.state_dict())
    gen = torch.Generator().manual_seed(0)
    sizes = {"batch": 2, "seq": 5, "key": 7}
    args = []
    for i in g0.inputs:
        t = g0.node(i).type
        shape = [a.size.value if a.size.is_static else sizes[a.name] for a in t.axes]
        args.append(torch.randn(*shape, generator=gen))
    with torch.no_grad():
        want, got = m0(*args), m1(*args)
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    for w, o in zip(want, got):
        torch.testing.assert_close(o, w, rtol=1e-5, atol=1e-5)


# ---- the pass manager ----------------------------------------------------------------------


def test_pipelines_by_name_and_level():
    assert [p.name for p in pipeline("canonicalize, cse,dce")] == ["canonicalize", "cse", "dce"]
    assert pipeline(opt=0) == [] and pipeline() == []
    assert [p.name for p in pipeline(opt=1)] == ["canonicalize", "cse", "dce"]
    o2 = [p.name for p in pipeline(opt=2)]
    assert o2[:3] == ["canonicalize", "cse", "dce"]
    assert {"fuse-attention", "fuse-linear", "einsum-to-matmul"} <= set(o2)
    assert set(o2) == set(PASSES)  # -O2 runs every pass there is
    assert set(LEVELS) == {0, 1, 2}


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(passes="cse,fuse-atention"), "unknown pass 'fuse-atention' (did you mean 'fuse-attention'?)"),
        (dict(opt=3), "unknown optimisation level 3"),
        (dict(passes="cse", opt=2), "either a pass list or an optimisation level"),
    ],
)
def test_pipeline_mistakes_are_errors(kw, message):
    with pytest.raises(PipelineError, match=re.escape(message)):
        pipeline(**kw)


class _Breaks(Pass):
    """A pass with a bug: it gives a node a stale type."""

    name = "breaks"

    def run(self, graph):
        for n in graph.nodes():
            if n.op == "relu":
                n.types = (n.type.with_dtype("float64"),)
                return True
        return False


def test_the_ir_is_verified_after_every_pass():
    g = parse_ir(CASES[0][2].replace("neg(%b)", "relu(%b)").replace("neg(%c)", "relu(%c)"))
    with pytest.raises(InternalError, match="after pass 'breaks'"):
        PassManager([_Breaks()]).run(g)
    g = parse_ir(CASES[0][2].replace("neg(%b)", "relu(%b)"))
    PassManager([_Breaks()], verify=False).run(g)  # the switch that skips it
    assert [n.type.dtype for n in g.nodes() if n.op == "relu"] == ["float64"]


def test_passes_visit_a_shared_graph_once():
    seen = []

    class Count(Pass):
        name = "count"

        def run(self, graph):
            seen.append(graph)
            return False

    spec = _load(("resnet.nn", "ResNet18"))
    PassManager([Count()]).run(spec.graph)
    assert len(seen) == len({id(g) for g in seen})
    assert seen[-1] is spec.graph  # callees first
    names = [g.name for g in seen]
    # eight calls of BasicBlock, seven graphs: BasicBlock(64, 64, 1) is the first block of
    # layer1 and the body of its repeat, one graph visited once
    assert names.count("BasicBlock") == 7 and names.count("Downsample") == 7


def test_nnc_ir_print_after_all(capsys):
    path = os.path.join(SPECS, "transformer.nn")
    args = [path, "-p", "d=64", "-p", "heads=4", "-p", "layers=2", "-p", "vocab=97", "-p", "ctx=32"]
    assert cli.main(["ir", *args, "-O2", "--print-after-all"]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line.startswith("# ---- after")]
    changing = ("fuse-attention", "fuse-linear")  # a transformer has no scan for parallel-scan
    assert heads == [f"# ---- after {p.name}{'' if p.name in changing else ' (no change)'} ----"
                     for p in pipeline(opt=2)]
    assert cli.main(["ir", *args, "--passes", "fuse-attention"]) == 0
    out = capsys.readouterr().out
    assert "= attention(%q, %k, %v, [dh] -> [dv], over [seq, key], causal = true" in out
    assert "softmax" not in out and out.count("# nncircuit IR") == 1
    assert cli.main(["ir", *args, "--passes", "cse,nope"]) == 1
    assert "unknown pass 'nope'" in capsys.readouterr().err


# ---- -O2 against -O0 on every model ---------------------------------------------------------

MODELS = sorted(SMALL)
# ResNets and the UNet at 32×32 (their typical size is 224 and 572)
SIZES = {"ResNet18": dict(h=32, w=32), "ResNet50": dict(h=32, w=32), "UNet": dict(h=32, w=32)}


def _load(key, **kw):
    f, model = key
    return nncircuit.load(os.path.join(SPECS, f), model, **SMALL[key], **kw)


@pytest.mark.parametrize("key", MODELS, ids=[m for _, m in MODELS])
def test_O2_matches_O0(key):
    s0, s2 = _load(key), _load(key, opt=2)
    m0 = s0.module(seed=0).eval()
    m2 = s2.module(seed=1).eval()
    sd0, sd2 = m0.state_dict(), m2.state_dict()
    # the same state_dict names and shapes: an -O0 checkpoint loads unchanged
    assert sorted((k, tuple(v.shape)) for k, v in sd0.items()) == sorted((k, tuple(v.shape)) for k, v in sd2.items())
    m2.load_state_dict(sd0, strict=True)
    assert [(n, str(t)) for n, t in s2.outputs()] == [(n, str(t)) for n, t in s0.outputs()]
    x = random_inputs(s0, SIZES.get(key[1]))
    with torch.no_grad():
        torch.testing.assert_close(m2(*x), m0(*x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", [("transformer.nn", "GPT2"), ("vit.nn", "ViT")], ids=["GPT2", "ViT"])
def test_O2_fuses_attention_and_qkv(key):
    ops = [n.op for _, g in _load(key, opt=2).graph.walk() for n in g.nodes()]
    assert "attention" in ops and "LinearGroup" in ops
    assert not {"softmax", "einsum", "causal"} & set(ops)
    src = _load(key, opt=2).torch_source()
    assert "F.scaled_dot_product_attention(" in src and "torch.einsum" not in src
    assert ("is_causal=True" in src) == (key[1] == "GPT2")


def test_O2_source_stays_parametric():
    """All instances of a block share one class: the -O2 class built with other
    hyperparameters is the -O0 model with those hyperparameters."""
    cls2 = _load(("transformer.nn", "GPT2"), opt=2).torch_class()
    cls0 = _load(("transformer.nn", "GPT2")).torch_class()
    other = dict(vocab=50, ctx=16, d=48, heads=3, layers=3)
    torch.manual_seed(0)
    m0 = cls0(**other).eval()
    m2 = cls2(**other).eval()
    m2.load_state_dict(m0.state_dict())
    x = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(m2(x), m0(x), rtol=1e-5, atol=1e-5)


def test_O2_trains_like_O0():
    """The fused model is the same function of the same parameters: one SGD step from the
    same weights gives the same weights."""
    s0, s2 = _load(("transformer.nn", "GPT2")), _load(("transformer.nn", "GPT2"), opt=2)
    m0, m2 = s0.module(seed=0), s2.module()
    m2.load_state_dict(m0.state_dict())
    x = torch.randint(0, 97, (2, 12))
    for m in (m0, m2):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        m(x).logsumexp(-1).mean().backward()
        opt.step()
    for (k, a), (_, b) in zip(sorted(m0.state_dict().items()), sorted(m2.state_dict().items())):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)


def test_compile_defaults_to_O2_and_load_to_O0():
    path = os.path.join(SPECS, "transformer.nn")
    small = SMALL[("transformer.nn", "GPT2")]
    m = nncircuit.compile(path, **small)
    assert any(type(x).__name__ == "CausalAttention" for x in m.modules())
    assert "scaled_dot_product_attention" in nncircuit.load(path, opt=2, **small).torch_source()
    assert "scaled_dot_product_attention" not in nncircuit.load(path, **small).torch_source()
    assert "torch.einsum" in nncircuit.load(path, **small).torch_source()


def test_nnc_compile_O_flag(tmp_path, capsys):
    path = os.path.join(SPECS, "transformer.nn")
    args = ["-p", "d=64", "-p", "heads=4", "-p", "layers=2"]
    for flag, fused in (([], True), (["-O0"], False), (["-O1"], False), (["--passes", "fuse-attention"], True)):
        out = tmp_path / "m.py"
        assert cli.main(["compile", path, "-o", str(out), *args, *flag]) == 0
        assert ("scaled_dot_product_attention" in out.read_text()) == fused, flag
    capsys.readouterr()


@pytest.mark.parametrize("key", [("transformer.nn", "GPT2"), ("vit.nn", "ViT")], ids=["GPT2", "ViT"])
def test_O2_through_onnx_matches_torch_O0(key):
    """The fused ops' ONNX lowerings (backends/onnx_fused.py) on the -O2 graph."""
    ort = pytest.importorskip("onnxruntime")
    from nncircuit.backends.onnx.export import build

    s0 = _load(key)
    m0 = s0.module(seed=0).eval()
    model = build(_load(key, opt=2), state_dict=m0.state_dict())
    assert {"Split", "Softmax"} <= {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = random_inputs(s0)
    with torch.no_grad():
        want = m0(*x)
    (got,) = sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), x)})
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-5, atol=1e-4)


def test_print_after_all_through_the_manager():
    buf = io.StringIO()
    spec = _load(("mlp.nn", "MLP"))
    PassManager(pipeline(opt=1), after=lambda name, changed, root: buf.write(f"{name}:{changed}\n")).run(spec.graph)
    assert buf.getvalue() == "canonicalize:False\ncse:False\ndce:False\n"


# ---- properties on random well-typed specs (tests/specgen.py) -------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(specgen.specs())
def test_every_pass_keeps_random_specs_valid(gs):
    """Each pass alone leaves an IR that verifies (the manager checks), keeps the outputs'
    types, and prints to text that parses back to itself; -O2 is a fixed point."""
    for name in sorted(PASSES):
        spec = nncircuit.load("generated.nn", text=gs.text, **gs.params)
        before = [(n, str(t)) for n, t in spec.outputs()]
        optimize(spec.graph, name)
        assert [(n, str(t)) for n, t in spec.outputs()] == before, name
        text = print_ir(spec.graph)
        assert print_ir(parse_ir(text)) == text, name
    g = nncircuit.load("generated.nn", text=gs.text, opt=2, **gs.params).graph
    once = print_ir(g)
    assert not PassManager(pipeline(opt=2)).run(g)
    assert print_ir(g) == once

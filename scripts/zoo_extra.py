"""The zoo's models outside bench/zoo.py and tests/zoo_reference.py, measured for docs/zoo.md
(scripts/zoo_table.py): T5, Swin-T, the DDPM U-Net, the VAE, Llama's decode step, S4D, the
recurrent models (LSTM, GRU, RNN, LTC, the pointer network), LIF, linear attention, and the
structure-only specs (UNet, MLP, ConvNet, TextCNN). Each reuses the reference, the small
configuration and the inputs of its test module (tests/e2e/test_*.py), so the table measures
what the tests assert."""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "e2e")):
    if p not in sys.path:
        sys.path.insert(0, p)

import nncircuit  # noqa: E402

SPECS = os.path.join(ROOT, "specs")


def difference(got, want) -> float:
    """The largest |got - want| over paired outputs; infinities must sit in the same places
    (they are left out of the difference, a mismatch counts as infinite)."""
    got = got if isinstance(got, (tuple, list)) else (got,)
    want = want if isinstance(want, (tuple, list)) else (want,)
    if len(got) != len(want):
        return float("inf")
    worst = 0.0
    for a, b in zip(got, want):
        a = torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a.detach()
        b = torch.as_tensor(np.asarray(b)) if not isinstance(b, torch.Tensor) else b.detach()
        if a.shape != b.shape:
            return float("inf")
        a, b = a.double(), b.double()
        finite = torch.isfinite(a) & torch.isfinite(b)
        if not torch.equal(torch.isfinite(a), torch.isfinite(b)) or not torch.equal(a[~finite], b[~finite]):
            return float("inf")
        if finite.any():
            worst = max(worst, float((a[finite] - b[finite]).abs().max()))
    return worst


def onnx_difference(path: str, model: str, hp: dict, module, inputs: list[tuple]) -> float:
    """|onnxruntime - torch| of `module`'s ONNX export (its own weights) over several inputs."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.onnx")
        nncircuit.export_onnx(path, out, model, state_dict=module.state_dict(), **hp)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(out, opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        worst = 0.0
        for x in inputs:
            with torch.no_grad():
                want = module(*x)
            got = sess.run(None, {n: t.numpy() for n, t in zip(names, x)})
            worst = max(worst, difference([torch.from_numpy(g) for g in got], want))
    return worst


def meta_count(build) -> int:
    with torch.device("meta"):
        ref = build()
    return sum(p.numel() for p in ref.parameters())


def torch_file(*parts: str) -> str:
    return os.path.join(os.path.dirname(torch.__file__), *parts)


def hf_file(name: str) -> str:
    import transformers

    return os.path.join(os.path.dirname(transformers.__file__), "models", name, f"modeling_{name}.py")


def by_opt(make, measure) -> float:
    """The larger difference of -O0 and -O2: make(opt) -> module, measure(module) -> float."""
    return max(measure(make(opt)) for opt in (0, 2))


# ---- each model: a dict of the figures -------------------------------------------------------
# keys: family, path, model, reference, spec_params, ref_params, published, diff, onnx,
# torch_lines [(label, count)], note (optional)


def t5():
    import test_t5 as T
    import transformers

    ref = T.reference(T.SMALL)

    def measure(m):
        worst = 0.0
        for seq, tgt in T.SIZES:
            x, y = T.ids(T.SMALL, seq, tgt)
            with torch.no_grad():
                worst = max(worst, difference(m(x, y), ref(input_ids=x, decoder_input_ids=y).logits))
        return worst

    m0 = T.loaded(T.SMALL, ref, 0)
    return dict(family="T5-small", path=T.PATH, model="T5",
                reference="transformers T5ForConditionalGeneration (t5-small, tied head)",
                spec_params=nncircuit.load(T.PATH, "T5").param_count(),
                ref_params=meta_count(lambda: transformers.T5ForConditionalGeneration(transformers.T5Config())),
                published=60_506_624, diff=by_opt(lambda o: T.loaded(T.SMALL, ref, o), measure),
                onnx=onnx_difference(T.PATH, "T5", T.SMALL, m0, [T.ids(T.SMALL, s, t) for s, t in T.SIZES]),
                torch_files=[hf_file("t5")])


def swin():
    import test_swin as T
    from bench.reference.swin import swin_t

    hps = [{**T.SMALL, **c} for c in T.CONFIGS[:2]]
    worst = 0.0
    for hp in hps:
        ref = T.reference(3, **hp)

        def make(opt, hp=hp, ref=ref):
            m = nncircuit.load(T.SPEC, "SwinT", opt=opt, **hp).module(seed=1).eval()
            m.load_state_dict(ref.state_dict(), strict=True)
            return m

        x = T.pixels(hp["image"])
        with torch.no_grad():
            want = ref(x)
        worst = max(worst, by_opt(make, lambda m, x=x, want=want: difference(m(x), want)))
    hp = hps[1]
    m = nncircuit.load(T.SPEC, "SwinT", opt=0, **hp).module(seed=4).eval()
    m.load_state_dict(T.reference(5, **hp).state_dict(), strict=True)
    return dict(family="Swin-T", path=T.SPEC, model="SwinT", reference="torchvision swin_t names (bench/reference/swin.py)",
                spec_params=nncircuit.load(T.SPEC, "SwinT").param_count(), ref_params=meta_count(swin_t),
                published=28_288_354, diff=worst,
                onnx=onnx_difference(T.SPEC, "SwinT", hp, m, [(T.pixels(64, b, seed=b),) for b in (1, 3)]),
                torch_files=[os.path.join(ROOT, "bench", "reference", f) for f in ("swin.py", "ops.py")])


def ddpm_unet():
    import test_ddpm_unet as T
    from bench.reference.ddpm_unet import DDPMUNet

    ref = T.reference()
    sizes = [T.inputs(h, w) for h, w in ((16, 16), (24, 40))]

    def measure(m):
        worst = 0.0
        for x, t in sizes:
            with torch.no_grad():
                worst = max(worst, difference(m(x, t), ref(x, t)))
        return worst

    return dict(family="DDPM U-Net", path=T.PATH, model="DDPMUNet",
                reference="diffusers UNet2DModel names, DDPM CIFAR-10 (bench/reference/ddpm_unet.py)",
                spec_params=nncircuit.load(T.PATH, "DDPMUNet").param_count(), ref_params=meta_count(DDPMUNet),
                published=35_746_307, diff=by_opt(lambda o: T.loaded(ref, o), measure),
                onnx=onnx_difference(T.PATH, "DDPMUNet", T.SMALL, T.loaded(ref, 0), [T.inputs(8, 8), T.inputs(32, 24)]),
                torch_files=[os.path.join(ROOT, "bench", "reference", "ddpm_unet.py")])


def vae():
    import test_vae as T
    from bench.reference.vae import VAE

    hp = T.CONFIGS["mnist"]
    x = T.images(hp)

    def measure(opt):
        module, ref = T.pair(hp, opt)
        module.eval(), ref.eval()
        with torch.no_grad():  # the same draw: torch's global generator seeded alike
            return difference(T.seeded(module, x), T.seeded(ref, x))

    module, _ = T.pair(hp)
    module.eval()
    with torch.no_grad():  # ONNX draws anew on every run: a pinned log-variance makes z = mu
        module.encoder.logvar.weight.zero_()
        module.encoder.logvar.bias.fill_(-80.0)
    return dict(family="VAE", path=T.SPEC, model="VAE", reference="Kingma & Welling 2014, conv. MNIST (bench/reference/vae.py)",
                spec_params=nncircuit.load(T.SPEC, "VAE").param_count(), ref_params=meta_count(VAE), published=None,
                diff=max(measure(0), measure(2)),
                onnx=onnx_difference(T.SPEC, "VAE", hp, module, [(T.images(hp, b),) for b in (1, 4)]),
                torch_files=[os.path.join(ROOT, "bench", "reference", "vae.py")],
                note="same draw of the noise")


def llama_decode():
    import test_llama_decode as T
    import transformers
    from bench import zoo

    case = zoo.BY_MODEL["Llama"]
    ref = zoo.reference(case)

    def run(opt):
        module = T.decode_module(case, opt)
        module.load_state_dict(ref.state_dict(), strict=True)
        gen = torch.Generator().manual_seed(4)
        cache = transformers.DynamicCache(config=ref.config)
        key, value = T.empty_cache(case, 2)
        worst, steps = 0.0, []
        for length in (5, 1, 1, 1, 2):  # a prefill, three one-token steps, two tokens at once
            ids = torch.randint(0, 97, (2, length), generator=gen)
            steps.append((ids, key, value))
            with torch.no_grad():
                want = T.run_reference(ref, ids, cache)
                logits, key, value = module(ids, key, value)
            worst = max(worst, difference((logits, key, value), (want, *T.stacked(cache))))
        return worst, module, steps

    d0, m0, steps = run(0)
    d2, _, _ = run(2)
    return dict(family="Llama 3.2 1B decode", path=T.SPEC, model="LlamaDecode",
                reference="transformers LlamaForCausalLM with a DynamicCache (logits, keys and values)",
                spec_params=nncircuit.load(T.SPEC, "LlamaDecode").param_count(),
                ref_params=zoo.published_reference_count(case), published=case.published, diff=max(d0, d2),
                onnx=onnx_difference(T.SPEC, "LlamaDecode", case.small, m0, steps),
                torch_files=[hf_file("llama")], note="prefill then 4 decode steps")


def s4d():
    from bench.reference.s4d import S4D as Reference

    path = os.path.join(SPECS, "s4d.nn")
    torch.manual_seed(0)
    ref = Reference(d=6, n=5)
    x = torch.randn(3, 17, 6, generator=torch.Generator().manual_seed(0))

    def make(opt):
        m = nncircuit.load(path, opt=opt, d=6, n=5).module(seed=1).eval()
        m.load_state_dict(ref.state_dict(), strict=True)
        return m

    with torch.no_grad():
        want = ref(x)
    m0 = make(0)
    return dict(family="S4D", path=path, model="S4D", reference="S4D-Real, ZOH, as a loop (bench/reference/s4d.py)",
                spec_params=nncircuit.load(path).param_count(), ref_params=meta_count(Reference), published=None,
                diff=by_opt(make, lambda m: difference(m(x), want)),
                onnx=onnx_difference(path, "S4D", dict(d=6, n=5), m0, [(torch.randn(2, s, 6),) for s in (5, 23)]),
                torch_files=[os.path.join(ROOT, "bench", "reference", "s4d.py")])


def _rnn(kind: str, kw: dict):
    path = os.path.join(SPECS, "lstm.nn")
    hp = dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True, **kw)
    torch.manual_seed(5)
    ref = getattr(torch.nn, kind)(5, 6, 2, bidirectional=True, batch_first=True, **kw)
    x = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y, states = ref(x)
    want = (y,) + (states if isinstance(states, tuple) else (states,))

    def make(opt):
        m = nncircuit.load(path, kind, opt=opt, **hp).module(seed=0).eval()
        m.load_state_dict(ref.state_dict(), strict=True)
        return m

    spec = nncircuit.load(path, kind)
    return dict(family=kind, path=path, model=kind,
                reference=f"torch.nn.{kind} (batch_first; 2 layers, bidirectional at the small config)",
                spec_params=spec.param_count(),
                ref_params=meta_count(lambda: getattr(torch.nn, kind)(10, 20, 2, batch_first=True)), published=None,
                diff=by_opt(make, lambda m: difference(m(x), want)),
                onnx=onnx_difference(path, kind, hp, make(0), [(torch.randn(2, n, 5),) for n in (3, 8)]),
                torch_files=[torch_file("nn", "modules", "rnn.py")], note="the file holds LSTM, GRU and RNN")


def lstm():
    return _rnn("LSTM", {})


def gru():
    return _rnn("GRU", {})


def rnn():
    return _rnn("RNN", {})


def ltc():
    import test_recurrent_zoo as T
    from zoo_more_table import reference_lines

    path = os.path.join(SPECS, "ltc.nn")
    torch.manual_seed(0)
    hand = T.HandLTC()
    u = torch.randn(3, 9, 8, generator=torch.Generator().manual_seed(0))

    def make(opt):
        m = nncircuit.load(path, "LTC", opt=opt).module(seed=0).eval()
        m.load_state_dict(hand.state_dict(), strict=True)
        return m

    with torch.no_grad():
        want = hand(u)
    return dict(family="LTC", path=path, model="LTC", reference="Hasani et al. 2021, fused ODE solver (hand-written loop)",
                spec_params=nncircuit.load(path, "LTC").param_count(), ref_params=meta_count(T.HandLTC), published=None,
                diff=by_opt(make, lambda m: difference(m(u), want)),
                onnx=onnx_difference(path, "LTC", {}, make(0), [(torch.randn(2, n, 8),) for n in (3, 8)]),
                torch_lines=[("`HandLTC` in test_recurrent_zoo.py", reference_lines([T.HandLTC]))])


def pointer():
    import test_recurrent_zoo as T
    from zoo_more_table import reference_lines

    path = os.path.join(SPECS, "pointer.nn")
    torch.manual_seed(0)
    hand = T.HandPointer()
    x = torch.rand(3, 7, 2, generator=torch.Generator().manual_seed(0))

    def make(opt):
        m = nncircuit.load(path, "Pointer", opt=opt).module(seed=0).eval()
        m.load_state_dict(T.pointer_state_dict(hand), strict=True)
        return m

    with torch.no_grad():
        want = hand(x)
    return dict(family="Pointer network", path=path, model="Pointer",
                reference="Vinyals et al. 2015, greedy decoding (hand-written loop)",
                spec_params=nncircuit.load(path, "Pointer").param_count(), ref_params=meta_count(T.HandPointer),
                published=None, diff=by_opt(make, lambda m: difference(m(x), want)),
                onnx=onnx_difference(path, "Pointer", {}, make(0), [(torch.rand(2, n, 2),) for n in (3, 8)]),
                torch_lines=[("`HandPointer` in test_recurrent_zoo.py", reference_lines([T.HandPointer]))],
                note="masked logits: the -inf agree")


def lif():
    import test_lif as T
    from zoo_more_table import reference_lines

    torch.manual_seed(3)
    ref = T.LIF().eval()
    x = torch.randn(3, 20, 16, generator=torch.Generator().manual_seed(0)) * 2
    worst = 0.0
    for opt in (0, 2):
        m = nncircuit.load(T.SPEC, "LIF", opt=opt).module(seed=0).eval()
        m.load_state_dict(ref.state_dict(), strict=True)
        with torch.no_grad():
            worst = max(worst, difference(m(x), ref(x)))
    m = nncircuit.load(T.SPEC, "LIF").module(seed=0).eval()
    torch.manual_seed(0)
    return dict(family="LIF (spiking)", path=T.SPEC, model="LIF", reference="leaky integrate-and-fire, hand-written loop",
                spec_params=nncircuit.load(T.SPEC, "LIF").param_count(),
                ref_params=sum(p.numel() for p in ref.parameters()), published=None, diff=worst,
                onnx=onnx_difference(T.SPEC, "LIF", {}, m, [(torch.randn(2, n, 16) * 2,) for n in (5, 17)]),
                torch_lines=[("`LIF` in test_lif.py", reference_lines([T.LIF]))])


def linear_attention():
    import test_linear_attention as T
    from zoo_more_table import reference_lines

    worst = 0.0
    for parallel in (False, True):
        ref = T._reference(parallel)
        for opt in (0, 2):
            m = nncircuit.load(T.SPEC, "LinearAttention", opt=opt, parallel=parallel).module(seed=5).eval()
            m.load_state_dict(ref.state_dict(), strict=True)
            for seq in (1, 7):
                x = T._inputs(seq)
                with torch.no_grad():
                    worst = max(worst, difference(m(x), ref(x)))
    m = nncircuit.load(T.SPEC, "LinearAttention").module(seed=0).eval()
    return dict(family="Linear attention", path=T.SPEC, model="LinearAttention",
                reference="Katharopoulos et al. 2020, causal, multi-head, hand-written loop and masked form",
                spec_params=nncircuit.load(T.SPEC, "LinearAttention").param_count(),
                ref_params=sum(p.numel() for p in T._reference().parameters()), published=None,
                diff=worst, onnx=onnx_difference(T.SPEC, "LinearAttention", {}, m, [(torch.randn(2, n, 32),) for n in (4, 13)]),
                torch_lines=[("`LinearAttention` in test_linear_attention.py", reference_lines([T.LinearAttention]))],
                note="recurrent and parallel forms (`parallel = true`)")


def structure(family: str, file: str, model: str):
    def measure():
        path = os.path.join(SPECS, file)
        return dict(family=family, path=path, model=model, reference=None,
                    spec_params=nncircuit.load(path, model).param_count(), ref_params=None, published=None,
                    diff=None, onnx=None, torch_lines=[])

    measure.__name__ = model
    return measure


MODELS = [t5, swin, ddpm_unet, vae, llama_decode, s4d, lstm, gru, rnn, ltc, pointer, lif, linear_attention,
          structure("U-Net", "unet.nn", "UNet"), structure("MLP", "mlp.nn", "MLP"),
          structure("CNN", "conv.nn", "ConvNet"), structure("TextCNN", "conv.nn", "TextCNN")]

"""The models measured against hand-written PyTorch: each case builds the compiled module
from its spec and the reference module of the same configuration with the same weights,
and checks both (parameter count, outputs) before anything is timed."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from collections.abc import Callable

from .env import SPECS, has_module


class BenchError(Exception):
    """A benchmark cannot be run honestly (the two modules disagree)."""


@dataclass(frozen=True)
class Case:
    name: str
    spec: str  # file in specs/
    model: str | None
    params: dict  # hyperparameters of the spec
    reference: Callable[[], object]  # builds the hand-written module
    # (compiled, reference state_dict) -> weights for the reference; None: the compiled
    # module loads the reference's state_dict itself (the spec's checkpoint section)
    mapping: Callable[[dict, dict], dict] | None
    make_input: Callable[..., object]  # (generator, batch, device) -> input tensor
    batch: int
    targets: Callable[..., object]  # (output, generator) -> class targets for the loss
    note: str = ""


def _tokens(vocab: int, seq: int):
    def make(gen, batch, device="cpu"):
        import torch

        return torch.randint(0, vocab, (batch, seq), generator=gen).to(device)

    return make


def _images(size: int):
    def make(gen, batch, device="cpu"):
        import torch

        return torch.randn(batch, 3, size, size, generator=gen).to(device)

    return make


def _class_targets(out, gen):
    import torch

    return torch.randint(0, out.shape[-1], out.shape[:-1], generator=gen).to(out.device)


def gpt2_case(*, vocab, ctx, d, heads, layers, batch, seq, name="GPT-2") -> Case:
    from .reference import gpt2

    return Case(
        name=name,
        spec="transformer.nn",
        model="GPT2",
        params=dict(vocab=vocab, ctx=ctx, d=d, heads=heads, layers=layers),
        reference=lambda: gpt2.GPT2(vocab, ctx, d, heads, layers),
        mapping=lambda sd, _ref: gpt2.from_compiled(sd, layers),
        make_input=_tokens(vocab, seq),
        batch=batch,
        targets=_class_targets,
        note=f"d={d}, heads={heads}, layers={layers}, vocab={vocab}; batch {batch}, seq {seq}",
    )


def vit_case(*, image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes, batch,
             name="ViT") -> Case:
    from .reference import vit

    params = dict(image_size=image_size, patch_size=patch_size, num_layers=num_layers, num_heads=num_heads,
                  hidden_dim=hidden_dim, mlp_dim=mlp_dim, num_classes=num_classes)
    return Case(
        name=name,
        spec="vit.nn",
        model="ViT",
        params=params,
        reference=lambda: vit.ViT(**params),
        mapping=None,
        make_input=_images(image_size),
        batch=batch,
        targets=_class_targets,
        note=f"image_size {image_size}, patch_size {patch_size}, num_layers={num_layers}, num_heads={num_heads}, "
             f"hidden_dim={hidden_dim}, mlp_dim={mlp_dim}; batch {batch}",
    )


def resnet_case(which: str, *, classes, image, batch) -> Case:
    from .reference import resnet

    build = resnet.resnet18 if which == "ResNet18" else resnet.resnet50
    return Case(
        name=which,
        spec="resnet.nn",
        model=which,
        params=dict(num_classes=classes),
        reference=lambda: build(classes),
        mapping=None,
        make_input=_images(image),
        batch=batch,
        targets=_class_targets,
        note=f"{classes} classes, {image}×{image} images; batch {batch}",
    )


def cpu_cases(quick: bool) -> list[Case]:
    if quick:
        return [
            gpt2_case(vocab=1000, ctx=64, d=128, heads=4, layers=2, batch=1, seq=64),
            vit_case(image_size=64, patch_size=16, num_layers=2, num_heads=4, hidden_dim=128, mlp_dim=256,
                     num_classes=10, batch=1),
            resnet_case("ResNet18", classes=10, image=64, batch=1),
            resnet_case("ResNet50", classes=10, image=64, batch=1),
        ]
    return [
        gpt2_case(
            vocab=50257, ctx=1024, d=768, heads=12, layers=12, batch=1, seq=128, name="GPT-2 small"
        ),
        vit_case(
            image_size=224,
            patch_size=16,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            mlp_dim=3072,
            num_classes=1000,
            batch=1,
            name="ViT-B/16",
        ),
        resnet_case("ResNet18", classes=1000, image=224, batch=1),
        resnet_case("ResNet50", classes=1000, image=224, batch=1),
    ]


# ---- building and checking ------------------------------------------------------------------


def _load_has_opt() -> bool:
    import nncircuit

    return "opt" in inspect.signature(nncircuit.load).parameters


def opt_levels() -> tuple[list[int], int]:
    """The optimisation levels to measure, and the default one: that of nncircuit.compile
    (the API that turns a spec into a module; `nnc compile` has the same default)."""
    import nncircuit

    if not _load_has_opt() and not has_module("nncircuit.passes"):
        return [0], 0
    opt = inspect.signature(nncircuit.compile).parameters.get("opt")
    default = opt.default if opt is not None and isinstance(opt.default, int) else 0
    return sorted({0, 2, default}), default


def load_spec(case: Case, level: int):
    """The spec of `case` at an optimisation level: `nncircuit.load(..., opt=level)`, or,
    while load has no `opt`, the loaded graph run through nncircuit.passes.optimize."""
    import nncircuit

    path = os.path.join(SPECS, case.spec)
    if _load_has_opt():
        return nncircuit.load(path, case.model, opt=level, **case.params)
    spec = nncircuit.load(path, case.model, **case.params)
    if level:
        from nncircuit.passes import optimize

        optimize(spec.graph, opt=level)
    return spec


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(case: Case, levels: list[int]) -> tuple[dict, object, dict]:
    """The compiled modules (by optimisation level) and the reference, all holding the
    weights of the -O0 module built with seed 0; raises BenchError if they differ in
    parameter count. Returns (compiled, reference, notes)."""
    notes: dict = {}
    compiled = {}
    spec0 = load_spec(case, 0)
    base = spec0.module(seed=0)
    compiled[0] = base
    sd = base.state_dict()
    for level in levels:
        if level == 0:
            continue
        try:
            m = load_spec(case, level).module(seed=0)
            m.load_state_dict(sd, strict=True)
        except Exception as e:  # noqa: BLE001 - another helper's optimizer: report, don't crash
            notes[f"O{level}"] = f"-O{level} skipped: {type(e).__name__}: {e}"
            continue
        compiled[level] = m
    ref = case.reference()
    if case.mapping is None:  # torchvision's names: the compiled modules load them strictly
        for m in compiled.values():
            m.load_state_dict(ref.state_dict(), strict=True)
    else:
        ref.load_state_dict(case.mapping(sd, ref.state_dict()), strict=True)
    n_ref, n_spec = count(ref), spec0.param_count()
    for level, m in compiled.items():
        if count(m) != n_ref or n_ref != n_spec:
            raise BenchError(
                f"{case.name}: parameter counts differ: compiled -O{level} {count(m):,}, "
                f"hand-written {n_ref:,}, spec {n_spec:,}"
            )
    notes["params"] = n_ref
    return compiled, ref, notes


def max_error(a, b) -> float:
    """max |a - b| relative to max(1, max |b|)."""
    scale = max(1.0, float(b.abs().max()))
    return float((a.float() - b.float()).abs().max()) / scale


def check_outputs(case: Case, compiled: dict, ref, x, tol: float) -> dict:
    """Outputs of every compiled module against the reference, in eval and in train mode
    (BatchNorm's batch statistics); raises BenchError beyond `tol`."""
    import torch

    errors = {}
    for train in (False, True):
        mode = "train" if train else "eval"
        with torch.no_grad():
            ref.train(train)
            want = ref(x)
            for level, m in compiled.items():
                m.train(train)
                err = max_error(m(x), want)
                errors[f"O{level} {mode}"] = err
                if not err <= tol:
                    raise BenchError(
                        f"{case.name}: compiled -O{level} and hand-written outputs differ in {mode} "
                        f"mode by {err:.3g} (relative to max(1, max|out|)); tolerance {tol:g}"
                    )
    return errors

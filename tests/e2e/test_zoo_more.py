"""The zoo's graph, memory, scientific and vision-mixer models against hand-written PyTorch
references (tests/zoo_reference.py): the reference's state_dict loads strictly into the compiled
module and back, the outputs agree to 1e-5 (fp32, eval), onnxruntime agrees with torch at
other run-time sizes, the generated class follows its hyperparameters, the parameter counts
at the published configurations, and every diagram renders."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
import torch

import nncircuit
import zoo_reference as R
from conftest import SPECS


def _graph(n: int, g: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """A random undirected graph with self-loops, as a bool adjacency [n, n]."""
    a = torch.rand(n, n, generator=g) < p
    return a | a.t() | torch.eye(n, dtype=torch.bool)


def _normalised(adj: torch.Tensor) -> torch.Tensor:
    """Kipf & Welling's renormalised adjacency D^-1/2 (A + I) D^-1/2 (self-loops are in adj)."""
    a = adj.float()
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


@dataclass(frozen=True)
class Case:
    file: str                       # relative to specs/
    model: str
    ref: Callable                   # the reference's class
    small: dict                     # hyperparameters of the tests
    inputs: Callable                # (hyperparameters, sizes, generator) -> tuple of tensors
    sizes: tuple                    # two run-time size sets
    other: dict = field(default_factory=dict)  # other hyperparameters for the generated class
    published: int | None = None    # the published parameter count, where there is one
    ref_args: Callable = dict       # the spec's hyperparameters -> the reference's arguments
    to_ref: tuple = ()              # (spec key pattern, reference key) renames: the reference's
                                    # names the spec maps in its checkpoint section (ConvNeXt's
                                    # stem.0), for the round trip into the reference, which has no hook


def _gcn_inputs(hp, s, g):
    return torch.randn(s["node"], hp["features"], generator=g), _normalised(_graph(s["node"], g))


def _gat_inputs(hp, s, g):
    return torch.randn(s["node"], hp["features"], generator=g), _graph(s["node"], g)


def _memn2n_inputs(hp, s, g):
    story = torch.randint(0, hp["vocab"], (s["batch"], s["sentence"], s["word"]), generator=g)
    return story, torch.randint(0, hp["vocab"], (s["batch"], s["qword"]), generator=g)


def _hopfield_inputs(hp, s, g):
    return (torch.randn(s["batch"], s["query"], hp["d"], generator=g),
            torch.randn(s["batch"], s["key"], hp["d"], generator=g))


def _ode_inputs(hp, s, g):
    return (torch.randn(s["batch"], hp["d"], generator=g),)


def _convnext_inputs(hp, s, g):
    return (torch.randn(s["batch"], hp["in_chans"], s["h"], s["w"], generator=g),)


# the spec's names for timm's positional module names (its checkpoint section maps them)
CONVNEXT_TO_REF = ((r"^stem_conv\.", "stem.0."), (r"^stem_norm\.", "stem.1."),
                   (r"^stages_(\d+)\.", r"stages.\1."), (r"^stages\.(?!\d)", "stages.0."),
                   (r"\.downsample_norm\.", ".downsample.0."), (r"\.downsample_conv\.", ".downsample.1."))


def _din_inputs(hp, s, g):
    b, n = s["batch"], s["seq"]
    lengths = torch.randint(1, n + 1, (b,), generator=g)
    mask = torch.arange(n)[None, :] < lengths[:, None]  # padded behaviour sequences
    return (torch.randint(0, hp["goods"], (b, n), generator=g), torch.randint(0, hp["cats"], (b, n), generator=g),
            mask, torch.randint(0, hp["goods"], (b,), generator=g), torch.randint(0, hp["cats"], (b,), generator=g))


def _hyper_inputs(hp, s, g):
    return (torch.randn(s["batch"], hp["d_in"], generator=g),
            torch.randint(0, hp["tasks"], (s["batch"],), generator=g))


def _kan_inputs(hp, s, g):
    return (1.5 * torch.randn(s["batch"], hp["layers_hidden"][0], generator=g),)  # inside and outside the grid


def _mixer_inputs(hp, s, g):
    return (torch.randn(s["batch"], hp["in_chans"], hp["img_size"], hp["img_size"], generator=g),)


CASES = {
    "GCN": Case("graph/gcn.nn", "GCN", R.GCN, dict(features=12, hidden=8, classes=5),
                _gcn_inputs, ({"node": 7}, {"node": 19}), dict(features=9, hidden=6, classes=3)),
    "GAT": Case("graph/gat.nn", "GAT", R.GAT, dict(features=12, hidden=4, heads=3, classes=5, out_heads=2),
                _gat_inputs, ({"node": 6}, {"node": 17}), dict(features=7, hidden=3, heads=2, classes=4)),
    "MemN2N": Case("memory/memn2n.nn", "MemN2N", R.MemN2N, dict(vocab=31, d=8), _memn2n_inputs,
                   ({"batch": 2, "sentence": 5, "word": 4, "qword": 3},
                    {"batch": 3, "sentence": 9, "word": 6, "qword": 5}),
                   dict(vocab=23, d=6)),
    "Hopfield": Case("memory/hopfield.nn", "Hopfield", R.Hopfield, dict(d=12, dk=8, dv=6),
                     _hopfield_inputs, ({"batch": 2, "query": 3, "key": 5}, {"batch": 1, "query": 7, "key": 11}),
                     dict(d=10, dk=4, dv=5, beta=0.7)),
    "NeuralODE": Case("scientific/neural_ode.nn", "NeuralODE", R.NeuralODE, dict(d=3, hidden=16, steps=4, T=0.5),
                      _ode_inputs, ({"batch": 2}, {"batch": 5}), dict(d=4, hidden=8, steps=3, T=2.0)),
    "MlpMixer": Case("vision/mixer.nn", "MlpMixer", R.MlpMixer,
                     dict(num_classes=10, img_size=32, patch_size=8, num_blocks=2, embed_dim=16,
                          mlp_ratio=(0.5, 2.0), in_chans=3),
                     _mixer_inputs, ({"batch": 2}, {"batch": 3}),
                     dict(num_classes=4, img_size=24, patch_size=4, num_blocks=3, embed_dim=8,
                          mlp_ratio=(1.5, 2.0), in_chans=2),
                     published=18_528_264),
    "DIN": Case("recsys/din.nn", "DIN", R.DIN, dict(goods=40, cats=6, d=4, h1=8, h2=6, m1=10, m2=7),
                _din_inputs, ({"batch": 3, "seq": 5}, {"batch": 2, "seq": 11}),
                dict(goods=30, cats=5, d=3, h1=5, h2=4, m1=6, m2=3)),
    "HyperMLP": Case("meta/hypernet.nn", "HyperMLP", R.HyperMLP,
                     dict(tasks=4, d_emb=6, hyper_hidden=12, d_in=10, hidden=8, d_out=5),
                     _hyper_inputs, ({"batch": 3}, {"batch": 6}),
                     dict(tasks=3, d_emb=4, hyper_hidden=9, d_in=7, hidden=6, d_out=3)),
    "KAN": Case("scientific/kan.nn", "KAN", R.KAN, dict(layers_hidden=(6, 5, 3), grid_size=5, spline_order=3),
                _kan_inputs, ({"batch": 4}, {"batch": 9}),
                dict(layers_hidden=(4, 3, 2), grid_size=7, spline_order=2, grid_range=(-2.0, 1.0)),
                to_ref=((r"^layers_(\d+)\.", r"layers.\1."), (r"^layers\.(?!\d)", "layers.0."))),
    "ConvNeXt": Case("vision/convnext.nn", "ConvNeXt", R.ConvNeXt,
                     dict(num_classes=10, depths=(1, 1, 2, 1), dims=(8, 16, 16, 24), in_chans=3),
                     _convnext_inputs, ({"batch": 2, "h": 32, "w": 32}, {"batch": 1, "h": 40, "w": 36}),
                     dict(num_classes=4, depths=(2, 1, 1, 2), dims=(4, 8, 12, 8), in_chans=2),
                     published=28_589_128, to_ref=CONVNEXT_TO_REF),
}
NAMES = sorted(CASES)


def _path(case: Case) -> str:
    return os.path.join(SPECS, *case.file.split("/"))


def _reference(case: Case, hp: dict, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    ref = case.ref(**case.ref_args(hp)).eval()
    with torch.no_grad():  # away from the initial values, so that norms, layer scale and biases count
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return ref


def _inputs(case: Case, hp: dict, sizes: dict, seed: int = 0):
    return case.inputs({**case.small, **hp}, sizes, torch.Generator().manual_seed(seed))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", NAMES)
def test_reference_weights_load_strictly_and_outputs_match(name):
    case = CASES[name]
    ref = _reference(case, case.small, seed=3)
    module = nncircuit.compile(_path(case), case.model, seed=11, **case.small).eval()
    assert sorted(R.renamed(module.state_dict(), case.to_ref)) == sorted(ref.state_dict())
    x = _inputs(case, case.small, case.sizes[0])
    with torch.no_grad():
        before = module(*x)
    module.load_state_dict(ref.state_dict(), strict=True)  # the reference's own names
    back = _reference(case, case.small, seed=4)
    back.load_state_dict(R.renamed(module.state_dict(), case.to_ref), strict=True)  # the round trip
    for sizes in case.sizes:
        x = _inputs(case, case.small, sizes)
        with torch.no_grad():
            want, got, again = ref(*x), module(*x), back(*x)
        assert got.shape == want.shape
        assert torch.isfinite(want).all()
        assert _max_diff(got, want) <= 1e-5, (name, sizes)
        assert torch.equal(again, want)
    assert _max_diff(before, ref(*_inputs(case, case.small, case.sizes[0]))) > 1e-3  # the load mattered


@pytest.mark.parametrize("name", NAMES)
def test_generated_class_follows_its_hyperparameters(name):
    """The class compiled at the test settings, built with other hyperparameters, is the
    reference built with those."""
    case = CASES[name]
    cls = nncircuit.load(_path(case), case.model, **case.small).torch_class()
    hp = {**case.small, **case.other}
    module = cls(**hp).eval()
    ref = _reference(case, hp, seed=5)
    module.load_state_dict(ref.state_dict(), strict=True)
    x = _inputs(case, hp, case.sizes[1])
    with torch.no_grad():
        assert _max_diff(module(*x), ref(*x)) <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_onnxruntime_matches_torch_at_other_sizes(name, tmp_path):
    case = CASES[name]
    module = nncircuit.compile(_path(case), case.model, seed=2, **case.small).eval()
    out = tmp_path / f"{name}.onnx"
    nncircuit.export_onnx(_path(case), str(out), case.model, state_dict=module.state_dict(), **case.small)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for sizes in case.sizes:
        x = _inputs(case, case.small, sizes, seed=7)
        with torch.no_grad():
            want = module(*x).numpy()
        (got,) = sess.run(None, {n: t.numpy() for n, t in zip(names, x)})
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{name} at {sizes}")


@pytest.mark.parametrize("name", NAMES)
def test_parameters_at_the_published_configuration(name):
    """The spec's count at its defaults equals the reference's on the meta device (no memory)
    and the published figure."""
    case = CASES[name]
    spec_count = nncircuit.load(_path(case), case.model).param_count()
    with torch.device("meta"):
        ref = case.ref()
    assert spec_count == sum(p.numel() for p in ref.parameters())
    if case.published is not None:
        assert spec_count == case.published


@pytest.mark.parametrize("style", ["circuit", "graph"])
@pytest.mark.parametrize("name", NAMES)
def test_diagram_renders(name, style):
    # test_render lives in tests/backends/diagram/, on sys.path only once pytest collected it
    diagram_tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "backends", "diagram")
    if diagram_tests not in sys.path:
        sys.path.insert(0, diagram_tests)
    from test_render import NS, geometry_problems, svg_of

    svg = svg_of(nncircuit.load(_path(case := CASES[name]), case.model, **case.small), style)
    assert ET.fromstring(svg).tag == NS + "svg"
    assert geometry_problems(svg) == []


def test_zoo_lists_these_models():
    models = nncircuit.zoo.models()
    assert {m: models[m] for m in NAMES} == {n: c.file for n, c in CASES.items()}


def test_gat_masks_non_edges():
    """Changing a non-neighbour's features leaves a node's GAT output alone."""
    case = CASES["GAT"]
    module = nncircuit.compile(_path(case), case.model, seed=0, **case.small).eval()
    x, adj = _inputs(case, case.small, {"node": 9})
    adj = torch.eye(9, dtype=torch.bool) | torch.diag(torch.ones(8, dtype=torch.bool), 1) \
        | torch.diag(torch.ones(8, dtype=torch.bool), -1)  # a path graph
    y = x.clone()
    y[8] += 5.0  # two hops from node 6, three from node 5
    with torch.no_grad():
        a, b = module(x, adj), module(y, adj)
    assert torch.equal(a[:6], b[:6]) and not torch.allclose(a[7:], b[7:])


def test_gat_adjacency_must_be_bool():
    case = CASES["GAT"]
    module = nncircuit.compile(_path(case), case.model, seed=0, **case.small).eval()
    x, adj = _inputs(case, case.small, {"node": 5})
    with pytest.raises(TypeError, match="GAT: input 'adj' .* must be a bool tensor"):
        module(x, adj.float())


def test_gcn_refuses_an_adjacency_of_another_graph():
    case = CASES["GCN"]
    module = nncircuit.compile(_path(case), case.model, seed=0, **case.small).eval()
    x, _ = _inputs(case, case.small, {"node": 6})
    _, adj = _inputs(case, case.small, {"node": 8})
    with pytest.raises(ValueError, match=r"GCN: input 'adj' axis 'node' must equal axis 'node' of input 'x' \(6\)"):
        module(x, adj)


@pytest.mark.parametrize("name", ["GCN", "GAT"])
def test_graph_models_refuse_a_non_square_adjacency(name):
    """`adj: [node, nbr: =node]`: an adjacency with as many rows as nodes but another count of
    neighbours is refused (it was padded or cropped by the former pad_to bridge)."""
    case = CASES[name]
    module = nncircuit.compile(_path(case), case.model, seed=0, **case.small).eval()
    x, adj = _inputs(case, case.small, {"node": 6})
    for cols in (4, 9):
        wide = torch.zeros(6, cols, dtype=adj.dtype)
        wide[:, :min(6, cols)] = adj[:, :min(6, cols)]
        with pytest.raises(ValueError, match=rf"{name}: input 'adj' axis 'nbr' must equal axis 'node' "
                                             rf"of input 'x' \(6\); got shape \[6, {cols}\]"):
            module(x, wide)


@pytest.mark.parametrize("name", ["GCN", "GAT"])
def test_graph_models_onnx_declares_the_adjacency_square(name, tmp_path):
    import onnx
    case = CASES[name]
    out = tmp_path / f"{name}.onnx"
    nncircuit.export_onnx(_path(case), str(out), case.model, **case.small)
    graph = onnx.load(str(out)).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["adj"] == ["node", "node"] and dims["x"] == ["node", case.small["features"]]
    assert "Pad" not in {n.op_type for n in graph.node}  # no bridge left

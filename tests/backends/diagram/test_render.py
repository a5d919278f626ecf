"""Diagrams: every spec renders in both styles as well-formed, deterministic SVG whose
geometry holds up (no overlapping boxes, children inside their block, wires left to right,
labels clear of boxes); DOT and Mermaid goldens; PNG/PDF; the HTML page in a browser."""

import itertools
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import nncircuit
from conftest import OVER_BUDGET, ROOT, SPECS
from nncircuit.ops import registry
from nncircuit.backends.diagram import paper
from nncircuit.backends.diagram import render as R
from nncircuit.backends.diagram.svg import text_width
from nncircuit.cli import main as nnc
from nncircuit.errors import NNError

NS = "{http://www.w3.org/2000/svg}"
GOLDENS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "goldens")
MODELS = [(f, m) for f in sorted(os.listdir(SPECS)) if f.endswith(".nn")
          for m in nncircuit.models(os.path.join(SPECS, f))]
GPT2_SMALL = dict(vocab=97, ctx=32, d=64, heads=4, layers=2)


def load(file, model=None, **params):
    budget = 10**12 if file in OVER_BUDGET else 2 * 10**9
    return nncircuit.load(os.path.join(SPECS, file), model, max_params=budget, **params)


def svg_of(spec, style="circuit", depth=None, expand=(), cost=False):
    return R.svg(spec, R.options(style, depth, expand, cost), engine="python")


# ---- geometry read back from the SVG -----------------------------------------------------------


def boxes(root):
    """(id, class, (x0, y0, x1, y1)) of every op, block and frame."""
    out = []
    for el in root.iter(NS + "g"):
        if el.get("data-bbox"):
            x, y, w, h = map(float, el.get("data-bbox").split())
            out.append((el.get("id"), el.get("class"), (x, y, x + w, y + h)))
    return out


def overlap(a, b, eps=0.01):
    return a[0] < b[2] - eps and b[0] < a[2] - eps and a[1] < b[3] - eps and b[1] < a[3] - eps


def inside(a, b, eps=0.01):
    return a[0] >= b[0] - eps and a[1] >= b[1] - eps and a[2] <= b[2] + eps and a[3] <= b[3] + eps


def path_xs(d: str) -> list[float]:
    """The x of every point of an M/L/C path, in drawing order."""
    nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return nums[0::2]


def shape_box(el):
    """The bounding box of a drawn rect, polygon, line, ellipse or circle."""
    f = lambda k: float(el.get(k))  # noqa: E731
    tag = el.tag[len(NS):]
    if tag == "rect":
        return (f("x"), f("y"), f("x") + f("width"), f("y") + f("height"))
    if tag == "polygon":
        pts = [tuple(map(float, p.split(","))) for p in el.get("points").split()]
        return (min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts))
    if tag == "line":
        return (min(f("x1"), f("x2")), min(f("y1"), f("y2")), max(f("x1"), f("x2")), max(f("y1"), f("y2")))
    rx, ry = (f("r"), f("r")) if tag == "circle" else (f("rx"), f("ry"))
    return (f("cx") - rx, f("cy") - ry, f("cx") + rx, f("cy") + ry)


def geometry_problems(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    bx = boxes(root)
    problems = []
    for g in root.iter(NS + "g"):  # the boxes the checks use are the ones drawn
        if g.get("data-bbox"):
            x, y, w, h = map(float, g.get("data-bbox").split())
            for el in g:
                if (el.get("class") or "") in ("shape", "frame") and not inside(shape_box(el), (x, y, x + w, y + h), 0.6):
                    problems.append(f"the box of {g.get('id')} does not hold its {el.tag[len(NS):]}")
    frames = {i: r for i, c, r in bx if c in ("block expanded", "repeat")}
    solid = [(i, r) for i, c, r in bx if c in ("op", "block collapsed")]
    for (i, a), (j, b) in itertools.combinations(solid + list(frames.items()), 2):
        if j.startswith(i + ".") or i.startswith(j + "."):
            continue  # a frame and what it contains
        if overlap(a, b):
            problems.append(f"boxes {i} and {j} overlap")
    for i, _, r in bx:
        parts = i.split(".")
        for k in range(len(parts) - 1, 0, -1):
            parent = ".".join(parts[:k])
            if parent in frames:
                if not inside(r, frames[parent]):
                    problems.append(f"{i} sticks out of its block {parent}")
                break
    for el in root.iter(NS + "path"):
        if "wire" in (el.get("class") or "").split():
            xs = path_xs(el.get("d"))
            if any(b < a - 0.01 for a, b in zip(xs, xs[1:])):
                problems.append(f"wire runs right to left: {el.get('d')}")
    labels = []
    for el in root.iter(NS + "text"):
        if el.get("class") == "label":
            x, y, size = float(el.get("x")), float(el.get("y")), float(el.get("font-size"))
            r = (x, y - 0.75 * size, x + text_width(el.text, size), y + 0.2 * size)
            problems += [f"label {el.text!r} over {i}" for i, b in solid if overlap(r, b)]
            labels.append((el.text, r))
    for (s, a), (t, b) in itertools.combinations(labels, 2):
        if overlap(a, b):
            problems.append(f"labels {s!r} and {t!r} overlap")
    return problems


# ---- every spec, both styles ------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["circuit", "graph"])
@pytest.mark.parametrize("depth", [None, 1, 9])
@pytest.mark.parametrize("file,model", MODELS)
def test_every_spec_renders_with_sound_geometry(file, model, style, depth):
    svg = svg_of(load(file, model), style, depth)
    root = ET.fromstring(svg)  # well-formed
    assert root.tag == NS + "svg"
    assert geometry_problems(svg) == []


def test_geometry_checks_can_fail():
    svg = svg_of(load("transformer.nn", **GPT2_SMALL), depth=9)
    assert geometry_problems(svg) == []
    bbox = dict(re.findall(r'id="(h\.attn\.[qk])" class="op" data-bbox="([^"]+)"', svg))
    onto_k = svg.replace(f'data-bbox="{bbox["h.attn.q"]}"', f'data-bbox="{bbox["h.attn.k"]}"')
    assert geometry_problems(onto_k) == ["the box of h.attn.q does not hold its rect",
                                         "boxes h.attn.q and h.attn.k overlap"]
    out = svg.replace(f'data-bbox="{bbox["h.attn.q"]}"', 'data-bbox="1 1 10 10"')
    assert geometry_problems(out) == ["the box of h.attn.q does not hold its rect",
                                      "h.attn.q sticks out of its block h.attn"]
    backwards = svg.replace('class="wire"/>', 'class="wire"/>\n<path d="M50 5 L10 5" class="wire"/>', 1)
    assert any("right to left" in p for p in geometry_problems(backwards))


@pytest.mark.parametrize("style", ["circuit", "graph"])
def test_rendering_is_deterministic(style):
    for fmt in (".svg", ".dot", ".mmd", ".html"):
        a = R.render(load("transformer.nn"), fmt, R.options(style, 9, cost=True))
        b = R.render(load("transformer.nn"), fmt, R.options(style, 9, cost=True))
        assert a == b, fmt


def test_rendering_does_not_depend_on_the_hash_seed():
    code = ("import sys, nncircuit; from nncircuit.backends.diagram import render as R; "
            "s = nncircuit.load(sys.argv[1]); "
            "sys.stdout.write(R.render(s, '.html', R.options('circuit', 9, cost=True)))")
    outs = {
        subprocess.run([sys.executable, "-c", code, os.path.join(SPECS, "vit.nn")], capture_output=True,
                       text=True, env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def all_axes_and_blocks(spec):
    axes, blocks = set(), set()
    for _, g in spec.graph.walk():
        for n in g.nodes():
            for t in n.types:
                axes |= set(t.names)
            if n.op == "call":
                blocks.add(n.attrs["block"])
    return axes, blocks


@pytest.mark.parametrize("style", ["circuit", "graph"])
@pytest.mark.parametrize("file,model", MODELS)
def test_svg_names_every_axis_and_block(file, model, style):
    spec = load(file, model)
    root = ET.fromstring(svg_of(spec, style, depth=9))
    text = " ".join(el.text or "" for el in root.iter(NS + "text"))
    words = set(re.findall(r"[A-Za-z_]\w*", text))
    axes, blocks = all_axes_and_blocks(spec)
    assert axes - words == set()
    assert blocks - words == set()


@pytest.mark.parametrize("style", ["circuit", "graph"])
def test_ids_are_scope_paths(style):
    spec = load("transformer.nn", **GPT2_SMALL)
    root = ET.fromstring(svg_of(spec, style, depth=9))
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    paths = {(f"{p}.{n.name}" if p else n.name) for p, g in spec.graph.walk() for n in g.nodes()}
    assert {"h.attn.q", "h.attn.causal_attention.softmax", "h.mlp", "wte"} <= ids
    assert paths <= ids  # every node is drawn, named by its scope path
    assert ids - paths == {"GPT2"}  # and nothing else has an id but the model
    assert len(ids) == len([el for el in root.iter() if el.get("id")])  # ids are unique


@pytest.mark.parametrize("style", ["circuit", "graph"])
def test_a_long_chain_wraps_into_rows_that_pair_up(style, monkeypatch):
    spec = load("resnet.nn", "ResNet18")
    svg = svg_of(spec, style)
    root = ET.fromstring(svg)
    from nncircuit.backends.diagram import circuit, graph

    monkeypatch.setattr(circuit, "WRAP_WIDTH", 1e9)
    monkeypatch.setattr(graph, "WRAP_WIDTH", 1e9)
    strip = float(ET.fromstring(svg_of(spec, style)).get("width"))  # 2631 and 5405 px unwrapped
    assert float(root.get("width")) < min(2000, 0.5 * strip)  # not one long strip
    markers = [el.text for el in root.iter(NS + "text") if el.get("class") == "marker"]
    assert markers and all(markers.count(m) == 2 for m in markers)  # each value leaves a row and comes back
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert {n.name for n in spec.graph.nodes()} <= ids  # nothing lost at the cuts


def test_no_wrap_where_it_would_cut_many_wires():
    root = ET.fromstring(svg_of(load("unet.nn")))  # five skip connections cross every cut
    assert not [el for el in root.iter(NS + "text") if el.get("class") == "marker"]


# ---- depth, expand, cost ---------------------------------------------------------------------------


def classes(svg):
    return {el.get("id"): el.get("class") for el in ET.fromstring(svg).iter(NS + "g") if el.get("id")}


def test_default_depth_is_a_readable_top_level():
    spec = load("transformer.nn")  # 12 layers
    cls = classes(svg_of(spec))
    assert cls["h"] == "repeat"  # drawn once, ×12
    assert cls["h.attn"] == "block collapsed" and cls["h.mlp"] == "block collapsed"
    assert "h.attn.q" not in cls
    assert sum(1 for c in cls.values() if c in ("op", "block collapsed")) < 20
    assert ">×12<" in svg_of(spec)


def test_depth_opens_levels_and_expand_opens_blocks():
    spec = load("transformer.nn", **GPT2_SMALL)
    cls = classes(svg_of(spec, depth=1))
    assert cls["h.attn"] == "block expanded" and cls["h.attn.causal_attention"] == "block collapsed"
    cls = classes(svg_of(spec, expand=["CausalAttention"]))
    assert cls["h.attn"] == "block expanded" and cls["h.attn.causal_attention"] == "block expanded"
    assert cls["h.mlp"] == "block collapsed"
    cls = classes(svg_of(spec, expand=["h.mlp"]))
    assert cls["h.mlp"] == "block expanded" and cls["h.attn"] == "block collapsed"
    assert svg_of(spec, expand=["h"]) == svg_of(spec)  # a repeat is open anyway


def test_expand_of_an_unknown_block_says_what_is_known():
    spec = load("transformer.nn", **GPT2_SMALL)
    with pytest.raises(NNError, match="no block or scope 'SelfAtention'.*did you mean 'SelfAttention'"):
        svg_of(spec, expand=["SelfAtention"])
    with pytest.raises(NNError, match="--depth"):
        R.options("circuit", -1)


@pytest.mark.parametrize("style", ["circuit", "graph"])
def test_cost_puts_parameters_on_blocks(style):
    from nncircuit.analysis.cost import param_count
    from nncircuit.backends.diagram.model import human

    spec = load("transformer.nn")
    attn = next(n for _, g in spec.graph.walk() for n in g.nodes() if n.name == "attn")
    svg = svg_of(spec, style, cost=True)
    assert f"{human(param_count(attn.callee))} params" in svg  # 7.1M on the attention block
    assert f"{human(spec.param_count())} params" in svg  # the model's total in the title
    assert "params" not in svg_of(spec, style)


# ---- DOT and Mermaid goldens --------------------------------------------------------------------------


GOLDEN_CASES = [(f, m, None) for f, m in MODELS] + [("transformer.nn", "GPT2", 9)]


@pytest.mark.parametrize("fmt", [".dot", ".mmd"])
@pytest.mark.parametrize("file,model,depth", GOLDEN_CASES)
def test_text_diagram_goldens(file, model, depth, fmt, update_goldens):
    text = R.render(load(file, model), fmt, R.options("graph", depth))
    name = f"{model}{'' if depth is None else f'-depth{depth}'}{fmt}"
    path = os.path.join(GOLDENS, name)
    if update_goldens:
        os.makedirs(GOLDENS, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        assert text == f.read(), f"{name} changed; rerun with --update-goldens if that is intended"


def _doc_pictures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("doc_pictures", os.path.join(ROOT, "scripts", "doc_pictures.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DOC_PICTURES = _doc_pictures()
DOC_DIAGRAMS = DOC_PICTURES.PICTURES  # docs/diagrams: name, spec file, model, options


@pytest.mark.parametrize("name,file,model,opts", DOC_DIAGRAMS, ids=[d[0] for d in DOC_DIAGRAMS])
def test_committed_diagrams_are_current(name, file, model, opts, update_goldens):
    """The pictures in docs/diagrams are what `nnc render` draws today, in paper mode at 486 pt
    (scripts/doc_pictures.py writes them; so does --update-goldens, PNG with the SVG)."""
    svg = DOC_PICTURES.svg_of(file, model, opts)
    path = os.path.join(ROOT, "docs", "diagrams", f"{name}.svg")
    if update_goldens:
        R.write(path, svg)
        R.write(path[:-4] + ".png", R.rasterize(svg, ".png"))
    assert paper.smallest_text_pt(svg) >= 6.0  # printed at 486 pt, every text readable
    with open(path, encoding="utf-8") as f:
        assert svg == f.read(), f"docs/diagrams/{name}.svg is stale; rerun with --update-goldens"
    assert geometry_problems(svg) == []


def test_dot_is_valid_for_graphviz():
    if not shutil.which("dot"):
        pytest.skip("Graphviz is not installed")
    text = R.render(load("unet.nn"), ".dot", R.options("graph", 1))
    res = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    root = ET.fromstring(res.stdout)
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert {"up.double_conv", "up.up", "s1"} <= ids


def test_graph_style_uses_graphviz_when_installed():
    if not shutil.which("dot"):
        pytest.skip("Graphviz is not installed")
    svg = R.svg(load("transformer.nn"), R.options("graph"))
    assert "Generated by graphviz" in svg and 'id="h.attn"' in svg


def test_mermaid_ids_are_distinct_for_distinct_paths():
    from nncircuit.backends.diagram.text import _mid

    taken = {}
    ids = [_mid(p, taken) for p in ("a.b", "a__b", "a_b", "a.b")]
    assert ids[0] == ids[3] and len(set(ids[:3])) == 3
    assert all(re.fullmatch(r"\w+", i) for i in ids)


# ---- raster formats, HTML, CLI ------------------------------------------------------------------------


def test_png_and_pdf_through_cairosvg():
    pytest.importorskip("cairosvg")
    spec = load("mlp.nn")
    png = R.render(spec, ".png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")
    assert width == 2 * float(ET.fromstring(svg_of(spec)).get("width"))  # drawn at 2x
    assert R.render(spec, ".pdf")[:5] == b"%PDF-"


def test_png_without_cairosvg_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cairosvg", None)
    with pytest.raises(NNError, match="needs the cairosvg package: pip install cairosvg"):
        R.render(load("mlp.nn"), ".png")


def test_html_is_one_self_contained_page():
    page = R.render(load("transformer.nn"), ".html")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page
    panels = re.findall(r'<section class="view panel" data-scope="([^"]+)" hidden>', page)
    assert panels == ["h.attn", "h.attn.causal_attention", "h.mlp"]  # every closed block, nested
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


BROWSER_TEST = """<script>
(function () {
  var out = [];
  function shown(scope) {
    var p = document.querySelector('section.panel[data-scope="' + scope + '"]');
    return !p.hidden && p.getBoundingClientRect().height > 0;
  }
  function click(scope) {
    var box = document.querySelector('g.block.collapsed[data-scope="' + scope + '"]');
    box.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  }
  out.push(shown("h.attn"));
  click("h.attn"); out.push(shown("h.attn"));
  click("h.attn.causal_attention"); out.push(shown("h.attn.causal_attention"));
  click("h.attn"); out.push(shown("h.attn"), shown("h.attn.causal_attention"));
  var svg = document.querySelector(".canvas svg"), before = svg.getAttribute("viewBox");
  document.querySelector('.toolbar button[data-zoom="in"]').click();
  out.push(svg.getAttribute("viewBox") !== before);
  var pre = document.createElement("pre"); pre.id = "nnc-result"; pre.textContent = out.join(",");
  document.body.appendChild(pre);
})();
</script>"""


def test_html_expand_and_collapse_in_headless_chromium(tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium is not installed")
    page = R.render(load("transformer.nn", **GPT2_SMALL), ".html")
    path = tmp_path / "page.html"
    path.write_text(page.replace("</body>", BROWSER_TEST + "</body>"), encoding="utf-8")
    res = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    m = re.search(r'<pre id="nnc-result">([^<]*)</pre>', res.stdout)
    assert m, res.stderr[-2000:]
    # closed at first; opens; a nested block opens; closing the outer one closes both; zoom
    assert m.group(1) == "false,true,true,false,false,true"


def test_cli_writes_every_format(tmp_path, capsys):
    spec_file = os.path.join(SPECS, "transformer.nn")
    for ext in R.FORMATS:
        if ext in (".png", ".pdf") and _no_cairo():
            continue
        out = tmp_path / f"gpt2{ext}"
        rc = nnc(["render", spec_file, "-o", str(out), "-p", "layers=2", "--style", "graph", "--depth", "1",
                  "--expand", "CausalAttention", "--cost"])
        assert rc == 0 and out.stat().st_size > 100, ext
    assert "wrote" in capsys.readouterr().out


def _no_cairo():
    try:
        import cairosvg  # noqa: F401
    except ImportError:
        return True
    return False


def test_cli_reports_a_bad_extension_and_a_bad_expand(tmp_path, capsys):
    spec_file = os.path.join(SPECS, "mlp.nn")
    assert nnc(["render", spec_file, "-o", str(tmp_path / "m.jpg")]) == 1
    assert "extension must be one of .svg, .png, .pdf, .dot, .mmd, .html" in capsys.readouterr().err
    assert nnc(["render", spec_file, "-o", str(tmp_path / "m.svg"), "--expand", "Nope"]) == 1
    assert "no block or scope 'Nope'" in capsys.readouterr().err
    assert not (tmp_path / "m.svg").exists()


def test_cli_render_in_a_subprocess(tmp_path):
    out = tmp_path / "vit.svg"
    res = subprocess.run([sys.executable, "-m", "nncircuit.cli", "render", os.path.join(SPECS, "vit.nn"),
                          "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    ET.parse(out)


def test_spec_shows_itself_in_a_notebook():
    spec = load("mlp.nn")
    assert spec._repr_svg_() == svg_of(spec)


# ---- every op has a drawing -----------------------------------------------------------------------------


def test_every_registry_op_renders():
    """The diagram backend has no per-op table: each op is drawn from its registry entry. Draw
    the ONNX tests' spec that uses every op (and the optimizer's fused ops) to prove it."""
    try:
        from test_onnx import OPTIMIZED, ZOO, load_optimized
    except ImportError as e:  # the ONNX test module needs onnx and onnxruntime
        pytest.skip(f"the every-op spec lives in test_onnx: {e}")
    specs = [nncircuit.load("zoo.nn", m, text=ZOO) for m in nncircuit.models("zoo.nn", text=ZOO)]
    specs += [load_optimized(m, how) for m, how in OPTIMIZED]
    drawn = set()
    for spec in specs:
        for style in ("circuit", "graph"):
            svg = svg_of(spec, style, depth=9)
            assert geometry_problems(svg) == [], spec.model
            drawn |= {el.get("data-op") for el in ET.fromstring(svg).iter(NS + "g") if el.get("data-op")}
    assert set(registry.all_ops()) - drawn == set()


def test_cost_option_shows_parameters_and_flops_per_block(tmp_path):
    from nncircuit.cli import main

    out = tmp_path / "gpt2.svg"
    assert main(["render", os.path.join(SPECS, "transformer.nn"), "-o", str(out), "--cost"]) == 0
    text = out.read_text()
    # the repeat frame shows all 12 layers; blocks inside it show one layer (batch 1, seq 128)
    assert "85.1M params · 22.3B FLOPs" in text
    assert "2.4M params · 654M FLOPs" in text
    assert "4.7M params · 1.2B FLOPs" in text

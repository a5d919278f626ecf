"""Diagrams for a paper: a printed width and text size (rows wrapped to fit, text never
shrunk), one block drawn alone, the caption and its recomputed figures, the PNG's scale and
size limit."""

import os
import re
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import SPECS
from nncircuit.backends.diagram import paper
from nncircuit.backends.diagram import render as R
from nncircuit.cli import main as nnc
from nncircuit.errors import NNError
from diagram_routing import wire_crossings
from test_render import NS, boxes, geometry_problems, load

PAPER = [("transformer.nn", None), ("resnet.nn", "ResNet18"), ("unet.nn", None)]


def paper_svg(file, model=None, params=None, **opts):
    return R.svg(load(file, model, **(params or {})), R.options(**opts))


def label_sizes(svg):
    """Font sizes (in SVG units) of the wire labels."""
    return [float(el.get("font-size")) for el in ET.fromstring(svg).iter(NS + "text") if el.get("class") == "label"]


def printed_label_pt(svg):
    """The wire labels' size as printed: font px × printed width / drawing width."""
    root = ET.fromstring(svg)
    width, view = root.get("width"), float(root.get("viewBox").split()[2])
    printed = float(width[:-2]) if width.endswith("pt") else float(width)
    return min(label_sizes(svg)) * printed / view


# ---- printed width and text size ------------------------------------------------------------


@pytest.mark.parametrize("file,model", PAPER)
def test_full_text_width_prints_labels_at_six_pt_or_more(file, model):
    plain = paper_svg(file, model)
    assert printed_label_pt(plain.replace(f'width="{ET.fromstring(plain).get("width")}"', 'width="486pt"', 1)) < 4.5
    svg = paper_svg(file, model, width="486pt")
    root = ET.fromstring(svg)
    assert root.get("width").endswith("pt") and float(root.get("width")[:-2]) <= 486
    assert printed_label_pt(svg) >= 6.0
    assert set(label_sizes(svg)) == set(label_sizes(plain))  # by wrapping rows, not by shrinking text
    assert paper.smallest_text_pt(svg) >= 6.0  # every text, titles and captions too
    assert geometry_problems(svg) == []


def test_font_size_sets_the_printed_size_of_the_smallest_text():
    svg = paper_svg("mlp.nn", width="486pt", font_size=8)
    assert paper.smallest_text_pt(svg) == pytest.approx(8.0, abs=0.05)  # a narrow figure is not blown up
    assert float(ET.fromstring(svg).get("width")[:-2]) < 486
    bigger = paper_svg("unet.nn", width="486pt", font_size=9)  # a figure as wide as the page
    normal = paper_svg("unet.nn", width="486pt")
    assert paper.smallest_text_pt(bigger) == pytest.approx(9.0, abs=0.05)
    assert float(ET.fromstring(bigger).get("viewBox").split()[2]) < float(ET.fromstring(normal).get("viewBox").split()[2])


def test_wrapped_rows_save_and_load_every_value_under_its_own_letter():
    svg = paper_svg("unet.nn", width="486pt")  # five skips cross the cuts: each gets a letter
    root = ET.fromstring(svg)
    markers = [el.text for el in root.iter(NS + "text") if el.get("class") == "marker"]
    assert len(set(markers)) >= 5 and all(markers.count(m) >= 2 for m in markers)
    gpt = ET.fromstring(paper_svg("transformer.nn", width="486pt"))
    frame = next(g for g in gpt.iter(NS + "g") if g.get("id") == "h")
    inside = {el.text for el in frame.iter(NS + "text") if el.get("class") == "marker"}
    outside = [el.text for el in gpt.iter(NS + "text") if el.get("class") == "marker"]
    assert inside  # the repeat wraps inside its frame
    # and its letters are its own: none is saved or loaded outside the frame (a value read in
    # several later rows is loaded once per row)
    inside_all = [el.text for el in frame.iter(NS + "text") if el.get("class") == "marker"]
    assert all(outside.count(t) == inside_all.count(t) >= 2 for t in inside)
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    spec = load("unet.nn")
    assert {n.name for n in spec.graph.nodes()} <= ids  # nothing lost at the cuts


def test_paper_mode_is_deterministic_and_leaves_the_default_alone():
    a = paper_svg("unet.nn", width="486pt", depth=1)
    assert a == paper_svg("unet.nn", width="486pt", depth=1)
    assert paper_svg("transformer.nn") == R.svg(load("transformer.nn"), R.options())
    assert 'width="486pt"' not in paper_svg("transformer.nn")


@pytest.mark.parametrize("text,pt", [("486pt", 486), ("486", 486), ("648px", 486), ("1in", 72), ("25.4mm", 72)])
def test_lengths(text, pt):
    assert paper.parse_length(text) == pytest.approx(pt)


@pytest.mark.parametrize("bad", ["wide", "-3pt", "0", "12 furlongs"])
def test_a_bad_length_is_a_clear_error(bad):
    with pytest.raises(NNError, match="expected a positive length such as 486pt"):
        R.options(width=bad)


# ---- one block ------------------------------------------------------------------------------------


def test_block_draws_one_block_with_its_hyperparameters():
    svg = paper_svg("transformer.nn", block="SelfAttention")
    root = ET.fromstring(svg)
    title = next(el.text for el in root.iter(NS + "text") if el.get("class") == "title")
    assert title == "SelfAttention(d=768, heads=12, proj_std=0.00408248)"
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert {"q", "k", "v", "causal_attention"} <= ids and "wte" not in ids
    assert "Multi-head causal self-attention" in svg  # its own doc comment
    assert geometry_problems(svg) == []
    by_path = paper_svg("transformer.nn", block="h.attn", depth=1)
    assert 'class="block expanded"' in by_path and geometry_problems(by_path) == []


def test_an_unknown_block_says_what_is_known():
    with pytest.raises(NNError, match="--block: the model has no block or scope 'SelfAtention'.*SelfAttention"):
        paper_svg("transformer.nn", block="SelfAtention")


# ---- captions ----------------------------------------------------------------------------------------


def caption_of(svg):
    return " ".join(el.text for el in ET.fromstring(svg).iter(NS + "text") if el.get("class") == "doc")


def test_caption_figures_follow_the_configuration():
    assert "124,439,808 parameters" in caption_of(paper_svg("transformer.nn"))
    spec = load("transformer.nn", layers=48)
    big = caption_of(R.svg(spec, R.options()))
    assert f"{spec.param_count():,} parameters" in big and "124,439,808" not in big
    assert caption_of(paper_svg("transformer.nn", caption="off")) == ""
    custom = caption_of(R.svg(spec, R.options(caption="GPT-2 at 48 layers: {params} weights.")))
    assert custom == f"GPT-2 at 48 layers: {spec.param_count():,} weights."


# ---- PNG ------------------------------------------------------------------------------------------


def test_png_scale_and_printed_width():
    pytest.importorskip("cairosvg")
    png = R.render(load("mlp.nn"), ".png", R.options(scale=3))
    width = int.from_bytes(png[16:20], "big")
    assert width == 3 * float(ET.fromstring(paper_svg("mlp.nn")).get("width"))
    png = R.render(load("transformer.nn"), ".png", R.options(width="486pt", scale=1))
    printed = float(ET.fromstring(paper_svg("transformer.nn", width="486pt")).get("width")[:-2])
    assert int.from_bytes(png[16:20], "big") == pytest.approx(printed * 96 / 72, abs=1)  # pt at 96 dpi


def test_a_png_beyond_the_rasteriser_is_a_clear_error_before_cairo(monkeypatch):
    class NoCairo:
        def __getattr__(self, name):
            raise AssertionError("cairo was called")

    monkeypatch.setitem(sys.modules, "cairosvg", NoCairo())
    spec = load("unet.nn")
    with pytest.raises(NNError, match=r"the PNG would be \d+×\d+ px at scale 2, beyond the rasteriser's limit "
                                      r"of 32767 px a side: use --scale [\d.]+ or less"):
        R.render(spec, ".png", R.options("graph", 3))
    w, h = paper.raster_size(R.svg(spec, R.options("graph", 3)), 2.0)
    assert max(w, h) > paper.CAIRO_MAX


def test_cli_paper_options(tmp_path, capsys):
    spec_file = os.path.join(SPECS, "transformer.nn")
    out = tmp_path / "gpt2.svg"
    assert nnc(["render", spec_file, "-o", str(out), "--width", "486pt", "-p", "layers=48"]) == 0
    said = capsys.readouterr().out
    m = re.search(r"smallest text ([\d.]+) pt", said)
    assert m and float(m.group(1)) >= 6.0
    assert "124,439,808" not in out.read_text()
    out = tmp_path / "attn.svg"
    assert nnc(["render", spec_file, "-o", str(out), "--block", "SelfAttention", "--caption", "off"]) == 0
    assert "SelfAttention(d=768, heads=12, proj_std=0.00408248)" in out.read_text() and 'class="doc"' not in out.read_text()
    assert nnc(["render", spec_file, "-o", str(tmp_path / "x.svg"), "--width", "wide"]) == 1
    assert "expected a positive length" in capsys.readouterr().err
    assert nnc(["render", spec_file, "-o", str(tmp_path / "x.png"), "--scale", "0"]) == 1
    assert "--scale must be more than 0" in capsys.readouterr().err


# ---- what operations say ----------------------------------------------------------------------------


def op_group(svg, op_id):
    return next(g for g in ET.fromstring(svg).iter(NS + "g") if g.get("id") == op_id)


def texts(el, cls):
    return [t.text for t in el.iter(NS + "text") if t.get("class") == cls]


def test_convolutions_show_their_window_in_a_light_blue_trapezoid():
    svg = paper_svg("conv.nn", "ConvNet", depth=1)
    notes = {g.get("id"): texts(g, "note") for g in ET.fromstring(svg).iter(NS + "g") if g.get("data-op") == "Conv"}
    assert notes["conv"] == ["3×3"]
    assert notes["conv_1"] == ["3×3 /2"]  # strided
    assert notes["conv_2"] == ["3×3 d2"]  # dilated
    assert notes["conv_3"] == ["3×3 g4"]  # grouped
    assert notes["separable.conv"] == ["3×3 dw"] and notes["separable.conv_1"] == ["1×1"]  # depthwise, pointwise
    shape = next(el for el in op_group(svg, "conv") if el.get("class") == "shape")
    assert shape.tag == NS + "polygon" and shape.get("fill") == "#dbeafe"
    assert geometry_problems(svg) == []


def test_batchnorm_is_not_drawn_like_layernorm():
    bn = op_group(paper_svg("conv.nn", "ConvNet"), "batch_norm")
    ln = op_group(paper_svg("transformer.nn"), "layer_norm")
    assert texts(bn, "note") == ["over batch, h, w"] and texts(ln, "note") == []
    fill = lambda g: next(el.get("fill") for el in g if el.get("class") == "shape")  # noqa: E731
    assert fill(bn) != fill(ln)


def test_index_ties_and_titles():
    vit = paper_svg("vit.nn")
    assert texts(op_group(vit, "select"), "glyph") == ["[seq = 0]"]
    gpt = paper_svg("transformer.nn")
    assert texts(op_group(gpt, "logits"), "note") == ["tied to wte"]
    unet = paper_svg("unet.nn", "UNet")
    assert texts(op_group(unet, "x"), "title") == ["Down"]  # the block, not the variable
    assert texts(op_group(unet, "x"), "caption") == ["x"]  # which is written in italics under it
    r50 = paper_svg("resnet.nn", "ResNet50")
    assert texts(op_group(r50, "bottleneck"), "title") == ["Bottleneck"]  # an unnamed instance
    assert texts(op_group(gpt, "h.attn"), "title") == ["attn: SelfAttention"]  # an instance the spec named


def test_no_frame_for_a_single_repetition():
    svg = paper_svg("resnet.nn", "ResNet18")  # each stage: its first block, then `repeat 1`
    assert ">×1<" not in svg and ">×2<" in paper_svg("resnet.nn", "ResNet50")
    once = op_group(svg, "layer_1")
    assert not [el for el in once if el.get("class") == "frame"] and op_group(svg, "layer_1.basic_block") is not None


def test_a_block_too_wide_for_the_page_does_not_cut_the_other_rows_into_stubs():
    """LSTM's repeated layer is one column wider than the page: narrowing the rows for it
    cannot help, so the input, its rename and the first layer still share the first row
    (they were three rows of one cell each, with two letters to carry x between them)."""
    svg = paper_svg("lstm.nn", "LSTM", params={"num_layers": 2, "bidirectional": True}, width="486pt")
    root = ET.fromstring(svg)
    markers = [(el.text, float(el.get("y"))) for el in root.iter(NS + "text") if el.get("class") == "marker"]
    first = next(b for i, _, b in boxes(root) if i == "first")
    assert first[1] < min(y for _, y in markers)  # the first layer is in the first row
    assert len({t for t, _ in markers}) <= 8  # was 10 (A-J)
    assert geometry_problems(svg) == []


def test_a_frames_inputs_stack_in_the_order_their_values_arrive():
    """Mamba's scan: the frame's ports were stacked in the order the values arrive from
    outside (h, A, u, B, C, dt), but inside the body dt was drawn on top (its first use is
    the top op), so its wire climbed from the lowest port across every other input. The body's
    inputs now stack in the ports' order too, and the block has fewer crossing wires."""
    svg = paper_svg("mamba.nn", "Mamba", width="486pt", block="MambaMixer")
    root = ET.fromstring(svg)
    frame = next(g for g in root.iter(NS + "g") if g.get("id") == "scan")
    names = [(float(el.get("y")), el.text) for el in frame.iter(NS + "text") if el.get("class") == "io-name"]
    inputs = [n for _, n in sorted(names)][:6]
    assert inputs == ["h", "A", "u", "B", "C", "dt"]
    assert wire_crossings(svg) <= 60  # was 81 (with the rows' cuts restacked too: 34)
    assert geometry_problems(svg) == []


@pytest.mark.parametrize("file,model,opts,most,before", [
    ("lstm.nn", "LSTM", {"params": {"num_layers": 2, "bidirectional": True}}, 10, 167),
    ("mamba.nn", "Mamba", {"block": "MambaMixer"}, 40, 59),
    ("transformer.nn", None, {"block": "SelfAttention", "depth": 1}, 15, 19),
])
def test_values_cross_a_row_cut_in_the_order_their_wires_run(file, model, opts, most, before):
    """Where a row ends, the values going on are stacked in the order their wires arrive
    (as laid out), and where the next row starts, in the order their wires pass that row's
    first column (in the diagram laid out in one row): not in the order the values were made,
    which crossed them on both sides of every cut (LSTM: 167 crossing pairs of wires)."""
    opts = dict(opts)
    svg = paper_svg(file, model, params=opts.pop("params", None), width="486pt", **opts)
    assert wire_crossings(svg) <= most, before
    assert geometry_problems(svg) == []

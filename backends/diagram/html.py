"""One self-contained HTML page: the diagram, and for every block drawn closed a panel with
its own sub-diagram that a click on the block opens and closes (nested, as deep as the
blocks go). Zoom with the wheel or the buttons, pan by dragging; inline CSS and JS only,
nothing is fetched."""

from __future__ import annotations

import html as htmlmod
from dataclasses import replace

from nncircuit.ir.graph import BodyNode, CallNode, Graph

from nncircuit.backends.diagram import model as dm
from nncircuit.backends.diagram.draw import svg as render_svg

CSS = """
body { font-family: "DejaVu Sans", Verdana, Helvetica, Arial, sans-serif; margin: 16px; color: #111; }
header h1 { font-size: 18px; margin: 0 0 4px; }
header p { margin: 2px 0; color: #333; font-size: 13px; }
p.help { color: #666; font-size: 12px; }
section.view { border: 1px solid #d0d4da; border-radius: 6px; margin: 10px 0; padding: 6px 8px; background: #fff; }
section.panel { margin-left: 18px; border-left: 3px solid #94a3b8; }
section.view > h2 { font-size: 12px; margin: 2px 0 4px; color: #555; font-weight: normal; }
.toolbar { float: right; }
.toolbar button { font-size: 12px; min-width: 26px; margin-left: 2px; cursor: pointer; }
.canvas { overflow: hidden; cursor: grab; clear: both; }
.canvas.dragging { cursor: grabbing; }
.canvas svg { max-width: 100%; height: auto; display: block; user-select: none; }
g.block.collapsed { cursor: pointer; }
g.block.collapsed:hover > rect.shape { stroke: #2563eb; }
g.block.open > rect.shape { stroke: #2563eb; stroke-width: 2.5; }
"""

JS = r"""
(function () {
  "use strict";
  function panelFor(scope) {
    var all = document.querySelectorAll("section.panel");
    for (var i = 0; i < all.length; i++) if (all[i].getAttribute("data-scope") === scope) return all[i];
    return null;
  }
  function setOpen(box, open) {
    var scope = box.getAttribute("data-scope");
    var panel = panelFor(scope);
    if (!panel) return;
    panel.hidden = !open;
    box.classList.toggle("open", open);
    if (!open) {  // closing a block closes what was opened inside it
      var inner = panel.querySelectorAll("g.block.collapsed.open");
      for (var i = 0; i < inner.length; i++) setOpen(inner[i], false);
    }
  }
  window.nncToggle = function (scope) {
    var boxes = document.querySelectorAll("g.block.collapsed");
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].getAttribute("data-scope") === scope) {
        setOpen(boxes[i], !boxes[i].classList.contains("open"));
        return !panelFor(scope).hidden;
      }
    }
    return null;
  };
  function zoomable(canvas) {
    var svg = canvas.querySelector("svg");
    var base = svg.getAttribute("viewBox").split(" ").map(Number);
    var vb = base.slice();
    var drag = null, moved = false;
    function apply() { svg.setAttribute("viewBox", vb.join(" ")); }
    function zoom(f, cx, cy) {
      var nw = vb[2] * f, nh = vb[3] * f;
      vb = [cx - (cx - vb[0]) * f, cy - (cy - vb[1]) * f, nw, nh];
      apply();
    }
    function point(ev) {
      var r = svg.getBoundingClientRect();
      return [vb[0] + (ev.clientX - r.left) / r.width * vb[2], vb[1] + (ev.clientY - r.top) / r.height * vb[3]];
    }
    canvas.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var p = point(ev);
      zoom(ev.deltaY < 0 ? 1 / 1.15 : 1.15, p[0], p[1]);
    }, { passive: false });
    canvas.addEventListener("mousedown", function (ev) {
      drag = [ev.clientX, ev.clientY, vb[0], vb[1]]; moved = false; canvas.classList.add("dragging");
    });
    window.addEventListener("mousemove", function (ev) {
      if (!drag) return;
      var r = svg.getBoundingClientRect();
      var dx = (ev.clientX - drag[0]) / r.width * vb[2], dy = (ev.clientY - drag[1]) / r.height * vb[3];
      if (Math.abs(ev.clientX - drag[0]) + Math.abs(ev.clientY - drag[1]) > 3) moved = true;
      vb[0] = drag[2] - dx; vb[1] = drag[3] - dy; apply();
    });
    window.addEventListener("mouseup", function () { drag = null; canvas.classList.remove("dragging"); });
    canvas.addEventListener("click", function (ev) {
      if (moved) { moved = false; return; }
      var box = ev.target.closest ? ev.target.closest("g.block.collapsed") : null;
      if (box) setOpen(box, !box.classList.contains("open"));
    });
    canvas.addEventListener("dblclick", function () { vb = base.slice(); apply(); });
    var bar = canvas.parentNode.querySelector(":scope > .toolbar");
    if (bar) bar.addEventListener("click", function (ev) {
      var what = ev.target.getAttribute("data-zoom");
      var c = [vb[0] + vb[2] / 2, vb[1] + vb[3] / 2];
      if (what === "in") zoom(1 / 1.25, c[0], c[1]);
      else if (what === "out") zoom(1.25, c[0], c[1]);
      else if (what === "fit") { vb = base.slice(); apply(); }
    });
  }
  var canvases = document.querySelectorAll(".canvas");
  for (var i = 0; i < canvases.length; i++) zoomable(canvases[i]);
  document.getElementById("open-all").addEventListener("click", function () {
    var boxes;
    do {
      boxes = Array.prototype.filter.call(document.querySelectorAll("g.block.collapsed:not(.open)"),
        function (b) { return b.getBoundingClientRect().width > 0; });
      boxes.forEach(function (b) { setOpen(b, true); });
    } while (boxes.length);
  });
  document.getElementById("close-all").addEventListener("click", function () {
    document.querySelectorAll("g.block.collapsed.open").forEach(function (b) { setOpen(b, false); });
  });
})();
"""


def _strip_xml_decl(svg: str) -> str:
    return svg[svg.index("<svg"):] if "<svg" in svg else svg


def _view(svg: str, title: str | None, scope: str | None, children: list[str]) -> str:
    head = f"<h2>{htmlmod.escape(title)}</h2>\n" if title else ""
    attrs = f' class="view panel" data-scope="{htmlmod.escape(scope)}" hidden' if scope else ' class="view"'
    bar = ('<div class="toolbar"><button data-zoom="in" title="zoom in">+</button>'
           '<button data-zoom="out" title="zoom out">−</button>'
           '<button data-zoom="fit" title="fit">fit</button></div>')
    return (f"<section{attrs}>\n{bar}\n{head}<div class=\"canvas\">\n{_strip_xml_decl(svg)}</div>\n"
            + "".join(children) + "</section>\n")


def _panels(g: Graph, prefix: str, level: int, env, exp: dm.Expansion, opts: dm.Options) -> list[str]:
    """A panel for every block drawn closed in this view (its sub-diagram, with its own
    closed blocks as nested panels); open blocks and repeats are part of this view."""
    out = []
    for node in g.nodes():
        if not isinstance(node, BodyNode):
            continue
        path = dm.scope(prefix, node.name)
        inner_env = dm.callee_env(node, g, env)
        if dm.is_loop(node):
            out += _panels(node.callee, path, level, inner_env, exp, opts)
        elif exp.is_open(path, node, level + 1):
            out += _panels(node.callee, path, level + 1, inner_env, exp, opts)
        else:
            closed = dm.Expansion(node.callee, replace(opts, depth=0, expand=()))
            svg = _block_svg(dm.as_call(node), path, level + 1, inner_env, closed, opts)
            kids = _panels(node.callee, path, level + 1, inner_env, closed, opts)
            out.append(_view(svg, f"{path} ▸", path, kids))
    return out


def _block_svg(node: CallNode, path: str, level: int, env, exp: dm.Expansion, opts: dm.Options) -> str:
    callee = node.callee
    args = dm.args_text(node.args)
    title = f"{node.block}({args})" if args else node.block
    params = dm.block_params(node) if opts.cost else None
    if opts.style == "graph":
        from nncircuit.backends.diagram.graph import block_svg

        return block_svg(callee, path, level, env, exp, opts, title, params)
    from nncircuit.backends.diagram.circuit import Ctx, layout_graph
    from nncircuit.backends.diagram.circuit_draw import document

    lay = layout_graph(Ctx(callee, path, level, env, exp, opts, False))
    return document(lay, callee, opts, params, title=title, root_id="")


def html(spec, opts: dm.Options) -> str:
    g = spec.graph
    exp = dm.Expansion(g, opts)
    main = render_svg(spec, opts, engine="python")
    panels = _panels(g, "", 0, dm.root_env(g), exp, opts)
    title = htmlmod.escape(dm.model_title(g))
    doc = f"<p>{htmlmod.escape(g.doc)}</p>" if g.doc else ""
    help_ = ("Scroll to zoom, drag to pan, double-click to fit. Click a block to open or close its "
             "diagram below." if panels else "Scroll to zoom, drag to pan, double-click to fit.")
    buttons = ('<button id="open-all">open all blocks</button> <button id="close-all">close all</button>'
               if panels else '<span id="open-all"></span><span id="close-all"></span>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{htmlmod.escape(g.name)} — nncircuit</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{title}</h1>{doc}<p class=\"help\">{help_} {buttons}</p></header>\n"
        + _view(main, None, None, panels)
        + f"<script>{JS}</script>\n</body>\n</html>\n"
    )

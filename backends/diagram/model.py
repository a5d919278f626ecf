"""What every diagram style reads off the IR: which blocks are drawn open (--depth,
--expand), typical sizes of run-time axes, axis and type labels, block titles and costs,
and how each op looks, derived from its registry entry (glyph, learned, parameters)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nncircuit.names import snake
from nncircuit.analysis import cost as analysis
from nncircuit.ops import registry
from nncircuit.types import expr as X
from nncircuit.errors import InternalError, NNError, ShapeError, did_you_mean
from nncircuit.ir.graph import BodyNode, CallNode, Graph, LoopNode, Node, ScanNode
from nncircuit.types.sizes import Size
from nncircuit.types.tensor import Axis, HVal, TensorType

STYLES = ("circuit", "graph")

# Typical sizes of a graph's run-time axes: symbol -> (value, exact). Exact when the size
# is fixed by a static size at the call site; otherwise it is the spec's `~N` guess.
Env = dict


@dataclass(frozen=True)
class Options:
    style: str = "circuit"
    depth: int = 0  # calls nested deeper than this are drawn as one box
    expand: tuple[str, ...] = ()  # block names or scope paths drawn open whatever the depth
    cost: bool = False
    # with `cost`: FLOPs of one forward pass per scope path (batch 1, typical sizes)
    flops: tuple[tuple[str, int], ...] = ()
    # paper mode (see paper.py): printed width in pt (0: none), smallest text in pt there,
    # the caption ("doc", "off" or the text itself), one block drawn alone, PNG scale
    width_pt: float = 0.0
    font_pt: float = 0.0
    caption: str = "doc"
    block: str = ""
    scale: float = 2.0


def scope(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Expansion:
    """Which call nodes are drawn open. Repeats are always drawn open (once, with ×N):
    they are part of the block that contains them, not blocks of their own."""

    def __init__(self, root: Graph, options: Options):
        self.depth = options.depth
        self.calls: dict[str, CallNode] = {}
        self.repeats: set[str] = set()  # always open; naming one is not an error
        self._collect(root, "")
        wanted = set(options.expand)
        known = {n.block for n in self.calls.values()} | set(self.calls) | self.repeats
        for name in sorted(wanted):
            if name not in known:
                raise NNError(f"--expand: the model has no block or scope '{name}'{did_you_mean(name, known)}")
        forced = {p for p, n in self.calls.items() if p in wanted or n.block in wanted}
        self.forced: set[str] = set()
        for path in forced:
            parts = path.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in self.calls:
                    self.forced.add(prefix)

    def _collect(self, g: Graph, prefix: str):
        for n in g.nodes():
            if isinstance(n, CallNode):
                self.calls[scope(prefix, n.name)] = n
            elif is_loop(n):
                self.repeats.add(scope(prefix, n.name))
            if isinstance(n, BodyNode):
                self._collect(n.callee, scope(prefix, n.name))

    def is_open(self, path: str, node: Node, level: int) -> bool:
        if is_loop(node):
            return True
        return level <= self.depth or path in self.forced


# ---- typical sizes and labels ----------------------------------------------------------------


def root_env(g: Graph) -> Env:
    return {k: (v, False) for k, v in sorted(g.dims.items()) if v > 0}


def eval_size(size: Size, env: Env):
    """(value, exact) of a size under typical sizes, or None when a symbol is unknown."""
    if size.is_static:
        return size.value, True
    syms = size.symbols()
    if not all(s in env for s in syms):
        return None
    try:
        val = size.evaluate({s: env[s][0] for s in syms})
    except (ShapeError, ValueError):
        return None
    return val, all(env[s][1] for s in syms)


def callee_env(node: BodyNode, g: Graph, env: Env) -> Env:
    """Typical sizes inside a call's callee, bound from the caller's sizes."""
    if is_loop(node):
        return env
    callee = node.callee
    out: Env = {}
    for v, nid in zip(node.inputs, callee.inputs):
        actual = g.type_of(v)
        for dax in callee.node(nid).type.axes:
            sym = dax.size.bare_symbol()
            if sym is None or sym in out or not actual.has(dax.name):
                continue
            got = eval_size(actual.axis(dax.name).size, env)
            if got is not None and got[0] > 0:
                out[sym] = got
    return out


def axis_label(ax: Axis, env: Env) -> str:
    """`d: 768`, `seq`, `seq: ~128`, `h: ~56`; a size we cannot evaluate is kept short."""
    s = ax.size
    if s.is_static:
        return f"{ax.name}: {s.value}"
    got = eval_size(s, env)
    if got is not None and got[0] > 1:
        return f"{ax.name}: {'' if got[1] else '~'}{got[0]}"
    if s.bare_symbol() == ax.name:
        return ax.name
    text = str(s).replace(" // ", "/")
    return f"{ax.name}: {text if len(text) <= 12 else '…'}"


def type_label(t: TensorType, env: Env) -> str:
    body = ", ".join(axis_label(a, env) for a in t.axes)
    return f"[{body}]" + ("" if t.dtype == "float32" else f" {t.dtype}")


def human(n: int) -> str:
    if n < 1000:
        return str(n)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return str(n)


def params_text(n: int) -> str:
    return f"{human(n)} params" if n else "no params"


def cost_text(node: BodyNode, path: str, opts: Options) -> str:
    """A block's cost label: its parameters and, when known, its FLOPs per forward pass."""
    text = params_text(block_params(node))
    flops = dict(opts.flops).get(path)
    return f"{text} · {human(flops)} FLOPs" if flops else text


def is_loop(node: Node) -> bool:
    """A repeat or a scan: a body drawn once, always open, in a dashed frame."""
    return isinstance(node, (LoopNode, ScanNode))


def block_params(node: BodyNode) -> int:
    if isinstance(node, LoopNode):
        times = 1 if node.shared else int(node.count.value)
        return times * analysis.param_count(node.callee)
    return analysis.param_count(node.callee)


def is_auto_name(name: str, base: str) -> bool:
    """Whether `name` is the one the elaborator makes up from `base` (not the spec's own)."""
    s = snake(base)
    return name == s or re.fullmatch(re.escape(s) + r"_\d+", name) is not None


def _value_text(v) -> str:
    if isinstance(v, HVal):
        v = v.value
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def args_text(args) -> str:
    return ", ".join(f"{k}={_value_text(v)}" for k, v in args)


def as_call(node: Node) -> CallNode:
    """A node drawn closed, as a box: always a block call (repeats are always open)."""
    if not isinstance(node, CallNode):
        raise InternalError(f"{node.op} node {node.name} drawn as a closed block")
    return node


def instance_named(node: CallNode) -> bool:
    """Whether the spec named the block instance itself (`attn = SelfAttention(d)`, then
    `attn(x)`: the call site applies it by that name). A name that only says what the call
    computes (`x = Down(64, 128)(x)`) belongs to the value, not to the block."""
    if is_auto_name(node.name, node.block):
        return False
    span = node.span
    if span is None:
        return True
    return re.match(re.escape(node.name) + r"\s*\(", span.source_line()[span.col - 1:]) is not None


def value_name(node: CallNode) -> str:
    """The name the spec gave a call's result (`s1 = DoubleConv(...)(image)`), or ""."""
    if is_auto_name(node.name, node.block) or instance_named(node):
        return ""
    return node.name


def call_title(node: CallNode) -> str:
    """`attn: SelfAttention` (the instance name only when the spec named the instance)."""
    block = node.block
    return f"{node.name}: {block}" if instance_named(node) else block


def repeat_title(node: LoopNode | ScanNode) -> str:
    if isinstance(node, ScanNode):
        return f"{node.name} {scan_badge(node)}"
    count = node.count
    extra = " shared" if node.shared else ""
    return f"{node.name} ×{count.value}{extra}"


def scan_badge(node: ScanNode) -> str:
    """A scan is a recurrence, not ×N: ⟲ and the axis it steps along."""
    return f"⟲ {node.axis}" + (" reversed" if node.reverse else "")


def repeat_count_text(node: LoopNode | ScanNode) -> str:
    if isinstance(node, ScanNode):
        return f"one step per {node.axis}, state carried"
    count = node.count
    return f"{count.expr.math()} = {count.value}" if not count.is_const else ""


def model_title(g: Graph) -> str:
    return f"{g.name}({args_text((h.name, h.value) for h in g.hyper)})" if g.hyper else g.name


# ---- how an op looks --------------------------------------------------------------------------

TAG, BOX, CIRCLE, TRIANGLE, TRAPEZOID, MERGE, CUP, RELABEL, SOURCE, ROUTER = (
    "tag", "box", "circle", "triangle", "trapezoid", "merge", "cup", "relabel", "source", "router",
)
# a registry entry's `figure` names the kind it is drawn as
FIGURE_KINDS = {"cup": CUP, "circle": CIRCLE, "triangle": TRIANGLE, "trapezoid": TRAPEZOID, "relabel": RELABEL,
                "router": ROUTER}


@dataclass(frozen=True)
class Look:
    kind: str
    text: str  # the glyph (and a scalar operand) to print
    learned: bool
    bias: bool  # learned map with a bias: drawn with a `+`
    acted: frozenset[str]  # axes the op works on; the others are carried (lifted)
    caption: str  # the node's name when the spec gave it one
    note: str = ""  # written under the glyph: a window, statistics, a tie (notes.py)
    batch_stats: bool = False  # a normalisation over the axes it is lifted over (BatchNorm)


def acted_axes(node: Node, in_types, out_types) -> frozenset[str]:
    """Axes an op works on: those its attributes name, those only one side has, and those
    whose size changes. Everything else is carried through untouched."""
    names = {a.name for t in (*in_types, *out_types) for a in t.axes}
    out: set[str] = {a for a in registry.get(node.op).axes_named(node.attrs) if a in names}
    sizes_in: dict[str, set] = {}
    for t in in_types:
        for a in t.axes:
            sizes_in.setdefault(a.name, set()).add(a.size)
    for t in out_types:
        for a in t.axes:
            if a.name not in sizes_in or a.size not in sizes_in[a.name]:
                out.add(a.name)
    out_names = {a.name for t in out_types for a in t.axes}
    out |= set(sizes_in) - out_names
    return frozenset(out)


def _scalar_text(v: HVal) -> str:
    e = v.expr
    if isinstance(e, X.Ref) or (isinstance(e, X.Call) and e.fn == "sqrt" and isinstance(e.args[0], X.Ref)):
        return e.math()
    return _value_text(v.value)


def look(node: Node, g: Graph) -> Look:
    """The drawing of a registry op, from its registry entry and its attributes."""
    op = registry.get(node.op)
    glyph = op.glyph
    in_types = tuple(g.type_of(v) for v in node.inputs)
    acted = acted_axes(node, in_types, node.types)
    params = op.params(node.attrs, in_types)
    bias = any(p.name == "bias" and not p.buffer for p in params)
    caption = "" if is_auto_name(node.name, node.op) else node.name
    operand = op.scalar_operand(node.attrs)
    if operand is not None:
        s = _scalar_text(operand[0])
        text = f"{s} {glyph}" if operand[1] == "left" else f"{glyph} {s}"
    else:
        text = glyph
    if not node.inputs:
        kind = SOURCE
    elif op.figure != "auto":
        kind = FIGURE_KINDS[op.figure]
    elif len(node.inputs) >= 2 and not acted:
        kind = MERGE
    elif len(node.inputs) == 1 and len(node.types) == 1 and not acted:
        kind = TAG
    else:
        kind = BOX
    shows_bias = bias and op.learned and kind in (BOX, TRAPEZOID)
    from nncircuit.backends.diagram import notes

    text = op.label(node.attrs) or text
    stats = notes.statistics_over(node, op, in_types, acted)
    return Look(kind, text or node.op, op.learned, shows_bias, acted, caption,
                notes.note(node, op, in_types, acted), bool(stats))

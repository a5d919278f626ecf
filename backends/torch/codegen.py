"""Lower the IR to readable, standalone PyTorch source: one nn.Module class per block
definition, repeats as nn.ModuleList, attribute names from the spec, `# file.nn:LINE`
comments, and no dependency on nncircuit at run time."""

from __future__ import annotations

import os
import re

from nncircuit.errors import InternalError, LoweringError
from nncircuit.ir.graph import BodyNode, CallNode, Graph, LoopNode, Node, ScanNode, SteppedNode, Value
from nncircuit.names import fresh, pyname
from nncircuit.ops import registry
from nncircuit.types.sizes import Dim, Size
from nncircuit.types.tensor import HVal
from nncircuit.types.expr import Expr

from nncircuit.backends.structure import class_name, single_call_body
from nncircuit.backends.torch.checkpoint import HOOK as CHECKPOINT_HOOK
from nncircuit.backends.torch.checkpoint import registration as checkpoint_registration
from nncircuit.backends.torch.ops import HELPERS, TORCH_DTYPES, TORCH_LOWERINGS, Statement, align, init_lines, move


# The model's method that seeds its random ops (see the `generator` helper).
SEED_METHOD = [
    "",
    "    def seed_random(self, seed):",
    '        """Make every random op of this model (dropout, drop_path, normal_like, ...) draw from',
    "        generators seeded with `seed`, one per device: the same seed, the same draws.\"\"\"",
    '        generators = {"seed": int(seed)}',
    "        for m in self.modules():",
    "            m._nnc_generators = generators",
    "        return self",
]


# A use of a class whose inputs do not agree on the lifted axes in front of them.
UNKNOWN_LEAD = -1


class Cx:
    """What one class's code generation needs: names, hyperparameter code, helper use."""

    def __init__(self, graph: Graph, gen: TorchGen):
        self.graph = graph
        self.gen = gen
        leads = gen.lift_counts.get(gen.class_of(graph), set())
        # lifted axes in front of every tensor at run time, when all uses agree
        self.lift_len: int | None = next(iter(leads)) if len(leads) == 1 and UNKNOWN_LEAD not in leads else None
        self.mode = "init"
        self.vars: dict[Value, str] = {}
        self.used_vars: set[str] = set()
        self._dims: dict[str, str] | None = None
        self._taken: set[str] | None = None
        self._lifted_values: set[Value] | None = None
        self.built_value = ""  # constructor code of the value of the op being built (Buffer)

    pyname = staticmethod(pyname)

    def hv(self, v: HVal) -> str:
        return self.code(v.expr)

    def code(self, e: Expr) -> str:
        """Python for a hyperparameter expression: constructor locals in __init__, the
        module's attributes in forward."""
        if self.mode == "init":
            return e.python(pyname)
        return e.python(lambda name: f"self.{self.hyper_attr(pyname(name))}")

    def hyper_attr(self, py: str) -> str:
        """The attribute that holds hyperparameter `py` (its Python name): the name itself,
        unless a submodule of this class has that name (`repeat layers` as `self.layers`)."""
        if self._taken is None:
            self._taken = {pyname(n.owner) for n in self.graph.nodes() if n.module is not None}
        hypers = {pyname(h.name) for h in self.graph.hyper}
        attr = py
        while attr in self._taken or (attr != py and attr in hypers):
            attr = "hp_" + attr
        return attr

    def has_lift_prefix(self, v: Value) -> bool:
        """Whether value v surely carries this class's lift prefix at run time (values
        computed without the inputs, from `positions` or a Param, do not)."""
        if self._lifted_values is None:
            # a repeat body's inputs may be carried values computed without any input
            flags = (False,) * len(self.graph.inputs) if self.graph.kind == "repeat" else None
            self._lifted_values = _lifted(self.graph, flags)
        return self.lift_len == 0 or v in self._lifted_values

    def mod(self, n: Node) -> str:
        return pyname(n.owner)

    def in_types(self, n: Node):
        return tuple(self.graph.type_of(v) for v in n.inputs)

    def need_helper(self, name: str):
        self.gen.helpers.add(name)

    def device(self) -> str:
        if self.mode == "init":  # a buffer's value, made on the CPU; .to(device) moves it
            return "None"
        for nid in self.graph.inputs:
            return f"{self.vars[Value(nid)]}.device"
        return "next(self.parameters()).device"

    def size(self, s: Size) -> str:
        if s.is_static:
            return str(s.value)
        dims = self.dim_code()
        missing = sorted(x for x in s.symbols() if x not in dims)
        if missing:
            raise LoweringError(f"the run-time size '{missing[0]}' cannot be read from any input")
        return s.render(lambda name: dims[name])

    def dim_code(self) -> dict[str, str]:
        """Code that reads each dynamic axis size from the first input that has it."""
        if self._dims is None:
            self._dims = {}
            for nid in self.graph.inputs:
                t = self.graph.node(nid).type
                for ax in t.axes:
                    sym = ax.size.bare_symbol()
                    if sym is not None and sym not in self._dims:
                        self._dims[sym] = f"{self.vars[Value(nid)]}.shape[{t.index(ax.name) - t.rank}]"
        return self._dims


class TorchGen:
    def __init__(self, model: Graph, *, source_name: str = ""):
        self.model = model
        self.source = _safe_filename(source_name or model.file)
        self.helpers: set[str] = set()
        self.classes: dict[str, str] = {}  # class name -> code
        self.order: list[str] = []
        self.graph_of: dict[str, Graph] = {}
        self.names: dict[tuple[str, str], str] = {}
        self.lift_counts: dict[str, set[int]] = {}
        self.variant_of: dict[Graph, str] = {}  # instances that need a class of their own
        self.seen: set[Graph] = set()

    def generate(self) -> str:
        self.class_of(self.model)  # the model's class keeps its own name
        self._lifts(self.model, 0)
        self._collect(self.model)
        body = [self.classes[c] for c in self.order]
        header = [
            f"# Generated by nncircuit from {self.source}, model {self.model.name}.",
            "# Edit the spec, not this file: it is regenerated by `nnc compile`.",
            "import math",
        ]
        if "partial" in self.helpers:
            header.append("import functools")
        header += ["", "import torch", "import torch.nn.functional as F", "from torch import nn", ""]
        helpers = [HELPERS[h].strip("\n") for h in sorted(self.helpers) if HELPERS[h]]
        if self.model.checkpoint is not None:
            helpers.append(CHECKPOINT_HOOK.strip("\n"))
        parts = header + ([*(h + "\n\n" for h in helpers)] if helpers else []) + body
        text = "\n".join(p.rstrip("\n") if not p.endswith("\n\n") else p.rstrip("\n") + "\n" for p in parts)
        text = re.sub(r"\n{4,}", "\n\n\n", text).rstrip() + "\n"
        return text

    def class_of(self, g: Graph) -> str:
        """One class per block definition; two definitions with one name (from different
        files) get distinct class names."""
        if g in self.variant_of:
            return self.variant_of[g]
        key = (g.file, g.name)
        if key not in self.names:
            base = class_name(g)
            self.names[key] = fresh(base, set(self.names.values()), sep="", first=2)
        return self.names[key]

    def _lifts(self, g: Graph, lead: int, flags: tuple[bool, ...] | None = None):
        """Record how many lifted axes lead each class's tensors at run time, at every use
        (UNKNOWN_LEAD where the inputs of a use disagree). A call whose inputs were made
        without the caller's inputs (from `positions`, a Param) does not carry the caller's
        lifted axes: a class shared by such a call and a lifted one must not assume them."""
        self.lift_counts.setdefault(self.class_of(g), set()).add(lead)
        lifted = _lifted(g, flags) if lead not in (0, UNKNOWN_LEAD) else None
        for n in g.nodes():
            if isinstance(n, CallNode):
                carry = [lifted is None or v in lifted for v in n.inputs]
                inner = lead if all(carry) else 0 if not any(carry) else UNKNOWN_LEAD
                self._lifts(n.callee, inner if inner == UNKNOWN_LEAD else inner + len(n.lift))
            elif isinstance(n, (LoopNode, ScanNode)):
                carry = [lifted is None or v in lifted for v in n.inputs]
                self._lifts(n.callee, lead if all(carry) else UNKNOWN_LEAD)

    def _collect(self, g: Graph):
        if g in self.seen:
            return
        self.seen.add(g)
        for n in g.nodes():
            inner = single_call_body(n.callee) if isinstance(n, LoopNode) else None
            if inner is not None:
                self._collect(inner.callee)
            elif isinstance(n, BodyNode):
                self._collect(n.callee)
        name = self.class_of(g)
        code = self._class(g, name)
        if name in self.classes:
            if self.classes[name] == code:
                return
            # Another instance of the definition whose code differs: a size its class
            # computes from hyperparameters without an expression (after a pooling, say)
            # was written as a number. It gets a class of its own.
            base = name
            name = fresh(base, lambda n: n in self.classes or n in self.names.values(), first=2)
            self.variant_of[g] = name
            self.lift_counts[name] = set(self.lift_counts.get(base, set()))
            code = self._class(g, name)
        self.graph_of[name] = g
        self.classes[name] = code
        self.order.append(name)

    # ---- one class
    def _class(self, g: Graph, name: str) -> str:
        cx = Cx(g, self)
        lines = [f"class {name}(nn.Module):"]
        doc = g.doc or (f"Body of `repeat` in {g.name.rpartition('_')[0]}." if g.kind == "repeat" else "")
        if doc:
            lines.append(f"    {doc!r}")
            lines.append("")
        lines.append(f"    def __init__(self{self._signature(g)}):")
        lines.append("        super().__init__()")
        for h in g.hyper:
            default = h.default
            if g.kind != "repeat" and default is not None and not _is_literal(default):
                lines.append(f"        if {pyname(h.name)} is None:")
                lines.extend(_check_lines(g, h.name, "            "))
                lines.append(f"            {pyname(h.name)} = {default.python(pyname)}")
        for h in g.hyper:
            if isinstance(h.value.value, tuple):  # a list given for a tuple-valued hyperparameter
                lines.append(f"        {pyname(h.name)} = tuple({pyname(h.name)})")
        lines.extend(_check_lines(g, None, "        "))
        for h in g.hyper:
            lines.append(f"        self.{cx.hyper_attr(pyname(h.name))} = {pyname(h.name)}")
        self._init_modules(g, cx, lines)
        if g is self.model:
            lines.extend(checkpoint_registration(g))
        lines.append("")
        cx.mode = "forward"
        self._forward(g, cx, lines)
        if g is self.model and "generator" in self.helpers:
            lines.extend(SEED_METHOD)
        return "\n".join(lines) + "\n\n"

    def _signature(self, g: Graph) -> str:
        parts = []
        kwonly = False
        seen_default = False
        for h in g.hyper:
            p = pyname(h.name)
            if g.kind == "repeat" or h.default is None:
                if seen_default or g.kind == "repeat":
                    kwonly = True
                parts.append(p)
            else:
                seen_default = True
                parts.append(f"{p}={h.default.python(pyname)}" if _is_literal(h.default) else f"{p}=None")
        if not parts:
            return ""
        return (", *, " if kwonly else ", ") + ", ".join(parts)

    def _init_modules(self, g: Graph, cx: Cx, lines: list[str]):
        done: set[str] = set()
        for n in g.nodes():
            if n.module is None or n.module in done:
                continue
            done.add(n.module)
            line = self._file_line(n)
            if isinstance(n, BodyNode):
                _check_class_name(g, self.class_of(n.callee), n)
            if isinstance(n, CallNode):
                args = ", ".join(f"{pyname(k)}={cx.hv(v)}" for k, v in n.args)
                code = f"{self.class_of(n.callee)}({args})"
            elif isinstance(n, ScanNode):  # one body module, applied at every step
                hargs = ", ".join(f"{pyname(h.name)}={pyname(h.name)}" for h in g.hyper)
                code = f"{self.class_of(n.callee)}({hargs})"
            elif isinstance(n, LoopNode):
                inner = single_call_body(n.callee)
                if inner is not None:  # the body is one block: a list of that block
                    args = ", ".join(f"{pyname(k)}={cx.hv(v)}" for k, v in inner.args)
                    body, hargs = self.class_of(inner.callee), args
                else:
                    body = self.class_of(n.callee)
                    hargs = ", ".join(f"{pyname(h.name)}={pyname(h.name)}" for h in g.hyper)
                if n.shared:
                    code = f"{body}({hargs})"
                else:
                    code = f"nn.ModuleList([{body}({hargs}) for _ in range({cx.hv(n.count)})])"
            else:
                low = _lowering(n)
                if low.init is None:
                    raise InternalError(f"learned op {n.op} has no torch init")
                if registry.get(n.op).is_built and n.inputs:
                    cx.built_value = self._built_value(g, cx, n, lines)
                code = low.init(n, cx)
                if isinstance(code, Statement):  # a whole statement (register_buffer)
                    lines.append(f"        {code}  {line}")
                    continue
                if code is None:
                    continue
                if isinstance(code, tuple):  # a fused op building several modules: (attr, code)
                    lines.extend(f"        self.{pyname(m)} = {c}  {line}" for m, c in code)
                else:
                    lines.append(f"        self.{pyname(n.owner)} = {code}  {line}")
                lines.extend(f"        {c}" for c in init_lines(n, cx))
                continue
            lines.append(f"        self.{pyname(n.owner)} = {code}  {line}")

    def _built_value(self, g: Graph, cx: Cx, n: Node, lines: list[str]) -> str:
        """Constructor code computing the input of op n that is made when the module is built
        (a Buffer's value): the ops it reads, lowered as in forward, hyperparameters as the
        constructor's locals, values named `_name` (no spec name starts with `_`)."""
        need: set[int] = set()
        todo = [v.node for v in n.inputs]
        while todo:
            nid = todo.pop()
            if nid not in need:
                need.add(nid)
                todo.extend(v.node for v in g.node(nid).inputs)
        saved_vars, saved_used = cx.vars, cx.used_vars
        cx.vars, cx.used_vars = {}, set(saved_used) | {"_" + pyname(h.name) for h in g.hyper}
        for m in g.nodes():
            if m.id not in need:
                continue
            if isinstance(m, BodyNode) or m.op == "input":
                raise InternalError(f"{n.name}: a value made at build time reads {m.name}")
            args = [self._ref(cx, v) for v in m.inputs]
            if m.op == "rename":
                cx.vars[m.out()] = args[0]
                continue
            var = self._fresh_var(cx, "_" + pyname(m.name))
            try:
                code = _lowering(m).forward(m, args, cx)
            except LoweringError as e:
                raise e.with_span(m.span) from None
            lines.append(f"        {var} = {code}")
            cx.vars[m.out()] = var
        value = self._ref(cx, n.inputs[0])
        saved_used |= cx.used_vars
        cx.vars, cx.used_vars = saved_vars, saved_used
        return value

    def _forward(self, g: Graph, cx: Cx, lines: list[str]):
        ins = []
        for nid in g.inputs:
            var = self._fresh_var(cx, g.input_node(nid).input_name)
            cx.vars[Value(nid)] = var
            ins.append(var)
        lines.append(f"    def forward(self, {', '.join(ins)}):" if ins else "    def forward(self):")
        if g is self.model:
            lines.extend(self._input_checks(g, cx))
        last = None
        build_only = _build_only(g)
        for n in g.nodes():
            if n.op == "input" or n.id in build_only:
                continue
            built = not isinstance(n, BodyNode) and registry.get(n.op).is_built
            args = [] if built else [self._ref(cx, v) for v in n.inputs]  # its inputs ran at build
            if n.op == "rename":  # no code, so no source-line comment either
                cx.vars[n.out()] = args[0]
                continue
            line = self._file_line(n)
            if line != last:
                lines.append(f"        {line}")
                last = line
            var = self._fresh_var(cx, n.name)
            if isinstance(n, CallNode):
                callee = n.callee
                lift = n.lift
                call_args = []
                full = [i for i, v in enumerate(n.inputs) if all(g.type_of(v).has(x) for x in lift)]
                for a, v, decl_id in zip(args, n.inputs, callee.inputs):
                    t = g.type_of(v)
                    want = tuple(lift) + callee.node(decl_id).type.names
                    if all(t.has(x) for x in lift):
                        call_args.append(move(a, t.names, want))
                        continue
                    # an input shared across the lifted axes: broadcast to them (a view)
                    i = full[0]
                    ref_decl = callee.node(callee.inputs[i]).type.names
                    ref = move(args[i], g.type_of(n.inputs[i]).names, tuple(lift) + ref_decl)
                    cx.need_helper("shared_input")
                    call_args.append(
                        f"_shared_input({align(a, t, want, full=True)}, {ref}, "
                        f"{len(want) - len(lift)}, {len(ref_decl)})"
                    )
                lines.append(f"        {var} = self.{pyname(n.owner)}({', '.join(call_args)})")
            elif isinstance(n, LoopNode) and n.sliced:
                lines.extend(self._sliced_repeat(g, cx, n, var, args))
            elif isinstance(n, LoopNode):
                k = n.carried
                carried, free = args[:k], args[k:]
                for i, a in enumerate(carried):
                    lines.append(f"        {var}{'_' + str(i) if k > 1 else ''} = {a}")
                cvars = [f"{var}_{i}" for i in range(k)] if k > 1 else [var]
                lhs = ", ".join(cvars)
                loop_args = ", ".join(cvars + free)
                if n.shared:
                    lines.append(f"        for _ in range({cx.hv(n.count)}):")
                    lines.append(f"            {lhs} = self.{pyname(n.owner)}({loop_args})")
                else:
                    lines.append(f"        for _layer in self.{pyname(n.owner)}:")
                    lines.append(f"            {lhs} = _layer({loop_args})")
                if k > 1:
                    lines.append(f"        {var} = ({lhs},)")
            elif isinstance(n, ScanNode):
                lines.extend(self._scan(g, cx, n, var, args))
            else:
                try:
                    code = _lowering(n).forward(n, args, cx)
                except LoweringError as e:  # point at the spec, not at the backend
                    raise e.with_span(n.span) from None
                lines.append(f"        {var} = {code}")
            cx.vars[n.out()] = var
            for i in range(1, len(n.types)):
                cx.vars[n.out(i)] = f"{var}[{i}]"
            if len(n.types) > 1:
                cx.vars[n.out(0)] = f"{var}[0]"
        outs = [self._output(g, cx, v) for _, v in g.outputs]
        if len(outs) == 1:
            lines.append(f"        return {outs[0]}")
        else:
            lines.append(f"        return {', '.join(outs)}")

    def _sliced_repeat(self, g: Graph, cx: Cx, n: LoopNode, var: str, args: list[str]) -> list[str]:
        """`repeat N as h, i over layer`: the iteration index passed in, values with the axis
        sliced per iteration, emitted values stacked along it."""
        mod = f"self.{pyname(n.owner)}"
        if n.shared:
            head = [f"        for _i in range({cx.hv(n.count)}):", f"            _layer = {mod}"]
        else:
            head = [f"        for _i, _layer in enumerate({mod}):"]
        # axis "": slices nothing (no input is scanned, nothing stacked)
        return self._step_loop(g, n, n.axis or "", var, args, head, "_i", "_layer", args[0], reverse=False)

    def _scan(self, g: Graph, cx: Cx, n: ScanNode, var: str, args: list[str]) -> list[str]:
        """A scan as a Python loop over the axis: slices in, the body module once per step,
        per-step results stacked along the axis after the loop."""
        first = min(n.scanned)
        t0 = g.type_of(n.inputs[first])
        length = f"{args[first]}.shape[{t0.index(n.axis) - t0.rank}]"
        steps = f"range({length} - 1, -1, -1)" if n.reverse else f"range({length})"
        head = [f"        for _t in {steps}:"]
        src = args[first]

        def size_of(ax) -> str:
            if ax.name == n.axis:
                return "0"
            if ax.code is not None:
                return cx.code(ax.code)
            if t0.has(ax.name):  # a run-time size the scanned input carries
                return f"{src}.shape[{t0.index(ax.name) - t0.rank}]"
            return cx.size(ax.size)

        def empty(t) -> str | None:  # the stacked type with the axis at 0, after the lifted axes
            try:
                sizes = [size_of(ax) for ax in t.axes]
            except LoweringError:  # a size no input of the body gives: a zero-length run fails in torch.stack
                return None
            return (f"{src}.new_zeros(({src}.shape[: {src}.dim() - {t0.rank}] + ({', '.join(sizes)},)), "
                    f"dtype={TORCH_DTYPES[t.dtype]})")

        return self._step_loop(g, n, n.axis, var, args, head, "_t", f"self.{pyname(n.owner)}", src,
                               reverse=n.reverse, empty=empty)

    def _step_loop(self, g: Graph, n: SteppedNode, axis: str, var: str, args: list[str], head: list[str],
                   step: str, body: str, device_of: str, *, reverse: bool, empty=None) -> list[str]:
        """The loop a repeat with slices and a scan share: carried states set from the
        inputs, then `head` (the loop over `step`, binding the body module `body`), the body
        called with the states, the step index and each sliced input's `select`, its
        emitted values appended and stacked along the axis after the loop (`empty(type)`:
        the code of an empty stack, for a loop that may run no step)."""
        k = n.carried
        scanned = set(n.scanned)
        states = [f"{var}_{i}" for i in range(k)]
        emits = [f"{var}_e{j}" for j in range(len(n.types) - k)]
        out = [f"        {s} = {a}" for s, a in zip(states, args[:k])]
        if emits:
            out.append(f"        {', '.join(emits)} = {', '.join('[]' for _ in emits)}")
        out.extend(head)
        call = list(states)
        if n.has_index:
            call.append(f"torch.tensor({step}, device={device_of}.device)")
        for i, a in enumerate(args[k:], start=k):
            if i in scanned:
                t = g.type_of(n.inputs[i])
                a = f"{_paren_arg(a)}.select({t.index(axis) - t.rank}, {step})"
            call.append(a)
        results = states + [f"{var}_s{j}" for j in range(len(emits))]
        out.append(f"            {', '.join(results)} = {body}({', '.join(call)})")
        for e, r in zip(emits, results[k:]):
            out.append(f"            {e}.append({r})")
        if reverse:
            out.extend(f"        {e}.reverse()" for e in emits)
        for j, e in enumerate(emits):
            t = n.types[k + j]
            stacked = f"torch.stack({e}, dim={t.index(axis) - t.rank})"
            none = empty(t) if empty is not None else None
            if none is not None:  # a scan over an empty axis: no step, an empty stack
                stacked = f"{stacked} if {e} else {none}"
            out.append(f"        {e} = {stacked}")
        everything = states + emits
        out.append(f"        {var} = {everything[0]}" if len(everything) == 1 else f"        {var} = ({', '.join(everything)},)")
        return out

    def _input_checks(self, g: Graph, cx: Cx) -> list[str]:
        """The model's forward refuses what the spec refuses: each input's rank, dtype kind,
        static sizes (from the hyperparameters), multiples, and run-time sizes two inputs
        share. Plain `if`s on `.shape`: free next to the forward pass, and torch.export and
        torch.compile(fullgraph=True) turn them into guards (torch._check with a message
        breaks both)."""
        out: list[str] = []
        dims = cx.dim_code()
        owner = {}  # `x.shape[-1]` -> (input name, axis name): where a run-time size is read
        for nid in g.inputs:
            t = g.node(nid).type
            for ax in t.axes:
                owner[f"{cx.vars[Value(nid)]}.shape[{t.index(ax.name) - t.rank}]"] = (g.input_node(nid).input_name, ax.name)

        def check(test: str, cls: str, text: str, dyn: str) -> None:
            # spec names reach the code only through repr; `dyn` is generated code only
            out.append(f"        if {test}:")
            out.append(f"            raise {cls}({repr(g.name + ': ' + text)} f{repr(dyn)})")

        for nid in g.inputs:
            node = g.input_node(nid)
            t, var, name = node.type, cx.vars[Value(nid)], node.input_name
            axes = ", ".join(t.names)
            shape = f"; got shape {{list({var}.shape)}}"
            check(f"{var}.dim() != {t.rank}", "ValueError", f"input '{name}' must have {t.rank} axes [{axes}]", shape)
            if t.dtype in ("float32", "float16", "bfloat16", "float64"):
                test, kind = f"not {var}.is_floating_point()", "a floating-point tensor"
            elif t.dtype in ("int64", "int32"):
                test, kind = f"{var}.dtype not in (torch.int64, torch.int32)", "an integer tensor (int64 or int32)"
            else:
                test, kind = f"{var}.dtype != torch.bool", "a bool tensor"
            check(test, "TypeError", f"input '{name}' [{axes}] must be {kind}", f"; got {{{var}.dtype}}")
            for i, ax in enumerate(t.axes):
                here = f"{var}.shape[{i - t.rank}]"
                what = f"input '{name}' axis '{ax.name}'"
                if ax.size.is_static:
                    # the hyperparameter expression, so the check follows the instance's
                    # values; the number where the expression names no hyperparameter of
                    # this model (IR text may say `8@d` in a model without `d`)
                    size = str(ax.size.value)
                    if ax.code is not None and ax.code.refs() <= {h.name for h in g.hyper}:
                        size = cx.hv(HVal(ax.size.value, ax.code))
                    check(f"{here} != {size}", "ValueError", f"{what} must be ", f"{{{size}}}{shape}")
                    continue
                sym = ax.size.bare_symbol()
                if sym is not None:
                    atom = ax.size.terms[0][0]  # a Dim: the size is that one symbol
                    m = atom.multiple if isinstance(atom, Dim) else 1
                    if m > 1:
                        check(f"{here} % {m}", "ValueError", f"{what} must be a multiple of {m}", shape)
                    if dims.get(sym) == here:
                        continue  # this axis defines the run-time size
                try:
                    want = cx.size(ax.size)
                except LoweringError:  # a size no input defines alone: the ops check it
                    continue
                first = owner.get(dims.get(sym, "")) if sym is not None else None
                other = f"axis '{first[1]}' of input '{first[0]}'" if first else "the size of the other inputs' axes"
                check(f"{here} != {want}", "ValueError", f"{what} must equal {other}", f" ({{{want}}}){shape}")
        return out

    def _output(self, g: Graph, cx: Cx, v: Value) -> str:
        """A block output computed without its inputs (positions, a Param) has no lift
        prefix at run time, though its caller's type has one: give it the first input's.
        The expand is a no-op on a tensor that has the prefix already."""
        ref = self._ref(cx, v)
        if g.kind != "block" or not g.inputs or v in _lifted(g):
            return ref
        x = g.node(g.inputs[0])
        var, rank = cx.vars[Value(x.id)], g.type_of(v).rank
        return f"{ref}.expand(*{var}.shape[: {var}.dim() - {x.type.rank}], *{ref}.shape[{ref}.dim() - {rank}:])"

    def _ref(self, cx: Cx, v: Value) -> str:
        if v not in cx.vars:
            raise InternalError(f"value {v} used before it is defined")
        return cx.vars[v]

    def _fresh_var(self, cx: Cx, base: str) -> str:
        cand = fresh(pyname(base), lambda n: n in cx.used_vars or n == "self")
        cx.used_vars.add(cand)
        return cand

    def _file_line(self, n: Node) -> str:
        if n.span is None:
            return f"# {self.source}"
        return f"# {_safe_filename(n.span.file)}:{n.span.line}"


def _check_class_name(g: Graph, cls: str, n: Node):
    """__init__ names classes where hyperparameters are local variables."""
    for h in g.hyper:
        if pyname(h.name) == cls:
            raise LoweringError(
                f"hyperparameter '{h.name}' of {g.name} has the name of the generated class "
                f"{cls}; rename one of them", n.span)


def _lifted(g: Graph, inputs: tuple[bool, ...] | None = None) -> set[Value]:
    """Values of g that surely carry the lift prefix its inputs (those flagged) have at run
    time: an op keeps the prefix of any tensor input (lowerings use negative dims and
    broadcast), a repeat's carried value needs it at the start and from the body."""
    flags = inputs if inputs is not None else (True,) * len(g.inputs)
    out = {Value(nid) for nid, f in zip(g.inputs, flags) if f}
    for n in g.nodes():
        if n.op == "input":
            continue
        if isinstance(n, LoopNode):
            given = tuple(v in out for v in n.inputs)
            k = n.carried
            flags = given[:k] + ((False,) if n.has_index else ()) + given[k:]
            body = _lifted(n.callee, flags)
            # a carried value keeps the prefix only if it had it before the loop; an emitted one
            # has it if the body gives it
            out.update(n.out(i) for i, (_, v) in enumerate(n.callee.outputs) if (i >= k or given[i]) and v in body)
        elif isinstance(n, CallNode):  # its outputs carry the prefix of its inputs if all have it
            if n.inputs and all(v in out for v in n.inputs):
                out.update(n.out(i) for i in range(len(n.types)))
        elif any(v in out for v in (n.inputs[:1] if n.op == "pad_to" else n.inputs)):
            out.update(n.out(i) for i in range(len(n.types)))  # pad_to reads only a shape
    return out


def _build_only(g: Graph) -> set[int]:
    """Ids of the nodes whose results only ops made at build time (Buffers) read: their
    code runs in the constructor, not in forward."""
    out: set[int] = set()
    for n in reversed(g.nodes()):
        if n.op == "input" or isinstance(n, BodyNode) or registry.get(n.op).learned:
            continue
        users = [u for i in range(len(n.types)) for u, _ in g.users(n.out(i))]
        if not users or any(g.is_output(n.out(i)) for i in range(len(n.types))):
            continue
        if all(u.id in out or (not isinstance(u, BodyNode) and u.op != "input" and registry.get(u.op).is_built)
               for u in users):
            out.add(n.id)
    return out


def _lowering(n: Node):
    low = TORCH_LOWERINGS.get(n.op)
    if low is None:
        raise LoweringError(f"op '{n.op}' has no PyTorch lowering", n.span)
    return low


def _is_literal(expr: Expr) -> bool:
    return not expr.refs()


def _check_lines(g: Graph, guard: str | None, indent: str) -> list[str]:
    """The checker's hyperparameter conditions, re-run by the constructor (those a default
    needs only where that default is used)."""
    out = []
    for c in g.checks:
        if c.guard == guard:
            out.append(f"{indent}if not ({c.cond.python(pyname)}):")
            out.append(f"{indent}    raise ValueError({c.python_message(pyname)})")
    return out


def _paren_arg(code: str) -> str:
    return code if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*(\[[0-9]+\])?", code) else f"({code})"


def _safe_filename(path: str) -> str:
    base = os.path.basename(path or "spec.nn")
    return re.sub(r"[^A-Za-z0-9._-]", "_", base) or "spec.nn"


def generate(model: Graph, source_name: str = "") -> str:
    """The PyTorch source of `model` (deterministic: same graph, same text)."""
    return TorchGen(model, source_name=source_name).generate()


def emit(spec, out: str) -> str:
    """The torch backend's entry in the backend table: write the spec's module source."""
    from nncircuit.analysis.cost import param_count
    from nncircuit.io import write_atomic

    write_atomic(out, spec.torch_source(), inputs=tuple(spec.program.files))
    return f"wrote {out}: class {spec.graph.name}, {param_count(spec.graph):,} parameters"

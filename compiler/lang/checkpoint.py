"""Elaborate a model's `checkpoint { "ref" = source }` section: check each rule's patterns
and that every path it names is a module or tensor of the model, with positioned errors."""

from __future__ import annotations

import math
import re

from nncircuit.errors import HyperparameterError, NameResolutionError, ShapeError, Span, did_you_mean
from nncircuit.ir.checkpoint import (FUNCTIONS, CkApply, CkPath, CkRule, CkSection, CkSource, numeric, paths,
                                     shift_expr, shifts)
from nncircuit.ir.graph import CallNode, Graph, LoopNode, ScanNode
from nncircuit.lang import tree as A
from nncircuit.names import pyname

_REF_PART = re.compile(r"(?:[A-Za-z0-9_]|\*)+")
_OWN_PART = re.compile(r"(?:[A-Za-z0-9_]|\*(?:[+-][0-9]+)?)+")
_STAR = re.compile(r"\*(?:[+-][0-9]+)?")


def section(g: Graph, st: A.Checkpoint) -> CkSection:
    known = module_paths(g)
    env = {h.name: h.value.value for h in g.hyper}
    out: list[CkRule] = []
    seen: dict[str, A.CheckpointRule] = {}
    for r in st.rules:
        if r.ref in seen:
            first = seen[r.ref].span
            raise NameResolutionError(
                f"the checkpoint name \"{r.ref}\" is mapped twice (first on line {first.line})", r.span)
        seen[r.ref] = r
        parts = r.ref.split(".")
        if not r.ref or not all(_REF_PART.fullmatch(p) for p in parts):
            raise NameResolutionError(
                f"\"{r.ref}\" is not a state_dict name: dotted names, digits and `*` (a layer number) only",
                r.span)
        source = _source(r.value)
        stars = r.ref.count("*")
        for p, at in zip(paths(source), _strings(r.value)):
            _check_path(_shifted(p, at, env), stars, known, r, p.path)
        out.append(CkRule(r.ref, source, r.span))
    names = {part for path in known for part in path if not part.isdigit()}
    escaped = tuple(sorted((n, pyname(n)) for n in names if pyname(n) != n))
    return CkSection(tuple(out), escaped)


def _source(e) -> CkSource:
    if isinstance(e, A.String):
        return CkPath(e.value)
    if isinstance(e, A.Call) and isinstance(e.func, A.Name):
        fn = e.func.id
        if fn not in FUNCTIONS:
            raise NameResolutionError(
                f"unknown checkpoint function '{fn}'{did_you_mean(fn, FUNCTIONS)}; "
                f"known: {', '.join(sorted(FUNCTIONS))}", e.func.span)
        args = []
        for a in e.args:
            if not isinstance(a, A.PosArg):
                raise ShapeError(f"{fn} in a checkpoint rule takes names and functions of them only", a.span)
            args.append(_source(a.value))
        arity = FUNCTIONS[fn]
        if arity is None and len(args) < 2:
            raise ShapeError(f"concat joins two or more tensors; found {len(args)}", e.span)
        if arity is not None and len(args) != arity:
            raise ShapeError(f"{fn} takes {arity} argument; found {len(args)}", e.span)
        return CkApply(fn, tuple(args))
    raise ShapeError(
        "a checkpoint rule's value is a quoted name of this model (\"h.*.attn.q\"), "
        "transpose(...) or concat(...)", e.span)


def _strings(e) -> list[A.String]:
    """The quoted paths of a rule's value, in the order `paths` gives them."""
    if isinstance(e, A.String):
        return [e]
    return [s for a in e.args for s in _strings(a.value)]


def _shifted(p: CkPath, at: A.String, env: dict) -> CkPath:
    """`p` with each hyperparameter shift (`*-first_k_dense_replace`) checked and evaluated at
    the model's hyperparameters, for the checks below; the rule keeps the expression."""
    text = p.path
    for m in shifts(text):
        if m.group(2) is None or m.group(2).isdigit():
            continue
        where = _inside(at, m.start(2), len(m.group(2)))
        try:
            e = shift_expr(m, env)
        except ValueError as err:
            raise ShapeError(f"the layer shift '{m.group(2)}' is not an expression: {err}", where) from None
        if e is None:  # a `*` without a sign has no shift (group 2 is None then: skipped above)
            continue
        unknown = sorted(e.refs() - env.keys())
        if unknown:
            raise NameResolutionError(
                f"a layer shift names '{unknown[0]}', which is no hyperparameter of this model"
                f"{did_you_mean(unknown[0], env)}", where)
        try:
            value = e.evaluate(env)
        except (ValueError, ZeroDivisionError, TypeError) as err:
            raise HyperparameterError(f"the layer shift '{m.group(2)}' cannot be computed: {err}", where) from None
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value != int(value)):
            raise HyperparameterError(
                f"a layer shift is a whole number; '{m.group(2)}' is {value!r} here", where)
    return CkPath(numeric(text, env))


def _inside(at: A.String, offset: int, length: int) -> Span:
    """The span of characters offset.. of a one-line quoted string (after its quote)."""
    s = at.span
    if s.end_line not in (0, s.line):
        return s
    col = s.col + 1 + offset
    return Span(s.file, s.line, col, s.line, col + length, s.text)


def _check_path(p: CkPath, stars: int, known: set[tuple[str, ...]], r: A.CheckpointRule, shown: str):
    # `p`: the path with its shifts numbers; `shown`: as the spec writes it, for messages
    parts = p.path.split(".") if p.path else []
    if not all(_OWN_PART.fullmatch(x) for x in parts):
        raise NameResolutionError(
            f"\"{shown}\" is not a name of this model: dotted names, digits and `*` only", r.value.span)
    used = len(_STAR.findall(p.path))
    if used > stars:
        raise NameResolutionError(
            f"\"{shown}\" has {used} `*` but \"{r.ref}\" has {stars}: each `*` of this model's "
            "name takes a layer number of the checkpoint's", r.value.span)
    if not parts:
        return  # "transformer" = "": the reference nests the whole model one level deeper
    def found(parts):
        return any(len(k) == len(parts) and all(_fits(x, y) for x, y in zip(parts, k)) for k in known)

    # a module, a Param, or a tensor of a module (`q.weight`)
    if not found(parts) and not (len(parts) > 1 and found(parts[:-1])):
        names = sorted({".".join(k) for k in known if len(k) == len(parts)})
        raise NameResolutionError(
            f"\"{shown}\" names no module or tensor of this model"
            f"{did_you_mean(p.path, names)}", r.value.span)


def _fits(pattern: str, part: str) -> bool:
    # `name_*` ending a name also fits the bare `name`: unrolled instances are name, name_1, ...
    tokens = re.split(r"(_?\*(?:[+-][0-9]+)?)", pattern)
    regex = ""
    for i, t in enumerate(tokens):
        if "*" not in t:
            regex += re.escape(t)
        elif t.startswith("_"):
            regex += "(?:_[0-9]+)?" if i == len(tokens) - 2 and not tokens[-1] else "_[0-9]+"
        else:
            regex += "[0-9]+"
    return re.fullmatch(regex, part) is not None


def module_paths(g: Graph) -> set[tuple[str, ...]]:
    """Every module path (and every prefix of one) of the model's torch module, in the
    spec's names (the generated module may escape one: `v_proj` is `vv_proj`). A repeat
    whose body applies one block is a list of that block (no wrapper module): both
    spellings are accepted."""
    out: set[tuple[str, ...]] = set()
    _walk(g, (), out)
    return out


def _walk(g: Graph, prefix: tuple[str, ...], out: set[tuple[str, ...]]):
    for n in g.nodes():
        if n.module is None:
            continue
        here = prefix + (n.owner,)
        out.add(here)
        if isinstance(n, (CallNode, ScanNode)):  # a scan's body is one module for every step
            _walk(n.callee, here, out)
        elif isinstance(n, LoopNode):
            # at least one layer: a repeat run 0 times (`-p layers=0`) keeps the names its
            # rules use (`h.*.ln1`) valid for the configurations that have layers
            count = 1 if n.shared else max(1, int(n.count.value))
            items = [here] if n.shared else [here + (str(i),) for i in range(count)]
            for item in items:
                out.add(item)
                _walk(n.callee, item, out)  # with the wrapper of the body
                for inner in n.callee.nodes():  # a body of one block: that block's own modules
                    if isinstance(inner, CallNode):
                        _walk(inner.callee, item, out)

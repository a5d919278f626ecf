"""The `nnc` command line: check, compile, ir, summary, render, fmt, lsp, completion. A mistake in a spec is a
diagnostic and exit status 1; a bug of ours says so and asks for a report."""

from __future__ import annotations

import argparse
import math
import os
import sys

from nncircuit.backends import BACKENDS
from nncircuit.errors import NNError
from nncircuit.progress import Progress

REPORT = "this is a bug in nncircuit, not in your spec; please report it with the spec that caused it"


def _common(p: argparse.ArgumentParser, *, model=True, several=False):
    if several:
        p.add_argument("file", nargs="+", metavar="FILE", help="the .nn specs")
    else:
        p.add_argument("file", help="the .nn spec")
    if model:
        p.add_argument("--model", "-m", help="which model of the file (default: the first)")
        p.add_argument(
            "-p", "--param", action="append", default=[], metavar="NAME=VALUE",
            help="override a hyperparameter (repeatable)",
        )
        p.add_argument(
            "--max-params", type=float, default=None,
            help="refuse models with more parameters than this (default 2e9)",
        )


def build_parser() -> argparse.ArgumentParser:
    from nncircuit.version import __version__

    ap = argparse.ArgumentParser(prog="nnc", description="The nncircuit architecture compiler.")
    ap.add_argument("--version", action="version", version=f"nnc {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("check", help="parse, elaborate and type-check; one line per model")
    _common(p, several=True)

    p = sub.add_parser("compile", help="compile to PyTorch source or ONNX")
    _common(p)
    p.add_argument("--to", choices=sorted(BACKENDS), default=None,
                   help="the backend (default: the one the extension of -o names, else torch): "
                   + "; ".join(f"{b.name} ({' '.join(b.extensions)}): {b.doc}" for b in BACKENDS.values()))
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--seed", type=int, default=0, help="seed of initial weights (ONNX)")
    p.add_argument("--weights", help="weights for ONNX: .safetensors or a torch state_dict .pt")
    p.add_argument("--opset", type=int, default=None)
    p.add_argument("--functions", action="store_true", help="keep blocks as ONNX local functions")
    p.add_argument("--fp16", action="store_true", help="ONNX in half precision")
    p.add_argument("--quantize", choices=["int8"], default=None, help="dynamic int8 quantization")
    p.add_argument("--external-data", action="store_const", const=True, default=None,
                   help="ONNX weights in a data file beside the model (automatic above 1 GiB)")
    p.add_argument("-O", dest="opt", type=int, choices=[0, 1, 2], default=None,
                   help="optimisation level (default 2; the state_dict is that of -O0)")
    p.add_argument("--passes", help="comma-separated pass pipeline instead of a level")
    p.add_argument("--parallel", metavar="PLAN.py",
                   help="also write the tensor-parallel plan (torch): which Linears split column- and row-wise")

    p = sub.add_parser("ir", help="print the textual IR (optionally after passes)")
    _common(p)
    p.add_argument("--passes", help="comma-separated pass pipeline, e.g. canonicalize,cse,dce")
    p.add_argument("-O", dest="opt", type=int, choices=[0, 1, 2], default=None, help="optimisation level")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")

    p = sub.add_parser("opt", help="run passes over a textual IR file (as `nnc ir` prints it)")
    p.add_argument("file", help="the .ir file")
    p.add_argument("--passes", help="comma-separated pass pipeline, e.g. canonicalize,cse,dce")
    p.add_argument("-O", dest="opt", type=int, choices=[0, 1, 2], default=None, help="optimisation level")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")

    p = sub.add_parser("summary", help="parameters, FLOPs and memory per block")
    _common(p)
    p.add_argument("--input", action="append", default=[], metavar="AXIS=SIZE",
                   help="size of a dynamic axis (default: batch 1, others their ~typical size)")
    p.add_argument("--depth", type=int, default=1, help="block nesting depth shown")

    p = sub.add_parser("render", help="draw the architecture (svg, png, pdf, dot, mmd, html)")
    _common(p)
    p.add_argument("-o", "--output", required=True, help="output file; the format follows the extension")
    p.add_argument("--style", choices=["circuit", "graph"], default="circuit")
    p.add_argument("--depth", type=int, default=None, help="collapse blocks below this depth")
    p.add_argument("--expand", action="append", default=[], metavar="BLOCK", help="always expand this block")
    p.add_argument("--cost", action="store_true", help="show parameters and FLOPs (batch 1, typical sizes) per block")
    p.add_argument("--width", metavar="LENGTH", help="paper mode: printed width (486pt, 648px); wraps rows to fit")
    p.add_argument("--font-size", type=float, metavar="PT", help="smallest text at --width, in pt (default 7)")
    p.add_argument("--caption", metavar="off|doc|TEXT", help="caption: the doc comment (default), none, or TEXT "
                   "({params} is the parameter count)")
    p.add_argument("--block", metavar="NAME", help="draw one block (a block name or a scope path) alone")
    p.add_argument("--scale", type=float, metavar="S", help="PNG pixels per SVG unit (default 2)")

    p = sub.add_parser("fmt", help="rewrite .nn files in the canonical layout (comments kept)")
    p.add_argument("files", nargs="+", metavar="FILE", help="files or folders; '-' reads stdin, writes stdout")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 listing the files that would change")

    sub.add_parser("lsp", help="run the language server over stdio (needs the 'lsp' extra)")

    p = sub.add_parser("completion", help="print a shell completion script: eval \"$(nnc completion bash)\"")
    p.add_argument("shell", choices=["bash", "zsh"])

    return ap


def _params(args) -> dict:
    from nncircuit.api import parse_param
    from nncircuit.errors import HyperparameterError

    out = {}
    for text in args.param:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # argv bytes that are not UTF-8 arrive as lone surrogates
            raise HyperparameterError(
                f"-p {text.encode('utf-8', 'backslashreplace').decode('ascii', 'replace')}: "
                "the value is not valid UTF-8"
            ) from None
        k, v = parse_param(text)
        out[k] = v
    return out


def _max_params(args):
    from nncircuit.api import DEFAULT_MAX_PARAMS

    if args.max_params is None:
        return DEFAULT_MAX_PARAMS
    if not math.isfinite(args.max_params) or args.max_params < 0:
        raise NNError(f"--max-params must be a finite number of 0 or more, found {args.max_params}")
    return int(args.max_params)


def cmd_check(args) -> int:
    """Check each file named; a file with a mistake is reported and the others still
    checked (exit 1 if any had one). With several files each line starts with its file."""
    files = args.file
    if len(files) > 1 and args.model:
        raise NNError(f"--model names a model of one file; {len(files)} files were given")
    params, max_params = _params(args), _max_params(args)
    rc = 0
    for path in files:
        prefix = f"{path}: " if len(files) > 1 else ""
        try:
            _check_file(path, args.model, params, max_params, prefix)
        except NNError as e:
            from nncircuit.errors import InternalError

            if isinstance(e, InternalError):
                raise
            print(e.render(), file=sys.stderr)
            rc = 1
        except RecursionError:
            print(f"{path}: error: the spec nests too deeply", file=sys.stderr)
            rc = 1
    return rc


def _check_file(path: str, model: str | None, params: dict, max_params: int, prefix: str) -> None:
    from nncircuit.api import load, models

    names = [model] if model else models(path)
    if not names:
        _check_library(path, prefix)
        return
    for name in names:
        spec = load(path, name, max_params=max_params, **params)
        ins = ", ".join(f"{n}: {t}" for n, t in spec.inputs())
        outs = ", ".join(f"{n}: {t}" for n, t in spec.outputs())
        print(f"{prefix}{spec.model}: {spec.param_count():,} parameters; in {ins}; out {outs}")


def _check_library(path: str, prefix: str = "") -> int:
    """A file of blocks and no model: check every block whose hyperparameters all have
    defaults; the others are parsed and name-resolved when a model instantiates them."""
    from nncircuit.analysis.cost import param_count
    from nncircuit.api import models
    from nncircuit.lang.elaborate import Elaborator
    from nncircuit.lang.program import load as load_program

    program = load_program(path)
    own = program.files[program.root].blocks
    if not own:
        from nncircuit.errors import NameResolutionError, Span

        raise NameResolutionError(f"{path} defines no block and no model", Span(path, 1, 1))
    models(path)  # parses; errors surface here
    for bdef in own:
        needs = [p.name for p in bdef.params if p.default is None]
        if needs:
            print(f"{prefix}block {bdef.name}: parsed; checked where it is used (needs {', '.join(needs)})")
            continue
        g = Elaborator(program).instantiate(bdef, {}, bdef.span)
        g.verify()
        ins = ", ".join(f"{g.input_node(i).input_name}: {g.node(i).type}" for i in g.inputs)
        outs = ", ".join(f"{n}: {g.type_of(v)}" for n, v in g.outputs)
        print(f"{prefix}block {bdef.name}: {param_count(g):,} parameters; in {ins}; out {outs}")
    return 0


def cmd_compile(args) -> int:
    from nncircuit.api import load
    from nncircuit.backends import BACKENDS

    backend = _compile_backend(args.to, args.output)
    given = {k: getattr(args, k) for b in BACKENDS.values() for k in b.options if hasattr(args, k)}
    for k, v in sorted(given.items()):
        if k not in backend.options and v not in (None, False, 0):
            owner = next(b.name for b in BACKENDS.values() if k in b.options)
            raise NNError(f"--{k} applies to --to {owner}, not to --to {backend.name}")
    if args.parallel is not None and backend.name != "torch":
        raise NNError(f"--parallel applies to --to torch, not to --to {backend.name}")
    if args.parallel is not None and os.path.abspath(args.parallel) == os.path.abspath(args.output):
        raise NNError(f"--parallel {args.parallel} would overwrite the module -o writes; give the plan its own file")
    opt = 2 if args.opt is None and args.passes is None else args.opt
    spec = load(args.file, args.model, max_params=_max_params(args), opt=opt, passes=args.passes, **_params(args))
    extra = " (int8)" if getattr(args, "quantize", None) else " (fp16)" if getattr(args, "fp16", False) else ""
    with Progress(f"writing {args.output}: {spec.model} to {backend.name}{extra}"):
        report = backend.emit(spec, args.output, **{k: v for k, v in given.items() if k in backend.options})
    print(report)
    if args.parallel is not None:
        from nncircuit.backends.torch.parallel import emit_plan

        print(emit_plan(spec, args.parallel))
    return 0


def _compile_backend(to: str | None, output: str):
    """The backend `--to` names, else the one the extension of `-o` names (torch when none
    does); a contradiction between the two is refused."""
    from nncircuit.backends import BACKENDS, by_extension

    implied = by_extension(output)
    if to is None:
        return implied or BACKENDS["torch"]
    if implied is not None and implied.name != to:
        raise NNError(f"--to {to} contradicts the output '{output}', which names {implied.name}; "
                      f"drop --to or use a {BACKENDS[to].extensions[0]} file")
    return BACKENDS[to]


def cmd_ir(args) -> int:
    """Print the IR, after the passes asked for (and after each, if asked)."""
    from nncircuit.api import load

    spec = load(args.file, args.model, max_params=_max_params(args), **_params(args))
    return _run_passes(spec.graph, args)


def cmd_opt(args) -> int:
    """Read textual IR, run passes over it, print the result: the optimizer on its own."""
    from nncircuit.ir.parser import parse_ir
    from nncircuit.lang.program import read_source

    return _run_passes(parse_ir(read_source(args.file), args.file), args)


def _run_passes(root, args) -> int:
    from nncircuit.ir.printer import print_ir
    from nncircuit.passes import PassManager, pipeline

    pm = PassManager(pipeline(args.passes, args.opt))
    out = sys.stdout
    if args.print_after_all:
        def after(name, changed, root):
            out.write(f"# ---- after {name}{'' if changed else ' (no change)'} ----\n")
            out.write(print_ir(root))
            out.write("\n")

        pm.after = after
    pm.run(root)
    if not (args.print_after_all and pm.passes):
        out.write(print_ir(root))
    return 0


def cmd_summary(args) -> int:
    from nncircuit.analysis.summary import parse_inputs, summarize
    from nncircuit.api import load

    spec = load(args.file, args.model, max_params=_max_params(args), **_params(args))
    summary = summarize(spec.graph, parse_inputs(spec.graph, args.input), source=os.path.basename(spec.path))
    print(summary.render(max(0, args.depth)), end="")
    return 0


def cmd_render(args) -> int:
    from nncircuit.api import load
    from nncircuit.backends.diagram.render import FORMATS, options, render, write

    spec = load(args.file, args.model, max_params=_max_params(args), **_params(args))
    opts = options(args.style, args.depth, args.expand, args.cost, width=args.width, font_size=args.font_size,
                   caption=args.caption, block=args.block, scale=args.scale)
    fmt = os.path.splitext(args.output)[1].lower()
    if fmt not in FORMATS:
        raise NNError(f"cannot render to '{args.output}': the extension must be one of {', '.join(FORMATS)}")
    with Progress(f"rendering {args.output}: {spec.model}"):
        content = render(spec, fmt, opts)
    write(args.output, content, inputs=tuple(spec.program.files))
    what = "Mermaid" if fmt == ".mmd" else "Graphviz DOT" if fmt == ".dot" else f"{opts.style} style"
    if opts.width_pt and fmt == ".svg" and isinstance(content, str):
        from nncircuit.backends.diagram.paper import smallest_text_pt

        what += f", smallest text {smallest_text_pt(content):.1f} pt"
    print(f"wrote {args.output}: {spec.model}{f' ({opts.block})' if opts.block else ''}, {what}")
    return 0


def cmd_fmt(args) -> int:
    from nncircuit.editor.fmt import run_cli_fmt

    return run_cli_fmt(args)


def cmd_lsp(args) -> int:
    from nncircuit.editor.lsp import run_cli_lsp

    return run_cli_lsp(args)


def cmd_completion(args) -> int:
    print(completion_script(args.shell, build_parser()), end="")
    return 0


def completion_script(shell: str, ap: argparse.ArgumentParser) -> str:
    """A bash completion function for nnc, made from the parser (commands, their options,
    the choices of an option, files elsewhere); zsh runs it through bashcompinit."""
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    cases: list[str] = []
    choices: dict[str, list[str]] = {}
    for name, p in sorted(sub.choices.items()):
        flags = sorted(f for a in p._actions for f in a.option_strings)
        cases.append(f'        {name}) opts="{" ".join(flags)}" ;;')
        for a in p._actions:
            if a.choices and a.option_strings:
                for f in a.option_strings:
                    choices.setdefault(f, sorted(str(c) for c in a.choices))
            elif a.choices and not a.option_strings:
                choices.setdefault(f"@{name}", sorted(str(c) for c in a.choices))
    commands = " ".join(sorted(sub.choices))
    prev_cases = "\n".join(
        f'        {flag}) COMPREPLY=($(compgen -W "{" ".join(c)}" -- "$cur")); return ;;'
        for flag, c in sorted(choices.items()) if not flag.startswith("@")
    )
    word_cases = "\n".join(
        f'        {flag[1:]}) COMPREPLY=($(compgen -W "{" ".join(c)}" -- "$cur")); return ;;'
        for flag, c in sorted(choices.items()) if flag.startswith("@")
    )
    body = f"""# nnc completion for {shell}: eval "$(nnc completion {shell})"
_nnc() {{
    local cur prev opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{commands} --version --help" -- "$cur"))
        return
    fi
    case "$prev" in
{prev_cases}
    esac
    opts="--help"
    case "${{COMP_WORDS[1]}}" in
{chr(10).join(cases)}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case "${{COMP_WORDS[1]}}" in
{word_cases}
    esac
    COMPREPLY=($(compgen -f -- "$cur"))
}}
complete -o filenames -F _nnc nnc
"""
    if shell == "zsh":
        body = "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


COMMANDS = {
    "check": cmd_check,
    "compile": cmd_compile,
    "ir": cmd_ir,
    "opt": cmd_opt,
    "summary": cmd_summary,
    "render": cmd_render,
    "fmt": cmd_fmt,
    "lsp": cmd_lsp,
    "completion": cmd_completion,
}


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return COMMANDS[args.cmd](args)
    except NNError as e:
        from nncircuit.errors import InternalError

        print(e.render(), file=sys.stderr)
        if isinstance(e, InternalError):
            print(f"note: {REPORT}", file=sys.stderr)
            return 2
        return 1
    except RecursionError:
        print(f"{args.file}: error: the spec nests too deeply", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug of ours: say so, no traceback unless asked
        if os.environ.get("NNC_DEBUG"):
            raise
        print(f"internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print(f"note: {REPORT} (set NNC_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `nnc` command line: check, compile, ir, summary, render. A mistake in a spec is a
diagnostic and exit status 1; a bug of ours says so and asks for a report."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import NNError

REPORT = "this is a bug in nncircuit, not in your spec; please report it with the spec that caused it"


def _common(p: argparse.ArgumentParser, *, model=True):
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
    ap = argparse.ArgumentParser(prog="nnc", description="The nncircuit architecture compiler.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("check", help="parse, elaborate and type-check; one line per model")
    _common(p)

    p = sub.add_parser("compile", help="compile to PyTorch source or ONNX")
    _common(p)
    p.add_argument("--to", choices=["torch", "onnx"], default="torch")
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

    p = sub.add_parser("ir", help="print the textual IR (optionally after passes)")
    _common(p)
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

    return ap


def _params(args) -> dict:
    from .api import parse_param

    out = {}
    for text in args.param:
        k, v = parse_param(text)
        out[k] = v
    return out


def _max_params(args):
    from .api import DEFAULT_MAX_PARAMS

    return int(args.max_params) if args.max_params is not None else DEFAULT_MAX_PARAMS


def cmd_check(args) -> int:
    from .api import load, models

    names = [args.model] if args.model else models(args.file)
    if not names:
        return _check_library(args.file)
    params = _params(args)
    for name in names:
        spec = load(args.file, name, max_params=_max_params(args), **params)
        ins = ", ".join(f"{n}: {t}" for n, t in spec.inputs())
        outs = ", ".join(f"{n}: {t}" for n, t in spec.outputs())
        print(f"{spec.model}: {spec.param_count():,} parameters; in {ins}; out {outs}")
    return 0


def _check_library(path: str) -> int:
    """A file of blocks and no model: check every block whose hyperparameters all have
    defaults; the others are parsed and name-resolved when a model instantiates them."""
    from .analysis import param_count
    from .api import models
    from .elaborate import Elaborator
    from .program import load as load_program

    program = load_program(path)
    own = program.files[program.root].blocks
    if not own:
        from .errors import NameResolutionError, Span

        raise NameResolutionError(f"{path} defines no block and no model", Span(path, 1, 1))
    models(path)  # parses; errors surface here
    for bdef in own:
        needs = [p.name for p in bdef.params if p.default is None]
        if needs:
            print(f"block {bdef.name}: parsed; checked where it is used (needs {', '.join(needs)})")
            continue
        g = Elaborator(program).instantiate(bdef, {}, bdef.span)
        g.verify()
        ins = ", ".join(f"{g.node(i).attrs['name']}: {g.node(i).type}" for i in g.inputs)
        outs = ", ".join(f"{n}: {g.type_of(v)}" for n, v in g.outputs)
        print(f"block {bdef.name}: {param_count(g):,} parameters; in {ins}; out {outs}")
    return 0


def cmd_compile(args) -> int:
    from .api import load

    opt = 2 if args.opt is None and args.passes is None else args.opt
    spec = load(args.file, args.model, max_params=_max_params(args), opt=opt, passes=args.passes, **_params(args))
    if args.to == "torch":
        _write_text(args.output, spec.torch_source())
        print(f"wrote {args.output}: class {spec.graph.name}, {spec.param_count():,} parameters")
        return 0
    from .backends.onnx_export import export_spec

    report = export_spec(
        spec, args.output, seed=args.seed, weights=args.weights, opset=args.opset,
        functions=args.functions, fp16=args.fp16, quantize=args.quantize,
        external_data=args.external_data,
    )
    print(report)
    return 0


def cmd_ir(args) -> int:
    from .api import load
    from .passes import run_cli_ir

    spec = load(args.file, args.model, max_params=_max_params(args), **_params(args))
    return run_cli_ir(spec, args)


def cmd_summary(args) -> int:
    from .api import load
    from .summary import run_cli_summary

    spec = load(args.file, args.model, max_params=_max_params(args), **_params(args))
    return run_cli_summary(spec, args)


def cmd_render(args) -> int:
    from .api import load
    from .backends.render import run_cli_render

    spec = load(args.file, args.model, max_params=_max_params(args), **_params(args))
    return run_cli_render(spec, args)


def _write_text(path: str, text: str):
    from .errors import NNError

    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise NNError(f"cannot write '{path}': {e.strerror or e}") from None


COMMANDS = {
    "check": cmd_check,
    "compile": cmd_compile,
    "ir": cmd_ir,
    "summary": cmd_summary,
    "render": cmd_render,
}


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return COMMANDS[args.cmd](args)
    except NNError as e:
        from .errors import InternalError

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

"""`nnc fmt`: the canonical layout never changes meaning (same syntax tree, same IR, for every
spec in specs/ and for generated specs in scrambled layouts with comments everywhere), is
idempotent, keeps every comment, and its command line rewrites atomically, checks and pipes."""

from __future__ import annotations

import glob
import os
import random
import re
import subprocess
import sys

import pytest

from nncircuit.api import load
from nncircuit.errors import ParseError
from nncircuit.editor.fmt import format_text
from nncircuit.ir.printer import print_ir
from nncircuit.lang.parse import _parser, parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import OVER_BUDGET  # noqa: E402
from specgen import generate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.nn"), recursive=True))


def comments(text: str) -> list[str]:
    return [t.value.rstrip() for t in _parser().lex(text, dont_ignore=True) if t.type in ("COMMENT", "DOC")]


def same_tree(a: str, b: str):
    ma, mb = parse(a, "a.nn"), parse(b, "b.nn")
    assert ma.imports == mb.imports
    assert ma.blocks == mb.blocks  # dataclass equality: everything but source positions, docs too


def ir_of(path: str, text: str, **params) -> list[str]:
    program_models = [b.name for b in parse(text, path).blocks if b.kind == "model"]
    budget = 10**12 if os.path.basename(path) in OVER_BUDGET else 2 * 10**9
    return [print_ir(load(path, m, text=text, max_params=budget, **params).graph, locs=False) for m in program_models]


def check_fmt(text: str, path: str = "spec.nn") -> str:
    out = format_text(text, path)
    same_tree(text, out)
    assert format_text(out, path) == out, "not idempotent"
    assert comments(out) == comments(text), "a comment was lost, changed or moved out of order"
    for line in out.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 4 == 0 or "|>" in line, repr(line)  # pipeline continuations align on |>
        assert line == line.rstrip() and "\t" not in line
    return out


# ---- every spec of the zoo -------------------------------------------------------------------


@pytest.mark.parametrize("path", SPECS, ids=lambda p: os.path.relpath(p, ROOT))
def test_specs_keep_meaning_and_comments(path):
    text = open(path, encoding="utf-8").read()
    out = check_fmt(text, path)
    assert ir_of(path, out) == ir_of(path, text)


# ---- generated specs, scrambled and commented ------------------------------------------------


def scramble(text: str, rng: random.Random) -> str:
    """The same tokens with random whitespace between them, and comments (own-line and
    trailing) sprinkled wherever a line break is allowed."""
    out, n = [], 0
    for tok in _parser().lex(text, dont_ignore=True):
        if tok.type == "WS":
            continue
        if tok.type in ("COMMENT", "DOC"):
            out.append(" " + tok.value + "\n")
            continue
        sep = rng.choice([" ", " ", "  ", "\n", "\n\n\n    ", "\t"])
        if rng.random() < 0.08:
            n += 1
            sep = rng.choice([f"  # note {n}\n", f"\n# own line {n}\n", f"\n\n## doc-like {n}\n\n"])
        out.append(sep + tok.value)
    return "".join(out).lstrip() + "\n"


SEEDS = range(int(os.environ.get("NNC_FMT_SEEDS", "40")))


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_specs_scrambled(seed):
    gs = generate(seed)
    rng = random.Random(seed)
    messy = scramble(gs.text, rng)
    out = check_fmt(messy)
    assert ir_of("spec.nn", out, **gs.params) == ir_of("spec.nn", messy, **gs.params)
    # without its comments, the layout is that of the tidy original: one statement a line
    assert code_lines(out) == code_lines(format_text(gs.text, "spec.nn"))


def code_lines(text: str) -> list[str]:
    lines = (re.sub(r"\s*#.*", "", line) for line in text.splitlines())  # no '#' in its strings
    return [line for line in lines if line.strip()]


# ---- the layout rules ------------------------------------------------------------------------


def fmt(text: str) -> str:
    return check_fmt(text)


def test_layout_spacing_indent_and_one_statement_per_line():
    src = "model M(d=2,h = 3,){in x:[b,d] y=Linear(x,d->h,bias=false)|>relu out y}"
    assert fmt(src) == (
        "model M(d = 2, h = 3) {\n"
        "    in  x: [b, d]\n"
        "    y = Linear(x, d -> h, bias = false) |> relu\n"
        "    out y\n"
        "}\n"
    )


def test_precedence_keeps_the_parentheses_that_matter():
    src = (
        "block B(a = 1, b = 2, c = 3) { in x: [d]\n"
        "p = ((a + b) * c) k = a - (b - c) m = (a - b) - c n = (-a) ** b o = a ** (b ** c)\n"
        "q = (a ** b) ** c r = -(a + b) s = (x |> relu) |> tanh t = x |> (relu) u = (x,)\n"
        "v = (x + x)(y) out x }"
    )
    out = fmt(src)
    assert "p = (a + b) * c" in out
    assert "k = a - (b - c)" in out
    assert "m = a - b - c" in out
    assert "n = (-a) ** b" in out
    assert "o = a ** b ** c" in out
    assert "q = (a ** b) ** c" in out
    assert "r = -(a + b)" in out
    assert "s = x |> relu |> tanh" in out
    assert "u = (x,)" in out
    assert "v = (x + x)(y)" in out


def test_source_spellings_the_tree_forgets_are_kept():
    src = "model M() { in x: [b, d: 1e1] float32, y: [b, d] out Linear(x, [d] -> [e: 2]) |> mean(over [e]), scale(y, 0.50) }"
    out = fmt(src)
    assert "x: [b, d: 1e1] float32, y: [b, d]" in out
    assert "Linear(x, [d] -> [e: 2])" in out and "over [e]" in out and "0.50" in out


def test_comments_stay_with_their_statements():
    src = (
        "# header\n"
        "\n"
        "\n"
        "## Doc of B.\n"
        "## Second line.\n"
        "block B(d) {   # after the brace\n"
        "  in x: [d]        # trailing in\n"
        "  # before y\n"
        "  y = Linear(x,    # inside a statement\n"
        "      d -> d)\n"
        "  out y\n"
        "  # before the brace\n"
        "}  # after the block\n"
        "model M() { in x: [b, d: 4] repeat 2 { x = B(4)(x) # in repeat\n"
        "} out x }\n"
        "# the end\n"
    )
    assert fmt(src) == (
        "# header\n"
        "\n"
        "## Doc of B.\n"
        "## Second line.\n"
        "block B(d) {  # after the brace\n"
        "    in  x: [d]  # trailing in\n"
        "    # before y\n"
        "    # inside a statement\n"
        "    y = Linear(x, d -> d)\n"
        "    out y\n"
        "    # before the brace\n"
        "}  # after the block\n"
        "\n"
        "model M() {\n"
        "    in  x: [b, d: 4]\n"
        "    repeat 2 {\n"
        "        x = B(4)(x)  # in repeat\n"
        "    }\n"
        "    out x\n"
        "}\n"
        "# the end\n"
    )
    assert parse(fmt(src)).blocks[0].doc == "Doc of B.\nSecond line."


def test_a_detached_doc_comment_stays_detached():
    src = "## not the doc of B: a blank line follows\n\nblock B(d) { in x: [d] out x }\n"
    out = fmt(src)
    assert parse(out).blocks[0].doc == ""
    assert out.startswith("## not the doc of B: a blank line follows\n\nblock B(d) {")


def test_long_pipelines_break_before_the_pipe():
    stage = "Conv(c -> c: width, kernel = 3, padding = 1, bias = false, over [h, w])"
    src = f"block B(width) {{ in x: [c: width, h, w] out x |> {stage} |> BatchNorm(c) |> relu |> {stage} }}"
    lines = fmt(src).splitlines()
    body = lines[2:-1]
    assert len(body) > 1 and all(len(line) <= 100 for line in lines)
    col = body[0].index("|>")
    assert all(line.index("|>") == col for line in body[1:])


def test_empty_file_and_imports():
    assert format_text("", "a.nn") == ""
    assert format_text("# only a comment", "a.nn") == "# only a comment\n"
    out = fmt('import   "a.nn"\nfrom "lib/b.nn" import X,Y\nblock B(){in x:[d] out x}')
    assert out.startswith('import "a.nn"\nfrom "lib/b.nn" import X, Y\n\nblock B() {\n')


def test_a_syntax_error_is_a_positioned_error_not_a_layout():
    with pytest.raises(ParseError) as e:
        format_text("model M() { in x: [b] out x |> }", "bad.nn")
    assert e.value.span.line == 1 and e.value.span.file == "bad.nn"


# ---- the command -----------------------------------------------------------------------------


def nnc(*args, stdin=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nncircuit.cli", *args],
        input=stdin, capture_output=True, text=True, cwd=cwd,
    )


def test_cli_check_rewrite_and_stdin(tmp_path):
    messy = tmp_path / "messy.nn"
    messy.write_text("model M(d=2){in x:[b,d] # keep me\nout x|>relu}\n")
    tidy = tmp_path / "sub" / "tidy.nn"
    tidy.parent.mkdir()
    tidy.write_text("model M(d = 2) {\n    in  x: [b, d]\n    out x\n}\n")
    before = messy.read_text()

    r = nnc("fmt", "--check", str(tmp_path))
    assert r.returncode == 1
    assert r.stdout.splitlines() == [f"would reformat {messy}"]
    assert messy.read_text() == before

    r = nnc("fmt", str(messy), str(tidy))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"reformatted {messy}"]
    assert messy.read_text() == "model M(d = 2) {\n    in  x: [b, d]  # keep me\n    out x |> relu\n}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messy.nn", "sub"]  # no temp file left

    r = nnc("fmt", "--check", str(tmp_path))
    assert (r.returncode, r.stdout) == (0, "")

    r = nnc("fmt", "-", stdin="block B(){in x:[d] out x}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "block B() {\n    in  x: [d]\n    out x\n}\n"


def test_cli_syntax_error_leaves_the_file_alone(tmp_path):
    bad = tmp_path / "bad.nn"
    bad.write_text("model M() {\n  in x: [b]\n  out x |>\n}\n")
    r = nnc("fmt", str(bad))
    assert r.returncode == 1
    assert re.match(rf"{re.escape(str(bad))}:4:1: error: unexpected '}}'", r.stderr), r.stderr
    assert "Traceback" not in r.stderr
    assert bad.read_text() == "model M() {\n  in x: [b]\n  out x |>\n}\n"
    # with other files: the bad one is reported, the good ones are still formatted
    good = tmp_path / "good.nn"
    good.write_text("block B(){in x:[d] out x}")
    r = nnc("fmt", str(bad), str(good))
    assert r.returncode == 1 and "bad.nn:4:1: error" in r.stderr
    assert r.stdout.splitlines() == [f"reformatted {good}"]
    assert good.read_text() == "block B() {\n    in  x: [d]\n    out x\n}\n"


def test_the_zoo_is_in_the_canonical_layout():
    """Every spec shipped in specs/ is formatted with nnc fmt (CI fails when one is not)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    files = sorted(glob.glob(os.path.join(root, "specs", "**", "*.nn"), recursive=True))
    assert files
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert format_text(text, path) == text, f"{os.path.relpath(path, root)} is not formatted: nnc fmt specs/"

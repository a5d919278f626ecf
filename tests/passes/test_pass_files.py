"""File-based pass tests, in the style of xDSL's filecheck tests: each `tests/passes/NAME.nn`
is a small spec whose header names the passes (`# passes: cse`) and what the optimized IR
must (`# check: TEXT`) and must not (`# check-not: TEXT`) contain. `NAME.ir` beside it is the
spec's textual IR — the test's input, read back by `nnc opt` — and `NAME.out.ir` the IR after
the passes: both goldens, rewritten by `pytest --update-goldens`."""

import os
import subprocess
import sys

import pytest

from nncircuit.api import load
from nncircuit.ir.parser import parse_ir
from nncircuit.ir.printer import print_ir
from nncircuit.passes import optimize

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".nn"))


def _header(name: str, key: str) -> list[str]:
    with open(os.path.join(HERE, f"{name}.nn"), encoding="utf-8") as f:
        return [line[len(f"# {key}: "):].rstrip("\n") for line in f if line.startswith(f"# {key}: ")]


def _golden(path: str, text: str, update: bool):
    if update or not os.path.exists(path):
        if not update:
            pytest.fail(f"missing golden {os.path.basename(path)}: run pytest --update-goldens")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        assert text == f.read(), f"{os.path.basename(path)} differs (pytest --update-goldens rewrites it)"


def _ir_of_spec(name: str) -> str:
    cwd = os.getcwd()
    os.chdir(HERE)  # the IR names the file as the spec was given: keep it relative
    try:
        return print_ir(load(f"{name}.nn").graph)
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("name", CASES)
def test_pass_file(name, update_goldens):
    (passes,) = _header(name, "passes")
    _golden(os.path.join(HERE, f"{name}.ir"), _ir_of_spec(name), update_goldens)
    with open(os.path.join(HERE, f"{name}.ir"), encoding="utf-8") as f:
        root = parse_ir(f.read(), f"{name}.ir")
    out = print_ir(optimize(root, passes=passes))
    for want in _header(name, "check"):
        assert want in out, f"{name}: '{want}' is not in the IR after {passes}:\n{out}"
    for unwanted in _header(name, "check-not"):
        assert unwanted not in out, f"{name}: '{unwanted}' is still in the IR after {passes}:\n{out}"
    _golden(os.path.join(HERE, f"{name}.out.ir"), out, update_goldens)


def test_every_pass_has_a_file():
    from nncircuit.passes import PASSES

    tested = {p for name in CASES for p in _header(name, "passes")[0].split(",")}
    assert sorted(set(PASSES) - tested) == []


def test_nnc_opt_reads_textual_ir(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "nncircuit.cli", "opt", os.path.join(HERE, "cse.ir"), "--passes", "cse"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    with open(os.path.join(HERE, "cse.out.ir"), encoding="utf-8") as f:
        assert r.stdout == f.read()
    bad = tmp_path / "bad.ir"
    bad.write_text("model @M = M() {\n  %x = nosuchop() : []\n}\n")
    r = subprocess.run([sys.executable, "-m", "nncircuit.cli", "opt", str(bad), "-O", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith(f"{bad}:") and "Traceback" not in r.stderr, r.stderr

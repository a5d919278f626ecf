"""No input crashes nnc: random bytes, truncated and mutated versions of every spec in
specs/, mutated generated specs, deep nesting, huge numbers, unicode, empty files, a
directory or a binary file given as a spec. Every one ends in exit status 0 or 1 (never 2,
an internal error), without a traceback, and a diagnostic about the spec's text names
FILE:LINE:COL inside the file. The oracle is scripts/fuzz.py's, which runs the same checks
for as long as one likes (see CONTRIBUTING.md) and also judges the CPU time each input
takes; no time, wall-clock or CPU, decides a test here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specgen
from conftest import ROOT, SPECS

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import fuzz  # noqa: E402

RUNAWAY = 120.0  # CPU seconds after which an input is stopped, so that a bug cannot hang the suite
SPEC_FILES = sorted(
    os.path.relpath(os.path.join(d, f), SPECS) for d, _, fs in os.walk(SPECS) for f in fs if f.endswith(".nn")
)


def bounded(examples: int):
    """Hypothesis settings for the normal run: a fixed number of examples and no deadline
    (a busy machine would fail it)."""
    return settings(
        max_examples=examples, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def _spec_text(name: str) -> str:
    with open(os.path.join(SPECS, name), encoding="utf-8") as f:
        return f.read()


def assert_graceful(data, path, *argv, text=None):
    """Run `nnc check FILE` (or ARGV) in-process on `data` written to `path`."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    o = fuzz.run_cli(list(argv) or ["check", str(path)], limit=RUNAWAY)
    p = fuzz.problem(o, str(path), text)
    assert p is None, f"{p}\n--- input ---\n{data[:2000]!r}\n--- stderr ---\n{o.stderr}{o.crash}"
    return o


# ---- properties (hypothesis; bounded) -------------------------------------------------------


@bounded(120)
@given(data=st.binary(max_size=400))
def test_random_bytes(tmp_path, data):
    assert_graceful(data, tmp_path / "random.nn")


@bounded(120)
@given(text=st.lists(st.sampled_from(specgen.TOKENS), max_size=60).map(" ".join))
def test_random_token_soup(tmp_path, text):
    assert_graceful(text, tmp_path / "soup.nn")


@st.composite
def mutated_spec(draw):
    name = draw(st.sampled_from(SPEC_FILES))
    return name, specgen.mutate(_spec_text(name), specgen.DrawChooser(draw), rounds=4)


@bounded(200)
@given(case=mutated_spec())
def test_mutated_specs(tmp_path, case):
    name, text = case
    # a mutated file in specs/ keeps its imports resolvable: write it beside the original
    path = tmp_path / os.path.basename(name)
    if name.startswith("lib"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
    shutil.copytree(os.path.join(SPECS, "lib"), tmp_path / "lib", dirs_exist_ok=True)
    assert_graceful(text, path)


@bounded(100)
@given(case=st.sampled_from(SPEC_FILES), seed=st.integers(0, 2**32))
def test_byte_damaged_specs(tmp_path, case, seed):
    data = specgen.mutate_bytes(_spec_text(case).encode("utf-8"), specgen.RandomChooser(seed))
    assert_graceful(data, tmp_path / "damaged.nn")


@st.composite
def mutated_generated(draw):
    gs = draw(specgen.specs())
    return specgen.mutate(gs.text, specgen.DrawChooser(draw))


@bounded(60)
@given(text=mutated_generated())
def test_mutated_generated_specs(tmp_path, text):
    assert_graceful(text, tmp_path / "mutant.nn")


@bounded(40)
@given(gs=specgen.specs())
def test_generated_specs_check_and_compile(tmp_path, gs):
    """A well-typed spec checks, and compiles to torch source that is valid Python."""
    path = tmp_path / "gen.nn"
    params = [a for k, v in gs.params.items() for a in ("-p", f"{k}={v}")]
    o = assert_graceful(gs.text, path, "check", str(path), *params)
    assert o.rc == 0, f"{o.stderr}\n{gs.describe()}"
    out = tmp_path / "gen.py"
    o = fuzz.run_cli(["compile", str(path), "-o", str(out), *params])
    assert o.rc == 0, f"{o.stderr}\n{gs.describe()}"
    compile(out.read_text(encoding="utf-8"), str(out), "exec")


# ---- every spec cut short at many places ---------------------------------------------------


@pytest.mark.parametrize("name", SPEC_FILES)
def test_truncated_specs(tmp_path, name):
    text = _spec_text(name)
    shutil.copytree(os.path.join(SPECS, "lib"), tmp_path / "lib", dirs_exist_ok=True)
    step = max(1, len(text) // 60)
    for cut in range(0, len(text), step):
        assert_graceful(text[:cut], tmp_path / "cut.nn")


# ---- hostile inputs, one by one -------------------------------------------------------------

X = "model M() {\n    in x: [batch, d: 4]\n    out %s\n}\n"
HOSTILE = {
    "empty": "",
    "whitespace": " \n\t\r\n  ",
    "only a comment": "# nothing here\n## a doc comment for nothing\n",
    "10,000 nested parentheses": X % ("(" * 10_000 + "x" + ")" * 10_000),
    "10,000 unclosed parentheses": X % ("(" * 10_000 + "x"),
    "10,000 nested brackets": "model M() { in x: " + "[" * 10_000 + " }",
    "10,000 nested braces": "model M() " + "{" * 10_000,
    "5,000 nested negations": X % ("-" * 5_000 + "x"),
    "5,000 nested calls": X % ("relu(" * 5_000 + "x" + ")" * 5_000),
    "3,000 pipes": X % ("x" + " |> relu" * 3_000),
    "3,000 additions": X % ("x" + " + x" * 3_000),
    "200 nested blocks": "\n".join(
        [f"block B{i}() {{ in x: [d: 4]\n out B{i - 1}()(x) }}" for i in range(1, 200)]
        + ["block B0() { in x: [d: 4]\n out x }", "model M() { in x: [d: 4]\n out B199()(x) }"]
    ),
    "a 5,000-digit number": X % ("x * " + "9" * 5_000),
    "a 120-digit number": X % ("x * " + "9" * 120),
    "a 64-bit overflow": X % "x * 99999999999999999999999",
    "1e400": X % "x * 1e400",
    "inf by arithmetic": X % "LayerNorm(x, over d, eps = 1e308 * 10)",
    "nan by arithmetic": X % "x * (1e308 * 10 - 1e308 * 10)",
    "a huge power": X % "x * 10 ** 10 ** 10",
    "division by zero": X % "x * (1 / 0)",
    "an axis of size 0": "model M() { in x: [d: 0]\n out x }",
    "a negative axis": "model M() { in x: [d: -3]\n out x }",
    "a fractional axis": "model M() { in x: [d: 2.5]\n out x }",
    "a string axis": 'model M() { in x: [d: "four"]\n out x }',
    "unicode identifier": "model M() { in x: [δ: 4]\n out x }",
    "unicode in a string": 'model M() { in x: [d: 4]\n out cast(x, to = "flöat😀") }',
    "unicode in comments": "# 😀 ünïcödé — ok\nmodel M() { in x: [d: 4]\n out x } # ∑\n",
    "a byte-order mark": "\ufeffmodel M() { in x: [d: 4]\n out x }",
    "CRLF line ends": "model M() {\r\n in x: [d: 4]\r\n out x\r\n}\r\n",
    "tabs": "model M() {\n\tin x: [d: 4]\n\t\tout\tx\n}\n",
    "a line separator": "model M() {\u2028 in x: [d: 4]\n out x }",
    "a NUL in text": "model M() { in x: [d: 4]\n out x }\x00",
    "a lone quote": 'model M() { in x: [d: 4]\n out cast(x, to = "float32) }',
    "a string with quotes and backslashes": 'model M() { in x: [d: 4]\n out cast(x, to = "a\\"b\\\\") }',
    "a very long line": X % ("x" + " + x" * 20) + "#" + "z" * 200_000,
    "a very long name": X % ("x" + "y" * 100_000),
    "many models": "\n".join(f"model M{i}() {{ in x: [d: 4]\n out x }}" for i in range(300)),
    "3,000 statements": "model M() {\n in x: [d: 4]\n" + "    x = x + 1\n" * 3_000 + " out x\n}\n",
    "a model that calls itself": "model M() { in x: [d: 4]\n out M()(x) }",
    "an empty type": "model M() { in x: []\n out x }",
    "a duplicated axis": "model M() { in x: [d: 4, d: 4]\n out x }",
    "nested repeats": "model M(n = 100000) { in x: [d: 4]\n repeat n { repeat n { x = relu(x) } }\n out x }",
    "a repeat of a billion": "model M() { in x: [d: 4]\n repeat 1000000000 { x = relu(x) }\n out x }",
    "an axis of 10**12": "model M() { in x: [d: 1000000000000]\n out x }",
    "weights of 10**12": "model M() { in x: [d: 4]\n out Linear(x, d -> [e: 1000000, f: 1000000]) }",
    "an output axis of 10**12": "model M() { in x: [d: 4]\n out Linear(x, d -> e: 1000000000000) }",
}


# Inputs that are valid specs; every other one is a mistake and must be reported as one.
VALID = {"10,000 nested parentheses", "unicode in comments", "tabs", "CRLF line ends",
         "many models", "a very long line", "an empty type", "3,000 statements",
         "a line separator"}  # U+2028 ends a line, as in editors (test_trust_hazards.py)
# What the diagnostic of some of the mistakes says.
SAYS = {
    "a repeat of a billion": "limit",
    "an output axis of 10**12": "longer than the limit",
    "200 nested blocks": "nest more than",
    "an axis of 10**12": "longer than the limit",
    "weights of 10**12": "over the budget",
    "nested repeats": "limit",
    "a 5,000-digit number": "digits",
    "a 64-bit overflow": "64-bit",
    "inf by arithmetic": "not a finite number",
    "a model that calls itself": "uses itself",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input(tmp_path, name):
    o = assert_graceful(HOSTILE[name], tmp_path / "hostile.nn")
    assert o.rc == (0 if name in VALID else 1), o.stderr
    assert SAYS.get(name, "") in o.stderr


def test_invalid_utf8(tmp_path):
    o = assert_graceful(b"model M() { in x: [d: 4]\n out \xff\xfe x }", tmp_path / "latin.nn")
    assert o.rc == 1 and "hostile" not in o.stderr and ":2:" in o.stderr.splitlines()[0]


def test_binary_file(tmp_path):
    data = bytes(range(256)) * 8
    o = assert_graceful(data, tmp_path / "binary.nn")
    assert o.rc == 1 and "binary" in o.stderr


def test_directory_as_spec(tmp_path):
    d = tmp_path / "dir.nn"
    d.mkdir()
    o = fuzz.run_cli(["check", str(d)])
    assert o.rc == 1 and "directory" in o.stderr and not o.crash


@pytest.mark.parametrize("command", [["check"], ["summary"], ["ir"], ["compile", "-o", "out.py"]])
def test_missing_file(tmp_path, command):
    o = fuzz.run_cli([command[0], str(tmp_path / "missing.nn"), *command[1:]])
    assert o.rc == 1 and "no such file" in o.stderr and not o.crash


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "9" * 5000, "99999999999999999999", "", "=", "δ"])
def test_hostile_hyperparameter_values(tmp_path, value):
    path = tmp_path / "k.nn"
    path.write_text("model M(k = 2) { in x: [d: 4]\n out x * k }\n", encoding="utf-8")
    o = fuzz.run_cli(["compile", str(path), "-o", str(tmp_path / "m.py"), "-p", f"k={value}"])
    assert fuzz.problem(o, str(path), None) is None, o.stderr
    assert o.rc == 1, o.stderr


def test_oversized_file(tmp_path):
    o = assert_graceful(b"#" * (9 * 1024 * 1024), tmp_path / "big.nn")
    assert o.rc == 1


# ---- the real executable: a few runs in a subprocess ----------------------------------------


# subprocess timeouts below are runaway guards (600 s), never a limit on how fast nnc is
def _nnc() -> list[str]:
    exe = shutil.which("nnc")
    return [exe] if exe else [sys.executable, "-m", "nncircuit.cli"]


@pytest.mark.parametrize("name", ["empty", "10,000 nested parentheses", "a 5,000-digit number", "a NUL in text"])
def test_subprocess(tmp_path, name):
    path = tmp_path / "hostile.nn"
    path.write_bytes(HOSTILE[name].encode("utf-8"))
    r = subprocess.run([*_nnc(), "check", str(path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == (0 if name in VALID else 1), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert r.returncode == 0 or r.stderr.startswith(f"{path}:"), r.stderr


def test_subprocess_directory_and_binary(tmp_path):
    (tmp_path / "d.nn").mkdir()
    (tmp_path / "b.nn").write_bytes(b"\x00\x01\x02binary")
    for f in ("d.nn", "b.nn"):
        r = subprocess.run([*_nnc(), "check", str(tmp_path / f)], capture_output=True, text=True, timeout=600)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr

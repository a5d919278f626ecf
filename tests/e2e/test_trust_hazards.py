"""What an untrusted spec, file system or command line cannot do to a user of `nnc`: run code
through the parser's cache, write over an input or through a planted link, hide a statement
behind a line terminator, crash or hang it, or turn weights into other numbers silently; and
syntax errors that say the literal the user would type."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from lark import Lark

import nncircuit
from nncircuit import cli, errors
from nncircuit.lang import parse as syntax
from nncircuit.errors import NNError

SPEC = "model M() {\n    in x: [d: 4]\n    out Linear(x, d -> e: 3)\n}\n"  # 15 parameters


def nnc(*argv, capsys=None) -> tuple[int, str]:
    """`nnc ARGV` in this process: its exit status and what it printed to stderr."""
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, err


def nnc_process(*argv, **kw) -> subprocess.CompletedProcess:
    # the timeout only stops a runaway; it decides nothing
    return subprocess.run([sys.executable, "-m", "nncircuit.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=600, **kw)


def one_sentence(err: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err
    assert err.strip() and len(err.strip().splitlines()) <= 3, err


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "m.nn"
    path.write_text(SPEC, encoding="utf-8")
    return path


class Marker:
    """A pickle whose unpickling creates the file `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---- 9: weights keep their values or are refused ----------------------------------------


def _weights(tmp_path, dtype, value=None):
    from safetensors.numpy import save_file

    names = nncircuit.load("m.nn", text=SPEC).module().state_dict()
    arrays = {k: np.ones(tuple(v.shape), dtype=dtype) for k, v in names.items()}
    if value is not None:
        first = sorted(arrays)[0]
        arrays[first].flat[1] = value
    path = tmp_path / "w.safetensors"
    save_file(arrays, str(path))
    return path


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.bool_])
def test_integer_weights_are_refused(tmp_path, spec, capsys, dtype):
    w = _weights(tmp_path, dtype)
    rc, err = nnc("compile", spec, "--to", "onnx", "--weights", w, "-o", tmp_path / "m.onnx",
                  capsys=capsys)
    assert rc == 1 and "floating point" in err and np.dtype(dtype).name in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_float64_beyond_float32_is_refused(tmp_path, spec, capsys):
    w = _weights(tmp_path, np.float64, 1e300)
    rc, err = nnc("compile", spec, "-o", tmp_path / "m.onnx", "--weights", w, capsys=capsys)
    assert rc == 1 and "1e+300" in err and "beyond float32" in err, err


def test_float64_within_float32_is_kept(tmp_path, spec, capsys):
    import onnx
    from onnx import numpy_helper

    w = _weights(tmp_path, np.float64, 0.25)
    rc, err = nnc("compile", spec, "-o", tmp_path / "m.onnx", "--weights", w, capsys=capsys)
    assert rc == 0, err
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    assert 0.25 in inits[sorted(inits)[0]].ravel()


def test_sparse_tensor_in_weights(tmp_path, spec, capsys):
    torch = pytest.importorskip("torch")
    sd = nncircuit.load("m.nn", text=SPEC).module().state_dict()
    sd = {k: v.to_sparse() if v.dim() == 2 else v for k, v in sd.items()}
    torch.save(sd, tmp_path / "w.pt")
    rc, err = nnc("compile", spec, "-o", tmp_path / "m.onnx", "--weights", tmp_path / "w.pt",
                  capsys=capsys)
    assert rc == 1 and "sparse" in err and "to_dense" in err, err
    one_sentence(err)


# ---- 10: the parse table is never unpickled from a place others can write -----------------


def _grammar() -> str:
    from importlib import resources

    return resources.files("nncircuit.grammar").joinpath("nn.lark").read_text(encoding="utf-8")


def test_a_pickle_planted_in_the_temp_folder_is_never_loaded(tmp_path, spec):
    """Lark's own cache=True keeps the table at a predictable name in the shared temp folder
    and unpickles whatever is there: plant one that would create a file, run nnc."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    probe = tmp_path / "probe"
    probe.mkdir()
    # the name Lark's cache=True would use for our grammar, in that temp folder
    code = (
        "import sys, tempfile; tempfile.tempdir = sys.argv[1]\n"
        "from lark import Lark\n"
        "Lark(sys.stdin.read(), parser='lalr', propagate_positions=True, "
        "maybe_placeholders=True, cache=True)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(probe)], input=_grammar(), text=True,
                   check=True, timeout=600)
    (name,) = os.listdir(probe)
    marker = tmp_path / "pwned"
    (shared / name).write_bytes(b"x\n" + pickle.dumps(Marker(marker)))
    env = {**os.environ, "TMPDIR": str(shared), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = nnc_process("check", spec, env=env)
    assert r.returncode == 0, r.stderr
    assert not marker.exists(), "a pickle planted in the temp folder was unpickled"
    assert os.listdir(shared) == [name], "the parser wrote into the shared temp folder"


def test_the_cache_is_private_and_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    syntax._cached_parser(_grammar())
    folder = tmp_path / "cache" / "nncircuit"
    (table,) = folder.iterdir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(table.stat().st_mode) == 0o600
    assert isinstance(syntax._cached_parser(_grammar()), Lark)
    # control: a pickle at that name, private as it should be, is what the cache reads, so
    # the refusals below refuse a file that would otherwise have been loaded
    marker = tmp_path / "loaded"
    table.write_bytes(pickle.dumps(Marker(marker)))
    syntax._cached_parser(_grammar())
    assert marker.exists()


def _plant(tmp_path, monkeypatch) -> tuple:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    syntax._cached_parser(_grammar())
    folder = tmp_path / "cache" / "nncircuit"
    (table,) = folder.iterdir()
    marker = tmp_path / "pwned"
    table.write_bytes(pickle.dumps(Marker(marker)))
    return folder, table, marker


@pytest.mark.parametrize("how", ["folder open to others", "file writable by others",
                                 "file is a symlink", "folder is a symlink", "file of another user"])
def test_an_untrusted_cache_is_never_unpickled(tmp_path, monkeypatch, how):
    folder, table, marker = _plant(tmp_path, monkeypatch)
    if how == "folder open to others":
        folder.chmod(0o777)
    elif how == "file writable by others":
        table.chmod(0o666)
    elif how == "file is a symlink":
        evil = tmp_path / "evil.pickle"
        evil.write_bytes(table.read_bytes())
        evil.chmod(0o600)
        table.unlink()
        table.symlink_to(evil)
    elif how == "folder is a symlink":
        real = tmp_path / "elsewhere"
        folder.rename(real)
        folder.symlink_to(real)
    else:
        if os.getuid() != 0:
            pytest.skip("giving a file to another user needs root")
        os.chown(table, 12345, 12345)
    parser = syntax._cached_parser(_grammar())
    assert isinstance(parser, Lark)
    assert not marker.exists(), f"unpickled a cache whose {how}"


# ---- 11: outputs --------------------------------------------------------------------------


def test_compile_refuses_to_write_over_the_spec(spec, capsys):
    rc, err = nnc("compile", spec, "-o", spec, capsys=capsys)
    assert rc == 1 and "refusing to write" in err, err
    assert spec.read_text(encoding="utf-8") == SPEC


def test_outputs_refuse_every_input_under_any_name(tmp_path, capsys):
    lib = tmp_path / "lib.nn"
    lib.write_text("block B() { in x: [d]\n out x }\n", encoding="utf-8")
    main = tmp_path / "main.nn"
    main.write_text('import "lib.nn"\n' + SPEC, encoding="utf-8")
    os.link(main, tmp_path / "main.py")  # the spec under another name
    os.link(lib, tmp_path / "lib.svg")
    w = _weights(tmp_path, np.float32)
    os.link(w, tmp_path / "w.onnx")
    before = {p: p.read_bytes() for p in (main, lib, w)}
    for argv in (
        ["compile", main, "-o", tmp_path / "main.py"],
        ["compile", main, "-o", lib],
        ["compile", main, "--to", "onnx", "-o", tmp_path / "w.onnx", "--weights", w],
        ["render", main, "-o", tmp_path / "lib.svg"],
    ):
        rc, err = nnc(*argv, capsys=capsys)
        assert rc == 1 and "refusing to write" in err, (argv, err)
    assert {p: p.read_bytes() for p in before} == before


def test_the_extension_chooses_the_format(tmp_path, spec, capsys):
    import onnx

    rc, err = nnc("compile", spec, "-o", tmp_path / "model.onnx", capsys=capsys)
    assert rc == 0, err
    onnx.checker.check_model(onnx.load(str(tmp_path / "model.onnx")))
    rc, err = nnc("compile", spec, "-o", tmp_path / "model.py", capsys=capsys)
    assert rc == 0 and "class M" in (tmp_path / "model.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("to,out", [("torch", "x.onnx"), ("onnx", "x.py")])
def test_a_contradicting_to_is_refused(tmp_path, spec, capsys, to, out):
    rc, err = nnc("compile", spec, "--to", to, "-o", tmp_path / out, capsys=capsys)
    assert rc == 1 and "contradicts" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / out).exists()


@pytest.mark.parametrize("command,out", [
    ("torch", "m.py"), ("onnx", "m.onnx"), ("render", "m.svg"), ("render", "m.dot"),
])
def test_a_planted_symlink_at_a_temp_name_is_not_followed(tmp_path, spec, capsys, command, out):
    """The temp names used to be `OUT.tmpPID` and `.OUT.PID.tmp`: plant links at both."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    target = tmp_path / out
    pid = os.getpid()
    for name in (f"{out}.tmp{pid}", f".{out}.{pid}.tmp"):
        (tmp_path / name).symlink_to(victim)
    argv = ["render", spec, "-o", target] if command == "render" else \
        ["compile", spec, "--to", command, "-o", target]
    rc, err = nnc(*argv, capsys=capsys)
    assert rc == 0, err
    assert victim.read_text(encoding="utf-8") == "precious"
    assert target.is_file() and not target.is_symlink()


def test_a_failed_write_leaves_no_temp_file(tmp_path, spec, capsys):
    out = tmp_path / "out"
    out.mkdir()  # os.replace of a file over a folder fails after the temp file is written
    (out / "keep").write_text("", encoding="utf-8")
    for argv in (["compile", spec, "-o", out], ["compile", spec, "--to", "onnx", "-o", out],
                 ["render", spec, "-o", tmp_path / "dir.svg"]):
        if argv[0] == "render":
            (tmp_path / "dir.svg").mkdir()
        rc, err = nnc(*argv, capsys=capsys)
        assert rc == 1 and "cannot write" in err, err
    assert sorted(os.listdir(tmp_path)) == ["dir.svg", "m.nn", "out"]


def test_the_writer_removes_its_temp_file_on_an_exception(tmp_path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    from nncircuit import io

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.write_atomic(str(tmp_path / "x.py"), "text")
    assert os.listdir(tmp_path) == []


def test_outputs_are_readable_as_open_would_make_them(tmp_path):
    from nncircuit import io

    old = os.umask(0o022)
    try:
        io.write_atomic(str(tmp_path / "x.py"), "text")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.py").stat().st_mode) == 0o644


def test_one_atomic_writer():
    """No module of the package, nor a script, writes a file but through compiler/io.py."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    seen = 0
    for folder in ("compiler", "backends", "scripts"):
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                if not name.endswith(".py") or rel == os.path.join("compiler", "io.py"):
                    continue
                seen += 1
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                for bad in ("os.replace(", '"w"', '"wb"', "'w'", "'wb'", ".tmp"):
                    assert bad not in text, f"{rel} writes with {bad}"
    assert seen > 50  # the sub-packages were walked


# ---- 12: every line terminator ends a line, in the lexer and in diagnostics ---------------


TERMINATORS = {"CR": "\r", "LS": "\u2028", "PS": "\u2029", "NEL": "\x85", "VT": "\v", "FF": "\f",
               "CRLF": "\r\n"}


@pytest.mark.parametrize("name", sorted(TERMINATORS))
def test_a_comment_ends_at_every_line_terminator(name):
    """The editor shows `out ...` on its own line; the compiler must see it too."""
    nl = TERMINATORS[name]
    text = f"model M() {{\n    in x: [d: 4]\n    # project it{nl}    out Linear(x, d -> e: 3)\n}}\n"
    spec = nncircuit.load("m.nn", text=text)
    assert spec.param_count() == 15


@pytest.mark.parametrize("name", sorted(TERMINATORS))
def test_diagnostics_count_the_lines_an_editor_shows(name):
    nl = TERMINATORS[name]
    text = f"model M() {{{nl}    in x: [d: 4]{nl}    out nope{nl}}}{nl}"
    with pytest.raises(NNError) as info:
        nncircuit.load("m.nn", text=text)
    shown = info.value.render().splitlines()
    assert shown[0].startswith("m.nn:3:9: "), shown
    assert shown[1] == "        out nope" and shown[2] == "            ^~~~", shown


def test_invalid_utf8_is_placed_on_the_line_an_editor_shows(tmp_path, capsys):
    path = tmp_path / "bad.nn"
    path.write_bytes(b"model M() {\r in x: [d: 4]\r out \xff x }")
    rc, err = nnc("check", path, capsys=capsys)
    assert rc == 1 and err.startswith(f"{path}:3:6: error: "), err


def test_a_doc_comment_ends_at_a_line_separator():
    text = "## the doc\u2028model M() { in x: [d: 4]\n out x }\n"
    assert nncircuit.load("m.nn", text=text).graph.doc == "the doc"


# ---- 13: crashes and hangs from ordinary input --------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "-1"])
def test_max_params_that_is_no_budget(spec, capsys, value):
    rc, err = nnc("check", spec, f"--max-params={value}", capsys=capsys)
    assert rc == 1 and "--max-params" in err, err
    one_sentence(err)


@pytest.mark.parametrize("fmt", [".svg", ".png", ".pdf", ".html"])
def test_control_characters_in_docs_and_strings_render(tmp_path, capsys, fmt):
    if fmt in (".png", ".pdf"):
        pytest.importorskip("cairosvg")
    path = tmp_path / "c.nn"
    path.write_text('## a \x01 doc \x1b[31m\nmodel M(s = "x\x02y") {\n in x: [d: 4]\n out x }\n',
                    encoding="utf-8")
    out = tmp_path / f"c{fmt}"
    rc, err = nnc("render", path, "-o", out, capsys=capsys)
    assert rc == 0, err
    if fmt == ".svg":
        root = ET.parse(out).getroot()  # well-formed XML
        assert "\u2401" in "".join(root.itertext())  # the control character, made visible


def test_a_string_parameter_that_is_not_utf8(spec, tmp_path, capsys):
    path = tmp_path / "s.nn"
    path.write_text('model M(s = "a") {\n in x: [d: 4]\n out x }\n', encoding="utf-8")
    value = b"s=\xff".decode("utf-8", "surrogateescape")  # what argv holds for $'\xff'
    rc, err = nnc("render", path, "-p", value, "-o", tmp_path / "s.svg", capsys=capsys)
    assert rc == 1 and "UTF-8" in err, err
    one_sentence(err)


def test_a_fifo_is_refused_before_it_is_opened(tmp_path, capsys, monkeypatch):
    fifo = tmp_path / "spec.nn"
    os.mkfifo(fifo)
    real_open, real_os_open = open, os.open

    def guarded_open(file, *a, **k):
        if os.fspath(file) == str(fifo):
            raise RuntimeError("opened the FIFO: this blocks forever")
        return real_open(file, *a, **k)

    def guarded_os_open(file, *a, **k):
        if os.fspath(file) == str(fifo):
            raise RuntimeError("opened the FIFO: this blocks forever")
        return real_os_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    rc, err = nnc("check", fifo, capsys=capsys)
    assert rc == 1 and "not a regular file" in err, err
    monkeypatch.undo()
    r = nnc_process("check", fifo)  # and a real process ends, with the sentence
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr


@pytest.mark.parametrize("name", ["/dev/stdin", "-"])
def test_standard_input_is_read_once(name):
    r = nnc_process("check", name, input=SPEC + SPEC.replace("model M", "model N"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("M: 15 parameters") and "N: 15 parameters" in r.stdout, r.stdout


def test_dotdot_after_a_symlinked_folder_is_resolved_as_the_os_does(tmp_path, capsys):
    """`deep/link/..` is the link target's parent, not `deep`: normpath named another file."""
    (tmp_path / "other" / "a").mkdir(parents=True)
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "link").symlink_to(tmp_path / "other" / "a")
    (tmp_path / "other" / "x.nn").write_text(  # the file the OS path names
        "block B() { in x: [d: 4]\n out Linear(x, d -> e: 3) }\n", encoding="utf-8")
    (tmp_path / "deep" / "x.nn").write_text(  # the file normpath names
        "block B() { in x: [d: 4]\n out Linear(x, d -> e: 5) }\n", encoding="utf-8")
    main = tmp_path / "main.nn"
    main.write_text('from "deep/link/../x.nn" import B\n'
                    "model M() {\n in x: [d: 4]\n out B()(x) }\n", encoding="utf-8")
    spec = nncircuit.load(str(main))
    assert spec.param_count() == 15
    # the spec itself named through such a path
    (tmp_path / "other" / "m.nn").write_text(SPEC, encoding="utf-8")
    (tmp_path / "deep" / "m.nn").write_text(SPEC.replace("e: 3", "e: 5"), encoding="utf-8")
    assert nncircuit.load(str(tmp_path / "deep" / "link" / ".." / "m.nn")).param_count() == 15


def test_one_file_by_two_names_is_one_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "lib")
    (tmp_path / "lib" / "b.nn").write_text("block B() { in x: [d]\n out x }\n", encoding="utf-8")
    main = tmp_path / "main.nn"
    main.write_text('import "lib/b.nn"\nimport "alias/b.nn"\n'
                    "model M() {\n in x: [d: 4]\n out B()(x) }\n", encoding="utf-8")
    assert nncircuit.load(str(main)).param_count() == 0


# ---- 14: no wall-clock time decides a test or a fuzz verdict ------------------------------


def test_the_fuzz_oracle_judges_cpu_time_not_wall_clock():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "scripts"))
    import fuzz

    slow_machine = fuzz.Outcome(["check", "x.nn"], 0, 25.0, "", "", cpu_seconds=0.5)
    assert fuzz.problem(slow_machine, "x.nn", "", limit=2.0) is None
    slow_input = fuzz.Outcome(["check", "x.nn"], 0, 3.0, "", "", cpu_seconds=2.5)
    assert "CPU" in fuzz.problem(slow_input, "x.nn", "", limit=2.0)
    assert fuzz.problem(slow_input, "x.nn", "") is None  # tests pass no limit


def test_the_fuzz_runner_stops_a_cpu_hog():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "scripts"))
    import fuzz

    def spin(argv):
        while True:
            pass

    real = fuzz.cli.main
    fuzz.cli.main = spin
    try:
        o = fuzz.run_cli(["check", "x.nn"], limit=0.3)
    finally:
        fuzz.cli.main = real
    assert o.rc == "hang" and "CPU" in o.crash


def test_no_test_reads_the_wall_clock():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/, every folder in it
    paths = sorted(os.path.join(d, n) for d, _, names in os.walk(here) for n in names)
    for path in paths:
        name = os.path.relpath(path, here)
        if name.endswith(".py") and path != os.path.abspath(__file__):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for clock in ("perf_counter", "time.time(", "monotonic", "deadline=1", "deadline=2",
                          "deadline=5"):
                assert clock not in text, f"{name} uses {clock}"


# ---- grammar terminals read as what the user types ----------------------------------------


def test_every_terminal_has_a_spelling_for_messages():
    for term in syntax._parser().terminals:
        spelled = syntax.terminal_spelling(term.name)
        assert "__" not in spelled and term.name not in spelled, (term.name, spelled)
        if term.pattern.type == "str":
            assert spelled == f"'{term.pattern.value}'"
        assert not term.name.startswith("__"), f"the grammar leaves {term.pattern} unnamed"


@pytest.mark.parametrize("src,expected", [
    ("model M() { in x: [d]\n out x rename a b }", "expected '->'"),
    ("model M() { in x: [d]\n out f(x) |> }", "expected '('"),
    ("model M() { in x: [d]\n out (x ** ) }", "expected '('"),
    ("model M() { in x: [d]\n out x : }", "'=='"),
])
def test_syntax_errors_say_the_literal(src, expected):
    with pytest.raises(errors.ParseError) as info:
        nncircuit.load("m.nn", text=src)
    assert expected in info.value.message, info.value.message
    assert "ANON" not in info.value.message


def test_no_generated_terminal_name_in_the_source():
    for path in (syntax.__file__, errors.__file__):
        with open(path, encoding="utf-8") as f:
            assert "__ANON" not in f.read()

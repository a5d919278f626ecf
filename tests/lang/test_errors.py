"""Every class of mistake gives `FILE:LINE:COL: error: ...`, the line, a caret, exit 1 and
no traceback; a bug of ours says so."""

import os
import re
import subprocess
import sys

import pytest

import nncircuit
from nncircuit.cli import main

# (source, expected message (regex), line, column)
CASES = [
    # syntax
    ("block A( {", r"unexpected '\{'; expected a name, '\)'", 1, 10),
    ("model M() { in x: [d] out x + }", r"unexpected '\}'", 1, 31),
    ("model M() { x = 3 $ }", r"unexpected character '\$'", 1, 19),
    ("model", r"unexpected end of file; expected a name", 1, 6),
    ("model M() {\n  in x: [batch, d: 4]\n  out x |>\n}", r"unexpected '\}'", 4, 1),
    # unknown names, with did-you-mean
    ("model M(d = 4) {\n  in x: [batch, d]\n  out x |> gleu\n}", r"unknown name 'gleu' \(did you mean 'gelu'\?\)", 3, 12),
    ("model M(d = 4) {\n  in x: [batch, d]\n  out Lnear(x, d -> d)\n}", r"unknown name 'Lnear' \(did you mean 'Linear'\?\)", 3, 7),
    ("model M(d = 4) {\n  in x: [batch, d]\n  out y\n}", r"unknown name 'y'", 3, 7),
    ("model M(d = 4) {\n  in x: [batch, d]\n  out Linear(x, d -> d, bais = false)\n}", r"Linear has no argument 'bais' \(did you mean 'bias'\?\)", 3, 25),
    # wrong axis names or sizes: both sides said
    ("model M(d = 4) {\n  in x: [batch, e: 4]\n  out Linear(x, d -> d)\n}", r"Linear expects an axis 'd' but the input is \[batch, e: 4\]", 3, 7),
    ("model M(d = 4) {\n  in x: [batch, d: 5]\n  out Linear(x, d -> d)\n}", r"axis 'd' has size 5 in the input \[batch, d: 5\], but the call says 4", 3, 7),
    ("model M() {\n  in a: [batch, d: 4], b: [batch, d: 3]\n  out a + b\n}", r"axis 'd' has size 4 on the left \(\[batch, d: 4\]\) and 3 on the right \(\[batch, d: 3\]\)", 3, 7),
    ("block B(d) { in x: [d] out x }\nmodel M() {\n  in x: [batch, e: 4]\n  out B(4)(x)\n}", r"block B expects an input with axes \[d: 4\] but got \[batch, e: 4\]", 4, 7),
    ("block B(d) { in x: [d] out x }\nmodel M() {\n  in x: [batch, d: 3]\n  out B(4)(x)\n}", r"axis 'd' has size 3, but the block declares 4", 4, 7),
    ("model M(n = 2) {\n  in x: [batch, d: 4]\n  repeat n { x = Linear(x, d -> e: 3) }\n  out x\n}", r"repeat changes 'x' from \[batch, d: 4\] to \[batch, e: 3\]", 3, 3),
    # bad hyperparameter values
    ("model M(d = 10, heads = 3, dh = d / heads) { in x: [batch, d] out x }", r"10 is not divisible by 3", 1, 33),
    ("model M(n = 0) { in x: [batch, d: n] out x }", r"axis 'd' needs a positive integer size, found 0", 1, 35),
    ("model M(n = -1) {\n  in x: [batch, d: 2]\n  repeat n { x = x * 2 }\n  out x\n}", r"repeat needs a non-negative integer count, found the value -1", 3, 10),
    ("model M() {\n  in x: [batch, d: 2]\n  out dropout(x, p = 2.0)\n}", r"dropout: p must be in \[0, 1\), found 2.0", 3, 7),
    ("block B(d) { in x: [d] out x }\nmodel M() {\n  in x: [batch, d: 2]\n  out B(2, 3)(x)\n}", r"block B takes 1 hyperparameter\(s\), found more", 4, 12),
    # recursion is named
    ("block A(d) { in x: [d] out B(d)(x) }\nblock B(d) { in x: [d] out A(d)(x) }\nmodel M() { in x: [batch, d: 2] out A(2)(x) }", r"block A uses itself: A -> B -> A", 2, 28),
]


@pytest.mark.parametrize("src,message,line,col", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_diagnostic(tmp_path, capsys, src, message, line, col):
    path = tmp_path / "bad.nn"
    path.write_text(src)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    first, *rest = err.splitlines()
    m = re.match(r"(.*):(\d+):(\d+): error: (.*)$", first)
    assert m, err
    assert m.group(1) == str(path)
    assert (int(m.group(2)), int(m.group(3))) == (line, col), err
    assert re.search(message, m.group(4)), err
    # the source line and a caret under the column
    src_line = src.splitlines()[line - 1]
    assert rest[0] == "    " + src_line
    assert rest[1].index("^") == 4 + col - 1
    assert "Traceback" not in err


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_import_cycle_names_the_chain(tmp_path, capsys):
    _write(tmp_path, "a.nn", 'import "b.nn"\nmodel M() { in x: [batch, d: 2] out x }\n')
    _write(tmp_path, "b.nn", 'import "c.nn"\n')
    _write(tmp_path, "c.nn", 'import "a.nn"\n')
    assert main(["check", str(tmp_path / "a.nn")]) == 1
    err = capsys.readouterr().err
    assert re.search(r"c\.nn:1:1: error: import cycle: .*a\.nn -> .*b\.nn -> .*c\.nn -> .*a\.nn", err), err


def test_missing_import_and_missing_file(tmp_path, capsys):
    _write(tmp_path, "a.nn", 'import "nope.nn"\n')
    assert main(["check", str(tmp_path / "a.nn")]) == 1
    assert re.search(r"a\.nn:1:1: error: imported file 'nope\.nn' not found", capsys.readouterr().err)
    assert main(["check", str(tmp_path / "missing.nn")]) == 1
    assert "error: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["/etc/passwd.nn", "http://example.com/x.nn", "x.py"])
def test_only_local_nn_files_import(tmp_path, capsys, target):
    _write(tmp_path, "a.nn", f'import "{target}"\n')
    assert main(["check", str(tmp_path / "a.nn")]) == 1
    assert "a.nn:1:1: error:" in capsys.readouterr().err


def test_directory_and_binary_file(tmp_path, capsys):
    assert main(["check", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    _write(tmp_path, "b.nn", "").write_bytes(b"\x00\x01\x02model")
    assert main(["check", str(tmp_path / "b.nn")]) == 1
    assert "binary file" in capsys.readouterr().err


def test_unknown_cli_hyperparameter_lists_known(capsys):
    spec = os.path.join(os.path.dirname(__file__), "..", "..", "specs", "mlp.nn")
    assert main(["check", spec, "-p", "hiden=3"]) == 1
    assert "no hyperparameter 'hiden' (did you mean 'hidden'?); known: hidden, classes" in capsys.readouterr().err


def test_internal_error_asks_for_a_report(monkeypatch, capsys, tmp_path):
    import nncircuit.api

    def boom(*a, **k):
        raise KeyError("oops")

    monkeypatch.setattr(nncircuit.api, "load", boom)
    path = _write(tmp_path, "a.nn", "model M() { in x: [batch, d: 2] out x }")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "internal error" in err and "please report" in err and "Traceback" not in err


def test_cli_subprocess_has_no_traceback(tmp_path):
    path = _write(tmp_path, "a.nn", "model M() {\n  in x: [batch, d: 2]\n  out x |> Linear(e -> d)\n}")
    r = subprocess.run([sys.executable, "-m", "nncircuit.cli", "check", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "a.nn:3:12: error: Linear expects an axis 'e'" in r.stderr
    assert "Traceback" not in r.stderr


def test_error_inside_a_block_says_where_it_was_used(tmp_path, capsys):
    path = _write(tmp_path, "a.nn", "block B(d, h = d / 3) { in x: [d] out x }\n"
                  "model M() {\n  in x: [batch, d: 4]\n  out B(4)(x)\n}\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "a.nn:1:16: error: d / 3: 4 is not divisible by 3" in err
    assert f"note: in B(d=4), used at {path}:4:7" in err


@pytest.mark.parametrize("target", ["b.txt", "/abs/b.nn"])
def test_a_bad_import_path_is_a_name_error_not_an_import_cycle(tmp_path, target):
    from nncircuit.errors import ImportCycleError, NameResolutionError

    (tmp_path / "a.nn").write_text(f'import "{target}"\nmodel M(d = 2) {{ in x: [d] out x }}\n')
    with pytest.raises(NameResolutionError) as info:
        nncircuit.load(str(tmp_path / "a.nn"))
    assert not isinstance(info.value, ImportCycleError)

"""Installing and using nnc as a new user would: torch is an extra (check, ONNX export with
safetensors weights, render and summary import no torch), `nnc --version`, `nnc check` over
several files, shell completion, and a progress line on stderr only for a terminal."""

import io
import os
import re
import shutil
import subprocess
import sys

import pytest

import nncircuit
from conftest import ROOT, SPECS
from nncircuit.cli import build_parser, completion_script, main
from nncircuit.progress import Progress

MLP = os.path.join(SPECS, "mlp.nn")
BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"  # `import torch` raises ImportError


def _python(code: str, cwd=None, env=None):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


# ---- torch is optional -------------------------------------------------------------------

def test_torch_is_an_extra_not_a_core_dependency():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    names = [re.split(r"[<>=!~ ;\[]", d)[0].lower() for d in project["dependencies"]]
    assert "torch" not in names
    assert {"lark", "networkx", "onnx", "onnxruntime", "safetensors", "numpy"} <= set(names)
    extras = project["optional-dependencies"]
    assert any(d.startswith("torch") for d in extras["torch"])
    assert any(d.startswith("torch") for d in extras["dev"])


@pytest.mark.parametrize("argv", [
    ["check", MLP],
    ["compile", MLP, "-o", "m.onnx"],
    ["compile", MLP, "-o", "m.onnx", "--quantize", "int8"],
    ["render", MLP, "-o", "m.svg"],
    ["summary", MLP],
    ["compile", MLP, "-o", "m.py"],  # writing PyTorch source needs no torch either
])
def test_torch_free_commands_do_not_import_torch(argv, tmp_path):
    code = (
        "import sys\n"
        "from nncircuit.cli import main\n"
        f"rc = main({argv!r})\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    r = _python(code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "0 False"


@pytest.mark.slow
def test_smoke_script_passes_without_torch():
    code = BLOCK_TORCH + (
        "import runpy\n"
        f"runpy.run_path({os.path.join(ROOT, 'scripts', 'smoke_no_torch.py')!r}, run_name='__main__')\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("smoke_no_torch: ok (check, onnx export with")


@pytest.mark.slow
def test_smoke_script_refuses_to_run_with_torch():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "smoke_no_torch.py")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "torch is importable here" in r.stderr


def test_torch_backend_without_torch_is_one_line_error():
    code = BLOCK_TORCH + (
        "import nncircuit\n"
        f"try:\n    nncircuit.compile({MLP!r})\n"
        "except nncircuit.NNError as e:\n    print(e.render())\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ('error: the PyTorch backend needs torch, which is not installed: '
                        'pip install "nncircuit[torch]"\n')


def test_ci_installs_as_the_readme_says_and_tests_the_torch_free_install():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    install = ["python3 -m venv .venv", ". .venv/bin/activate", "pip install torch==2.13.0",
               'pip install -e ".[dev]"', "python -m pytest -q"]
    for line in install:
        assert line in readme, line
    ci_lines = [ln.strip() for ln in ci.splitlines()]
    at = [ci_lines.index(line) for line in install]
    assert at == sorted(at), "the README's commands run in its order"
    assert ".venv-notorch/bin/python -m pip install -q ." in ci_lines
    assert any("grep -iE '^torch" in ln for ln in ci_lines)
    assert ".venv-notorch/bin/python scripts/smoke_no_torch.py || rc=1" in ci_lines


# ---- nnc --version, several files ---------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"nnc {nncircuit.__version__}\n"


def test_check_takes_several_files(capsys):
    conv, lib = os.path.join(SPECS, "conv.nn"), os.path.join(SPECS, "lib", "attention.nn")
    assert main(["check", MLP, conv, lib]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{MLP}: MLP: 669,706 parameters; in image: [batch, h: 28, w: 28]; out probs: [batch, classes: 10]"
    assert [ln.split(": ")[1] for ln in lines[1:3]] == ["ConvNet", "TextCNN"]
    assert lines[3].startswith(f"{lib}: block Attention: parsed")
    assert len(lines) == 5


def test_check_one_file_prints_no_prefix(capsys):
    assert main(["check", MLP]) == 0
    assert capsys.readouterr().out.startswith("MLP: 669,706 parameters")


def test_check_reports_each_bad_file_and_checks_the_rest(tmp_path, capsys):
    bad = tmp_path / "bad.nn"
    bad.write_text("model M(d = 4) {\n    in x: [batch, d]\n    out x |> Linear(e -> d)\n}\n")
    missing = str(tmp_path / "missing.nn")
    assert main(["check", str(bad), missing, MLP]) == 1
    cap = capsys.readouterr()
    assert cap.out == f"{MLP}: MLP: 669,706 parameters; in image: [batch, h: 28, w: 28]; out probs: [batch, classes: 10]\n"
    assert f"{bad}:3:" in cap.err and "no such file" in cap.err
    assert "Traceback" not in cap.err


def test_check_refuses_model_with_several_files(capsys):
    assert main(["check", "--model", "MLP", MLP, MLP]) == 1
    assert "--model names a model of one file; 2 files were given" in capsys.readouterr().err


# ---- shell completion ---------------------------------------------------------------------

def _complete(script: str, words: list[str]) -> list[str]:
    arr = " ".join(f"'{w}'" for w in words)
    cmd = f'{script}\nCOMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; _nnc; printf "%s\\n" "${{COMPREPLY[@]}}"'
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=SPECS)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_commands_options_choices_and_files(capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert _complete(script, ["nnc", "comp"]) == ["compile", "completion"]
    assert sorted(_complete(script, ["nnc", "compile", "--to", ""])) == ["onnx", "torch"]
    assert _complete(script, ["nnc", "render", "--sty"]) == ["--style"]
    assert "--quantize" in _complete(script, ["nnc", "compile", "--q"])
    assert _complete(script, ["nnc", "completion", ""]) == ["bash", "zsh"]
    assert "mlp.nn" in _complete(script, ["nnc", "check", "ml"])


def test_zsh_completion_runs_the_bash_function_through_bashcompinit():
    z = completion_script("zsh", build_parser())
    assert z.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    assert z.endswith(completion_script("bash", build_parser()).split("\n", 1)[1])
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n"], input=z, text=True).returncode == 0


def test_completion_knows_every_command():
    script = completion_script("bash", build_parser())
    for cmd in ("check", "compile", "ir", "opt", "summary", "render", "fmt", "lsp", "completion"):
        assert re.search(rf"^        {cmd}\) opts=", script, re.M), cmd


# ---- progress ------------------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_silent_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("NNC_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress("working", out, delay=0):
        pass
    assert out.getvalue() == ""


def test_progress_draws_on_a_terminal_and_erases_its_line(monkeypatch):
    monkeypatch.delenv("NNC_PROGRESS", raising=False)
    out = _Tty()
    with Progress("quantizing", out, delay=0) as p:
        pass
    assert p.frames >= 1
    text = out.getvalue()
    assert text.startswith("\r| quantizing (0 s)\x1b[K")
    assert text.endswith("\r\x1b[K")


def test_progress_env_forces_or_silences(monkeypatch):
    monkeypatch.setenv("NNC_PROGRESS", "1")
    out = io.StringIO()
    with Progress("x", out, delay=0):
        pass
    assert "x (0 s)" in out.getvalue()
    monkeypatch.setenv("NNC_PROGRESS", "0")
    out = _Tty()
    with Progress("x", out, delay=0):
        pass
    assert out.getvalue() == ""


def test_progress_waits_its_delay_before_drawing(monkeypatch):
    monkeypatch.delenv("NNC_PROGRESS", raising=False)
    out = _Tty()
    with Progress("x", out, delay=3600):  # the work ends long before: nothing is drawn
        pass
    assert out.getvalue() == ""


@pytest.mark.slow
def test_nnc_stderr_is_clean_when_not_a_terminal(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nncircuit.cli", "compile", MLP, "-o", "q.onnx", "--quantize", "int8"],
                       cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "NNC_PROGRESS_DELAY": "0", "NNC_PROGRESS": ""})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.startswith("wrote q.onnx")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pty")
def test_nnc_draws_progress_on_a_terminal(tmp_path):
    master, slave = os.openpty()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "nncircuit.cli", "compile", MLP, "-o", "q.onnx", "--quantize", "int8"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave, text=True,
            env={**os.environ, "NNC_PROGRESS_DELAY": "0", "NNC_PROGRESS": ""},
        )
        os.close(slave)
        slave = None
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert r.returncode == 0
    assert b"\r| writing q.onnx: MLP to onnx (int8) (0 s)" in drawn
    assert drawn.endswith(b"\r\x1b[K")
    assert r.stdout.startswith("wrote q.onnx")

"""A wheel built from the repo works outside the checkout: one package `nncircuit` with the
grammar as package data and the `nnc` console script."""

import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), ROOT],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = list(wheels.glob("nncircuit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nncircuit/grammar/nn.lark" in names
    # every module of the source tree is in the wheel (a sub-package missing from
    # pyproject.toml's list would be left out silently)
    for top, pkg in (("compiler", "nncircuit"), ("backends", "nncircuit/backends"), ("grammar", "nncircuit/grammar")):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            rel = os.path.relpath(dirpath, os.path.join(ROOT, top))
            for f in files:
                if f.endswith(".py"):
                    path = f if rel == "." else f"{rel}/{f}"
                    assert f"{pkg}/{path}" in names, f"{top}/{path} is not in the wheel"
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"compiler", "backends", "grammar"}, "no generic top-level modules"
    assert any(n.endswith("entry_points.txt") for n in names)

    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    spec = tmp_path / "m.nn"
    spec.write_text("model M(d = 3) { in x: [batch, d] out Linear(x, d -> e: 2) |> relu }\n")
    code = (
        "import sys, nncircuit, torch\n"
        f"assert nncircuit.__file__.startswith({str(target)!r}), nncircuit.__file__\n"
        "m = nncircuit.compile('m.nn')\n"
        "print(tuple(m(torch.ones(4, 3)).shape))\n"
    )
    # -I: no PYTHONPATH, no user site; the wheel's copy goes first on sys.path
    r = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r})\n" + code],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(4, 2)"
    r = subprocess.run(
        [sys.executable, "-I", "-c",
         f"import sys; sys.path.insert(0, {str(target)!r}); sys.argv = ['nnc', 'check', 'm.nn']\n"
         "from importlib.metadata import entry_points\n"
         "(ep,) = [e for e in entry_points(group='console_scripts') if e.name == 'nnc']\n"
         "sys.exit(ep.load()())"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("M: 8 parameters; in x: [batch, d: 3]")


def test_version_is_the_one_in_pyproject():
    import re

    import nncircuit

    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        (version,) = re.findall(r'^version = "([^"]+)"$', f.read(), re.M)
    assert version == nncircuit.__version__

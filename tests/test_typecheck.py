"""The package type-checks: `scripts/typecheck.py` runs mypy (configured by pyproject's
[tool.mypy]) over the installed package's modules and finds no error. Slow tier: mypy
takes tens of seconds on a cold cache."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mypy_finds_no_error():
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "typecheck.py")],
        cwd=ROOT, capture_output=True, text=True,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Success: no issues found" in out, out

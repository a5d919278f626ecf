"""mypy's configuration keeps the strictness the package was brought to: the bodies of
functions without annotations are checked too (`check_untyped_defs`), and an ignore that no
longer silences anything is an error. The run itself is tests/test_typecheck.py (slow)."""

import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mypy_checks_untyped_defs():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        conf = tomllib.load(f)["tool"]["mypy"]
    assert conf.get("check_untyped_defs") is True
    assert conf.get("warn_unused_ignores") is True


def test_no_blanket_ignores():
    """A `# type: ignore` names its error code (and is for wrong library types only)."""
    found = []
    for top in ("compiler", "backends"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    with open(path, encoding="utf-8") as f:
                        for i, line in enumerate(f, 1):
                            if "# type: ignore" in line and "# type: ignore[" not in line:
                                found.append(f"{os.path.relpath(path, ROOT)}:{i}")
    assert found == []

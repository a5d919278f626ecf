"""Type-check the package with mypy. The repository's folders are not named like the modules
they hold (compiler/ is `nncircuit`, backends/ is `nncircuit.backends`), so mypy reads them
through a tree of links named as the installed package is; paths in its messages are turned
back into the repository's.

    python scripts/typecheck.py            # exit status 0 when mypy finds no error
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def link_tree(dest: Path) -> Path:
    pkg = dest / "nncircuit"
    pkg.mkdir()
    for entry in sorted((ROOT / "compiler").iterdir()):
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "backends").symlink_to(ROOT / "backends")
    (pkg / "grammar").symlink_to(ROOT / "grammar")
    return pkg


def repo_path(line: str, pkg: str) -> str:
    if not line.startswith("nncircuit/"):
        return line
    rel = line[len("nncircuit/"):]
    for sub, folder in (("backends/", "backends/"), ("grammar/", "grammar/")):
        if rel.startswith(sub):
            return folder + rel[len(sub):]
    return "compiler/" + rel


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        pkg = link_tree(Path(tmp))
        r = subprocess.run(
            [sys.executable, "-m", "mypy", "nncircuit", "--config-file", str(ROOT / "pyproject.toml")],
            cwd=tmp, capture_output=True, text=True, env={**os.environ, "MYPY_CACHE_DIR": os.path.join(tmp, ".mypy_cache")},
        )
        for line in (r.stdout + r.stderr).splitlines():
            print(repo_path(line, str(pkg)))
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Where the benchmarks run: importing nncircuit from this checkout even when it is not
installed (a bare GPU machine has only torch, networkx and lark), and a description of
the machine that goes next to every number."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import platform
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = os.path.join(REPO, "specs")

# the wheel's package-dir mapping (pyproject.toml), for a checkout that was never installed
_PACKAGES = {
    "nncircuit": "compiler",
    "nncircuit.backends": "backends",
    "nncircuit.grammar": "grammar",
}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds nncircuit's three packages in the checkout; their modules load as usual."""

    def find_spec(self, fullname, path, target=None):
        folder = _PACKAGES.get(fullname)
        if folder is None:
            return None
        folder = os.path.join(REPO, folder)
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
        )


def ensure_nncircuit() -> str:
    """Make `import nncircuit` work; returns where it came from ('installed' or 'checkout')."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    if importlib.util.find_spec("nncircuit") is not None:
        return "installed"
    sys.meta_path.insert(0, _CheckoutFinder())
    return "checkout"


def has_module(name: str) -> bool:
    """Whether `name` can be imported (without importing it; parents are imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine(threads: int | None = None) -> dict:
    """The machine and software the numbers were taken on."""
    import torch

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
    }
    for mod in ("onnx", "onnxruntime"):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except ImportError:
            pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def describe(m: dict) -> str:
    """One line: the machine of a run."""
    parts = [f"{m['cpu']} ({m['cores']} cores"]
    if m.get("memory_gib"):
        parts[0] += f", {m['memory_gib']:g} GiB"
    parts[0] += ")"
    if m.get("gpu"):
        parts.append(f"{m['gpu']} (CUDA {m.get('cuda')})")
    parts.append(
        f"{m['os']}, Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads)"
    )
    if m.get("onnxruntime"):
        parts.append(f"onnx {m.get('onnx', '?')}, onnxruntime {m['onnxruntime']}")
    return "; ".join(parts)

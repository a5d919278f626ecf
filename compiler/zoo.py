"""The architecture zoo and spec library shipped with nncircuit (the repository's `specs/`,
`nncircuit/specs` in the wheel): find a file, load or compile a zoo model by name. A spec
of your own reaches the zoo's blocks with `from "zoo:lib/attention.nn" import Attention`."""

from __future__ import annotations

import os

from nncircuit.errors import NameResolutionError, did_you_mean
from nncircuit.lang.program import zoo_root


def root() -> str:
    """The folder that holds the zoo's .nn files."""
    return zoo_root()


def files() -> list[str]:
    """Every .nn file of the zoo, relative to its root with `/` separators, sorted."""
    base = zoo_root()
    return sorted(
        os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/")
        for d, _, fs in os.walk(base) for f in fs if f.endswith(".nn")
    )


def path(name: str) -> str:
    """The file path of a zoo file: `path("transformer.nn")`, `path("lib/attention.nn")`."""
    known = files()
    if name not in known:
        raise NameResolutionError(f"the zoo has no file '{name}'{did_you_mean(name, known)}; "
                                  f"zoo files: {', '.join(known)}")
    return os.path.join(zoo_root(), *name.split("/"))


def models() -> dict[str, str]:
    """Each zoo model's name -> the zoo file that defines it."""
    from nncircuit.api import models as file_models

    out: dict[str, str] = {}
    for name in files():
        for m in file_models(path(name)):
            out.setdefault(m, name)
    return dict(sorted(out.items()))


def load(model: str, **options):
    """A zoo model as a checked `Spec`: `load("GPT2", d=128, heads=4, layers=2)` (keywords
    as for `nncircuit.load`: hyperparameters, `opt`, `passes`, `max_params`)."""
    from nncircuit.api import load as load_spec

    return load_spec(_file_of(model), model, **options)


def compile(model: str, *, seed: int | None = None, opt: int = 2, **params):
    """A zoo model as a torch module: `compile("MLP")`, `compile("ResNet18", num_classes=10)`."""
    return load(model, opt=opt, **params).module(seed=seed)


def _file_of(model: str) -> str:
    table = models()
    if model not in table:
        raise NameResolutionError(f"the zoo has no model '{model}'{did_you_mean(model, table)}; "
                                  f"zoo models: {', '.join(table)}")
    return path(table[model])

"""The one naming authority: spec names as safe Python identifiers (a name from a spec can
never become code), the snake_case name of an op or block, and fresh names that avoid the
ones already taken."""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Callable, Container

# Attributes every torch.nn.Module has (torch 2.x): a submodule or hyperparameter stored under
# one of these names would be shadowed by, or shadow, the method.
NN_MODULE_ATTRS = frozenset(
    """T_destination add_module apply bfloat16 buffers call_super_init children compile cpu
    cuda double dump_patches eval extra_repr float forward get_buffer get_extra_state
    get_parameter get_submodule half ipu load_state_dict modules mtia named_buffers
    named_children named_modules named_parameters parameters register_backward_hook
    register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
    register_parameter register_state_dict_post_hook register_state_dict_pre_hook
    requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train
    training type xpu zero_grad""".split()
)

# Names the generated code uses itself; a spec name equal to one of them gets a suffix. (Its
# own locals start with `_`, which no escaped spec name does, so they need no entry here: a
# repeat named `layer` keeps its state_dict keys `layer.0...`.)
RESERVED = frozenset(
    {"self", "torch", "nn", "F", "math", "functools", "super", "seed_random"}
    | set(dir(builtins))
    | NN_MODULE_ATTRS
)


def pyname(name: str) -> str:
    """The Python identifier that stands for spec name `name` in generated code."""
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"not an identifier: {name!r}")
    # Two escapes, each injective, so that two spec names never share a Python name:
    # `_x` -> `nnc_x` (never a dunder or a helper; `nnc_x` itself -> `nncnnc_x`: a prefix no
    # real name has, so `v_proj` and `v_head_dim` stay as the reference spells them), then a
    # trailing `_` for reserved names (`if` -> `if_`; `if_` itself -> `if__`).
    if name.startswith("_") or re.match(r"(nnc)+_", name):
        name = "nnc" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in RESERVED or name.endswith("_"):
        return name + "_"
    return name


def snake(name: str) -> str:
    """The snake_case name the elaborator gives an unnamed use of op or block `name`
    (`LayerNorm` -> `layer_norm`, `RMSNorm` -> `rmsnorm`): it becomes a module name and so part
    of the state_dict keys, which is why the rule never changes."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def fresh(base: str, taken: Container[str] | Callable[[str], bool], *, sep: str = "_", first: int = 1) -> str:
    """`base` if it is not taken, else `base{sep}{k}` for the first k from `first` that is not.
    `taken` is a collection of names or a predicate."""
    is_taken = taken if callable(taken) else taken.__contains__
    if not is_taken(base):
        return base
    k = first
    while is_taken(f"{base}{sep}{k}"):
        k += 1
    return f"{base}{sep}{k}"


class NameAuthority:
    """A scope of names: `fresh` returns a name no earlier call (nor `claim`) returned."""

    def __init__(self, taken=(), *, sep: str = "_", first: int = 1):
        self.taken: set[str] = set(taken)
        self.sep = sep
        self.first = first

    def claim(self, name: str) -> None:
        self.taken.add(name)

    def __contains__(self, name: str) -> bool:
        return name in self.taken

    def fresh(self, base: str, also: Callable[[str], bool] | None = None) -> str:
        """A free name from `base`; `also` marks more names as taken for this call."""
        name = fresh(base, (lambda n: n in self.taken or also(n)) if also else self.taken,
                     sep=self.sep, first=self.first)
        self.taken.add(name)
        return name

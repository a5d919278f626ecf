"""Spec names as safe Python identifiers: a name from a spec can never become code."""

from __future__ import annotations

import builtins
import keyword
import re

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
    {"self", "torch", "nn", "F", "math", "functools", "super"}
    | set(dir(builtins))
    | NN_MODULE_ATTRS
)


def pyname(name: str) -> str:
    """The Python identifier that stands for spec name `name` in generated code."""
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"not an identifier: {name!r}")
    # Two escapes, each injective, so that two spec names never share a Python name:
    # `_x` -> `v_x` (never a dunder or a helper; `v_x` itself -> `vv_x`), then a trailing
    # `_` for reserved names (`if` -> `if_`; `if_` itself -> `if__`).
    if name.startswith("_") or re.match(r"v+_", name):
        name = "v" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in RESERVED or name.endswith("_"):
        return name + "_"
    return name

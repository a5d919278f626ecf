"""The load_state_dict pre-hook a generated model registers when its spec has a
`checkpoint` section: it turns a reference implementation's state_dict (Hugging Face,
torchvision names and layouts) into the model's own, so `load_state_dict(ref, strict=True)`
works. Emitted as source: the generated file does not import nncircuit."""

from __future__ import annotations

from nncircuit.ir.checkpoint import CkPath, CkSource, shift_expr, shifts
from nncircuit.ir.graph import Graph
from nncircuit.names import pyname

HOOK = r'''
class _CheckpointHook:
    """A load_state_dict pre-hook that renames and re-lays a reference checkpoint's tensors
    (`rules`: the spec's checkpoint section) to this model's names (`escaped`: the spec's
    names that are attributes of another name here). A state_dict that holds only this
    model's own names is left as it is. A class, not a closure, so that the module pickles."""

    def __init__(self, rules, escaped):
        self.rules = rules
        self.escaped = escaped

    @staticmethod
    def split(path):
        return path.split(".") if path else []

    def table(self):
        import re

        def pattern(ref):  # `*` is a layer number; what follows the name is kept (`.weight`)
            body = r"\.".join(r"([0-9]+)".join(re.escape(t) for t in part.split("*"))
                              for part in self.split(ref))
            return re.compile(body + r"(?:\.(.+))?")

        # the longest reference name first; among equal lengths, fewer `*` first
        ordered = sorted(self.rules, key=lambda r: (-len(self.split(r[0])), r[0].count("*")))
        return [(pattern(ref), src) for ref, src in ordered]

    def below(self, src, numbers):
        # a layer number shifted below 0 names no layer: the key falls to the next rule
        if not isinstance(src, str):
            return any(self.below(a, numbers) for a in src[1:])
        for i, piece in enumerate(src.split("*")[1:]):
            j = 1 if piece[:1] in ("+", "-") else 0
            while j and j < len(piece) and piece[j].isdigit():
                j += 1
            if int(numbers[i]) + int(piece[:j] or 0) < 0:
                return True
        return False

    def own_name(self, path, numbers, rest, own=None):
        # each `*` (or `*+1`, `*-1`) takes the next layer number of the reference's name;
        # `name_*` at 0 is also the bare `name` (unrolled instances: name, name_1, name_2)
        names = []
        for bare in (False, True):
            pieces = path.split("*")
            name = pieces[0]
            for i, piece in enumerate(pieces[1:]):
                j = 1 if piece[:1] in ("+", "-") else 0
                while j and j < len(piece) and piece[j].isdigit():
                    j += 1
                k = int(numbers[i]) + int(piece[:j] or 0)
                if bare and k == 0 and name.endswith("_") and piece[j:j + 1] in ("", "."):
                    name = name[:-1] + piece[j:]
                else:
                    name += str(k) + piece[j:]
            names.append(".".join(self.escaped.get(p, p) for p in ([name] if name else []) + rest))
        if own is not None and names[0] not in own and names[1] in own:
            return names[1]
        return names[0]

    def shape(self, src, numbers, rest, own):
        if isinstance(src, str):
            name = self.own_name(src, numbers, rest, own)
            if name not in own:
                raise KeyError(f"checkpoint rule names {name!r}, which this model does not have")
            return tuple(own[name].shape)
        if src[0] == "transpose":
            inner = self.shape(src[1], numbers, rest, own)
            return inner[::-1] if len(inner) == 2 else inner
        parts = [self.shape(a, numbers, rest, own) for a in src[1:]]
        return (sum(p[0] for p in parts),) + parts[0][1:]

    def unpack(self, src, numbers, rest, value, own, key):
        if isinstance(src, str):
            name = self.own_name(src, numbers, rest, own)
            if name in own and tuple(value.shape) != tuple(own[name].shape) \
                    and value.numel() == own[name].numel():
                value = value.reshape(own[name].shape)  # (1, 1, d) class tokens and the like
            yield name, value
        elif src[0] == "transpose":
            flipped = value.t() if value.dim() == 2 else value
            yield from self.unpack(src[1], numbers, rest, flipped, own, key)
        else:
            sizes = [self.shape(a, numbers, rest, own)[0] for a in src[1:]]
            if sum(sizes) != value.shape[0]:
                raise ValueError(f"{key!r} has {value.shape[0]} rows; its parts here have {sizes}")
            for a, piece in zip(src[1:], value.split(sizes, dim=0)):
                yield from self.unpack(a, numbers, rest, piece, own, key)

    def __call__(self, module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        own = module.state_dict(keep_vars=True)
        keys = [k for k in state_dict if k.startswith(prefix)]
        if all(k[len(prefix):] in own for k in keys):
            return
        table = self.table()
        made = {}
        for key in keys:
            for ref, src in table:
                found = ref.fullmatch(key[len(prefix):])
                if found is not None and not self.below(src, found.groups()[:-1]):
                    *numbers, rest = found.groups()
                    value = state_dict.pop(key)
                    for name, v in self.unpack(src, numbers, self.split(rest or ""), value, own, key):
                        if name in made and not torch.equal(made[name], v):
                            raise ValueError(f"two checkpoint tensors give {name!r} different values")
                        made[name] = v
                    break
        for name, v in made.items():
            state_dict[prefix + name] = v
'''


def registration(g: Graph) -> list[str]:
    """The __init__ lines of the model class that register its checkpoint hook."""
    if g.checkpoint is None:
        return []
    env = {h.name: h.value.value for h in g.hyper}
    rules = ",\n".join(f"            ({r.ref!r}, {_code(r.source, env)})" for r in g.checkpoint.rules)
    return [
        "        # the spec's checkpoint section: load_state_dict also takes the reference's names",
        "        self.register_load_state_dict_pre_hook(_CheckpointHook((",
        rules + ",",
        f"        ), {dict(g.checkpoint.escaped)!r}))",
    ]


def _code(src: CkSource, env: dict) -> str:
    """Python for a rule's source in __init__, where the hyperparameters are locals: a
    hyperparameter shift (`sparse.*-first_k_dense_replace`) is computed from the instance's
    values, so a class built with another split maps with its own (`"sparse.*" + "-1"`)."""
    if not isinstance(src, CkPath):
        return "(" + "".join(f"{a}, " for a in [repr(src.fn)] + [_code(x, env) for x in src.args]) + ")"
    parts, last = [], 0
    for m in shifts(src.path):
        e = shift_expr(m, env)
        if e is None or m.group(2).isdigit():
            continue
        if e.refs():
            parts.append(repr(src.path[last:m.start()] + "*"))
            parts.append(f"format(int({e.python(pyname)}), '+d')")
        else:  # `*+(2 * 3)`: a number
            parts.append(repr(src.path[last:m.start()] + f"*{int(e.evaluate(env)):+d}"))
        last = m.end()
    if not parts:
        return repr(src.path)
    if last < len(src.path):
        parts.append(repr(src.path[last:]))
    return " + ".join(parts)

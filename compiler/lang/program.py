"""Loading a .nn file and the local .nn files it imports (relative to the importing file;
cycles reported with their chain) into one table of block definitions."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field

from nncircuit.lang import tree as A
from nncircuit.errors import (
    ImportCycleError,
    NameResolutionError,
    NNError,
    ParseError,
    Span,
    normalize_newlines,
)
from nncircuit.lang.parse import parse


@dataclass
class Program:
    root: str  # the file the user named
    files: dict[str, A.Module] = field(default_factory=dict)  # path -> parsed module
    scopes: dict[str, dict[str, A.BlockDef]] = field(default_factory=dict)  # path -> visible blocks
    real: dict[str, str] = field(default_factory=dict)  # the OS's path of a file -> its key

    def scope(self, file: str) -> dict[str, A.BlockDef]:
        """The blocks visible in `file`: its own and those it imports."""
        return self.scopes.get(file, {})

    @property
    def blocks(self) -> dict[str, A.BlockDef]:
        return self.scope(self.root)

    def models(self) -> list[A.BlockDef]:
        root = self.files[self.root]
        return [b for b in root.blocks if b.kind == "model"]

    def model(self, name: str | None) -> A.BlockDef:
        models = self.models()
        if name is None:
            if not models:
                raise NameResolutionError(f"{self.root} defines no model", _file_span(self.root))
            return models[0]
        for b in models:
            if b.name == name:
                return b
        from nncircuit.errors import did_you_mean

        known = [m.name for m in models]
        raise NameResolutionError(
            f"no model named '{name}' in {self.root}{did_you_mean(name, known)}; "
            f"models: {', '.join(known) or 'none'}"
        )


def _file_span(path: str) -> Span:
    return Span(path, 1, 1)


_STDIN_TEXT: dict[str, str] = {}  # the spec read from standard input, which reads only once


def read_source(path: str, span: Span | None = None) -> str:
    """Read a spec file as UTF-8 text, turning every way that can fail into a diagnostic.
    Only a regular file is opened (a FIFO or a device would block forever), except standard
    input named as `-` or `/dev/stdin`, which is read once and remembered."""
    if _is_stdin(path):
        if "stdin" not in _STDIN_TEXT:
            _STDIN_TEXT["stdin"] = _decode(path, sys.stdin.buffer.read(8 * 1024 * 1024 + 1))
        return _STDIN_TEXT["stdin"]
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise NNError(f"'{path}' is a directory, not a .nn file", span)
        if not stat.S_ISREG(st.st_mode):
            raise NNError(f"'{path}' is not a regular file (a pipe or a device?); give a .nn file", span)
        # O_NONBLOCK: a file swapped for a FIFO after the check still cannot block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise NNError(f"'{path}' is not a regular file; give a .nn file", span)
            data = f.read(8 * 1024 * 1024 + 1)
    except NNError:
        raise
    except FileNotFoundError:
        raise NameResolutionError(f"no such file: '{path}'", span) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise NNError(f"cannot read '{path}': {getattr(e, 'strerror', None) or e}", span) from None
    return _decode(path, data)


def _is_stdin(path: str) -> bool:
    if path == "-":
        return True
    if path not in ("/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"):
        return False
    try:  # only when it is the pipe or terminal we were given, not a file redirected in
        return not stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def _decode(path: str, data: bytes) -> str:
    if b"\0" in data:
        raise ParseError(f"'{path}' is a binary file, not a .nn spec", Span(path, 1, 1))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        text = normalize_newlines(data[: e.start].decode("utf-8", "replace"))
        line = text.count("\n") + 1
        col = len(text) - (text.rfind("\n") + 1) + 1
        raise ParseError(
            f"'{path}' is not valid UTF-8 (byte 0x{data[e.start]:02x})",
            Span(path, line, col, text=text),
        ) from None


def load(path: str, text: str | None = None) -> Program:
    """Parse `path` (or `text`, labelled with `path`) and everything it imports."""
    prog = Program(root=path)
    _load_file(prog, path, text, chain=(), span=None)
    return prog


def load_text(text: str, file: str = "<string>") -> Program:
    return load(file, text)


def _load_file(prog: Program, path: str, text: str | None, chain: tuple[str, ...], span: Span | None):
    if text is None:
        real = os.path.realpath(path)  # one file reached by two names is one file
        key = prog.real.setdefault(real, shown_path(path))
    else:
        key = path
    if key in chain:
        cycle = " -> ".join(list(chain[chain.index(key):]) + [key])
        raise ImportCycleError(f"import cycle: {cycle}", span)
    if key in prog.files:
        return prog.files[key]
    if text is None:
        text = read_source(path, span)
    module = parse(text, key)
    if not chain:
        prog.root = key
    prog.files[key] = module
    base = "" if _is_stdin(path) else os.path.dirname(path)  # what the user named, not `key`
    imported: dict[str, A.BlockDef] = {}
    for imp in module.imports:
        target = _resolve_import(imp, base)
        sub = _load_file(prog, target, None, chain + (key,), imp.span)
        names = {b.name: b for b in sub.blocks}  # its own blocks; its imports are its own business
        # an imported file's own imports are visible to it, not re-exported
        wanted = imp.names if imp.names is not None else tuple(names)
        for n in wanted:
            if n not in names:
                from nncircuit.errors import did_you_mean

                raise NameResolutionError(
                    f"'{imp.path}' defines no block '{n}'{did_you_mean(n, names)}", imp.span
                )
            imported[n] = names[n]
    scope: dict[str, A.BlockDef] = {}
    for n, b in imported.items():
        _define(scope, n, b)
    for b in module.blocks:
        _define(scope, b.name, b)
    prog.scopes[key] = scope
    return module


def _define(scope: dict, name: str, b: A.BlockDef):
    prev = scope.get(name)
    if prev is not None and prev is not b:
        raise NameResolutionError(
            f"block '{name}' is defined twice (first at {prev.span.file}:{prev.span.line})", b.span
        )
    scope[name] = b


ZOO_PREFIX = "zoo:"


def zoo_root() -> str:
    """The folder of the shipped spec library and zoo: `nncircuit/specs` in an installed
    wheel, the repository's `specs/` in a checkout."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = os.path.join(package, "specs")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "specs")


def import_file(path: str, base: str) -> str:
    """The file an import string names from a file in folder `base` (no checks: for editors
    that point at it; loading goes through _resolve_import)."""
    if path.startswith(ZOO_PREFIX):
        return os.path.normpath(os.path.join(zoo_root(), path[len(ZOO_PREFIX):]))
    return os.path.normpath(os.path.join(base, path))


def _resolve_import(imp: A.Import, base: str) -> str:
    p = imp.path
    if p.startswith(ZOO_PREFIX):  # `import "zoo:lib/attention.nn"`: the shipped library
        p = p[len(ZOO_PREFIX):]
        base = zoo_root()
        inside = os.path.normpath(os.path.join(base, p))
        if p.startswith(("/", "\\")) or os.path.commonpath([inside, os.path.normpath(base)]) != os.path.normpath(base):
            raise NameResolutionError(f"'{imp.path}' names a file outside the zoo", imp.span)
    if "://" in p or p.startswith(("/", "\\")) or (len(p) > 1 and p[1] == ":"):
        raise NameResolutionError(
            f"imports name local .nn files relative to this file; '{p}' is not one", imp.span
        )
    if not p.endswith(".nn"):
        raise NameResolutionError(f"only .nn files can be imported, found '{p}'", imp.span)
    target = os.path.join(base, p)  # the OS resolves `..` after symlinks; normpath would not
    if not os.path.isfile(target) and imp.path.startswith(ZOO_PREFIX):
        from nncircuit.errors import did_you_mean

        known = sorted(
            os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/")
            for d, _, fs in os.walk(base) for f in fs if f.endswith(".nn")
        )
        raise NameResolutionError(
            f"the zoo has no file '{p}'{did_you_mean(p, known)}; zoo files: {', '.join(known)}", imp.span
        )
    if not os.path.isfile(target):
        raise NameResolutionError(
            f"imported file '{p}' not found (looked for {shown_path(target)})", imp.span
        )
    return target


def shown_path(path: str) -> str:
    """`path` as diagnostics show it: without `.` and `..` where removing them names the
    same file (it does not past a symlinked folder: `link/..` is the link's parent)."""
    short = os.path.normpath(path)
    return short if os.path.realpath(short) == os.path.realpath(path) else path

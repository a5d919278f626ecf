"""Files nncircuit writes, and the one private file it reads back: the atomic writer every
output goes through (a `mkstemp` file beside the target, renamed over it, removed on every
failure), the refusal to write over an input, and the per-user cache directory."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable

from nncircuit.errors import NNError


def write_atomic(path: str, content, *, inputs=(), mode: int | None = None) -> None:
    """Write `content` (text as UTF-8, newlines untouched, bytes, or an iterable of byte
    buffers written in order and never joined, so a large model streams) to `path` at once: a
    reader sees the old file or the new one, never a part. The temporary file is made by
    `mkstemp` in the target's folder (so no name can be planted ahead of it and the rename
    stays on one file system) and is removed whatever goes wrong. `path` may not be any of
    `inputs` (the spec, the files it imports, a weights file). `mode` defaults to what
    `open` would give (0666 less the umask)."""
    refuse_inputs(path, inputs)
    parts: Iterable[bytes | bytearray | memoryview]
    if isinstance(content, str):
        parts = [content.encode("utf-8")]
    elif isinstance(content, (bytes, bytearray, memoryview)):
        parts = [content]
    else:
        parts = content
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name[:64]}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise NNError(f"cannot write '{path}': {e.strerror or e}") from None
    try:
        try:
            if hasattr(os, "fchmod"):  # mkstemp's 0600 would hide outputs from others
                os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)
            with os.fdopen(fd, "wb") as f:
                fd = -1  # the file object owns it now
                for part in parts:
                    f.write(part)
            os.replace(tmp, path)
        except OSError as e:
            raise NNError(f"cannot write '{path}': {e.strerror or e}") from None
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def refuse_inputs(path: str, inputs) -> None:
    """An output may not be written over any input of the run, under any of its names."""
    for source in inputs:
        if not source:
            continue
        try:
            same = os.path.samefile(path, source)
        except (OSError, ValueError):  # either does not exist (yet), or is no path at all
            continue
        if same:
            raise NNError(f"refusing to write '{path}': it is the input '{source}'")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---- the per-user cache -----------------------------------------------------------------


def cache_dir() -> str | None:
    """The user's own cache folder for nncircuit (`$XDG_CACHE_HOME/nncircuit` or
    `~/.cache/nncircuit`), made 0700; None when there is none we can trust: not ours, open
    to others, or a symlink. Nothing read from it is trusted unless `read_private` agrees."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    path = os.path.join(base, "nncircuit")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
    except OSError:
        return None
    return path if _private(st, directory=True) else None


def read_private(folder: str, name: str) -> bytes | None:
    """The bytes of `folder/name` if both are the user's own and nobody else can write
    them (checked on the opened file, following no symlink); None otherwise."""
    if os.open not in os.supports_dir_fd or not hasattr(os, "O_NOFOLLOW"):
        return None  # no way to open it without a race: no cache
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
    dflags = flags | getattr(os, "O_DIRECTORY", 0)
    try:
        dfd = os.open(folder, dflags)
    except OSError:
        return None
    try:
        if not _private(os.fstat(dfd), directory=True):
            return None
        try:
            fd = os.open(name, flags, dir_fd=dfd)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            if not _private(os.fstat(f.fileno()), directory=False):
                return None
            return f.read()
    finally:
        os.close(dfd)


def _private(st: os.stat_result, *, directory: bool) -> bool:
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    return kind(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077

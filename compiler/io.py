"""The one atomic writer of every output file: a temporary file beside the target, renamed
over it, so a reader never sees a half-written file."""

from __future__ import annotations

import os
import tempfile

from nncircuit.errors import NNError


def write_atomic(path: str, content: bytes | str) -> None:
    """Write `content` (text as UTF-8 with \\n line ends) to `path` atomically."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise NNError(f"cannot write '{path}': {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise NNError(f"cannot write '{path}': {e.strerror or e}") from None
        raise

"""Diagnostics: the one error root, its per-phase subclasses, and source spans that render
as `file:line:col: error: ...`, the line, and a caret."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column of its start (and end)."""

    file: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0
    text: str = ""  # the whole source, so the offending line can be shown

    def source_line(self) -> str:
        lines = normalize_newlines(self.text).split("\n")
        if 1 <= self.line <= len(lines):
            return lines[self.line - 1]
        return ""


# Every character an editor may end a line at. The lexer and diagnostics both see each as
# one "\n", so no statement hides on a line the compiler thinks is a comment's.
LINE_TERMINATORS = ("\r\n", "\r", "\v", "\f", "\x85", "\u2028", "\u2029")


def normalize_newlines(text: str) -> str:
    """`text` with every line terminator made a "\n" (a CR LF pair is one terminator)."""
    if not any(t in text for t in LINE_TERMINATORS):
        return text
    for t in LINE_TERMINATORS:
        text = text.replace(t, "\n")
    return text


class NNError(Exception):
    """Root of every error the compiler reports about a user's input."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, notes: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.span = span
        self.notes = tuple(notes)

    def with_span(self, span: Span | None) -> NNError:
        if self.span is None and span is not None:
            self.span = span
        return self

    def render(self) -> str:
        out = []
        if self.span is not None:
            sp = self.span
            out.append(f"{sp.file}:{sp.line}:{sp.col}: {self.kind}: {self.message}")
            line = sp.source_line()
            if line:
                shown = line.expandtabs(4) if "\t" not in line[: sp.col] else line
                width = 1
                if sp.end_line == sp.line and sp.end_col > sp.col:
                    width = sp.end_col - sp.col
                width = max(1, min(width, max(1, len(shown) - sp.col + 1)))
                prefix = "".join(c if c == "\t" else " " for c in line[: sp.col - 1])
                out.append(f"    {shown}")
                out.append(f"    {prefix}^{'~' * (width - 1)}")
        else:
            out.append(f"{self.kind}: {self.message}")
        for note in self.notes:
            out.append(f"note: {note}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


class ParseError(NNError, SyntaxError):
    """The text is not a well-formed .nn file."""


class NameResolutionError(NNError, NameError):
    """A name (block, op, value, hyperparameter, axis, file) is unknown or clashes."""


class ShapeError(NNError, TypeError):
    """Axes or sizes do not fit the operation."""


class HyperparameterError(NNError, ValueError):
    """A hyperparameter value is missing, unknown or out of range."""


class ImportCycleError(NNError, ImportError):
    """Imports form a cycle, or an import names something that is not a local .nn file."""


class ResourceError(NNError, ValueError):
    """The spec asks for more than the configured budget (parameters, memory, repeats)."""


class LoweringError(NNError, NotImplementedError):
    """A backend cannot lower the graph (op at an opset, weights that do not match)."""


class InternalError(NNError, RuntimeError):
    """A bug in nncircuit itself, not in the user's spec."""

    kind = "internal error"


def did_you_mean(name: str, known) -> str:
    """A ' (did you mean X?)' suffix when a known name is close to `name`."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

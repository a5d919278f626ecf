"""`nnc lsp`: the language server of .nn files over stdio (pygls): diagnostics as you type,
the tensor type of any value on hover, go to definition, completion and the outline. The
analysis itself is lsp_index.py; this module only speaks the protocol. Needs the `lsp` extra."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from nncircuit.editor.index import Diagnostic, Index, Location, Symbol, analyze

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

_SYMBOL_KINDS = {
    "model": "Class", "block": "Class", "param": "TypeParameter", "input": "Variable",
    "value": "Variable", "output": "Field", "repeat": "Namespace", "import": "Module",
}
_COMPLETION_KINDS = {
    "keyword": "Keyword", "op": "Function", "block": "Class", "axis": "EnumMember",
    "param": "Constant", "value": "Variable",
}


def _utf16_col(line: str, col0: int) -> int:
    """A column in characters as LSP counts it (UTF-16 code units)."""
    return len(line[:col0].encode("utf-16-le")) // 2


def _char_col(line: str, units: int) -> int:
    n = 0
    for i, ch in enumerate(line):
        if n >= units:
            return i
        n += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def build_server() -> LanguageServer:
    from lsprotocol import types as T
    from pygls.lsp.server import LanguageServer
    from pygls.uris import from_fs_path, to_fs_path

    from nncircuit.version import __version__

    server = LanguageServer("nncircuit", __version__)
    indexes: dict[str, Index] = {}  # uri -> the last analysis of that document
    last_good: dict[str, Index] = {}  # uri -> the last analysis that parsed

    def lines_of(file: str, index: Index) -> list[str]:
        if file == index.path:
            return index.text.split("\n")
        try:
            with open(file, encoding="utf-8") as f:
                return f.read().split("\n")
        except OSError:
            return []

    def position(lines: list[str], line: int, col: int) -> T.Position:
        text = lines[line - 1] if 1 <= line <= len(lines) else ""
        return T.Position(line=max(0, line - 1), character=_utf16_col(text, max(0, col - 1)))

    def rng(lines, line, col, end_line, end_col) -> T.Range:
        return T.Range(start=position(lines, line, col), end=position(lines, end_line, end_col))

    def loc_range(index: Index, loc: Location) -> T.Range:
        return rng(lines_of(loc.file, index), loc.line, loc.col, loc.end_line, loc.end_col)

    def where(index: Index, pos: T.Position) -> tuple[int, int]:
        lines = index.text.split("\n")
        text = lines[pos.line] if pos.line < len(lines) else ""
        return pos.line + 1, _char_col(text, pos.character) + 1

    def refresh(uri: str, version: int | None):
        doc = server.workspace.get_text_document(uri)
        path = to_fs_path(uri) or uri
        try:
            index = analyze(path, doc.source)
        except Exception as e:  # a bug of ours: say so in the editor, keep serving
            index = Index(path, doc.source)
            index.diagnostics.append(Diagnostic(1, 1, 1, 1, f"internal error: {type(e).__name__}: {e}"
                                                "; this is a bug in nncircuit, please report it"))
        indexes[uri] = index
        if index.module is not None:
            last_good[uri] = index
        lines = index.text.split("\n")
        diags = [
            T.Diagnostic(range=rng(lines, d.line, d.col, d.end_line, d.end_col), message=d.message,
                         severity=T.DiagnosticSeverity.Error, source="nnc")
            for d in index.diagnostics
        ]
        server.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=version))

    def current(uri: str) -> Index | None:
        return indexes.get(uri)

    @server.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: T.DidOpenTextDocumentParams):
        refresh(params.text_document.uri, params.text_document.version)

    @server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: T.DidChangeTextDocumentParams):
        refresh(params.text_document.uri, params.text_document.version)

    @server.feature(T.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls, params: T.DidSaveTextDocumentParams):
        refresh(params.text_document.uri, None)

    @server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: T.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        indexes.pop(uri, None)
        last_good.pop(uri, None)
        server.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(T.TEXT_DOCUMENT_HOVER)
    def hover(ls, params: T.HoverParams):
        index = current(params.text_document.uri)
        if index is None:
            return None
        others = tuple(ix for u, ix in sorted(indexes.items()) if u != params.text_document.uri)
        text = index.hover(*where(index, params.position), others)
        if text is None:
            return None
        return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text))

    @server.feature(T.TEXT_DOCUMENT_DEFINITION)
    def definition(ls, params: T.DefinitionParams):
        uri = params.text_document.uri
        index = last_good.get(uri) or current(uri)
        if index is None:
            return None
        loc = index.definition(*where(index, params.position))
        if loc is None:
            return None
        return T.Location(uri=from_fs_path(loc.file) or loc.file, range=loc_range(index, loc))

    @server.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions(trigger_characters=["(", "[", ","]))
    def completion(ls, params: T.CompletionParams):
        uri = params.text_document.uri
        index = last_good.get(uri) or current(uri)
        if index is None:
            return T.CompletionList(is_incomplete=False, items=[])
        line, _ = where(index, params.position)
        items = [
            T.CompletionItem(label=label, kind=getattr(T.CompletionItemKind, _COMPLETION_KINDS[kind]),
                             detail=detail, sort_text=f"{i:05d}")
            for i, (label, kind, detail) in enumerate(index.completions(line))
        ]
        return T.CompletionList(is_incomplete=False, items=items)

    @server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbol(ls, params: T.DocumentSymbolParams):
        uri = params.text_document.uri
        index = last_good.get(uri) or current(uri)
        if index is None:
            return []

        def convert(s: Symbol) -> T.DocumentSymbol:
            return T.DocumentSymbol(
                name=s.name, detail=s.detail or None,
                kind=getattr(T.SymbolKind, _SYMBOL_KINDS[s.kind]),
                range=loc_range(index, s.span), selection_range=loc_range(index, s.name_span),
                children=[convert(c) for c in s.children] or None,
            )

        return [convert(s) for s in index.symbols()]

    @server.feature(T.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls, params: T.DocumentFormattingParams):
        from nncircuit.errors import NNError
        from nncircuit.editor.fmt import format_text

        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        try:
            new = format_text(doc.source, to_fs_path(uri) or uri)
        except (NNError, RecursionError):
            return None  # the diagnostics already say why
        if new == doc.source:
            return []
        lines = doc.source.split("\n")
        end = T.Position(line=len(lines) - 1, character=_utf16_col(lines[-1], len(lines[-1])))
        return [T.TextEdit(range=T.Range(start=T.Position(line=0, character=0), end=end), new_text=new)]

    return server


def run_cli_lsp(args) -> int:
    try:
        server = build_server()
    except ImportError as e:
        from nncircuit.errors import NNError

        raise NNError(f"nnc lsp needs the 'lsp' extra (pip install 'nncircuit[lsp]'): {e}") from None
    server.start_io(sys.stdin.buffer, sys.stdout.buffer)
    return 0

"""`nnc lsp` driven by a scripted client over stdio: JSON-RPC with Content-Length framing,
through initialize, diagnostics as a document is opened with a mistake and then fixed, hover
(tensor types with named axes), definitions in the same file and across an import,
completion, the outline, and shutdown/exit. Every wait is bounded and fails loudly."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading

import pytest

needs_pygls = pytest.mark.skipif(importlib.util.find_spec("pygls") is None,
                                 reason="the 'lsp' extra (pygls) is not installed")


def from_fs_path(path: str) -> str:
    from pygls.uris import from_fs_path as convert

    return convert(path)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSFORMER = os.path.join(ROOT, "specs", "transformer.nn")
ATTENTION = os.path.join(ROOT, "specs", "lib", "attention.nn")
WAIT = 60.0  # seconds: a bound that only a hung server reaches, not a timing assertion


class Client:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nncircuit.cli", "lsp"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        )
        self.messages: queue.Queue = queue.Queue()
        self.next_id = 0
        self.notes: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    self.messages.put(None)
                    return
                line = line.decode("ascii").strip()
                if not line:
                    break
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            body = out.read(int(headers["content-length"]))
            self.messages.put(json.loads(body))

    def send(self, msg: dict):
        data = json.dumps(msg).encode("utf-8")
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()

    def notify(self, method: str, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def _next(self, what: str) -> dict:
        try:
            msg = self.messages.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no {what} from the server within {WAIT:.0f} s; stderr so far "
                                 "is shown when the server exits") from None
        if msg is None:
            self.proc.wait(timeout=WAIT)
            raise AssertionError(f"the server exited while waiting for {what}:\n"
                                 + self.proc.stderr.read().decode("utf-8", "replace"))
        return msg

    def request(self, method: str, params):
        self.next_id += 1
        rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:
            msg = self._next(f"the answer to {method}")
            if msg.get("id") == rid and "method" not in msg:
                assert "error" not in msg, msg["error"]
                return msg.get("result")
            self._other(msg)

    def _other(self, msg: dict):
        if "method" in msg and "id" in msg:  # a request of the server's: answer it
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
        elif "method" in msg:
            self.notes.append(msg)

    def diagnostics(self, uri: str, version: int) -> list[dict]:
        """The diagnostics published for `uri` at `version`."""
        while True:
            for i, n in enumerate(self.notes):
                p = n["params"]
                if n["method"] == "textDocument/publishDiagnostics" and p["uri"] == uri \
                        and p.get("version") == version:
                    del self.notes[i]
                    return p["diagnostics"]
            self._other(self._next(f"diagnostics of {uri} version {version}"))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


def test_the_compiler_does_not_import_the_editor_dependencies(tmp_path):
    code = (
        "import sys\n"
        "from nncircuit.cli import main\n"
        f"assert main(['check', {TRANSFORMER!r}]) == 0\n"
        "from nncircuit.editor.fmt import format_text\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pygls', 'lsprotocol', 'pygments'))\n"
        "print(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "[]"


@pytest.fixture
def client():
    c = Client()
    yield c
    c.close()


def at(text: str, needle: str, offset: int = 0, nth: int = 0) -> dict:
    """The LSP position of the `nth` occurrence of `needle` (plus `offset` characters)."""
    i = -1
    for _ in range(nth + 1):
        i = text.index(needle, i + 1)
    i += offset
    line = text.count("\n", 0, i)
    return {"line": line, "character": i - (text.rfind("\n", 0, i) + 1)}


@needs_pygls
def test_a_session(client):
    uri = from_fs_path(TRANSFORMER)
    good = open(TRANSFORMER, encoding="utf-8").read()
    bad = good.replace("q = Linear(x, d -> [heads, dh]", "q = Linaer(x, d -> [heads, dh]")
    assert bad != good
    doc = {"uri": uri}

    result = client.request("initialize", {"processId": os.getpid(), "rootUri": from_fs_path(ROOT),
                                           "capabilities": {}})
    caps = result["capabilities"]
    for cap in ("hoverProvider", "definitionProvider", "completionProvider", "documentSymbolProvider"):
        assert caps.get(cap), cap
    client.notify("initialized", {})

    # a mistake: one diagnostic, on the misspelt name, with the checker's sentence
    client.notify("textDocument/didOpen", {"textDocument": {
        "uri": uri, "languageId": "nn", "version": 1, "text": bad}})
    (diag,) = client.diagnostics(uri, 1)
    start = at(bad, "Linaer")
    assert diag["range"] == {"start": start, "end": {**start, "character": start["character"] + 6}}
    assert "unknown name 'Linaer'" in diag["message"] and "did you mean 'Linear'" in diag["message"]
    assert diag["severity"] == 1

    # fixed: no diagnostics
    client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                             "contentChanges": [{"text": good}]})
    assert client.diagnostics(uri, 2) == []

    # hover: the type the checker computed, with named axes and sizes
    h = client.request("textDocument/hover", {"textDocument": doc,
                                              "position": at(good, "x = wte(tokens)")})
    assert "x: [batch, seq, d: 768]" in h["contents"]["value"]
    h = client.request("textDocument/hover", {"textDocument": doc, "position": at(good, "q = Linear")})
    assert "q: [seq, heads: 12, dh: 64]" in h["contents"]["value"]
    h = client.request("textDocument/hover", {"textDocument": doc,
                                              "position": at(good, "out logits", offset=4)})
    assert "logits: [batch, seq, vocab: 50257]" in h["contents"]["value"]
    h = client.request("textDocument/hover", {"textDocument": doc,
                                              "position": at(good, "MLP(d, proj_std = 0.02 /")})
    assert "block MLP(d, hidden = 4 * d, proj_std = 0.02)" in h["contents"]["value"]
    assert "feed-forward" in h["contents"]["value"]  # the block's doc comment

    # definition: a block of this file, and a block of an imported file
    loc = client.request("textDocument/definition", {"textDocument": doc,
                                                     "position": at(good, "MLP(d, proj_std = 0.02 /", offset=1)})
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc["uri"] == uri
    assert loc["range"]["start"] == at(good, "MLP(d, hidden")
    use = at(good, "CausalAttention(dh)(q", offset=3)
    loc = client.request("textDocument/definition", {"textDocument": doc, "position": use})
    loc = loc[0] if isinstance(loc, list) else loc
    lib = open(ATTENTION, encoding="utf-8").read()
    assert loc["uri"] == from_fs_path(ATTENTION)
    assert loc["range"]["start"] == at(lib, "CausalAttention(dh)")
    loc = client.request("textDocument/definition", {"textDocument": doc,
                                                     "position": at(good, "lib/attention.nn")})
    loc = loc[0] if isinstance(loc, list) else loc
    assert loc["uri"] == from_fs_path(ATTENTION)

    # completion inside GPT2: op names, keywords, block names, the axes in scope
    comp = client.request("textDocument/completion", {"textDocument": doc,
                                                      "position": at(good, "x = x + attn")})
    items = comp["items"] if isinstance(comp, dict) else comp
    by_label = {i["label"]: i for i in items}
    for label in ("Linear", "softmax", "LayerNorm", "repeat", "rename", "over", "int64",
                  "SelfAttention", "MLP", "CausalAttention", "batch", "seq", "d"):
        assert label in by_label, label
    assert by_label["d"]["detail"] == "axis d: 768; hyperparameter"
    assert by_label["seq"]["detail"] == "axis seq"
    assert by_label["Linear"]["kind"] == 3  # Function
    assert by_label["MLP"]["kind"] == 7  # Class

    # the outline
    syms = client.request("textDocument/documentSymbol", {"textDocument": doc})
    names = [s["name"] for s in syms]
    assert names == ["lib/attention.nn", "SelfAttention", "MLP", "GPT2"]
    gpt2 = syms[-1]
    children = {c["name"]: c for c in gpt2["children"]}
    assert {"vocab", "tokens", "wte", "x", "logits", "repeat layers as h"} <= set(children)
    assert children["x"].get("detail") == "[batch, seq, d: 768]"
    assert gpt2["selectionRange"]["start"] == at(good, "GPT2(")

    # a library block that needs a hyperparameter: its types as the open model uses it
    lib_uri = from_fs_path(ATTENTION)
    lib = open(ATTENTION, encoding="utf-8").read()
    client.notify("textDocument/didOpen", {"textDocument": {
        "uri": lib_uri, "languageId": "nn", "version": 1, "text": lib}})
    assert client.diagnostics(lib_uri, 1) == []
    h = client.request("textDocument/hover", {"textDocument": {"uri": lib_uri},
                                              "position": at(lib, "scores = causal")})
    assert h["contents"]["value"].startswith(
        "```nn\nscores: [seq, key]  (as used in transformer.nn)")
    h = client.request("textDocument/hover", {"textDocument": {"uri": lib_uri},
                                              "position": at(lib, "in  q", offset=4, nth=1)})
    assert "q: [seq, dh: 64]  (as used in transformer.nn)" in h["contents"]["value"]
    h = client.request("textDocument/hover", {"textDocument": {"uri": lib_uri},
                                              "position": at(lib, "in  q", offset=4, nth=0)})
    assert "q: [seq, dh]" in h["contents"]["value"]  # Attention is not used: what the text says
    client.notify("textDocument/didClose", {"textDocument": {"uri": lib_uri}})

    # formatting: the spec is canonical already; a messy text gets one whole-document edit
    opts = {"tabSize": 4, "insertSpaces": True}
    assert client.request("textDocument/formatting", {"textDocument": doc, "options": opts}) == []
    messy = good.replace("    wpe = Embedding(ctx -> d, init = normal(0.02))",
                         "  wpe=Embedding(ctx->d,init=normal(0.02))  # positions")
    client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3},
                                             "contentChanges": [{"text": messy}]})
    assert client.diagnostics(uri, 3) == []
    (edit,) = client.request("textDocument/formatting", {"textDocument": doc, "options": opts})
    assert edit["range"]["start"] == {"line": 0, "character": 0}
    assert edit["newText"] == good.replace("wpe = Embedding(ctx -> d, init = normal(0.02))",
                                           "wpe = Embedding(ctx -> d, init = normal(0.02))  # positions")

    assert client.request("shutdown", None) is None
    client.notify("exit", None)
    assert client.proc.wait(timeout=WAIT) == 0


@needs_pygls
def test_library_file_and_parse_errors(client, tmp_path):
    client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    client.notify("initialized", {})
    # a library with a block whose hyperparameters all have defaults: its types show
    lib = tmp_path / "lib.nn"
    text = "block Proj(d = 8, e = 4) {\n    in  x: [seq, d]\n    y = Linear(x, d -> e)\n    out y\n}\n"
    lib.write_text(text)
    uri = from_fs_path(str(lib))
    client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "nn",
                                                            "version": 1, "text": text}})
    assert client.diagnostics(uri, 1) == []
    h = client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                              "position": at(text, "y = Linear")})
    assert "y: [seq, e: 4]" in h["contents"]["value"]

    # a syntax error: the parser's position; the outline of the last good text remains
    broken = text.replace("out y", "out y |>")
    client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                             "contentChanges": [{"text": broken}]})
    (diag,) = client.diagnostics(uri, 2)
    assert diag["range"]["start"] == {"line": 4, "character": 0}
    assert "unexpected '}'" in diag["message"]
    syms = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [s["name"] for s in syms] == ["Proj"]

    # an error inside an imported file is shown on the import that brings it in
    (tmp_path / "bad.nn").write_text("block B(d = 2) {\n    in  x: [d]\n    out nope(x)\n}\n")
    main = tmp_path / "main.nn"
    mtext = 'from "bad.nn" import B\nmodel M() {\n    in  x: [batch, d: 2]\n    out B()(x)\n}\n'
    main.write_text(mtext)
    muri = from_fs_path(str(main))
    client.notify("textDocument/didOpen", {"textDocument": {"uri": muri, "languageId": "nn",
                                                            "version": 1, "text": mtext}})
    (diag,) = client.diagnostics(muri, 1)
    assert diag["range"]["start"] == {"line": 0, "character": 0}
    assert "bad.nn:3:9" in diag["message"] and "unknown name 'nope'" in diag["message"]

    assert client.request("shutdown", None) is None
    client.notify("exit", None)
    assert client.proc.wait(timeout=WAIT) == 0


def test_utf16_columns():
    from nncircuit.editor.lsp import _char_col, _utf16_col

    line = "# 𝔸 é x"
    assert _utf16_col(line, 4) == 5  # the astral 𝔸 is two UTF-16 units
    assert _char_col(line, 5) == 4
    assert _char_col(line, 0) == 0


def test_the_index_answers_everywhere_without_raising():
    """Hover, definition and completion at every position of every spec and of damaged
    copies of them: the server never fails on what a user is typing."""
    import glob

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from specgen import RandomChooser, mutate

    from nncircuit.editor.index import analyze

    paths = sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.nn"), recursive=True))
    texts = [(p, open(p, encoding="utf-8").read()) for p in paths]
    for seed in range(24):
        p, t = texts[seed % len(texts)]
        texts.append((p, mutate(t, RandomChooser(seed))))
    typed = 0
    for n, (path, text) in enumerate(texts):
        index = analyze(path, text)
        step = 1 if n < len(paths) else 3  # every column of a spec, every third of a damaged one
        lines = text.split("\n")
        for line in range(1, len(lines) + 1):
            index.completions(line)
            for col in range(1, len(lines[line - 1]) + 2, step):
                h = index.hover(line, col)
                typed += bool(h and "[" in h)
                index.definition(line, col)
        index.symbols()
    assert typed > 500  # hover found types on the undamaged specs

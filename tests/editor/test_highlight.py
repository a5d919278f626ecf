"""Syntax highlighting: the Pygments lexer (an entry point, no Error token on any spec) and
the TextMate grammar of the VS Code extension (valid JSON, the scopes it claims, and exactly
the keywords of grammar/nn.lark, so a new keyword fails here until both learn it)."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

pygments = pytest.importorskip("pygments")

from pygments.token import Error  # noqa: E402

from nncircuit.editor.highlight import DTYPES, KEYWORDS, NNLexer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.nn"), recursive=True))
TM = os.path.join(ROOT, "editors", "vscode", "syntaxes", "nn.tmLanguage.json")


def grammar_keywords() -> set[str]:
    """Every word the grammar spells out: quoted literals and single-literal terminals."""
    text = open(os.path.join(ROOT, "grammar", "nn.lark"), encoding="utf-8").read()
    text = re.sub(r"^\s*//.*$", "", text, flags=re.M)
    return set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', text))


def grammar_dtypes() -> set[str]:
    text = open(os.path.join(ROOT, "grammar", "nn.lark"), encoding="utf-8").read()
    (alts,) = re.findall(r"^DTYPE[^:]*:\s*/\(([^)]*)\)", text, flags=re.M)
    return set(alts.split("|"))


def test_grammar_keywords_are_found():
    # the reader of the grammar itself must see the keywords, or the comparisons prove nothing
    assert {"block", "model", "import", "repeat", "rename", "over", "true"} <= grammar_keywords()
    assert "int64" in grammar_dtypes()


def test_lexer_keywords_match_the_grammar():
    assert set(KEYWORDS) == grammar_keywords()
    assert set(DTYPES) == grammar_dtypes()


def test_lexer_is_an_entry_point_by_name_and_filename(tmp_path):
    # a fresh interpreter outside the checkout sees what an installed package registers
    code = (
        "import pygments.lexers as L\n"
        "print(type(L.get_lexer_by_name('nn')).__name__)\n"
        "print(type(L.get_lexer_by_name('nncircuit')).__name__)\n"
        "print(type(L.get_lexer_for_filename('gpt2.nn')).__name__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["NNLexer"] * 3


@pytest.mark.parametrize("path", SPECS, ids=lambda p: os.path.relpath(p, ROOT))
def test_no_error_token_in_any_spec(path):
    text = open(path, encoding="utf-8").read()
    tokens = list(NNLexer().get_tokens(text))
    errors = [v for t, v in tokens if t in Error]
    assert errors == []
    assert "".join(v for _, v in tokens).rstrip("\n") == text.rstrip("\n")  # nothing dropped


def test_lexer_token_kinds():
    src = '## doc\nmodel M(d = 2) { in x: [b, d] int64  # c\n out x |> Linear(d -> e) rename e -> f }\n'
    kinds = {v: str(t) for t, v in NNLexer().get_tokens(src) if v.strip()}
    assert kinds["## doc"] == "Token.Literal.String.Doc"
    assert kinds["# c"] == "Token.Comment.Single"
    assert kinds["model"] == "Token.Keyword.Declaration"
    assert kinds["M"] == "Token.Name.Class"
    assert kinds["int64"] == "Token.Keyword.Type"
    assert kinds["Linear"] == "Token.Name.Class"
    assert kinds["rename"] == "Token.Operator.Word"
    assert kinds["|>"] == "Token.Operator"


def _tm_patterns(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _tm_patterns(v)
    elif isinstance(node, list):
        for v in node:
            yield from _tm_patterns(v)


def _tm_words(tm, scope_prefix: str) -> set[str]:
    words = set()
    for p in _tm_patterns(tm):
        if p.get("name", "").startswith(scope_prefix) and "match" in p:
            m = re.fullmatch(r"\\b\(([a-z0-9_|]+)\)\\b", p["match"])
            if m:
                words |= set(m.group(1).split("|"))
    return words


def test_textmate_grammar_is_valid_json_with_its_scopes():
    with open(TM, encoding="utf-8") as f:
        tm = json.load(f)
    assert tm["scopeName"] == "source.nn"
    assert tm["fileTypes"] == ["nn"]
    names = {p["name"] for p in _tm_patterns(tm) if "name" in p and isinstance(p["name"], str)}
    for scope in (
        "comment.line.number-sign.nn",
        "comment.line.double-number-sign.documentation.nn",
        "string.quoted.double.nn",
        "constant.numeric.nn",
        "storage.type.nn",
        "keyword.control.nn",
        "keyword.operator.word.nn",
        "constant.language.boolean.nn",
        "support.type.dtype.nn",
        "entity.name.type.nn",
        "entity.name.class.nn",
        "keyword.operator.pipe.nn",
        "keyword.operator.arrow.nn",
    ):
        assert scope in names, scope
    for p in _tm_patterns(tm):  # every regex compiles (TextMate's Oniguruma accepts these too)
        for key in ("match", "begin", "end"):
            if key in p:
                re.compile(p[key])
    for ref in re.findall(r'"include": "#([a-z]+)"', open(TM, encoding="utf-8").read()):
        assert ref in tm["repository"], ref


def test_textmate_keywords_match_the_grammar():
    with open(TM, encoding="utf-8") as f:
        tm = json.load(f)
    words = (
        _tm_words(tm, "storage.type")
        | _tm_words(tm, "keyword.control")
        | _tm_words(tm, "keyword.operator.word")
        | _tm_words(tm, "constant.language")
    )
    assert words == grammar_keywords()
    assert _tm_words(tm, "support.type.dtype") == grammar_dtypes()


def test_vscode_extension_uses_the_grammar_and_the_server():
    base = os.path.join(ROOT, "editors", "vscode")
    with open(os.path.join(base, "package.json"), encoding="utf-8") as f:
        pkg = json.load(f)
    (lang,) = pkg["contributes"]["languages"]
    assert lang["extensions"] == [".nn"]
    assert os.path.isfile(os.path.join(base, lang["configuration"]))
    (gram,) = pkg["contributes"]["grammars"]
    assert gram["scopeName"] == "source.nn"
    assert os.path.samefile(os.path.join(base, gram["path"]), TM)
    ext = open(os.path.join(base, pkg["main"]), encoding="utf-8").read()
    assert '["nnc", "lsp"]' in ext
    with open(os.path.join(base, "language-configuration.json"), encoding="utf-8") as f:
        json.load(f)

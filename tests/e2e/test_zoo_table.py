"""scripts/zoo_table.py, which writes docs/zoo.md: every spec file of the zoo has a row, every
row links a diagram that exists (or says it is structure only), checkpoint sections are counted
apart from the model, differences treat matching infinities as equal, and a parameter count
that differs from its reference or the published one is flagged. Fast: the measuring itself
runs only in the script (minutes)."""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch

from conftest import ROOT, SPECS

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import zoo_extra  # noqa: E402
import zoo_table  # noqa: E402

DOC = os.path.join(ROOT, "docs", "zoo.md")


def rows() -> list[list[str]]:
    with open(DOC, encoding="utf-8") as f:
        lines = [line for line in f if line.startswith("| ") and not line.startswith("| family")]
    return [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]


def test_every_spec_file_of_the_zoo_has_a_row_with_its_diagram():
    tabled = {re.match(r"`([^ ]+) : ", r[1]).group(1) for r in rows()}
    files = {os.path.relpath(os.path.join(d, f), SPECS).replace(os.sep, "/")
             for d, _, fs in os.walk(SPECS) for f in fs if f.endswith(".nn")}
    files = {f for f in files if not f.startswith("lib/")}
    assert files - tabled == set()
    for r in rows():
        assert len(r) == 7, r
        assert "FAILED" not in r[2]
        link = re.fullmatch(r"\[svg\]\((zoo/[a-z0-9_]+\.svg)\)", r[6])
        assert link and os.path.exists(os.path.join(ROOT, "docs", link.group(1))), r[6]
        if "structure only" not in r[2]:
            assert re.match(r"\d\.\de[-+]\d\d", r[4]), r  # a measured difference


def test_the_table_lists_the_models_the_script_measures():
    measured = [name for name, _ in zoo_table.jobs()]
    assert len(measured) == len(set(measured)) == len(rows())
    for name in ("T5", "SwinT", "DDPMUNet", "VAE", "LlamaDecode", "S4D", "LSTM", "GRU", "RNN", "LTC",
                 "Pointer", "LIF", "LinearAttention", "UNet", "MLP", "ConvNet", "TextCNN", "GCN", "Mixtral"):
        assert any(f" : {name}`" in r[1] for r in rows()), name


def test_checkpoint_sections_are_counted_apart(tmp_path):
    spec = tmp_path / "m.nn"
    spec.write_text("# a comment\nmodel M(d = 4) {\n    in x: [batch, d]\n\n    out y = Linear(d, d)(x)\n"
                    "    checkpoint {\n        # names\n        y -> \"fc\"\n    }\n}\n")
    assert zoo_table.checkpoint_lines(str(spec)) == 3
    text, files = zoo_table.spec_line_text(str(spec))
    assert text == "7 (checkpoint 3)" and len(files) == 1
    resnet = os.path.join(SPECS, "resnet.nn")
    assert 0 < zoo_table.checkpoint_lines(resnet) < zoo_table.zoo.code_lines(resnet)


def test_imported_blocks_are_counted_block_by_block_with_what_they_use(tmp_path):
    (tmp_path / "lib.nn").write_text(
        "# a library\nblock A(d) {\n    in x: [d]\n    out B(d)(x)\n}\n\nblock B(d) {\n    in x: [d]\n"
        "    out relu(x)\n}\n\nblock Unused(d) {\n    in x: [d]\n    out x\n}\n")
    (tmp_path / "m.nn").write_text(
        'from "lib.nn" import A\n\nmodel M(d = 4) {\n    in x: [batch, d]\n    out A(d)(x)\n}\n')
    taken = zoo_table.imported_blocks(str(tmp_path / "m.nn"))
    assert {name: n for (_, name), n in taken.items()} == {"A": 4, "B": 4}  # not Unused
    text, files = zoo_table.spec_line_text(str(tmp_path / "m.nn"))
    assert text == "13 (8 imported from `" + os.path.relpath(str(tmp_path / "lib.nn"), SPECS) + "`)"
    # the pointer network's LSTM encoder and decoder are LSTMCell ops: it imports nothing, and
    # is no longer than HandPointer (39 lines)
    text, files = zoo_table.spec_line_text(os.path.join(SPECS, "pointer.nn"))
    assert text == "30" and files == ["specs/pointer.nn"]
    assert int(text.split()[0]) < zoo_table.zoo.code_lines(os.path.join(SPECS, "lstm.nn"))
    # Llama decode's LlamaRotary and LlamaMLP bring what they use of lib/rotary.nn; its
    # attention comes from lib/attention.nn; not the rest of llama.nn
    taken = zoo_table.imported_blocks(os.path.join(SPECS, "llama_decode.nn"))
    assert {n for _, n in taken} == {"LlamaRotary", "LlamaMLP", "RotateAt", "Llama3Frequencies", "CausalAttention"}
    _, files = zoo_table.spec_line_text(os.path.join(SPECS, "llama_decode.nn"))
    assert set(files) == {"specs/llama_decode.nn", "specs/llama.nn", "specs/lib/rotary.nn", "specs/lib/attention.nn"}


def test_difference_and_parameter_flags():
    inf = float("inf")
    a = torch.tensor([[1.0, -inf], [2.0, 3.0]])
    assert zoo_extra.difference((a, torch.tensor([1, 2])), (a + 0.5 * (a == 2), torch.tensor([1, 2]))) == 0.5
    assert zoo_extra.difference(a, torch.tensor([[1.0, 0.0], [2.0, 3.0]])) == inf  # an infinity lost
    assert zoo_extra.difference(a, a[:1]) == inf
    assert zoo_table.params_text(10, 10, 10) == "10"
    assert zoo_table.params_text(10, 12, None) == "10 (reference 12: DIFFERS)"
    assert zoo_table.params_text(1000, 1000, 999) == "1,000 (published 999: DIFFERS)"
    assert zoo_table.params_text(7, None, None) == "7 (no reference)"


@pytest.mark.parametrize("fn", [zoo_extra.lif, zoo_extra.s4d, zoo_extra.linear_attention], ids=lambda f: f.__name__)
def test_small_models_measure_exactly(fn):
    m = fn()
    assert m["diff"] <= 1e-5 and m["onnx"] <= 1e-5
    assert m["ref_params"] == m["spec_params"]

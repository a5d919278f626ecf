"""Hostile specs: resource bombs are refused before anything is allocated; recursive blocks
and import cycles are reported with their chain; imports reach only local .nn files; no
name, string or number in a spec becomes code in the generated Python, which compiles,
runs nothing at import and behaves exactly like the same spec with plain names; outputs are
byte-identical across runs and hash seeds; weights load without unpickling code."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time

import pytest
import torch

import nncircuit
from conftest import ROOT, SPECS
from nncircuit.errors import ImportCycleError, NameResolutionError, NNError, ResourceError

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import fuzz  # noqa: E402


def load_text(text: str, **kw):
    return nncircuit.load("hostile.nn", text=text, **kw)


def refused(text: str, error=NNError, says: str = "", cpu_seconds: float = 30.0, **kw) -> NNError:
    # CPU time, not wall-clock (a busy machine stretches that), and far above the
    # milliseconds a refusal takes: only a blow-up (exponential, a huge allocation) fails it
    t0 = time.process_time()
    with pytest.raises(error) as info:
        load_text(text, **kw)
    assert time.process_time() - t0 < cpu_seconds, "refusing took too long"
    assert info.value.span is not None, "the diagnostic has no position"
    assert says in str(info.value), str(info.value)
    return info.value


# ---- resource bombs --------------------------------------------------------------------------


def test_repeat_a_billion():
    refused("model M() { in x: [d: 4]\n repeat 1000000000 { x = relu(x) }\n out x }", ResourceError, "limit")


def test_repeat_a_billion_by_hyperparameter():
    refused("model M(n = 2) { in x: [d: 4]\n repeat n { x = relu(x) }\n out x }", ResourceError, "limit", n=10**9)


def test_nested_repeats_multiply():
    text = "model M() { in x: [d: 4]\n repeat 10000 { repeat 10000 { x = relu(x) } }\n out x }"
    refused(text, ResourceError, "unrolls to")


def test_axis_of_ten_to_the_twelve():
    refused("model M() { in x: [batch, d: 1000000000000]\n out x }", error=NNError, says="longer than the limit")
    refused("model M() { in x: [d: 4]\n out Linear(x, d -> e: 1000000000000) }", says="longer than the limit")
    refused("model M() { in x: [d: 4]\n out x + Param([d: 4, e: 1000000000000]) }", says="longer than the limit")


def test_over_the_parameter_budget():
    text = "model M(n = 4) { in x: [d: 4]\n out Linear(x, d -> [e: n, f: n]) }"
    refused(text, ResourceError, "over the budget", n=100_000)  # 4e10 parameters, default budget 2e9
    refused(text, ResourceError, "over the budget", n=100, max_params=1000)
    assert load_text(text, n=100).param_count() == 40_000 + 10_000


def test_max_params_on_the_command_line(tmp_path):
    path = os.path.join(SPECS, "transformer.nn")
    o = fuzz.run_cli(["check", path, "--max-params", "1e6"])
    assert o.rc == 1 and "over the budget of 1,000,000" in o.stderr and f"{path}:" in o.stderr
    o = fuzz.run_cli(["check", path, "-p", "vocab=10000000", "-p", "d=1536"])  # 1.5e10 parameters
    assert o.rc == 1 and "over the budget of 2,000,000,000" in o.stderr


def test_blocks_that_call_blocks_twice():
    """Each level doubles the unrolled model; elaboration stays linear and is refused early."""
    lines = ["block B0() { in x: [d: 4]\n out relu(x) }"]
    for i in range(1, 60):
        lines.append(f"block B{i}() {{ in x: [d: 4]\n out B{i - 1}()(B{i - 1}()(x)) }}")
    lines.append("model M() { in x: [d: 4]\n out B59()(x) }")
    refused("\n".join(lines), ResourceError, "unrolls to")
    small = "\n".join(lines[:13] + ["model M() { in x: [d: 4]\n out B12()(x) }"])
    t0 = time.process_time()
    spec = load_text(small)
    spec.torch_source()
    assert time.process_time() - t0 < 30.0  # CPU seconds: far above what a linear walk takes


def test_bombs_allocate_nothing(tmp_path):
    """The peak memory of `nnc check` on bombs is that of a tiny spec (a child process each)."""
    import resource

    def peak(text: str) -> int:
        path = tmp_path / "bomb.nn"
        path.write_text(text, encoding="utf-8")
        code = (
            "import resource, sys\nfrom nncircuit import cli\nrc = cli.main(['check', sys.argv[1]])\n"
            "print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
        rc, kb = r.stdout.split()[-2:]
        return int(rc), int(kb)

    del resource
    rc, base = peak("model M() { in x: [d: 4]\n out x }")
    assert rc == 0
    for bomb in (
        "model M() { in x: [d: 4]\n repeat 1000000000 { x = Linear(x, d -> d: 4096) }\n out x }",
        "model M() { in x: [d: 4]\n out Linear(x, d -> [e: 100000, f: 100000]) }",
        "model M() { in x: [d: 4]\n out x + Param([d: 4, e: 60000, f: 60000]) }",
    ):
        rc, kb = peak(bomb)
        assert rc == 1 and kb < base + 100_000, f"{kb - base} kB more than a tiny spec for:\n{bomb}"


# ---- recursion and import cycles --------------------------------------------------------------


def test_recursive_block_names_the_cycle():
    e = refused("block A() { in x: [d: 4]\n out A()(x) }\nmodel M() { in x: [d: 4]\n out A()(x) }",
                NameResolutionError, "block A uses itself: A -> A")
    assert e.span.line == 2
    refused(
        "block A() { in x: [d: 4]\n out B()(x) }\nblock B() { in x: [d: 4]\n out C()(x) }\n"
        "block C() { in x: [d: 4]\n out A()(x) }\nmodel M() { in x: [d: 4]\n out A()(x) }",
        NameResolutionError, "A -> B -> C -> A",
    )


def _files(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


MODEL = "model M() { in x: [d: 4]\n out x }\n"
BLOCK = "block %s() { in x: [d: 4]\n out relu(x) }\n"


def test_import_cycle_of_three_files(tmp_path):
    _files(tmp_path, {
        "a.nn": 'import "sub/b.nn"\n' + MODEL,
        "sub/b.nn": 'import "../c.nn"\n' + BLOCK % "B",
        "c.nn": 'import "a.nn"\n' + BLOCK % "C",
    })
    with pytest.raises(ImportCycleError) as info:
        nncircuit.load(str(tmp_path / "a.nn"))
    msg = str(info.value)
    chain = " -> ".join(os.path.normpath(str(tmp_path / f)) for f in ("a.nn", "sub/b.nn", "c.nn", "a.nn"))
    assert chain in msg, msg
    assert info.value.span is not None and info.value.span.line == 1
    o = fuzz.run_cli(["check", str(tmp_path / "a.nn")])
    assert o.rc == 1 and "import cycle" in o.stderr and o.stderr.startswith(f"{os.path.normpath(str(tmp_path / 'c.nn'))}:1:1")


def test_import_of_itself(tmp_path):
    _files(tmp_path, {"a.nn": 'import "a.nn"\n' + MODEL})
    with pytest.raises(ImportCycleError, match="import cycle"):
        nncircuit.load(str(tmp_path / "a.nn"))


def test_imports_resolve_relative_to_the_importing_file(tmp_path, monkeypatch):
    _files(tmp_path, {
        "proj/main.nn": 'from "lib/blocks.nn" import B\n'
                        "model M() { in x: [batch, d: 4]\n out B()(x) }\n",
        "proj/lib/blocks.nn": 'import "more/deep.nn"\nblock B() { in x: [d: 4]\n out D()(x) }\n',
        "proj/lib/more/deep.nn": BLOCK % "D",
        "lib/blocks.nn": "this file must not be read",  # relative to the working directory
    })
    monkeypatch.chdir(tmp_path)
    assert nncircuit.load("proj/main.nn").param_count() == 0
    monkeypatch.chdir(tmp_path / "proj" / "lib")
    assert nncircuit.load(str(tmp_path / "proj" / "main.nn")).outputs()


def test_diamond_imports_are_not_a_cycle(tmp_path):
    _files(tmp_path, {
        "a.nn": 'import "b.nn"\nimport "c.nn"\n' + MODEL,
        "b.nn": 'import "d.nn"\n' + BLOCK % "B",
        "c.nn": 'import "d.nn"\n' + BLOCK % "C",
        "d.nn": BLOCK % "D",
    })
    nncircuit.load(str(tmp_path / "a.nn"))


@pytest.mark.parametrize("target,says", [
    ("/etc/passwd.nn", "not one"),
    ("/tmp/x.nn", "not one"),
    ("\\\\server\\share\\x.nn", "not one"),
    ("C:/x.nn", "not one"),
    ("http://example.com/x.nn", "not one"),
    ("file:///etc/x.nn", "not one"),
    ("b.txt", "only .nn files"),
    ("b.py", "only .nn files"),
    ("b", "only .nn files"),
    ("missing.nn", "not found"),
    ("dir.nn", "not found"),
])
def test_imports_reach_only_local_nn_files(tmp_path, target, says):
    (tmp_path / "dir.nn").mkdir()
    (tmp_path / "b.txt").write_text(BLOCK % "B")
    (tmp_path / "b.py").write_text("import os\n")
    (tmp_path / "a.nn").write_text(f'import "{target}"\n' + MODEL)
    o = fuzz.run_cli(["check", str(tmp_path / "a.nn")])
    assert o.rc == 1 and says in o.stderr, o.stderr
    assert o.stderr.startswith(f"{tmp_path / 'a.nn'}:1:1: error:"), o.stderr


def test_imported_file_that_is_binary(tmp_path):
    (tmp_path / "b.nn").write_bytes(b"\x00\x01")
    (tmp_path / "a.nn").write_text('import "b.nn"\n' + MODEL)
    o = fuzz.run_cli(["check", str(tmp_path / "a.nn")])
    assert o.rc == 1 and "binary" in o.stderr and not o.crash


# ---- hostile names: the generated code stays the same code ----------------------------------

NAMES = [
    # Python keywords and soft keywords (the .nn keywords in/import/from/as are not names)
    "class", "def", "lambda", "return", "yield", "None", "True", "False", "pass", "async",
    "await", "global", "nonlocal", "del", "with", "match", "case", "type",
    # builtins and modules
    "print", "exec", "eval", "open", "__import__", "compile", "getattr", "globals", "object",
    "super", "range", "len", "float", "abs", "min", "max", "torch", "nn", "F", "math",
    "functools", "os", "sys", "subprocess",
    # names the generated code uses itself
    "self", "layer", "forward", "x", "linear", "layers", "hp_k", "_channels_first",
    "_concat_broadcast", "_gather_broadcast", "_linear_group",
    # dunders and nn.Module attributes
    "__class__", "__init__", "__dict__", "__name__", "__builtins__", "training", "to", "cuda",
    "state_dict", "parameters", "modules", "_modules", "_parameters", "_buffers",
    "register_buffer", "T_destination", "dump_patches", "requires_grad_",
    # the escapes themselves
    "v_", "vv_k", "nnc_", "nncnnc_k", "k_", "k__",
]

EVIL = "'); __import__('os').system('echo pwned'); ('\\"
DOC = "## He said \"hi\" and 'bye'; \"\"\" ''' \\\" \\n {n} -- a backslash \\\n## second line: ) ] }}"

TEMPLATE = """%(doc)s
block Blk(%(H)s, %(H_)s = 2) {
    in  %(X)s: [%(A)s: %(H)s]
    %(V)s = Linear(%(X)s, %(A)s -> %(A_)s: %(H_)s) |> relu
    out Linear(%(V)s, %(A_)s -> %(A)s: %(H)s) * %(H)s
}

%(doc)s
model Net(%(H)s = 4, %(H_)s = 2, %(S)s = "%(evil)s") {
    in  %(X)s: [batch, %(A)s: %(H)s], %(X_)s: [batch, %(A)s]
    %(U)s = LayerNorm(over %(A)s)
    %(V)s = %(U)s(%(X)s) + %(U)s(%(X_)s)
    repeat %(H_)s shared as %(R)s {
        %(W)s = Linear(%(A)s -> %(A)s: %(H)s)
        %(V)s = %(V)s + Blk(%(H)s)(%(W)s(%(V)s))
    }
    repeat 2 as %(R_)s {
        %(V)s = %(V)s * %(H_)s + Param([%(A)s: %(H)s])
    }
    out %(O)s = %(V)s, %(O_)s = %(V)s[%(A)s = 0] / sqrt(%(H)s)
}
"""

BLOCKS = """%(doc)s
block %(N)s() { in inp: [d: 4]
    out Linear(inp, d -> d: 4) }
block %(N_)s() { in inp: [d: 4]
    out relu(inp) }
block _%(N)s() { in inp: [d: 4]
    out Linear(inp, d -> d: 4) |> tanh }
model Net() { in inp: [batch, d: 4]
    out %(N)s()(inp) + %(N_)s()(inp) + _%(N)s()(inp) }
"""


def _fill(template: str, n: str) -> str:
    roles = {
        "H": n, "H_": n + "_", "S": "s" + n, "X": "_" + n, "X_": "nnc_" + n, "A": n, "A_": n + "_",
        "V": n + "0", "U": "_" + n + "_", "W": n + "1", "R": n, "R_": n + "_", "O": n, "O_": n + "_",
        "N": n, "N_": n + "_",
    }
    return template % dict(roles, doc=DOC.replace("{n}", n), evil=EVIL)


# Names a call on the top of generated code may use; anything else would run at import.
ALLOWED_TOP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
# Builtins that run code or reach outside; a spec name equal to one gets another name.
DANGEROUS = {"exec", "eval", "__import__", "open", "compile", "globals", "locals", "getattr",
             "setattr", "delattr", "breakpoint", "input", "vars"}


def _assert_inert(source: str):
    """The source compiles; importing it only imports and defines; it calls nothing that
    could run other code."""
    tree = ast.parse(source)
    compile(tree, "<generated>", "exec")
    for stmt in tree.body:
        assert isinstance(stmt, ALLOWED_TOP), ast.unparse(stmt)[:200]
        if isinstance(stmt, ast.ClassDef):
            for item in stmt.body:
                doc = isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant)
                assert doc or isinstance(item, ast.FunctionDef), ast.unparse(item)[:200]
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            assert node.id not in DANGEROUS, f"the generated code names {node.id}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            assert ast.unparse(node) == "super().__init__", ast.unparse(node)


def _run(spec, seed=0):
    module = spec.module(seed=seed).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, generator=g)
    with torch.no_grad():
        out = module(x, x.flip(0)) if len(spec.inputs()) == 2 else module(x)
    return module, out if isinstance(out, tuple) else (out,)


def _same_model(hostile, plain):
    src = hostile.torch_source()
    _assert_inert(src)
    m1, out1 = _run(hostile)
    m2, out2 = _run(plain)
    sd1, sd2 = m1.state_dict(), m2.state_dict()
    assert len(sd1) == len(sd2), f"{sorted(sd1)} vs {sorted(sd2)}"
    for (k1, v1), (k2, v2) in zip(sd1.items(), sd2.items()):
        assert torch.equal(v1, v2), f"{k1} differs from {k2}"
    assert len(out1) == len(out2)
    for a, b in zip(out1, out2):
        assert torch.equal(a, b)
    return src


@pytest.mark.parametrize("name", NAMES)
def test_hostile_names_in_every_role(name):
    """Hyperparameters, inputs, values, instances, axes, repeats and outputs named `name`
    (and `name_`, `_name`, `v_name`, ... beside it) give the same model as plain names."""
    hostile = load_text(_fill(TEMPLATE, name))
    plain = load_text(_fill(TEMPLATE, "q"))
    src = _same_model(hostile, plain)
    assert EVIL.replace("\\", "\\\\") in src  # the string is there, as a string
    assert "pwned" not in src.replace(repr(EVIL)[1:-1], "")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("None", "True", "False")])
def test_hostile_block_names(name):
    _same_model(load_text(_fill(BLOCKS, name)), load_text(_fill(BLOCKS, "Q")))


def test_underscore_names():
    """`_`, `__`, `___`, `v_`, `v__` are five names and five Python names."""
    names = ["_", "__", "___", "v_", "v__", "vv_", "nnc_", "nncnnc_"]
    body = "\n".join(f"    {n} = Linear(d -> d: 4)" for n in names)
    chain = "inp"
    for n in names:
        chain = f"{n}({chain})"
    text = f"model Net() {{\n    in inp: [batch, d: 4]\n{body}\n    out {chain}\n}}\n"
    plain = text
    for i, n in enumerate(sorted(names, key=len, reverse=True)):
        plain = plain.replace(f" {n} =", f" p{i} =").replace(f"{n}(", f"p{i}(")
    _same_model(load_text(text), load_text(plain))
    assert len(nncircuit.load("u.nn", text=text).module().state_dict()) == 2 * len(names)


def test_hostile_string_hyperparameter_from_the_command_line(tmp_path):
    path = tmp_path / "s.nn"
    path.write_text('model M(tag = "x") { in x: [d: 4]\n out x }\n', encoding="utf-8")
    out = tmp_path / "m.py"
    o = fuzz.run_cli(["compile", str(path), "-o", str(out), "-p", f"tag={EVIL}"])
    assert o.rc == 0, o.stderr
    src = out.read_text(encoding="utf-8")
    _assert_inert(src)


def test_hostile_file_name(tmp_path):
    path = tmp_path / 'evil"\nimport os\n#.nn'
    path.write_text("model M() { in x: [d: 4]\n out x }\n", encoding="utf-8")
    src = nncircuit.load(str(path)).torch_source()
    _assert_inert(src)
    assert "\nimport os" not in src


# ---- determinism -------------------------------------------------------------------------------

DETERMINISM = """
import hashlib, sys
from nncircuit import cli
out = sys.argv[1]
spec = sys.argv[2]
small = ["-p", "vocab=97", "-p", "ctx=32", "-p", "d=64", "-p", "heads=4", "-p", "layers=2"]
runs = [
    ["compile", spec, "-o", out + "/m.py", *small],
    ["compile", spec, "--to", "onnx", "-o", out + "/m.onnx", *small],
    ["ir", spec, "-O2", *small],
    ["summary", spec, *small],
    ["render", spec, "-o", out + "/m.svg", *small],
]
import contextlib, io
for argv in runs:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(argv)
    print(argv[0], rc, hashlib.sha256(buf.getvalue().replace(out, "OUT").encode()).hexdigest())
for f in ("m.py", "m.onnx", "m.svg"):
    print(f, hashlib.sha256(open(out + "/" + f, "rb").read()).hexdigest())
"""


def test_outputs_identical_across_hash_seeds(tmp_path):
    spec = os.path.join(SPECS, "transformer.nn")
    results = []
    for seed in ("0", "1", "12345"):
        out = tmp_path / f"run{seed}"
        out.mkdir()
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-c", DETERMINISM, str(out), spec], capture_output=True,
                           text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        results.append(r.stdout)
    assert results[0] == results[1] == results[2], "\n\n".join(results)
    assert results[0].count(" 0 ") == 5  # every command succeeded


def test_generated_source_identical_across_runs():
    import specgen

    for seed in range(10):
        gs = specgen.generate(seed)
        a = nncircuit.load("g.nn", text=gs.text, **gs.params).torch_source()
        b = nncircuit.load("g.nn", text=gs.text, **gs.params).torch_source()
        assert a == b


# ---- weights are data, never code -------------------------------------------------------------


def _weights():
    try:
        from nncircuit.backends.onnx import weights
    except ImportError:
        pytest.skip("backends/weights.py is not there yet")
    return weights


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling this creates the marker file
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("ext", [".pt", ".pth", ".bin"])
def test_pickled_code_in_weights_is_refused(tmp_path, ext):
    weights = _weights()
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{ext}"
    torch.save({"linear.weight": torch.zeros(2, 2), "payload": _Evil(marker)}, path)
    with pytest.raises(NNError):
        weights.load_weights(str(path))
    assert not marker.exists()
    plain = tmp_path / f"plain{ext}"
    import pickle

    plain.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(NNError):
        weights.load_weights(str(plain))
    assert not marker.exists()


def test_evil_weights_on_the_command_line(tmp_path):
    _weights()
    marker = tmp_path / "pwned"
    torch.save({"x": _Evil(marker)}, tmp_path / "evil.pt")
    o = fuzz.run_cli(["compile", os.path.join(SPECS, "mlp.nn"), "--to", "onnx", "-o", str(tmp_path / "m.onnx"),
                      "--weights", str(tmp_path / "evil.pt")])
    assert o.rc == 1 and not o.crash and not marker.exists(), o.stderr


@pytest.mark.parametrize("ext", [".pkl", ".npy", ".py", ""])
def test_other_weight_formats_are_refused(tmp_path, ext):
    weights = _weights()
    path = tmp_path / f"w{ext}"
    path.write_bytes(b"anything")
    with pytest.raises(NNError):
        weights.load_weights(str(path))


def test_damaged_safetensors(tmp_path):
    weights = _weights()
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_file({"linear.weight": torch.ones(3, 2)}, str(good))
    assert weights.load_weights(str(good))["linear.weight"].shape == (3, 2)
    data = good.read_bytes()
    for i, damaged in enumerate([data[: len(data) // 2], b"\xff" * 8 + data[8:], data[:8] + b"{" * 40, b""]):
        path = tmp_path / f"bad{i}.safetensors"
        path.write_bytes(damaged)
        with pytest.raises(NNError):
            weights.load_weights(str(path))


def test_weights_of_the_wrong_shape(tmp_path):
    _weights()
    from safetensors.torch import save_file

    spec = os.path.join(SPECS, "mlp.nn")
    sd = nncircuit.load(spec).module(seed=0).state_dict()
    sd = {k: v.contiguous() for k, v in sd.items()}
    first = next(iter(sd))
    sd[first] = torch.zeros(3, 3)
    save_file(sd, str(tmp_path / "w.safetensors"))
    o = fuzz.run_cli(["compile", spec, "--to", "onnx", "-o", str(tmp_path / "m.onnx"),
                      "--weights", str(tmp_path / "w.safetensors")])
    assert o.rc == 1 and "shape" in o.stderr and not o.crash, o.stderr

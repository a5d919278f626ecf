"""The models of bench/scan.py: the Mamba mixer spec (bench/mamba_mixer.nn) equals the
hand-written PyTorch mixer with the selective-scan loop (bench/reference/mamba_mixer.py) at
-O0 and -O2 with one state_dict, and the bench runs end to end at a tiny length."""

from __future__ import annotations

import os

import pytest
import torch

import nncircuit
from bench.reference.mamba_mixer import MambaMixer
from conftest import ROOT

SPEC = os.path.join(ROOT, "bench", "mamba_mixer.nn")


@pytest.mark.parametrize("opt", [0, 2])
def test_mamba_mixer_equals_the_hand_written_one(opt):
    spec = nncircuit.load(SPEC, opt=opt, d=16, di=24, n=4, r=3)
    ops = [n.op for _, g in spec.graph.walk() for n in g.nodes()]
    assert ("linear_scan_sum" in ops) == (opt == 2)  # the states are read only by einsum(h, cc, over n)
    torch.manual_seed(0)
    ref = MambaMixer(16, 24, 4, 3)
    m = spec.module(seed=1)
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 13, 16)
    torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-5)


def test_the_bench_runs_and_checks_its_outputs():
    from bench.scan import measure

    res = measure([5], rounds=1)["seq"][5]
    assert set(res["median_ms"]) == {"s4d_loop", "s4d_parallel", "mamba_loop", "mamba_parallel",
                                     "mamba_hand", "fused", "unfused", "chunked", "even_odd", "doubling"}
    assert max(res["max_abs_diff"].values()) < 1e-4

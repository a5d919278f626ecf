"""A fuzz finding (seed 2041): a scan inside a repeat whose emitted value has a run-time axis
(`batch`) that no input of the loop's body gives. The zero-length guard added for empty scans
asked for that size and the torch backend refused the spec without a position; now the guard
reads sizes the scanned input carries and is left out where none does."""

import torch

import nncircuit

SPEC = '''
## Block B0: an axis parameter.
block B0(axis ap) {
    in  x: [ap]
    out softmax(x, over ap)
}

## Block B1: made by specgen.
block B1(k2 = 3) {
    in  x0: [batch, g], x1: [batch, g]
    repeat 3 as layers0 {
        t4 = x0 + normal_like(x0) * 0.0
        t5 = x1 |> softplus
        t6 = stack(t4, -t4, relu(t4), over q: 3)
        t7 = Buffer([q: 3], persistent = true) * t6
        t8 = t7 * -t5
        x0 = x0 + (mean(t6, over [q]))
    }
    out x0
}

## A random circuit; its "doc" has quotes.
model Net(k0 = 3, k1 = 2) {
    in  x: [batch, z: 2 * k0, h: 2], ids: [batch, s: ~6] int64
    t0 = maximum(x, 0.25)
    t1 = B0(ap = batch)(t0)
    t2 = Conv(t0, h -> g: 2 * k1, kernel = 1, stride = 2, bias = false, over [batch, z])
    t3 = exp(tanh(t2))
    repeat 0 shared {
        t2 = t2 + (t2)
    }
    b0 = B1(k2 = 2)
    t9 = b0(t3, mean(t3, over [z]))
    t10 = log(abs(t2) + 1)
    repeat 0 as layers2 {
        t11 = hardtanh(t3, min = -2, max = 0.5)
        t12 = RMSNorm(t9, over g, affine = false)
        t13 = avgpool(t10, kernel = 1, over g)
        s0 = mean(t12, over z)
        scan z reverse as i0 {
            s0 = maximum(s0, t12) + cast(i0, to = "float32") * 0.125
            emit e0 = sigmoid(s0)
        }
        repeat 2 as layers1, i1 over rep0 {
            t14 = pad_to(t13, t13, over [z])
            t15 = Conv(s0, g -> c: 5, kernel = 1, stride = 2, bias = false, over batch)
            t16 = neg(t15)
            t17 = upsample(t14, 2, over g, mode = nearest)
            t18 = t15[c = 1:]
            t19 = unflatten(t16, c -> [n: 5, d: 1])
            s0 = s0 + (Linear(mean(t17, over [z]), g -> g: 2 * k1)) + cast(i1, to = "float32") * 0.25
            emit e1 = s0 * 0.5
        }
        t20 = e1 + normal_like(e1) * 0.0
        t21 = avgpool(e1, kernel = 2, stride = 1, padding = 1, over [rep0, batch])
        t9 = t9 + (mean(t21, over [rep0, batch]))
        t2 = t2 + (mean(t20, over [rep0]))
    }
    t22, t23 = top_k(max(t9, over z) + Param([g: 2 * k1], std = 0.1), over g, k = 1)
    t24 = Experts(sum(t9, over g), t22, t23, over z, experts = 2 * k1, hidden = 3)
    t25 = Buffer([g: 1], init = ones) * t22
    out y0 = t25
}
'''


def test_a_scan_whose_emit_has_an_unreadable_size_still_compiles():
    spec = nncircuit.load("finding.nn", text=SPEC)
    module = spec.module(seed=0)
    out = module(torch.randn(2, 6, 2), torch.zeros(2, 6, dtype=torch.long))
    assert out.shape == (1, 1) and torch.isfinite(out).all()
    assert "new_zeros" in spec.torch_source()  # the other scans keep their zero-length guard

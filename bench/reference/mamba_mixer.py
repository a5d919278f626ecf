"""A Mamba (S6) mixer written by hand in PyTorch (the reference of bench/mamba_mixer.nn): the
selective scan is the straightforward loop of the Mamba paper's reference code (exp(dt A) and
dt B x computed for every step first, then one multiply-add and one contraction per step).
Parameter names match the spec's, so a state_dict moves between them as is."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def selective_scan(u, dt, a, b, c):
    """u, dt: [batch, seq, di]; a: [di, n]; b, c: [batch, seq, n] -> y: [batch, seq, di]."""
    delta_a = torch.exp(dt[..., None] * a)                  # [batch, seq, di, n]
    delta_bu = (dt * u)[..., None] * b[:, :, None, :]       # [batch, seq, di, n]
    h = u.new_zeros(u.shape[0], *a.shape)
    ys = []
    for t in range(u.shape[1]):
        h = delta_a[:, t] * h + delta_bu[:, t]
        ys.append(torch.einsum("bdn,bn->bd", h, c[:, t]))
    return torch.stack(ys, 1)


class MambaMixer(nn.Module):
    def __init__(self, d: int = 64, di: int = 128, n: int = 16, r: int = 4):
        super().__init__()
        self.u = nn.Linear(d, di, bias=False)
        self.z = nn.Linear(d, di, bias=False)
        self.conv_w = nn.Parameter(torch.empty(di, 4).uniform_(-0.5, 0.5))
        self.conv_b = nn.Parameter(torch.zeros(di))
        self.x_dt = nn.Linear(di, r, bias=False)
        self.dt_proj = nn.Linear(r, di)
        self.b = nn.Linear(di, n, bias=False)
        self.cc = nn.Linear(di, n, bias=False)
        self.a_log = nn.Parameter(torch.empty(di, n).uniform_(0.0, 2.7))
        self.dskip = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=False)

    def forward(self, x):  # [batch, seq, d]
        seq = x.shape[1]
        u, z = self.u(x), self.z(x)
        conv = F.conv1d(u.transpose(1, 2), self.conv_w[:, None, :], self.conv_b, padding=3, groups=u.shape[-1])
        u = F.silu(conv[..., :seq].transpose(1, 2))             # causal depthwise convolution
        dt = F.softplus(self.dt_proj(self.x_dt(u)))
        y = selective_scan(u, dt, -torch.exp(self.a_log), self.b(u), self.cc(u))
        return self.out_proj((y + self.dskip * u) * F.silu(z))

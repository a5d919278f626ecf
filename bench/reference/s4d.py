"""S4D-Real written out in PyTorch (the reference of specs/s4d.nn): a diagonal state-space
layer per channel, ZOH-discretised, run as a plain loop over the sequence. Parameter names
match the spec's, so a state_dict moves between them as is."""

from __future__ import annotations

import math

import torch
from torch import nn


class S4D(nn.Module):
    def __init__(self, d: int = 8, n: int = 16):
        super().__init__()
        self.log_a = nn.Parameter(torch.empty(d, n).uniform_(0.0, math.log(n)))
        self.log_dt = nn.Parameter(torch.empty(d).uniform_(math.log(0.001), math.log(0.1)))
        self.b = nn.Parameter(torch.ones(d, n))
        self.c = nn.Parameter(torch.randn(d, n))
        self.dskip = nn.Parameter(torch.randn(d))

    def forward(self, x):  # x: [batch, seq, d]
        a = -torch.exp(self.log_a)                              # [d, n]
        da = torch.exp(torch.exp(self.log_dt)[:, None] * a)     # exp(dt A)
        db = (da - 1) / a * self.b                              # (exp(dt A) - 1) / A · B
        h = x.new_zeros(x.shape[0], *a.shape)                   # [batch, d, n]
        ys = []
        for t in range(x.shape[1]):
            h = da * h + db * x[:, t, :, None]
            ys.append((h * self.c).sum(-1) + self.dskip * x[:, t])
        return torch.stack(ys, 1), h

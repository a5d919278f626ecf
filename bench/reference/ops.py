"""torchvision.ops written by hand for the hand-written references (torchvision's wheel does
not load against the pinned torch): StochasticDepth, which EfficientNet and Swin share."""

from __future__ import annotations

import torch
from torch import nn


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth in "row" mode: while training, each sample's residual
    branch is kept with probability 1 - p (one draw per sample) and scaled by 1 / (1 - p)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
        noise = noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

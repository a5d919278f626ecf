"""A Vision Transformer written by hand in torchvision's vit_b_16 layout and with its exact
parameter names (`class_token`, `conv_proj`, `encoder.pos_embedding`,
`encoder.layers.encoder_layer_N.{ln_1, self_attention, ln_2, mlp.0, mlp.3}`, `encoder.ln`,
`heads.head`): a strided convolution for the patches, a class token, a learned position
embedding, pre-norm encoder blocks around nn.MultiheadAttention, and a linear head on the
class token. Dropout rates are 0, as torchvision's defaults and the spec."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class MLPBlock(nn.Sequential):
    def __init__(self, d: int, hidden: int):
        super().__init__(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, d), nn.Dropout(0.0))


class EncoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = MLPBlock(d, hidden)

    def forward(self, x):
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq: int, d: int, heads: int, layers: int, hidden: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq, d).normal_(std=0.02))
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(d, heads, hidden)) for i in range(layers)
        ))
        self.ln = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        return self.ln(self.layers(x + self.pos_embedding))


class ViT(nn.Module):
    def __init__(self, image=224, patch=16, d=768, heads=12, layers=12, hidden=3072, classes=1000):
        super().__init__()
        self.patch = patch
        self.conv_proj = nn.Conv2d(3, d, kernel_size=patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder = Encoder((image // patch) ** 2 + 1, d, heads, layers, hidden)
        self.heads = nn.Sequential(OrderedDict([("head", nn.Linear(d, classes))]))

    def forward(self, x):
        n = x.shape[0]
        x = self.conv_proj(x)  # (n, d, h/p, w/p)
        x = x.reshape(n, x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.encoder(x)
        return self.heads(x[:, 0])

"""A Vision Transformer written by hand in torchvision's vit_b_16 layout: a strided
convolution for the patches, a class token, a learned position embedding, pre-norm
encoder blocks around nn.MultiheadAttention, and a linear head on the class token.
No dropout, as in the spec (torchvision's default rates are 0 too)."""

from __future__ import annotations

import torch
from torch import nn


class EncoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x):
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class ViT(nn.Module):
    def __init__(self, image=224, patch=16, d=768, heads=12, layers=12, hidden=3072, classes=1000):
        super().__init__()
        self.patch = patch
        self.conv_proj = nn.Conv2d(3, d, kernel_size=patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        seq = (image // patch) ** 2 + 1
        self.pos_embedding = nn.Parameter(torch.empty(1, seq, d).normal_(std=0.02))
        self.layers = nn.ModuleList([EncoderBlock(d, heads, hidden) for _ in range(layers)])
        self.ln = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        n = x.shape[0]
        x = self.conv_proj(x)  # (n, d, h/p, w/p)
        x = x.reshape(n, x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = x + self.pos_embedding
        for layer in self.layers:
            x = layer(x)
        x = self.ln(x)
        return self.head(x[:, 0])


def from_compiled(sd: dict, layers: int) -> dict:
    """The state_dict of `ViT` holding the weights of a compiled specs/vit.nn."""
    out = {
        "conv_proj.weight": sd["patches.weight"],
        "conv_proj.bias": sd["patches.bias"],
        "class_token": sd["cls"].reshape(1, 1, -1),
        "pos_embedding": sd["pos"].unsqueeze(0),
        "ln.weight": sd["layer_norm.weight"],
        "ln.bias": sd["layer_norm.bias"],
        "head.weight": sd["logits.weight"],
        "head.bias": sd["logits.bias"],
    }
    for i in range(layers):
        c, r = f"encoder.{i}.", f"layers.{i}."
        for kind in ("weight", "bias"):
            out[r + f"ln_1.{kind}"] = sd[c + f"ln1.{kind}"]
            out[r + f"ln_2.{kind}"] = sd[c + f"ln2.{kind}"]
            out[r + f"self_attention.in_proj_{kind}"] = torch.cat(
                [sd[c + f"attn.{p}.{kind}"] for p in ("q", "k", "v")]
            )
            out[r + f"self_attention.out_proj.{kind}"] = sd[c + f"attn.proj.{kind}"]
            out[r + f"mlp.0.{kind}"] = sd[c + f"mlp.linear.{kind}"]
            out[r + f"mlp.2.{kind}"] = sd[c + f"mlp.linear_1.{kind}"]
    return out

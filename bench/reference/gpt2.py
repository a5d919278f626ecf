"""GPT-2 written by hand the way people write it (nanoGPT's layout): a fused c_attn
projection split into q, k, v, PyTorch's scaled_dot_product_attention with is_causal,
tanh GELU, pre-norm blocks and an output head tied to the token embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = MLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, vocab=50257, ctx=1024, d=768, heads=12, layers=12):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.h = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def from_compiled(sd: dict, layers: int) -> dict:
    """The state_dict of `GPT2` holding the weights of a compiled specs/transformer.nn."""
    out = {
        "wte.weight": sd["wte.weight"],
        "wpe.weight": sd["wpe.weight"],
        "lm_head.weight": sd["wte.weight"],
        "ln_f.weight": sd["layer_norm.weight"],
        "ln_f.bias": sd["layer_norm.bias"],
    }
    for i in range(layers):
        c, r = f"h.{i}.", f"h.{i}."
        for kind in ("weight", "bias"):
            out[r + f"ln_1.{kind}"] = sd[c + f"ln1.{kind}"]
            out[r + f"ln_2.{kind}"] = sd[c + f"ln2.{kind}"]
            out[r + f"attn.c_attn.{kind}"] = torch.cat(
                [sd[c + f"attn.{p}.{kind}"] for p in ("q", "k", "v")]
            )
            out[r + f"attn.c_proj.{kind}"] = sd[c + f"attn.proj.{kind}"]
            out[r + f"mlp.c_fc.{kind}"] = sd[c + f"mlp.linear.{kind}"]
            out[r + f"mlp.c_proj.{kind}"] = sd[c + f"mlp.linear_1.{kind}"]
    return out

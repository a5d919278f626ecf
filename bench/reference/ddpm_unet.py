"""The DDPM U-Net (Ho et al. 2020) written by hand in the module layout and parameter names of
diffusers' `UNet2DModel` (conv_in, time_embedding.linear_1/linear_2, down_blocks.N.resnets.M,
down_blocks.N.attentions.M, down_blocks.N.downsamplers.0.conv, mid_block, up_blocks,
conv_norm_out, conv_out) with its DDPM CIFAR-10 configuration: positional timestep embedding
(sin then cos, frequency shift 1), ResnetBlock2D with GroupNorm, SiLU and the projected time
embedding added, one-head self-attention (diffusers' `Attention` from the deprecated attention
block: GroupNorm, to_q/to_k/to_v, to_out.0, residual) at the second level and in the middle,
strided 3×3 convolutions down and nearest-neighbour ×2 then 3×3 convolutions up. One
difference from that checkpoint's config: `downsample_padding = 1` (UNet2DModel's default, a
symmetric pad) rather than its 0 (an asymmetric pad of one row and column)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, freq_shift: int = 1, max_period: int = 10000):
    """diffusers' get_timestep_embedding with flip_sin_to_cos=False: [sin, cos] of t · freqs."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    angle = timesteps[:, None].float() * freqs[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """Single-head spatial self-attention with its GroupNorm and residual connection."""

    def __init__(self, channels: int, groups: int, eps: float):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        q, k, v = (m(t)[:, None] for m in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v)[:, 0]
        out = self.to_out[1](self.to_out[0](out))
        return out.transpose(1, 2).reshape(b, c, h, w) + x


class Downsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock2D(nn.Module):
    """DownBlock2D, or AttnDownBlock2D with `attention`: resnets (each followed by its attention)
    and a strided convolution; every intermediate output is a skip connection."""

    def __init__(self, cin, cout, temb, layers, groups, eps, attention, add_downsample):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(cin if i == 0 else cout, cout, temb, groups, eps)
                                     for i in range(layers))
        if attention:
            self.attentions = nn.ModuleList(Attention(cout, groups, eps) for _ in range(layers))
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if add_downsample else None

    def forward(self, x, temb):
        skips = ()
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x)
            skips += (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips += (x,)
        return x, skips


class UpBlock2D(nn.Module):
    """UpBlock2D, or AttnUpBlock2D with `attention`: each resnet takes the latest skip
    concatenated to its input; then nearest ×2 and a convolution."""

    def __init__(self, cin, prev, cout, temb, layers, groups, eps, attention, add_upsample):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D((prev if i == 0 else cout) + (cin if i == layers - 1 else cout), cout, temb, groups, eps)
            for i in range(layers))
        if attention:
            self.attentions = nn.ModuleList(Attention(cout, groups, eps) for _ in range(layers))
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_upsample else None

    def forward(self, x, skips, temb):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips[-1]], dim=1), temb)
            skips = skips[:-1]
            if hasattr(self, "attentions"):
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNetMidBlock2D(nn.Module):
    def __init__(self, channels, temb, groups, eps):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(channels, channels, temb, groups, eps) for _ in range(2))
        self.attentions = nn.ModuleList([Attention(channels, groups, eps)])

    def forward(self, x, temb):
        return self.resnets[1](self.attentions[0](self.resnets[0](x, temb)), temb)


class DDPMUNet(nn.Module):
    """UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256,
    256, 256), layers_per_block=2, down_block_types=(Down, AttnDown, Down, Down), up_block_types=
    (Up, Up, AttnUp, Up), norm_num_groups=32, norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1)."""

    def __init__(self, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                 attention=(False, True, False, False), layers_per_block=2, norm_num_groups=32, norm_eps=1e-6):
        super().__init__()
        ch = block_out_channels
        temb = 4 * ch[0]
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        n = len(ch)
        self.down_blocks = nn.ModuleList(
            DownBlock2D(ch[max(i - 1, 0)], ch[i], temb, layers_per_block, norm_num_groups, norm_eps, attention[i],
                        i < n - 1) for i in range(n))
        self.mid_block = UNetMidBlock2D(ch[-1], temb, norm_num_groups, norm_eps)
        rev, up_attention = ch[::-1], attention[::-1]
        self.up_blocks = nn.ModuleList(
            UpBlock2D(rev[min(i + 1, n - 1)], rev[max(i - 1, 0)], rev[i], temb, layers_per_block + 1,
                      norm_num_groups, norm_eps, up_attention[i], i < n - 1) for i in range(n))
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, ch[0], eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch[0], out_channels, 3, padding=1)

    def forward(self, sample, timestep):
        emb = self.time_embedding(timestep_embedding(timestep, self.conv_in.out_channels))
        x = self.conv_in(sample)
        skips = (x,)
        for block in self.down_blocks:
            x, res = block(x, emb)
            skips += res
        x = self.mid_block(x, emb)
        for block in self.up_blocks:
            k = len(block.resnets)
            x = block(x, skips[-k:], emb)
            skips = skips[:-k]
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))

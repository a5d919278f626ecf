"""Hand-written PyTorch references for the graph, memory, scientific and vision-mixer models of
the zoo (specs/graph, specs/memory, specs/scientific, specs/vision): plain nn.Modules written
from the papers (MLP-Mixer after timm's MlpMixer, module for module and name for name), with
constructor arguments and parameter names equal to the specs' hyperparameters and names."""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

# ---- GCN (Kipf & Welling 2017) -------------------------------------------------------------


class GraphConv(nn.Module):
    def __init__(self, fin, fout):
        super().__init__()
        self.linear = nn.Linear(fin, fout)

    def forward(self, x, adj):
        return adj @ self.linear(x)


class GCN(nn.Module):
    def __init__(self, features=1433, hidden=16, classes=7, drop=0.5):
        super().__init__()
        self.drop = drop
        self.conv1 = GraphConv(features, hidden)
        self.conv2 = GraphConv(hidden, classes)

    def forward(self, x, adj):
        x = F.dropout(x, self.drop, self.training)
        h = F.relu(self.conv1(x, adj))
        h = F.dropout(h, self.drop, self.training)
        return F.log_softmax(self.conv2(h, adj), dim=-1)


# ---- GAT (Veličković et al. 2018) ----------------------------------------------------------


class GATLayer(nn.Module):
    def __init__(self, fin, heads, dh, drop=0.6, slope=0.2):
        super().__init__()
        self.heads, self.dh, self.drop, self.slope = heads, dh, drop, slope
        self.lin = nn.Linear(fin, heads * dh, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, dh))
        self.att_dst = nn.Parameter(torch.empty(heads, dh))
        for p in (self.lin.weight, self.att_src, self.att_dst):
            nn.init.xavier_uniform_(p)

    def forward(self, x, adj):  # x [n, fin], adj [n, n] bool -> [n, heads, dh]
        n = x.shape[0]
        h = self.lin(x).view(n, self.heads, self.dh).transpose(0, 1)  # [heads, n, dh]
        src = (h * self.att_src[:, None, :]).sum(-1)  # [heads, n]
        dst = (h * self.att_dst[:, None, :]).sum(-1)
        e = F.leaky_relu(src[:, :, None] + dst[:, None, :], self.slope)  # [heads, i, j]
        e = e.masked_fill(~adj, float("-inf"))
        alpha = F.dropout(torch.softmax(e, dim=-1), self.drop, self.training)
        return (alpha @ h).transpose(0, 1)


class GAT(nn.Module):
    def __init__(self, features=1433, hidden=8, heads=8, classes=7, out_heads=1, drop=0.6):
        super().__init__()
        self.drop = drop
        self.conv1 = GATLayer(features, heads, hidden, drop)
        self.conv2 = GATLayer(heads * hidden, out_heads, classes, drop)

    def forward(self, x, adj):
        x = F.dropout(x, self.drop, self.training)
        h = F.elu(self.conv1(x, adj).flatten(1))
        h = F.dropout(h, self.drop, self.training)
        return F.log_softmax(self.conv2(h, adj).mean(1), dim=-1)


# ---- End-to-end memory network (Sukhbaatar et al. 2015) -------------------------------------


class MemN2N(nn.Module):
    """Three hops, adjacent tying: C^k = A^(k+1), B = A^1, W^T = C^3 = A^4; bag-of-words."""

    def __init__(self, vocab=177, d=20):
        super().__init__()
        self.A1, self.A2, self.A3, self.A4 = (nn.Embedding(vocab, d) for _ in range(4))
        for e in (self.A1, self.A2, self.A3, self.A4):
            nn.init.normal_(e.weight, std=0.1)

    def forward(self, story, query):  # story [b, sentence, word], query [b, qword]
        u = self.A1(query).sum(1)
        for A, C in ((self.A1, self.A2), (self.A2, self.A3), (self.A3, self.A4)):
            m = A(story).sum(2)  # [b, sentence, d]
            c = C(story).sum(2)
            p = torch.softmax(torch.einsum("bsd,bd->bs", m, u), dim=-1)
            u = u + torch.einsum("bs,bsd->bd", p, c)
        return u @ self.A4.weight.t()


# ---- Modern Hopfield layer (Ramsauer et al. 2021) --------------------------------------------


class Hopfield(nn.Module):
    """Z = softmax(beta R W_Q (Y W_K)^T) Y W_K W_V."""

    def __init__(self, d=64, dk=64, dv=64, beta=None):
        super().__init__()
        self.beta = 1.0 / math.sqrt(dk) if beta is None else beta
        self.W_Q = nn.Linear(d, dk, bias=False)
        self.W_K = nn.Linear(d, dk, bias=False)
        self.W_V = nn.Linear(dk, dv, bias=False)

    def forward(self, state, stored):  # [b, query, d], [b, key, d]
        q, k = self.W_Q(state), self.W_K(stored)
        w = torch.softmax(self.beta * q @ k.transpose(-1, -2), dim=-1)
        return w @ self.W_V(k)


# ---- Neural ODE, fixed-step RK4 (Chen et al. 2018) -------------------------------------------


class VectorField(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, h):
        return self.fc2(torch.tanh(self.fc1(h)))


class RK4Step(nn.Module):
    def __init__(self, d, hidden, dt):
        super().__init__()
        self.dt = dt
        self.field = VectorField(d, hidden)

    def forward(self, h):
        f, dt = self.field, self.dt
        k1 = f(h)
        k2 = f(h + dt / 2 * k1)
        k3 = f(h + dt / 2 * k2)
        k4 = f(h + dt * k3)
        return h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


class NeuralODE(nn.Module):
    def __init__(self, d=2, hidden=50, steps=10, T=1.0):
        super().__init__()
        self.steps = steps
        self.rk4 = RK4Step(d, hidden, T / steps)

    def forward(self, h0):
        h = h0
        for _ in range(self.steps):
            h = self.rk4(h)
        return h


# ---- MLP-Mixer (Tolstikhin et al. 2021), after timm's mlp_mixer.py -----------------------------


class Mlp(nn.Module):
    """timm.layers.Mlp with its defaults: fc1, GELU, dropout 0, no norm, fc2, dropout 0."""

    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x):
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class PatchEmbed(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.Identity()

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))  # NCHW -> NLC


class MixerBlock(nn.Module):
    def __init__(self, dim, seq_len, tokens_dim, channels_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = Mlp(seq_len, tokens_dim)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = Mlp(dim, channels_dim)

    def forward(self, x):
        x = x + self.drop_path(self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))


class MlpMixer(nn.Module):
    """timm's MlpMixer (global_pool='avg', no dropout): mlp_ratio gives the token and channel
    MLPs' widths, int(ratio * embed_dim) each."""

    def __init__(self, num_classes=1000, img_size=224, in_chans=3, patch_size=16, num_blocks=8,
                 embed_dim=512, mlp_ratio=(0.5, 4.0)):
        super().__init__()
        tokens_dim, channels_dim = (int(r * embed_dim) for r in mlp_ratio)
        self.stem = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        seq_len = (img_size // patch_size) ** 2
        self.blocks = nn.Sequential(*[MixerBlock(embed_dim, seq_len, tokens_dim, channels_dim)
                                      for _ in range(num_blocks)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        x = self.norm(self.blocks(self.stem(x)))
        return self.head(self.head_drop(x.mean(dim=1)))


# ---- ConvNeXt (Liu et al. 2022), after timm's convnext.py -------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """timm's LayerNorm2d: LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, in_chs, mlp_ratio=4, ls_init_value=1e-6):
        super().__init__()
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel_size=7, padding=3, groups=in_chs, bias=True)
        self.norm = nn.LayerNorm(in_chs, eps=1e-6)
        self.mlp = Mlp(in_chs, int(mlp_ratio * in_chs))
        self.gamma = nn.Parameter(ls_init_value * torch.ones(in_chs))
        self.shortcut = nn.Identity()
        self.drop_path = nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x)
        x = x.permute(0, 2, 3, 1)  # NCHW -> NHWC
        x = self.mlp(self.norm(x))
        x = x.permute(0, 3, 1, 2)
        x = x.mul(self.gamma.reshape(1, -1, 1, 1))
        return self.drop_path(x) + self.shortcut(shortcut)


class ConvNeXtStage(nn.Module):
    def __init__(self, in_chs, out_chs, stride=2, depth=2, ls_init_value=1e-6):
        super().__init__()
        if in_chs != out_chs or stride > 1:
            self.downsample = nn.Sequential(
                LayerNorm2d(in_chs, eps=1e-6),
                nn.Conv2d(in_chs, out_chs, kernel_size=stride, stride=stride, bias=True),
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[ConvNeXtBlock(out_chs, ls_init_value=ls_init_value) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class NormMlpClassifierHead(nn.Module):
    """timm's head for ConvNeXt (no hidden layer): average pool, LayerNorm2d, flatten, fc."""

    def __init__(self, in_features, num_classes):
        super().__init__()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.norm = LayerNorm2d(in_features, eps=1e-6)
        self.flatten = nn.Flatten(1)
        self.pre_logits = nn.Identity()
        self.drop = nn.Dropout(0.0)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x):
        x = self.flatten(self.norm(self.global_pool(x)))
        return self.fc(self.drop(self.pre_logits(x)))


class ConvNeXt(nn.Module):
    """timm's ConvNeXt with patch_size 4, conv_bias, no conv_mlp, no GRN, no dropout."""

    def __init__(self, in_chans=3, num_classes=1000, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), ls_init_value=1e-6):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4, bias=True),
            LayerNorm2d(dims[0], eps=1e-6),
        )
        stages, prev = [], dims[0]
        for i in range(len(depths)):
            stages.append(ConvNeXtStage(prev, dims[i], stride=2 if i > 0 else 1, depth=depths[i],
                                        ls_init_value=ls_init_value))
            prev = dims[i]
        self.stages = nn.Sequential(*stages)
        self.norm_pre = nn.Identity()
        self.head = NormMlpClassifierHead(prev, num_classes)

    def forward(self, x):
        return self.head(self.norm_pre(self.stages(self.stem(x))))


# ---- Deep Interest Network (Zhou et al. 2018) -------------------------------------------------


class ActivationUnit(nn.Module):
    def __init__(self, d, h1=80, h2=40):
        super().__init__()
        self.fc1 = nn.Linear(4 * d, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, 1)

    def forward(self, e, v):  # behaviours [b, seq, d], candidate [b, d] -> weights [b, seq]
        v = v[:, None, :].expand_as(e)
        z = torch.cat([v, e, v - e, v * e], dim=-1)
        return self.fc3(torch.sigmoid(self.fc2(torch.sigmoid(self.fc1(z))))).squeeze(-1)


class DIN(nn.Module):
    def __init__(self, goods=63001, cats=801, d=18, h1=80, h2=40, m1=200, m2=80):
        super().__init__()
        self.goods_emb = nn.Embedding(goods, d)
        self.cat_emb = nn.Embedding(cats, d)
        self.att = ActivationUnit(2 * d, h1, h2)
        self.fc1 = nn.Linear(4 * d, m1)
        self.act1 = nn.PReLU()
        self.fc2 = nn.Linear(m1, m2)
        self.act2 = nn.PReLU()
        self.fc3 = nn.Linear(m2, 1)

    def forward(self, hist_goods, hist_cats, mask, goods_id, cat_id):
        e = torch.cat([self.goods_emb(hist_goods), self.cat_emb(hist_cats)], dim=-1)
        v = torch.cat([self.goods_emb(goods_id), self.cat_emb(cat_id)], dim=-1)
        w = self.att(e, v).masked_fill(~mask, 0.0)  # no softmax: the paper keeps the intensity
        u = (w[..., None] * e).sum(1)
        y = self.fc3(self.act2(self.fc2(self.act1(self.fc1(torch.cat([u, v], dim=-1))))))
        return y.squeeze(-1)


# ---- Hypernetwork (Ha et al. 2017; task-conditioned as von Oswald et al. 2020) ---------------


class HyperNet(nn.Module):
    def __init__(self, d_emb, hyper_hidden, d_in, hidden, d_out):
        super().__init__()
        self.shapes = (hidden, d_in, d_out)
        self.fc = nn.Linear(d_emb, hyper_hidden)
        self.w1 = nn.Linear(hyper_hidden, hidden * d_in)
        self.b1 = nn.Linear(hyper_hidden, hidden)
        self.w2 = nn.Linear(hyper_hidden, d_out * hidden)
        self.b2 = nn.Linear(hyper_hidden, d_out)

    def forward(self, z):
        hidden, d_in, d_out = self.shapes
        a = torch.relu(self.fc(z))
        return (self.w1(a).view(-1, hidden, d_in), self.b1(a),
                self.w2(a).view(-1, d_out, hidden), self.b2(a))


class HyperMLP(nn.Module):
    def __init__(self, tasks=10, d_emb=32, hyper_hidden=100, d_in=784, hidden=100, d_out=10):
        super().__init__()
        self.task_emb = nn.Embedding(tasks, d_emb)
        self.hyper = HyperNet(d_emb, hyper_hidden, d_in, hidden, d_out)

    def forward(self, x, task):
        W1, B1, W2, B2 = self.hyper(self.task_emb(task))
        y = torch.relu(torch.einsum("bi,bhi->bh", x, W1) + B1)
        return torch.einsum("bh,boh->bo", y, W2) + B2


# The classes each model's reference consists of (for the line counts of docs/zoo.md).
CLASSES = {
    "GCN": (GraphConv, GCN),
    "GAT": (GATLayer, GAT),
    "MemN2N": (MemN2N,),
    "Hopfield": (Hopfield,),
    "NeuralODE": (VectorField, RK4Step, NeuralODE),
    "MlpMixer": (Mlp, PatchEmbed, MixerBlock, MlpMixer),
    "ConvNeXt": (Mlp, LayerNorm2d, ConvNeXtBlock, ConvNeXtStage, NormMlpClassifierHead, ConvNeXt),
    "DIN": (ActivationUnit, DIN),
    "HyperMLP": (HyperNet, HyperMLP),
}


# ---- KAN, efficient-kan's formulation (Blealtan/efficient-kan) ---------------------------------


class KANLinear(nn.Module):
    """efficient-kan's KANLinear (enable_standalone_scale_spline, SiLU base). Two differences:
    the grid buffer is not persistent (a spec has no buffers, so it is not in the state_dict;
    update_grid is left out), and spline_weight starts as uniform noise rather than
    efficient-kan's least-squares fit of noise (curve2coeff)."""

    def __init__(self, in_features, out_features, grid_size=5, spline_order=3, scale_noise=0.1,
                 scale_base=1.0, scale_spline=1.0, grid_range=(-1, 1)):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        h = (grid_range[1] - grid_range[0]) / grid_size
        grid = (torch.arange(-spline_order, grid_size + spline_order + 1) * h + grid_range[0])
        self.register_buffer("grid", grid.expand(in_features, -1).contiguous(), persistent=False)
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        self.base_activation = nn.SiLU()
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * scale_base)
        nn.init.uniform_(self.spline_weight, -scale_noise / grid_size, scale_noise / grid_size)
        nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * scale_spline)

    def b_splines(self, x):  # [batch, in] -> [batch, in, grid_size + spline_order]
        grid = self.grid
        x = x.unsqueeze(-1)
        bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
        for k in range(1, self.spline_order + 1):
            bases = ((x - grid[:, : -(k + 1)]) / (grid[:, k:-1] - grid[:, : -(k + 1)]) * bases[:, :, :-1]) + (
                (grid[:, k + 1:] - x) / (grid[:, k + 1:] - grid[:, 1:(-k)]) * bases[:, :, 1:])
        return bases.contiguous()

    @property
    def scaled_spline_weight(self):
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, self.in_features)
        base_output = F.linear(self.base_activation(x), self.base_weight)
        spline_output = F.linear(self.b_splines(x).view(x.size(0), -1),
                                 self.scaled_spline_weight.view(self.out_features, -1))
        return (base_output + spline_output).reshape(*shape[:-1], self.out_features)


class KAN(nn.Module):
    def __init__(self, layers_hidden=(784, 64, 10), grid_size=5, spline_order=3, grid_range=(-1, 1)):
        super().__init__()
        self.layers = nn.ModuleList(
            KANLinear(a, b, grid_size=grid_size, spline_order=spline_order, grid_range=grid_range)
            for a, b in zip(layers_hidden, layers_hidden[1:])
        )

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


CLASSES["KAN"] = (KANLinear, KAN)


def renamed(state: dict, rules: tuple) -> dict:
    """A state_dict with every key rewritten by the (pattern, replacement) regex rules in turn:
    the spec's names in the reference's, for the models whose names cannot be spelled alike."""
    out = {}
    for k, v in state.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out

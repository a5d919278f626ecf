"""EfficientNet-B0 (Tan & Le 2019) written by hand in torchvision's layout and names
(torchvision.models.efficientnet): `features.S.B.block.K` (a Sequential per stage, a
Sequential per MBConv), SqueezeExcitation's fc1/fc2, StochasticDepth in "row" mode, the
linearly growing stochastic depth probability, and torchvision's initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn

from .mobilenet_v2 import _make_divisible
from .ops import StochasticDepth


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.SiLU):
        layers = [nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                  norm_layer(cout)]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, input_channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x):
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class MBConv(nn.Module):
    def __init__(self, expand_ratio, kernel, stride, cin, cout, sd_prob, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        expanded = _make_divisible(cin * expand_ratio, 8)
        if expanded != cin:
            layers.append(Conv2dNormActivation(cin, expanded, kernel_size=1, norm_layer=norm_layer))
        layers.append(Conv2dNormActivation(expanded, expanded, kernel_size=kernel, stride=stride, groups=expanded,
                                           norm_layer=norm_layer))
        layers.append(SqueezeExcitation(expanded, max(1, cin // 4)))
        layers.append(Conv2dNormActivation(expanded, cout, kernel_size=1, norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x):
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + x
        return result


class EfficientNet(nn.Module):
    """B0's table; width_mult and depth_mult scale it as torchvision's _efficientnet_conf; B5-B7
    pass norm_layer=partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)."""

    def __init__(self, num_classes=1000, dropout=0.2, stochastic_depth_prob=0.2, width_mult=1.0, depth_mult=1.0,
                 norm_layer=nn.BatchNorm2d):
        super().__init__()
        setting = [  # expand_ratio, kernel, stride, input_channels, out_channels, num_layers
            (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
            (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
        ]
        setting = [(t, k, s, _make_divisible(ci * width_mult, 8), _make_divisible(co * width_mult, 8),
                    int(math.ceil(n * depth_mult))) for t, k, s, ci, co, n in setting]
        layers: list[nn.Module] = [Conv2dNormActivation(3, setting[0][3], kernel_size=3, stride=2, norm_layer=norm_layer)]
        total = sum(row[5] for row in setting)
        block_id = 0
        for t, k, s, ci, co, n in setting:
            stage = []
            for i in range(n):
                sd_prob = stochastic_depth_prob * float(block_id) / total
                stage.append(MBConv(t, k, s if i == 0 else 1, ci if i == 0 else co, co, sd_prob, norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = setting[-1][4]
        layers.append(Conv2dNormActivation(last_in, 4 * last_in, kernel_size=1, norm_layer=norm_layer))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(4 * last_in, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init_range = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -init_range, init_range)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

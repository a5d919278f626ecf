"""A convolutional variational autoencoder (Kingma & Welling 2014) in plain PyTorch: the
network of specs/vision/vae.nn, module for module and name for name, so its state_dict
loads into the compiled spec strictly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(self, image=28, channels=1, width=32, latent=16):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
        features = 2 * width * (image // 4) ** 2
        self.mu = nn.Linear(features, latent)
        self.logvar = nn.Linear(features, latent)

    def forward(self, x):
        h = F.relu(self.conv2(F.relu(self.conv1(x)))).flatten(1)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, image=28, channels=1, width=32, latent=16):
        super().__init__()
        self.shape = (2 * width, image // 4, image // 4)
        self.fc = nn.Linear(latent, 2 * width * (image // 4) ** 2)
        self.deconv1 = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
        self.deconv2 = nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1)

    def forward(self, z):
        h = F.relu(self.fc(z)).view(-1, *self.shape)
        return torch.sigmoid(self.deconv2(F.relu(self.deconv1(h))))


class VAE(nn.Module):
    def __init__(self, image=28, channels=1, width=32, latent=16):
        super().__init__()
        self.encoder = Encoder(image, channels, width, latent)
        self.decoder = Decoder(image, channels, width, latent)

    def forward(self, x):
        mu, logvar = self.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # the reparameterisation trick
        return self.decoder(z), mu, logvar

"""Stand-in for Forge 2 ``backend/patcher/vae.py`` (``VAE``) and the encoder side of
``backend/nn/vae.py`` (``IntegratedAutoencoderKL``, ``DiagonalGaussianDistribution``).

Semantics mirrored:

* ``VAE.encode(pixel_samples)`` takes **BHWC float in 0..1**, loads its patcher, maps the
  pixels by ``2 * p - 1`` (no clamp) and casts them to ``vae_dtype``, calls ``first_stage_model.encode(pixels, regulation)`` with the
  ``model_vae_regulation`` found in the patcher's ``model_options`` and returns
  **unscaled** latents [B, 4, H/8, W/8] in float32;
* ``IntegratedAutoencoderKL.encode`` returns ``regulation(posterior)`` when given one,
  otherwise ``posterior.sample()`` (random); ``process_in`` applies
  ``(latent - shift_factor) * scaling_factor``;
* ``VAE.clone`` shares the first-stage model and clones the patcher.

The encoder is a single strided convolution instead of the real ResNet stack.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from backend import memory_management
from backend.patcher.base import ModelPatcher


class DiagonalGaussianDistribution:
    def __init__(self, parameters: torch.Tensor) -> None:
        self.parameters = parameters
        self.mean, self.logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(self.logvar, -30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self) -> torch.Tensor:
        return self.mean + self.std * torch.randn(self.mean.shape).to(device=self.parameters.device)

    def mode(self) -> torch.Tensor:
        return self.mean


class IntegratedAutoencoderKL(nn.Module):
    def __init__(self, latent_channels: int = 4, scaling_factor: float = 0.18215, shift_factor: float = 0.0) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 2 * latent_channels, kernel_size=8, stride=8)
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.scaling_factor = scaling_factor
        self.shift_factor = shift_factor
        self.latent_channels = latent_channels

    def encode(self, x: torch.Tensor, regulation: Callable | None = None) -> torch.Tensor:
        posterior = DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))
        return regulation(posterior) if regulation is not None else posterior.sample()

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        return (latent - self.shift_factor) * self.scaling_factor


class VAE:
    def __init__(self, model: IntegratedAutoencoderKL | None = None, device: torch.device | None = None,
                 no_init: bool = False) -> None:
        if no_init:
            return
        self.first_stage_model = model.eval()
        self.device = device or torch.device("cpu")
        self.latent_channels = model.latent_channels
        self.output_device = torch.device("cpu")
        self.vae_dtype = torch.float32  # memory_management.vae_dtype() on a CPU
        self.patcher = ModelPatcher(self.first_stage_model, load_device=self.device, offload_device=torch.device("cpu"))

    def clone(self) -> "VAE":
        n = VAE(no_init=True)
        n.patcher = self.patcher.clone()
        n.first_stage_model = self.first_stage_model
        n.device = self.device
        n.latent_channels = self.latent_channels
        n.output_device = self.output_device
        n.vae_dtype = self.vae_dtype
        return n

    def encode(self, pixel_samples: torch.Tensor) -> torch.Tensor:
        regulation = self.patcher.model_options.get("model_vae_regulation", None)
        pixel_samples = pixel_samples.movedim(-1, 1)
        memory_management.load_models_gpu([self.patcher])
        pixels_in = (2.0 * pixel_samples - 1.0).to(self.vae_dtype).to(self.device)
        return self.first_stage_model.encode(pixels_in, regulation).to(self.output_device).float()

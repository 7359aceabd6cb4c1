"""A tiny LatentDiffusion-shaped model for the script tests, built from real ldm parts.

Mirrors what A1111's ``shared.sd_model`` offers the extension: ``model.diffusion_model``
(the real ldm UNetModel behind DiffusionWrapper), ``apply_model``,
``encode_first_stage`` returning the real ``DiagonalGaussianDistribution``,
``get_first_stage_encoding``, ``decode_first_stage``, ``scale_factor`` and the
``is_sdxl``/``is_sd2`` flags. The VAE is ldm's real Encoder/Decoder at a tiny width.
"""

from __future__ import annotations

import torch
from torch import nn

from tests.helpers.tiny_unet import TINY_CONFIG, make_tiny_unet

_VAE = dict(ch=32, out_ch=3, ch_mult=(1, 1, 1, 1), num_res_blocks=1, attn_resolutions=[], in_channels=3,
            resolution=64, z_channels=4, dropout=0.0)


class TinyAutoencoder(nn.Module):
    """Mirrors ldm.models.autoencoder.AutoencoderKL's encode/decode (without Lightning)."""

    def __init__(self, seed: int = 7, ch_mult: tuple[int, ...] = _VAE["ch_mult"], ch: int = _VAE["ch"],
                 num_res_blocks: int = _VAE["num_res_blocks"]) -> None:
        super().__init__()
        from ldm.modules.diffusionmodules.model import Decoder, Encoder

        torch.manual_seed(seed)
        config = {**_VAE, "ch_mult": ch_mult, "ch": ch, "num_res_blocks": num_res_blocks}
        self.encoder = Encoder(double_z=True, **config)
        self.decoder = Decoder(**config)
        self.quant_conv = nn.Conv2d(8, 8, 1)
        self.post_quant_conv = nn.Conv2d(4, 4, 1)

    def encode(self, x: torch.Tensor):
        from ldm.modules.distributions.distributions import DiagonalGaussianDistribution

        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


class DiffusionWrapper(nn.Module):
    """Mirrors ldm.models.diffusion.ddpm.DiffusionWrapper for crossattn conditioning."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.diffusion_model = unet

    def forward(self, x, t, c_crossattn):
        return self.diffusion_model(x, t, context=torch.cat(c_crossattn, 1))


class TinyLatentDiffusion(nn.Module):
    scale_factor = 0.18215
    is_sdxl = False
    is_sd2 = False
    is_sd1 = True
    sd_checkpoint_info = "base"
    sd_model_hash = "base"

    def __init__(self, unet: nn.Module | None = None, vae_seed: int = 7) -> None:
        super().__init__()
        self.model = DiffusionWrapper(unet if unet is not None else make_tiny_unet())
        self.first_stage_model = TinyAutoencoder(vae_seed).eval()

    def apply_model(self, x, t, cond):
        return self.model(x, t, c_crossattn=[cond])

    def encode_first_stage(self, x):
        return self.first_stage_model.encode(x)

    def get_first_stage_encoding(self, posterior):
        # The real one samples; the mode keeps these tests deterministic.
        return self.scale_factor * posterior.mode()

    def decode_first_stage(self, z):
        return self.first_stage_model.decode(z / self.scale_factor)


def inpainting_model() -> TinyLatentDiffusion:
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    return TinyLatentDiffusion(UNetModel(**{**TINY_CONFIG, "in_channels": 9}))

"""Stand-in for ``ldm_patched/modules/sd.py``: the encoding side of ``VAE``.

``VAE.encode(pixel_samples)`` mirrors the real one: **BHWC float in 0..1** in, moved to
BCHW, loaded through ``model_management.load_models_gpu([self.patcher])``, mapped to -1..1
(``process_input``), ``first_stage_model.encode`` (which samples the posterior through its
``regularization`` unless ``regularization.sample`` is False), **unscaled** latents
[B, 4, H/8, W/8] in float32 out. The first-stage model is the real ComfyUI
``AutoencoderKL`` with a tiny config (32 base channels, 3 downsamplings) and random weights.
"""

from __future__ import annotations

import torch

from tests.helpers.tiny_unet import comfy_on_path

comfy_on_path()

import comfy.model_management as model_management  # noqa: E402
from comfy.ldm.models.autoencoder import AutoencoderKL  # noqa: E402

from ldm_patched.modules.model_patcher import ModelPatcher  # noqa: E402

TINY_DDCONFIG = dict(double_z=True, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32,
                     ch_mult=[1, 2, 2, 2], num_res_blocks=1, attn_resolutions=[], dropout=0.0)


class VAE:
    def __init__(self, seed: int = 0) -> None:
        self.first_stage_model = AutoencoderKL(ddconfig=TINY_DDCONFIG, embed_dim=4).eval()
        # ComfyUI's layers skip weight initialisation (the checkpoint fills them): fill them here.
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in self.first_stage_model.parameters():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
        self.device = torch.device("cpu")
        self.output_device = torch.device("cpu")
        self.vae_dtype = torch.float32
        self.latent_channels = 4
        self.downscale_ratio = 8
        self.patcher = ModelPatcher(self.first_stage_model, load_device=self.device, offload_device=self.device)

    def process_input(self, image: torch.Tensor) -> torch.Tensor:
        return image * 2.0 - 1.0

    def encode(self, pixel_samples: torch.Tensor) -> torch.Tensor:
        pixel_samples = pixel_samples.movedim(-1, 1)
        model_management.load_models_gpu([self.patcher])
        pixels_in = self.process_input(pixel_samples).to(self.vae_dtype).to(self.device)
        return self.first_stage_model.encode(pixels_in).to(self.output_device).float()

"""Stand-in for ``ldm_patched/modules/model_base.py`` (``BaseModel``), wrapping a given ldm UNet.

``apply_model`` mirrors ComfyUI's ``BaseModel.apply_model``: ``xc =
model_sampling.calculate_input(sigma, x)``, ``torch.cat([xc, c_concat], dim=1)`` when a
``c_concat`` is given, the UNet called with ``model_sampling.timestep(t)`` and
``context=c_crossattn``, then ``model_sampling.calculate_denoised``. The sampling object is
the real ComfyUI ``ModelSamplingDiscrete`` + ``EPS`` (SD1.5's scaled-linear schedule) and
``model_config`` carries the real ``latent_formats.SD15`` and an ``unet_config`` with the
UNet's ``in_channels``, as ``supported_models.SD15`` does.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from tests.helpers.tiny_unet import comfy_on_path

comfy_on_path()

import comfy.latent_formats  # noqa: E402
import comfy.model_sampling  # noqa: E402


class _ModelSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    pass


class BaseModel(nn.Module):
    def __init__(self, diffusion_model: nn.Module, in_channels: int = 4) -> None:
        super().__init__()
        self.model_config = SimpleNamespace(
            unet_config={"in_channels": in_channels, "context_dim": 32},
            latent_format=comfy.latent_formats.SD15(),
            sampling_settings={},
        )
        self.model_sampling = _ModelSampling(self.model_config)
        self.diffusion_model = diffusion_model

    def get_dtype(self) -> torch.dtype:
        return next(self.diffusion_model.parameters()).dtype

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_concat: torch.Tensor | None = None,
                    c_crossattn: torch.Tensor | None = None, control: Any = None,
                    transformer_options: dict | None = None, **kwargs: Any) -> torch.Tensor:
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc] + [c_concat], dim=1)
        dtype = self.get_dtype()
        xc = xc.to(dtype)
        t = self.model_sampling.timestep(t).float()
        context = c_crossattn.to(dtype)
        out = self.diffusion_model(xc, t, context=context, control=control,
                                   transformer_options=transformer_options or {}, **kwargs).float()
        return self.model_sampling.calculate_denoised(sigma, out, x)

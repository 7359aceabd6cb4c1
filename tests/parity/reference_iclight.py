"""The reference IC-Light pipeline, transcribed as plain test code.

Held to: lllyasviel/IC-Light at commit bcf3f29, ``gradio_demo.py`` (fc) and
``gradio_demo_bg.py`` (fbc); Forge 2's built-in space
(``extensions-builtin/forge_space_iclight/forge_app.py``) runs the same code. Written from
reading those files, step by step, without importing or copying them:

* the UNet: a new ``conv_in`` with 8 (fc) or 12 (fbc) input channels, weights zeroed,
  the first 4 channels copied from the old one, the old bias kept; then every key of the
  state dict (conv_in included) gets ``original + offset``; then ``forward`` is wrapped to
  repeat ``concat_conds`` to the batch and put it after the noisy latent on channels;
* the pixels: the subject on grey is ``127 + (img - 127 + sigma) * alpha`` in float32,
  clipped and truncated to uint8 (``run_rmbg``, ``sigma=0`` for relighting); images are
  brought to the generation size by a LANCZOS resize to ``round(w * s)`` x ``round(h * s)``
  and a crop at the centred float box (``resize_and_center_crop``); ``numpy2pytorch``
  maps uint8 to ``x / 127 - 1``;
* the conditioning: ``[fg]`` (fc) or ``[fg, bg]`` (fbc) encoded as one batch,
  ``latent_dist.mode() * scaling_factor``, the batch joined on channels in that order.

Arrays are HWC uint8 numpy, as the demo's Gradio inputs are.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image


def numpy2pytorch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """HWC uint8 images -> [B, 3, H, W] float32, grey 127 exactly 0.0."""
    batch = torch.from_numpy(np.stack(images, axis=0)).float() / 127.0 - 1.0
    return batch.movedim(-1, 1)


def resize_and_center_crop(image: np.ndarray, target_width: int, target_height: int) -> np.ndarray:
    pil = Image.fromarray(image)
    width, height = pil.size
    scale = max(target_width / width, target_height / height)
    resized_w, resized_h = int(round(width * scale)), int(round(height * scale))
    resized = pil.resize((resized_w, resized_h), Image.LANCZOS)
    left, top = (resized_w - target_width) / 2, (resized_h - target_height) / 2
    right, bottom = (resized_w + target_width) / 2, (resized_h + target_height) / 2
    return np.array(resized.crop((left, top, right, bottom)))


def composite_with_alpha(image: np.ndarray, alpha: np.ndarray, sigma: float = 0.0) -> np.ndarray:
    """``run_rmbg``'s blend, given its alpha: HWC uint8 ``image``, HW1 float32 0..1 ``alpha``."""
    result = 127 + (image.astype(np.float32) - 127 + sigma) * alpha
    return result.clip(0, 255).astype(np.uint8)


def widen_conv_in(unet: torch.nn.Module, channels: int) -> None:
    old = unet.conv_in
    with torch.no_grad():
        new = torch.nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding)
        new.weight.zero_()
        new.weight[:, :4, :, :].copy_(old.weight)
        new.bias = old.bias
        unet.conv_in = new


def merge_offsets(unet: torch.nn.Module, offsets: Mapping[str, torch.Tensor]) -> None:
    """Every key of the (widened) state dict plus its offset; diffusers names."""
    origin = unet.state_dict()
    merged = {key: origin[key] + offsets[key] for key in origin.keys()}
    unet.load_state_dict(merged, strict=True)


def hook_forward(unet: torch.nn.Module) -> None:
    """``unet(sample, t, ctx, cross_attention_kwargs={"concat_conds": c})`` concatenates ``c``."""
    original_forward = unet.forward

    def hooked_forward(sample, timestep, encoder_hidden_states, **kwargs):
        c_concat = kwargs["cross_attention_kwargs"]["concat_conds"].to(sample)
        c_concat = torch.cat([c_concat] * (sample.shape[0] // c_concat.shape[0]), dim=0)
        new_sample = torch.cat([sample, c_concat], dim=1)
        kwargs["cross_attention_kwargs"] = {}
        return original_forward(new_sample, timestep, encoder_hidden_states, **kwargs)

    unet.forward = hooked_forward


def ic_light_unet(unet: torch.nn.Module, offsets: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The demo's UNet set-up, in its order: conv_in surgery, hook, offset merge."""
    widen_conv_in(unet, offsets["conv_in.weight"].shape[1])
    hook_forward(unet)
    merge_offsets(unet, offsets)
    return unet


@torch.no_grad()
def encode_conditioning(vae: torch.nn.Module, images: Sequence[np.ndarray]) -> torch.Tensor:
    """``[fg]`` or ``[fg, bg]`` (HWC uint8 at the generation size) -> [1, 4 or 8, h, w]."""
    pixels = numpy2pytorch(list(images)).to(device=vae.device, dtype=vae.dtype)
    latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
    return torch.cat([latent[None, ...] for latent in latents], dim=1)


@torch.no_grad()
def noise_prediction(unet: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor,
                     context: torch.Tensor, concat: torch.Tensor) -> torch.Tensor:
    """One call of the hooked UNet, as the pipeline makes it (cond and uncond in one batch)."""
    return unet(sample, timestep, context, cross_attention_kwargs={"concat_conds": concat}).sample

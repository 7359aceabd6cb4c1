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
* the light maps (``process``'s ``bg_source`` branches): fc LEFT/RIGHT/TOP/BOTTOM are
  ``np.linspace(255, 0, n)`` (LEFT, TOP) or ``np.linspace(0, 255, n)`` (RIGHT, BOTTOM)
  tiled and truncated to uint8; the fbc backgrounds the same with 224 and 32, plus
  UPLOAD (the image as is), UPLOAD_FLIP (``np.fliplr``) and GREY (zeros + 64).

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


# --------------------------------------------------------------------- light maps
# gradio_demo.py and gradio_demo_bg.py ``process``: the ``bg_source`` branches that draw
# ``input_bg`` before the resize-and-crop.


def _horizontal(gradient: np.ndarray, height: int) -> np.ndarray:
    image = np.tile(gradient, (height, 1))
    return np.stack((image,) * 3, axis=-1).astype(np.uint8)


def _vertical(gradient: np.ndarray, width: int) -> np.ndarray:
    image = np.tile(gradient, (1, width))
    return np.stack((image,) * 3, axis=-1).astype(np.uint8)


def reference_fc_light_map(source: str, width: int, height: int) -> np.ndarray:
    """``gradio_demo.py``'s ``input_bg`` for BGSource LEFT/RIGHT/TOP/BOTTOM: HWC uint8."""
    if source == "LEFT":
        return _horizontal(np.linspace(255, 0, width), height)
    if source == "RIGHT":
        return _horizontal(np.linspace(0, 255, width), height)
    if source == "TOP":
        return _vertical(np.linspace(255, 0, height)[:, None], width)
    if source == "BOTTOM":
        return _vertical(np.linspace(0, 255, height)[:, None], width)
    raise ValueError(f"the fc demo has no light map {source!r}")


def reference_fbc_background(source: str, input_bg: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """``gradio_demo_bg.py``'s ``input_bg`` for each BGSource (UPLOAD, UPLOAD_FLIP, GREY,
    LEFT, RIGHT, TOP, BOTTOM): HWC uint8, before its resize-and-crop."""
    if source == "UPLOAD":
        return input_bg
    if source == "UPLOAD_FLIP":
        return np.fliplr(input_bg)
    if source == "GREY":
        return np.zeros(shape=(height, width, 3), dtype=np.uint8) + 64
    if source == "LEFT":
        return _horizontal(np.linspace(224, 32, width), height)
    if source == "RIGHT":
        return _horizontal(np.linspace(32, 224, width), height)
    if source == "TOP":
        return _vertical(np.linspace(224, 32, height)[:, None], width)
    if source == "BOTTOM":
        return _vertical(np.linspace(32, 224, height)[:, None], width)
    raise ValueError(f"the fbc demo has no background source {source!r}")


# --------------------------------------------------------------------- normal map
# gradio_demo_bg.py ``process_normal``: the combination of the four relights, from the
# point where they exist (float32 HWC 0..1, ``pytorch2numpy(quant=False)``) and the
# matting has been brought to their size as uint8 (the demo's
# ``resize_and_center_crop((matting[..., 0] * 255.0).clip(0, 255).astype(np.uint8), w, h)``).
# Only the normal map is returned; the demo's other outputs are the relights themselves.


def reference_normal_map(left: np.ndarray, right: np.ndarray, bottom: np.ndarray, top: np.ndarray,
                         matting: np.ndarray) -> np.ndarray:
    """Four float32 HWC 0..1 relights and an HW uint8 matting at their size -> HWC uint8."""
    ambient = (left + right + bottom + top) / 4.0
    matting = matting.astype(np.float32)[..., None] / 255.0

    def safa_divide(a, b):
        e = 1e-5
        return ((a + e) / (b + e)) - 1.0

    left = safa_divide(left, ambient)
    right = safa_divide(right, ambient)
    bottom = safa_divide(bottom, ambient)
    top = safa_divide(top, ambient)

    u = (right - left) * 0.5
    v = (top - bottom) * 0.5

    sigma = 10.0
    u = np.mean(u, axis=2)
    v = np.mean(v, axis=2)
    h = (1.0 - u ** 2.0 - v ** 2.0).clip(0, 1e5) ** (0.5 * sigma)
    z = np.zeros_like(h)

    normal = np.stack([u, v, h], axis=2)
    normal /= np.sum(normal ** 2.0, axis=2, keepdims=True) ** 0.5
    normal = normal * matting + np.stack([z, z, 1 - z], axis=2) * (1 - matting)
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)

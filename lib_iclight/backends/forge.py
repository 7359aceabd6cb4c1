"""Forge 2 adapter (``backend`` package, Gradio 4).

``forge_objects.unet`` is a ``backend.patcher.unet.UnetPatcher`` around a ``KModel``.
``add_patches(*, filename, ...)`` queues patches under an identifier; ``LoraLoader.refresh``
merges them when the patcher is loaded, skips the merge while the identifiers are those
merged, and restores the originals first otherwise. ``merge_lora_to_weight`` zero-pads a
weight for a larger 4-D diff (probed): that is how conv_in grows. The VAE encodes BHWC
pixels in 0..1 into unscaled latents; ``first_stage_model.process_in`` scales them.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

import torch

from .. import images
from ..weights import ICModelInfo, ICOffsets, load_offsets
from . import forge_common as common

logger = logging.getLogger("iclight.backends.forge")


def _posterior_mode(posterior: Any) -> torch.Tensor:
    """VAE regulation: the deterministic mode (mean) instead of a sample."""
    return posterior.mode()


def _merge_function() -> Any:
    """``backend.patcher.lora.merge_lora_to_weight(patches, weight, key, computation_dtype)``."""
    return importlib.import_module("backend.patcher.lora").merge_lora_to_weight


def _check_patcher_api(unet: Any) -> None:
    """Refuse the early August 2024 builds, whose ``add_patches`` had no identifier."""
    try:
        params = inspect.signature(unet.add_patches).parameters
    except (TypeError, ValueError):
        params = {}
    if "filename" not in params:
        raise RuntimeError("IC Light: this Forge build is too old (add_patches takes no filename); please update Forge")


class ForgeBackend(common.KeptMergeBackend):
    """The adapter for Forge 2 (lllyasviel/stable-diffusion-webui-forge, ``backend``)."""

    name = "forge"
    family = "forge"

    def encode(self, p: Any, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] uint8 -> [B, 4, H/8, W/8] scaled posterior mode on the UNet's device."""
        objects = p.sd_model.forge_objects
        vae = objects.vae
        # A clone carries the regulation without touching the VAE the WebUI decodes with.
        encoder = vae.clone()
        if hasattr(encoder.patcher, "set_model_vae_regulation"):
            encoder.patcher.set_model_vae_regulation(_posterior_mode)
        else:  # pragma: no cover - every Forge 2 with keyword add_patches has it
            logger.warning("IC Light: this Forge VAE cannot return the posterior mode; using a sample")
        with torch.no_grad():
            # Forge's VAE.encode maps BHWC 0..1 by 2 * p - 1 (no clamp): fed x / 254.
            latent = encoder.encode(images.vae_pixels(pixels, webui_maps_unit_range=True).movedim(1, -1))
            latent = vae.first_stage_model.process_in(latent)
        return latent.to(device=objects.unet.load_device, dtype=torch.float32)

    def load_offsets(self, info: ICModelInfo) -> ICOffsets:
        """Loaded offsets in the file's own dtype, through the shared cache: the patcher
        holds them while the IC-Light clone lives, and Forge's merge casts them."""
        return load_offsets(info)

    def install(self, p: Any, offsets: ICOffsets, concat: torch.Tensor) -> None:
        _check_patcher_api(common.check_sd15(p.sd_model))
        self.install_clone(p, offsets, concat, self._make_clone)

    def _make_clone(self, base: Any, offsets: ICOffsets, concat: torch.Tensor) -> common.InstalledClone:
        merge = _merge_function()
        style = common.padding_style(merge, merge)
        if style is None:
            raise RuntimeError("IC Light: this Forge build cannot widen conv_in (its merge does not pad); please update Forge")
        common.check_offset_shapes(base.model, offsets)
        patches = common.patch_set(offsets, style)
        clone = base.clone()
        # The same identifier again replaces the entry, so this never stacks.
        added = clone.add_patches(filename=patches.identifier, patches=patches.patches,
                                  strength_patch=1.0, strength_model=1.0, online_mode=False)
        common.require_all_patches(added, patches)
        return self.attach_concat(base, clone, offsets, patches, concat)

    def cleanup(self, p: Any, keep_merged: bool = True) -> None:
        """Put the base patcher back. With ``keep_merged`` the IC-Light clone stays loaded
        and merged, as Forge keeps a LoRA; without it, the weights are restored now (as
        Forge's next load would), through Forge's own loader."""
        for entry in self.clones_to_restore(p, keep_merged):
            loader = getattr(entry.clone.model, "lora_loader", None)
            try:
                if loader is not None and entry.patches.identifier in str(getattr(loader, "loaded_hash", "")):
                    loader.refresh(lora_patches=entry.base.lora_patches, offload_device=entry.base.offload_device)
            except Exception:  # noqa: BLE001 - the next sampling call restores them anyway
                logger.warning("IC Light: could not restore the UNet weights now; Forge restores them "
                               "before the next generation", exc_info=True)
        if not keep_merged:
            self.observe(p)

"""Forge 2 adapter (``backend`` package, Gradio 4).

Where things are in Forge 2:

* ``p.sd_model.forge_objects.unet`` is a ``backend.patcher.unet.UnetPatcher`` around a
  ``KModel`` whose ``diffusion_model`` is an ldm-keyed UNet. ``modules/processing.py``
  resets ``forge_objects`` from ``forge_objects_after_applying_lora`` right before each
  ``process_before_every_sampling`` call (txt2img, img2img, and the hires pass, which calls
  the hook once before the reset and once after it).
* ``add_patches(*, filename, patches, strength_patch, strength_model, online_mode)`` queues
  patches under the identifier ``(filename, strength_patch, strength_model, online_mode)``.
  ``LoraLoader.refresh`` merges them when the patcher is loaded for sampling, skips the
  merge while the identifiers are those already merged, and otherwise first restores the
  originals it backed up. ``merge_lora_to_weight`` zero-pads a weight when a 4-D diff is
  larger: that is how conv_in grows to 8 / 12 input channels. While an IC-Light clone is in
  use or kept, IC-Light wraps that module function so that its own offsets are added in one
  add (:mod:`.fast_merge`: the tensor Forge's clone, cast, scale and add would make).
* The VAE (``backend.patcher.vae.VAE``) encodes BHWC pixels in 0..1 into *unscaled* latents;
  ``first_stage_model.process_in`` applies the scale factor. A ``model_vae_regulation`` in
  the VAE patcher's options picks what to take from the posterior (the mode, here).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

import torch

from .. import images
from ..weights import ICModelInfo, ICOffsets, load_offsets
from . import fast_merge, merge_hooks
from . import forge_common as common

logger = logging.getLogger("iclight.backends.forge")


def _posterior_mode(posterior: Any) -> torch.Tensor:
    """VAE regulation: the deterministic mode (mean) instead of a sample."""
    return posterior.mode()


def _merge_site() -> merge_hooks.MergeSite:
    """Where ``LoraLoader.refresh`` finds its merge: the module function
    ``backend.patcher.lora.merge_lora_to_weight(patches, weight, key, computation_dtype)``."""
    return merge_hooks.MergeSite(importlib.import_module("backend.patcher.lora"), False, "merge_lora_to_weight")


def _merge_function() -> Any:
    """Forge 2's own ``merge_lora_to_weight``, without IC-Light's wrapper."""
    return _merge_site().original


def _make_merge(original: Any, is_method: bool) -> Any:
    """``merge_lora_to_weight`` that merges IC-Light's own plain offsets in one add
    (:func:`fast_merge.fresh_sum`: the tensor Forge's code makes) and leaves every other
    call, the online LoRAs of ``backend.operations`` included, to ``original``."""

    def merge_lora_to_weight(patches: Any, weight: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        diff = fast_merge.own_plain_diff(patches, weight)
        if diff is not None:
            dtype = kwargs.get("computation_dtype", args[1] if len(args) > 1 else torch.float32)
            return fast_merge.fresh_sum(weight, diff, dtype)
        return original(patches, weight, *args, **kwargs)

    return merge_lora_to_weight


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

    def check_model(self, p: Any) -> None:
        common.check_sd15(p.sd_model)

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

    def vae_fingerprint(self, p: Any) -> tuple:
        return common.vae_fingerprint(p.sd_model.forge_objects.vae.first_stage_model)

    def load_offsets(self, info: ICModelInfo) -> ICOffsets:
        """Loaded offsets in the file's own dtype, through the shared cache: the patcher
        holds them while the IC-Light clone lives; a merge adds each to the weight as it is
        (fp16 and bf16 promoted inside the add, fp8 cast once), see :mod:`.fast_merge`."""
        return load_offsets(info)

    def install(self, p: Any, offsets: ICOffsets, concat: torch.Tensor) -> None:
        unet = common.check_sd15(p.sd_model)
        _check_patcher_api(unet)
        common.install_clone(p, offsets, concat, self._make_clone, self.keeper)
        # Before Forge loads the clone (and merges), also for a kept clone merged again.
        site = _merge_site()
        merge_hooks.install(site, _make_merge)
        self.hooked(site)

    def _make_clone(self, base: Any, offsets: ICOffsets, concat: torch.Tensor) -> common.InstalledClone:
        merge = _merge_function()
        style = common.padding_style(merge, merge)
        if style is None:
            raise RuntimeError("IC Light: this Forge build cannot widen conv_in (its merge does not pad); please update Forge")
        common.check_offset_shapes(base.model, offsets)
        patches = common.patch_set(offsets, style)
        clone = base.clone()
        # Same identifier again replaces the entry, so this never stacks.
        added = clone.add_patches(
            filename=patches.identifier, patches=patches.patches,
            strength_patch=1.0, strength_model=1.0, online_mode=False,
        )
        common.require_all_patches(added, patches)
        return common.attach_concat(base, clone, offsets, patches, concat, self.watch)

    def cleanup(self, p: Any, keep_merged: bool = True) -> None:
        """Put the base patcher back. With ``keep_merged`` the IC-Light clone stays loaded
        and merged, as Forge keeps a LoRA: the next IC-Light generation reuses it, and the
        next plain one has Forge restore the weights when it loads the base patcher.
        Without it, the weights are restored now (as that next load would)."""
        for entry in self.clones_to_restore(p, keep_merged):
            loader = getattr(entry.clone.model, "lora_loader", None)
            try:
                if loader is not None and entry.patches.identifier in str(getattr(loader, "loaded_hash", "")):
                    loader.refresh(lora_patches=entry.base.lora_patches, offload_device=entry.base.offload_device)
            except Exception:  # noqa: BLE001 - the next sampling call restores them anyway
                logger.warning("IC Light: could not restore the UNet weights now; Forge restores them "
                               "before the next generation", exc_info=True)
        if not keep_merged:
            self.unhook_merges()
            self.observe(p)

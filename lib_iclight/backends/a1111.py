"""AUTOMATIC1111 1.10 adapter: the core UNet patch, opened exactly around each sampler call.

Where the patch lives: ``p.sd_model.model.diffusion_model`` (an ldm ``UNetModel``,
reached by the sampler through CFGDenoiser -> CompVisDenoiser -> apply_model ->
DiffusionWrapper). ``install`` wraps the sampler that is about to run
(``p.sampler.sample`` / ``sample_img2img``); the wrapper applies the patch when sampling
starts and removes it in ``finally``. So the UNet is restored after success, an
interrupt (A1111 returns the last latent normally), an exception, and *before* a hires
checkpoint swap, which happens between the two sampler calls.

LoRA: the built-in Lora extension applies its weights lazily, on a module's first
forward of a generation, and backs the "original" weight up at that moment. That first
forward happens inside our window, where the weight is base + IC offset, so Lora would
back up the wrong original, or restore from its backup over our merge. Before opening
the window we therefore let Lora settle every module we are about to patch
(``networks.network_apply_weights``), so inside the window Lora sees nothing to do.
As a second guard, Lora's per-module bookkeeping is put back after the window exactly
as it was before, so nothing Lora did in the window can outlive it.

Between generations the backend keeps the last patch and its merged weights (one UNet
copy, never more: a different model or UNet releases the old merges before merging)
and reads no offsets at all while they still fit. A merge goes stale when its original
parameter changes (checkpoint loaded in place, a LoRA applied or removed, a dtype or
device move): only those parameters are merged again, reading just their offsets from
the file. With ``--lowvram``/``--medvram`` (modules move between devices on every
generation) or the setting off, the merges are dropped after each generation instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from typing import Any, Callable, Iterator

import torch

from .. import images
from ..weights import ICModelInfo, ICOffsets, OffsetFile
from .base import PerGeneration, module_fingerprint, refuse_other_families, refuse_other_input
from .status import MergeLedger
from .unet_patch import CONV_IN, UNetPatch

logger = logging.getLogger("iclight.backends.a1111")

_LORA_ATTRS = ("network_current_names", "network_weights_backup", "network_bias_backup")
_SAMPLER_METHODS = ("sample", "sample_img2img")
_WRAPPED = "_iclight_wrapped"


def wrap_sampler(p: Any, around: Callable[[Callable[..., Any]], Callable[..., Any]]) -> bool:
    """Wrap ``p.sampler``'s sampling methods once with ``around(original) -> replacement``:
    the IC-Light window opens exactly for the sampler call. Idempotent per sampler object;
    False when there is no sampler (the caller must then fail loudly)."""
    sampler = getattr(p, "sampler", None)
    if sampler is None:
        return False
    if not getattr(sampler, _WRAPPED, False):
        for name in _SAMPLER_METHODS:
            original = getattr(sampler, name, None)
            if callable(original):
                setattr(sampler, name, functools.wraps(original)(around(original)))
        setattr(sampler, _WRAPPED, True)
    return True


def unet_of(p: Any) -> torch.nn.Module:
    """The ldm UNetModel A1111 samples with."""
    return p.sd_model.model.diffusion_model


def _lora_settle() -> Callable[[torch.nn.Module], None] | None:
    """A1111's Lora ``network_apply_weights`` if the built-in Lora extension is loaded."""
    networks = sys.modules.get("networks")
    apply = getattr(networks, "network_apply_weights", None)
    return apply if callable(apply) else None


@contextlib.contextmanager
def _lora_guard(modules: list[torch.nn.Module]) -> Iterator[None]:
    settle = _lora_settle()
    if settle is not None:
        for module in modules:
            settle(module)
    saved = [(module, {name: module.__dict__[name] for name in _LORA_ATTRS if name in module.__dict__}) for module in modules]
    try:
        yield
    finally:
        for module, attrs in saved:
            for name in _LORA_ATTRS:
                if name in attrs:
                    if module.__dict__.get(name) is not attrs[name]:
                        logger.warning("IC Light: Lora state of a %s changed during sampling; restored", type(module).__name__)
                    module.__dict__[name] = attrs[name]
                elif name in module.__dict__:
                    logger.warning("IC Light: Lora backed up a %s during sampling; dropped that backup", type(module).__name__)
                    del module.__dict__[name]


def _source_key(offsets: OffsetFile | ICOffsets) -> tuple:
    if isinstance(offsets, OffsetFile):
        return ("file", offsets.identity, offsets.dtype)
    return ("memory", id(offsets.tensors))


class A1111Backend:
    """The adapter for AUTOMATIC1111's WebUI (ldm UNet, ldm VAE)."""

    name = "a1111"
    family = "a1111"

    def __init__(self) -> None:
        self._patches: PerGeneration[dict[int, UNetPatch]] = PerGeneration()
        """Per generation (``p``, held weakly): the patch of each UNet it sampled."""
        self._kept: UNetPatch | None = None
        self._kept_key: tuple | None = None
        self._kept_name: str | None = None
        self.ledger = MergeLedger()

    def unet_module(self, p: Any) -> torch.nn.Module:
        return unet_of(p)

    def load_offsets(self, info: ICModelInfo) -> OffsetFile:
        """The model as a lazily read file: the kept merges are the cache (see module doc)."""
        return OffsetFile(info)

    def _patch_for(self, unet: torch.nn.Module, offsets: OffsetFile | ICOffsets) -> UNetPatch:
        key = (id(unet), _source_key(offsets))
        kept = self._kept
        if kept is not None and kept.unet is unet and self._kept_key == key:
            return kept
        self.release_kept()  # before merging anew: never two merged copies at once
        source = offsets if isinstance(offsets, OffsetFile) else offsets.tensors
        self._kept, self._kept_key, self._kept_name = UNetPatch(unet, source), key, offsets.info.name
        return self._kept

    def release_kept(self) -> None:
        """Drop the merged weights kept between generations (frees one UNet copy)."""
        if self._kept is not None and not self._kept.active:
            self._kept.release()
        self._kept = self._kept_key = self._kept_name = None

    def check_model(self, p: Any) -> None:
        refuse_other_families(p.sd_model)
        refuse_other_input(unet_of(p).get_submodule(CONV_IN).weight.shape[1])

    def encode(self, p: Any, pixels: torch.Tensor) -> torch.Tensor:
        from modules import devices  # the device and VAE dtype A1111 chose (--no-half-vae, lowvram...)

        model = p.sd_model
        pixels = images.vae_pixels(pixels).to(device=devices.device, dtype=devices.dtype_vae)
        with torch.no_grad():
            posterior = model.encode_first_stage(pixels)
            latent = posterior.mode() if hasattr(posterior, "mode") else posterior
            return (latent * model.scale_factor).to(devices.device)

    def vae_fingerprint(self, p: Any) -> tuple:
        return (*module_fingerprint(p.sd_model.first_stage_model), getattr(p.sd_model, "sd_model_hash", None))

    def install(self, p: Any, offsets: OffsetFile | ICOffsets, concat: torch.Tensor) -> None:
        self.check_model(p)
        unet = unet_of(p)
        patch = self._patch_for(unet, offsets)
        self._patches.setdefault(p, dict)[id(unet)] = patch
        patch.check()
        patch.set_concat(concat)

        name = offsets.info.name
        ledger = self.ledger

        def around(sample: Callable[..., Any]) -> Callable[..., Any]:
            def sample_with_ic_light(*args: Any, **kwargs: Any) -> Any:
                with _lora_guard(patch.target_modules()):
                    merged_before = patch.merges
                    patch.apply()
                    try:
                        if patch.merges != merged_before:
                            ledger.merged(name)
                        return sample(*args, **kwargs)
                    finally:
                        patch.remove()
                        ledger.restored()

            return sample_with_ic_light

        if not wrap_sampler(p, around):
            raise RuntimeError("IC Light: no sampler to run on; this WebUI version is not supported")

    def cleanup(self, p: Any, keep_merged: bool = True) -> None:
        patches = self._patches.pop(p)
        if patches is None:
            return
        for patch in patches.values():
            patch.remove()  # the sampler wrapper already did, unless sampling never ran
            if patch is not self._kept:
                patch.release()
        # lowvram/medvram move modules between devices each generation: merges kept on
        # one device would hold memory there and go stale anyway.
        if not keep_merged or getattr(p.sd_model, "lowvram", False):
            self.release_kept()

    def observe(self, p: Any) -> None:
        """Nothing to look at: this adapter merges and restores itself and tells the ledger."""

    def unet_status(self, sd_model: Any) -> dict[str, Any]:
        """The ledger; the UNet holds IC-Light only while sampling, the kept merges sit beside it."""
        kept = self._kept
        return {
            **self.ledger.snapshot().as_dict(),
            "kept_merges": None if kept is None else self._kept_name,
            "kept_merges_bytes": 0 if kept is None else kept.merged_bytes,
        }

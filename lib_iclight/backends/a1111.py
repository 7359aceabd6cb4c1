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
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from ..errors import ICLightError
from ..unet_patch import CONV_IN, UNetPatch, tensor_version
from ..weights import ICOffsets
from . import tripwire

logger = logging.getLogger("iclight.backends.a1111")

_LORA_ATTRS = ("network_current_names", "network_weights_backup", "network_bias_backup")
_STATE = "_iclight_a1111"


@dataclass
class _GenerationState:
    """What one generation (one ``p``) holds between hooks: a patch per UNet seen."""

    patches: dict[int, UNetPatch] = field(default_factory=dict)
    concat: torch.Tensor | None = None


def _state(p: Any) -> _GenerationState:
    state = getattr(p, _STATE, None)
    if state is None:
        state = _GenerationState()
        setattr(p, _STATE, state)
    return state


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


class A1111Backend:
    """The adapter for AUTOMATIC1111's WebUI (ldm UNet, ldm VAE)."""

    name = "a1111"

    def check_model(self, p: Any) -> None:
        model = p.sd_model
        for flag, family in (("is_sdxl", "SDXL"), ("is_sd3", "SD3"), ("is_sd2", "SD2")):
            if getattr(model, flag, False):
                raise ICLightError("model_type", f"IC-Light needs an SD1.5 checkpoint, but the loaded one is {family}")
        conv_in = unet_of(p).get_submodule(CONV_IN)
        channels = conv_in.weight.shape[1]
        if channels != 4:
            kind = "an inpainting checkpoint" if channels == 9 else f"a checkpoint whose UNet takes {channels} channels"
            raise ICLightError("model_type", f"IC-Light needs a plain SD1.5 checkpoint (4-channel UNet input), but the loaded one is {kind}")

    def encode(self, p: Any, pixels: torch.Tensor) -> torch.Tensor:
        from modules import devices  # the device and VAE dtype A1111 chose (--no-half-vae, lowvram...)

        model = p.sd_model
        pixels = pixels.to(device=devices.device, dtype=devices.dtype_vae)
        with torch.no_grad():
            posterior = model.encode_first_stage(pixels * 2.0 - 1.0)
            latent = posterior.mode() if hasattr(posterior, "mode") else posterior
            return (latent * model.scale_factor).to(devices.device)

    def vae_fingerprint(self, p: Any) -> tuple:
        vae = p.sd_model.first_stage_model
        first = next(vae.parameters(), None)
        # load_state_dict copies into the same Parameters, bumping their version counter
        if first is None:
            return id(vae), getattr(p.sd_model, "sd_model_hash", None)
        return id(vae), first.data_ptr(), tensor_version(first), getattr(p.sd_model, "sd_model_hash", None)

    def install(self, p: Any, offsets: ICOffsets, concat: torch.Tensor) -> None:
        self.check_model(p)
        unet = unet_of(p)
        state = _state(p)
        patch = state.patches.get(id(unet))
        if patch is None or patch.unet is not unet or patch.offsets is not offsets.tensors:
            patch = UNetPatch(unet, offsets.tensors)
            state.patches[id(unet)] = patch
        patch.check()
        patch.set_concat(concat)

        def around(sample: Callable[..., Any]) -> Callable[..., Any]:
            def sample_with_ic_light(*args: Any, **kwargs: Any) -> Any:
                with _lora_guard(patch.target_modules()), patch:
                    return sample(*args, **kwargs)

            return sample_with_ic_light

        if not tripwire.wrap_sampler(p, around):
            raise RuntimeError("IC Light: no sampler to run on; this WebUI version is not supported")

    def cleanup(self, p: Any) -> None:
        state = getattr(p, _STATE, None)
        if state is None:
            return
        for patch in state.patches.values():
            patch.release()
        state.patches.clear()
        delattr(p, _STATE)

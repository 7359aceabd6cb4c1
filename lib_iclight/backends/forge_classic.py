"""Forge Classic and reForge adapter (``ldm_patched``, ComfyUI's ``ModelPatcher`` lineage).

``forge_objects.unet`` is a ``UnetPatcher`` on ComfyUI's ``ModelPatcher``: ``add_patches``
keeps patches on a clone, ``patch_model`` merges them when the clone is loaded and
``unpatch_model`` restores the backups when another patcher is loaded. Padding conv_in
differs by version and is probed: Forge Classic's ``calculate_weight`` pads any wider 4-D
diff, reForge's (``ldm_patched.modules.lora``) pads with ``{"pad_weight": True}``, older
builds (reForge ``main-old``, the early-2024 ComfyUI the tests run) never pad: there alone,
while an IC-Light clone may be merged, a shim pads the weight for IC-Light's conv_in diff.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .. import images
from ..errors import ICLightConflict
from ..weights import ICModelInfo, ICOffsets, load_offsets
from . import forge_common as common

logger = logging.getLogger("iclight.backends.forge_classic")

_SHIM = "__iclight_shim__"


@dataclass(frozen=True)
class MergeSite:
    """Where the WebUI's ``calculate_weight`` lives: a module function, or a method of the
    class in the patcher's MRO that defines it (``is_method``)."""

    owner: Any
    is_method: bool
    name: str = "calculate_weight"

    @property
    def current(self) -> Callable:
        return self.owner.__dict__[self.name] if self.is_method else getattr(self.owner, self.name)

    @property
    def original(self) -> Callable:
        fn = self.current
        return fn.__wrapped__ if getattr(fn, _SHIM, False) else fn


def _method_site(patcher: Any, name: str) -> MergeSite | None:
    cls = next((c for c in type(patcher).__mro__ if name in vars(c)), None)
    return None if cls is None else MergeSite(cls, True, name)


def merge_site(patcher: Any) -> MergeSite:
    """reForge's module function ``ldm_patched.modules.lora.calculate_weight``, else the
    patcher class's method (Forge Classic, older builds)."""
    try:
        lora = importlib.import_module("ldm_patched.modules.lora")
    except Exception:  # noqa: BLE001 - not every build has it
        lora = None
    if lora is not None and callable(getattr(lora, "calculate_weight", None)):
        return MergeSite(lora, False)
    site = _method_site(patcher, "calculate_weight")
    if site is None:
        raise RuntimeError("IC Light: cannot find this WebUI's calculate_weight; this version is not supported")
    return site


def _probe_callable(site: MergeSite, patcher: Any) -> Callable[[list, torch.Tensor, str], torch.Tensor]:
    original = site.original
    return (lambda patches, weight, key: original(patcher, patches, weight, key)) if site.is_method else original


_to_pad: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()
"""Conv_in diffs of installed IC-Light models that this build cannot pad, by id."""


def _pad_for_ours(patches: Any, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` zero-padded to IC-Light's conv_in diff if ``patches`` holds one wider than it."""
    for entry in patches:
        value = entry[1] if len(entry) > 1 else None
        diff = value[0] if isinstance(value, tuple) and len(value) == 1 else None
        if (isinstance(diff, torch.Tensor) and _to_pad.get(id(diff)) is diff and diff.ndim == weight.ndim == 4
                and diff.shape != weight.shape):
            padded = weight.new_zeros([max(a, b) for a, b in zip(weight.shape, diff.shape)])
            padded[: weight.shape[0], : weight.shape[1], : weight.shape[2], : weight.shape[3]] = weight
            return padded
    return weight


def install_shim(site: MergeSite, conv_in_diff: torch.Tensor) -> None:
    """Wrap ``site``'s calculate_weight so that it pads the weight for ``conv_in_diff``
    (idempotent; the WebUI's function does the merge)."""
    _to_pad[id(conv_in_diff)] = conv_in_diff
    current = site.current
    if getattr(current, _SHIM, False):
        return
    at = 1 if site.is_method else 0  # where ``patches`` is: after ``self`` for a method

    def calculate_weight(*args: Any, **kwargs: Any) -> Any:
        args = (*args[: at + 1], _pad_for_ours(args[at], args[at + 1]), *args[at + 2:])
        return current(*args, **kwargs)

    functools.update_wrapper(calculate_weight, current)  # __wrapped__ = current
    setattr(calculate_weight, _SHIM, True)
    setattr(site.owner, site.name, calculate_weight)
    logger.info("IC Light: this WebUI does not pad a wider conv_in diff; padding it while IC-Light is in use")


def remove_shim(site: MergeSite) -> None:
    """Put the WebUI's calculate_weight back, if the shim is still the one installed."""
    current = site.current
    if getattr(current, _SHIM, False):
        setattr(site.owner, site.name, current.__wrapped__)
    elif getattr(current, "__wrapped__", None) is not None:
        logger.warning("IC Light: %s was wrapped again by someone else; leaving it as it is", site.name)


def _webui_flavour() -> str:
    """"forge-classic" or "reforge", for logs and the tiling check; both run the same code."""
    if "classic" in str(getattr(sys.modules.get("modules_forge.forge_version"), "version", "")).lower():
        return "forge-classic"
    try:
        found = "ldm_patched.modules.patcher_extension" in sys.modules or importlib.util.find_spec(
            "ldm_patched.modules.patcher_extension") is not None
        return "reforge" if found else "forge-classic"
    except Exception:  # noqa: BLE001 - no ldm_patched.modules: not reForge
        return "forge-classic"


def _is_loaded(patcher: Any) -> bool:
    """Whether ``patcher`` is among the ``model_management`` module's loaded models."""
    site = _method_site(patcher, "unpatch_model")
    package = site.owner.__module__.rpartition(".")[0] if site is not None else None
    management = sys.modules.get(f"{package}.model_management" if package else "model_management")
    return any(getattr(entry, "model", None) is patcher for entry in getattr(management, "current_loaded_models", ()))


def refuse_reforge_tiling(webui: str, unet: Any) -> None:
    """Raise ICLightConflict on reForge when its MultiDiffusion Integrated tiles the UNet: its
    tiler (``tiled_diffusion.py`` at 3b56b268, l. 506-522) fails with ``'int' object has no
    attribute 'slicer'`` on IC-Light's ``c_concat``. Forge 2's crops it per tile."""
    if webui == "reforge" and getattr(unet, "model_options", {}).get("tiled_diffusion"):
        raise ICLightConflict(
            "reForge's MultiDiffusion Integrated samples the UNet in tiles but cannot crop IC-Light's "
            "conditioning to a tile; turn MultiDiffusion off for IC-Light generations"
        )


class ForgeClassicBackend(common.KeptMergeBackend):
    """The adapter for Forge Classic (Haoming02) and reForge (Panchovix)."""

    family = "forge-classic"

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name or _webui_flavour()
        self._shimmed: set[MergeSite] = set()

    def encode(self, p: Any, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] uint8 -> [B, 4, H/8, W/8] scaled posterior mode on the UNet's device."""
        objects = p.sd_model.forge_objects
        vae = objects.vae
        regularization = getattr(getattr(vae, "first_stage_model", None), "regularization", None)
        sampled = getattr(regularization, "sample", None)
        with torch.no_grad():
            try:
                if isinstance(sampled, bool):
                    regularization.sample = False  # the posterior mode: deterministic
                # ComfyUI's VAE.encode maps BHWC 0..1 by 2 * p - 1 (no clamp): fed x / 254.
                latent = vae.encode(images.vae_pixels(pixels, webui_maps_unit_range=True).movedim(1, -1))
            finally:
                if isinstance(sampled, bool):
                    regularization.sample = sampled
            fmt = getattr(getattr(objects.unet.model, "model_config", None), "latent_format", None)
            latent = fmt.process_in(latent) if fmt is not None else latent * float(getattr(p.sd_model, "scale_factor", 0.18215))
        return latent.to(device=objects.unet.load_device, dtype=torch.float32)

    def load_offsets(self, info: ICModelInfo) -> ICOffsets:
        """Loaded offsets in the file's own dtype, through the shared cache: the patcher
        holds them while the IC-Light clone lives, and the WebUI's merge casts them."""
        return load_offsets(info)

    def install(self, p: Any, offsets: ICOffsets, concat: torch.Tensor) -> None:
        unet = common.check_sd15(p.sd_model)
        if getattr(unet, "weight_inplace_update", False):
            raise RuntimeError("IC Light: in-place weight updates cannot widen conv_in; not supported")
        refuse_reforge_tiling(self.name, unet)
        entry = self.install_clone(p, offsets, concat, self._make_clone)
        # A kept clone may be merged again (after a plain generation unpatched it).
        site, style = self._padding(entry.clone)
        if style is None:
            install_shim(site, entry.patches.conv_in_value[0])
            self._shimmed.add(site)

    @staticmethod
    def _padding(patcher: Any) -> tuple[MergeSite, common.PatchStyle | None]:
        """Where ``patcher``'s merges go, and the style that merge pads in (None: neither)."""
        site = merge_site(patcher)
        return site, common.padding_style(_probe_callable(site, patcher), site.original)

    def _make_clone(self, base: Any, offsets: ICOffsets, concat: torch.Tensor) -> common.InstalledClone:
        common.check_offset_shapes(base.model, offsets)
        patches = common.patch_set(offsets, self._padding(base)[1] or "diff")
        clone = base.clone()
        queued = clone.patches.get(common.PREFIX + common.CONV_IN_KEY, [])
        if not any(len(e) > 1 and e[1] is patches.conv_in_value for e in queued):
            common.require_all_patches(clone.add_patches(patches.patches, 1.0, 1.0), patches)
        return self.attach_concat(base, clone, offsets, patches, concat)

    def observe(self, p: Any) -> None:
        """Also put the WebUI's calculate_weight back once no IC-Light clone is left to merge."""
        super().observe(p)
        if self._shimmed and self.keeper.current() is None and p not in self._generations:
            self._remove_shims()

    def release_kept(self) -> None:
        super().release_kept()
        self._remove_shims()

    def _remove_shims(self) -> None:
        for site in self._shimmed:
            remove_shim(site)
        self._shimmed.clear()

    def cleanup(self, p: Any, keep_merged: bool = True) -> None:
        """Put the base patcher back. With ``keep_merged`` the clone stays loaded and merged,
        as the WebUI keeps a LoRA; without it, the loaded clone is unpatched now."""
        restore = self.clones_to_restore(p, keep_merged)
        if keep_merged:
            return
        try:
            for entry in restore:
                # Only the loaded clone: newer builds share the backup dict between clones,
                # so unpatching one that is not loaded would undo another patcher's merge.
                if _is_loaded(entry.clone) and getattr(entry.clone, "backup", None):
                    try:
                        entry.clone.unpatch_model()
                    except Exception:  # noqa: BLE001 - the next load restores them anyway
                        logger.warning("IC Light: could not restore the UNet weights now; the WebUI restores "
                                       "them when it loads the next model", exc_info=True)
        finally:
            self._remove_shims()
            self.observe(p)

"""Forge Classic and reForge adapter (``ldm_patched``, ComfyUI's ``ModelPatcher`` lineage).

Where things are in this family:

* ``p.sd_model.forge_objects.unet`` is a ``modules_forge.unet_patcher.UnetPatcher``, a
  subclass of ``ldm_patched.modules.model_patcher.ModelPatcher``; its ``model`` is a
  ComfyUI-style ``BaseModel`` whose ``apply_model`` concatenates ``c_concat`` after the
  noisy latent. ``modules/processing.py`` resets ``forge_objects`` from
  ``forge_objects_after_applying_lora`` right before every ``process_before_every_sampling``.
* ``add_patches(patches, strength_patch, strength_model)`` is positional and keeps the
  patches on the clone. ``patch_model`` merges them when the clone is loaded for sampling
  (backing the originals up) and ``unpatch_model`` puts the backups back when another
  patcher of the same model is loaded.
* Padding the weight for a wider diff differs by version, so it is probed, not assumed:
  Forge Classic's ``ModelPatcher.calculate_weight`` pads any larger 4-D diff; reForge's
  ``ldm_patched.modules.lora.calculate_weight`` pads only when the diff carries
  ``{"pad_weight": True}``; older ComfyUI-lineage builds (reForge ``main-old``, and the
  early-2024 ComfyUI the tests run) pad never and log "WEIGHT NOT MERGED".
* While an IC-Light clone is in use or kept, a shim wraps ``calculate_weight``
  (:func:`install_shim`, :func:`remove_shim`): IC-Light's own offsets are added in one
  in-place add (:mod:`.fast_merge`, the same sum as the WebUI's four passes), and on the
  builds that cannot pad, the weight is padded for IC-Light's own conv_in diff. Every other
  call goes to the WebUI's function as it is. On Forge Classic, ``patch_model`` is wrapped
  too, so that IC-Light's own offsets are merged without the loop's copy of each weight
  (:mod:`.fast_load`).
* The VAE (``ldm_patched.modules.sd.VAE``) encodes BHWC pixels in 0..1 into unscaled
  latents, sampling the posterior through ``first_stage_model.regularization``;
  ``model.model_config.latent_format.process_in`` applies the scale factor.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import weakref
from typing import Any, Callable

import torch

from .. import images
from ..errors import ICLightConflict
from ..weights import ICModelInfo, ICOffsets, load_offsets
from . import fast_load, fast_merge, merge_hooks
from . import forge_common as common
from .merge_hooks import MergeSite

logger = logging.getLogger("iclight.backends.forge_classic")

# --------------------------------------------------------------------------------------
# Where the merge happens, and the shim around it.


def merge_site(patcher: Any) -> MergeSite:
    """Find the ``calculate_weight`` that ``patcher``'s loading calls: reForge's module
    function ``ldm_patched.modules.lora.calculate_weight``, else the method of the class in
    the patcher's MRO that defines it (Forge Classic, older builds)."""
    try:
        lora = importlib.import_module("ldm_patched.modules.lora")
    except Exception:  # noqa: BLE001 - not every build has it
        lora = None
    if lora is not None and callable(getattr(lora, "calculate_weight", None)):
        return MergeSite(lora, False)
    site = merge_hooks.method_site(patcher, "calculate_weight")
    if site is not None:
        return site
    raise RuntimeError("IC Light: cannot find this WebUI's calculate_weight; this version is not supported")


def _probe_callable(site: MergeSite, patcher: Any) -> Callable[[list, torch.Tensor, str], torch.Tensor]:
    original = site.original
    if site.is_method:
        return lambda patches, weight, key: original(patcher, patches, weight, key)
    return original


# Conv_in diffs of installed IC-Light models that this build cannot pad, by id; only these
# are padded by the shim.
_to_pad: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()


def _pad_for_ours(patches: Any, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` zero-padded to IC-Light's conv_in diff if ``patches`` holds one wider than it."""
    for entry in patches:
        value = entry[1] if len(entry) > 1 else None
        if not (isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], torch.Tensor)):
            continue
        diff = value[0]
        if _to_pad.get(id(diff)) is not diff or diff.ndim != 4 or weight.ndim != 4 or diff.shape == weight.shape:
            continue
        shape = [max(a, b) for a, b in zip(weight.shape, diff.shape)]
        padded = weight.new_zeros(shape)
        padded[: weight.shape[0], : weight.shape[1], : weight.shape[2], : weight.shape[3]] = weight
        return padded
    return weight


def _through_shim(patches: Any, weight: torch.Tensor, merge: Callable[[torch.Tensor], Any]) -> Any:
    """One ``calculate_weight`` call through the shim: IC-Light's own plain offset added in
    place (:func:`fast_merge.add_in_place`: the sum the WebUI's code makes), else
    ``merge(weight)``, the WebUI's function, with the weight padded for IC-Light's conv_in
    diff where this build cannot pad it."""
    diff = fast_merge.own_plain_diff(patches, weight)
    if diff is not None:
        return fast_merge.add_in_place(weight, diff)
    return merge(_pad_for_ours(patches, weight))


def _make_shim(original: Callable, is_method: bool) -> Callable:
    """``calculate_weight`` going :func:`_through_shim`, as a method or a module function."""
    if is_method:
        def calculate_weight(self: Any, patches: Any, weight: torch.Tensor, key: str, *args: Any, **kwargs: Any) -> Any:
            return _through_shim(patches, weight, lambda w: original(self, patches, w, key, *args, **kwargs))
    else:
        def calculate_weight(patches: Any, weight: torch.Tensor, key: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return _through_shim(patches, weight, lambda w: original(patches, w, key, *args, **kwargs))
    return calculate_weight


def install_shim(site: MergeSite, conv_in_diff: torch.Tensor | None = None) -> None:
    """Wrap ``site``'s calculate_weight with the shim (idempotent); with ``conv_in_diff``,
    the shim also pads the weight for that diff, which this build cannot do itself."""
    if conv_in_diff is not None:
        _to_pad[id(conv_in_diff)] = conv_in_diff
    if merge_hooks.install(site, _make_shim) and conv_in_diff is not None:
        logger.info("IC Light: this WebUI does not pad a wider conv_in diff; padding it while IC-Light is in use")


def remove_shim(site: MergeSite) -> None:
    """Put the original calculate_weight back, if the shim is still the one installed."""
    merge_hooks.remove(site)


# --------------------------------------------------------------------------------------
# The adapter.


def _webui_flavour() -> str:
    """"forge-classic" or "reforge", for logs; both run the same code here."""
    version = str(getattr(sys.modules.get("modules_forge.forge_version"), "version", ""))
    if "classic" in version.lower():
        return "forge-classic"
    if "ldm_patched.modules.patcher_extension" in sys.modules:
        return "reforge"
    try:
        found = importlib.util.find_spec("ldm_patched.modules.patcher_extension") is not None
    except Exception:  # noqa: BLE001
        found = False
    return "reforge" if found else "forge-classic"


def _model_management(patcher: Any) -> Any:
    """The ``model_management`` module next to the ModelPatcher class ``patcher`` derives from."""
    site = merge_hooks.method_site(patcher, "unpatch_model")
    if site is None:
        return None
    package, _, _ = site.owner.__module__.rpartition(".")
    return sys.modules.get(f"{package}.model_management" if package else "model_management")


def _is_loaded(patcher: Any) -> bool:
    management = _model_management(patcher)
    loaded = getattr(management, "current_loaded_models", None)
    if loaded is None:
        return False
    return any(getattr(entry, "model", None) is patcher for entry in loaded)


def refuse_reforge_tiling(webui: str, unet: Any) -> None:
    """Raise ICLightConflict on reForge when its MultiDiffusion Integrated tiles the UNet.

    Its tiler (``sd_forge_multidiffusion/lib_multidiffusion/tiled_diffusion.py`` at
    3b56b268, ``MultiDiffusion.__call__`` l. 506-522) crops an entry of ``c`` of the
    latent's own size by iterating one ``BBox`` as if it were a list, and fails with
    ``'int' object has no attribute 'slicer'`` on any such entry: IC-Light's ``c_concat``
    is one. Forge 2's tiler crops ``c_concat`` per tile and is not refused. Forge Classic's
    was not measured.
    """
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

    def check_model(self, p: Any) -> None:
        common.check_sd15(p.sd_model)

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
            latent = self._latent_format(p).process_in(latent)
        return latent.to(device=objects.unet.load_device, dtype=torch.float32)

    def vae_fingerprint(self, p: Any) -> tuple:
        return common.vae_fingerprint(p.sd_model.forge_objects.vae.first_stage_model)

    @staticmethod
    def _latent_format(p: Any) -> Any:
        fmt = getattr(getattr(p.sd_model.forge_objects.unet.model, "model_config", None), "latent_format", None)
        if fmt is not None:
            return fmt
        scale = float(getattr(p.sd_model, "scale_factor", 0.18215))

        class _Scale:  # the ldm LatentDiffusion attribute, if no ComfyUI latent format
            @staticmethod
            def process_in(latent: torch.Tensor) -> torch.Tensor:
                return latent * scale

        return _Scale

    def load_offsets(self, info: ICModelInfo) -> ICOffsets:
        """Loaded offsets in the file's own dtype, through the shared cache: the patcher
        holds them while the IC-Light clone lives; a merge adds each to the weight as it is
        (fp16 and bf16 promoted inside the add, fp8 cast once), see :mod:`.fast_merge`."""
        return load_offsets(info)

    def install(self, p: Any, offsets: ICOffsets, concat: torch.Tensor) -> None:
        unet = common.check_sd15(p.sd_model)
        if getattr(unet, "weight_inplace_update", False):
            raise RuntimeError("IC Light: in-place weight updates cannot widen conv_in; not supported")
        refuse_reforge_tiling(self.name, unet)
        entry = common.install_clone(p, offsets, concat, self._make_clone, self.keeper)
        # A kept clone reused from an earlier generation may be merged again (after a plain
        # generation unpatched it): the shim must be in place for that merge too.
        self._ensure_shim(entry.clone, entry.patches)

    @staticmethod
    def _padding(patcher: Any) -> tuple[MergeSite, common.PatchStyle | None]:
        """Where ``patcher``'s merges go, and the patch style that merge pads in (None: it
        pads in neither, and IC-Light's conv_in diff needs the shim)."""
        site = merge_site(patcher)
        return site, common.padding_style(_probe_callable(site, patcher), site.original)

    def _make_clone(self, base: Any, offsets: ICOffsets, concat: torch.Tensor) -> common.InstalledClone:
        common.check_offset_shapes(base.model, offsets)
        patches = common.patch_set(offsets, self._padding(base)[1] or "diff")
        clone = base.clone()
        queued = clone.patches.get(patches.conv_in_key, [])
        if not any(len(e) > 1 and e[1] is patches.conv_in_value for e in queued):
            common.require_all_patches(clone.add_patches(patches.patches, 1.0, 1.0), patches)
        return common.attach_concat(base, clone, offsets, patches, concat, self.watch)

    def _ensure_shim(self, patcher: Any, patches: common.PatchSet) -> None:
        """Wrap the merge ``patcher`` goes through: IC-Light's own offsets in one add, and
        on a build whose merge does not pad, IC-Light's conv_in diff padded (only that).
        Where its ``patch_model`` is Forge Classic's loop, wrap that too, so IC-Light's own
        offsets skip the loop's copy of each weight (:mod:`.fast_load`)."""
        site, style = self._padding(patcher)
        install_shim(site, patches.conv_in_value[0] if style is None else None)
        self.hooked(site)
        load_site = fast_load.patch_model_site(patcher, site)
        if load_site is not None:
            merge_hooks.install(load_site, fast_load.make_patch_model)
            self.hooked(load_site)

    def cleanup(self, p: Any, keep_merged: bool = True) -> None:
        """Put the base patcher back. With ``keep_merged`` the IC-Light clone stays loaded
        and merged, as the WebUI keeps a LoRA (and so does the calculate_weight shim, which a
        later merge of that clone needs): the next IC-Light generation reuses it, and the
        next plain one has the WebUI unpatch it when it loads the base patcher. Without it,
        the loaded clone is unpatched now and the shim removed."""
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
            self.unhook_merges()
            self.observe(p)

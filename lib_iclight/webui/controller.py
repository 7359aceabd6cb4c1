"""The request flow of the "IC Light" script, shared by every WebUI of the A1111 lineage.

A1111, Forge 2, Forge Classic and reForge all drive AlwaysOn scripts through the same
``StableDiffusionProcessing`` object ``p`` and the same hooks; only the model plumbing
differs, and that is the :class:`~lib_iclight.backends.base.Backend`'s job. The
controller turns hook calls into core calls:

``before_process``                   a normal map's batch of 4; with sd-webui-distributed loaded, the
                                     panel's images as base64
``process``                          parse args, pick the model, prepare images, refuse bad requests,
                                     guard ``p.sample`` with the delivery probe
``process_before_every_sampling``    encode the conditioning at this pass's size, install; the colour
                                     correction target (img2img) becomes the subject
``postprocess_image``                detail transfer in place (setting "replace")
``postprocess``                      append the extra outputs (detail, normal map, relit in place,
                                     removed background), clean up

Every failure arms the tripwire (see :mod:`.tripwire`): the generation stops with the
message instead of going on without IC-Light. And whatever another extension does to the
model, the patcher or the forward, ``p.sample`` fails unless every UNet call it made
carried IC-Light's conditioning (:mod:`lib_iclight.backends.delivery`): IC Light enabled never
returns an image without it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .. import axes, images
from ..args import SPECS_BY_NAME, ICLightArgs, coerce, parse_args, raw_values, subject_options
from ..backends.base import Backend
from ..backends.delivery import DeliveryProbe, require_delivery
from ..backends.status import image_bytes, tensor_bytes
from ..conditioning import PreparedImages, prepare_conditioning, prepare_subject_for
from ..detail import detail_transfer
from ..errors import ICLightError
from ..in_place import relight_in_place
from ..normal_map import NORMAL_LIGHTS, normal_map_image
from ..weights import cache_entries, resolve_model, set_cache_capacity
from . import context, tripwire
from .context import Request
from .settings import ICLightSettings

logger = logging.getLogger("iclight.controller")

_SAMPLE_GUARD = "_iclight_sample_guard"
_DISTRIBUTE = "Distribute"
"""The title of sd-webui-distributed's AlwaysOn script."""
_LATENT_CACHE_SIZE = 8
_SUBJECT_CACHE_SIZE = 2


def _cached(cache: OrderedDict, key: tuple, size: int, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made with ``make()`` on a miss; ``cache`` keeps the ``size`` most
    recently used entries."""
    value = cache.get(key)
    if value is None:
        value = cache[key] = make()
        while len(cache) > size:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return value


def _digest(*parts: Image.Image | None) -> str:
    digest = hashlib.sha1()
    for image in parts:
        if image is None:
            digest.update(b"-")
        else:
            digest.update(f"{image.mode}{image.size}".encode())
            digest.update(image.tobytes())
    return digest.hexdigest()


def _prepared_bytes(prepared: PreparedImages) -> int:
    """Memory of one prepared subject's images, each image counted once."""
    images_ = {id(im): im for im in (prepared.fg, prepared.fg_source, prepared.mask, prepared.removed_bg,
                                      prepared.detail_source, prepared.cutout) if im is not None}
    return sum(image_bytes(im) for im in images_.values())


def refuse_refiner_switch(p: Any) -> None:
    """Raise ICLightError("refiner_checkpoint") if the Refiner will switch checkpoints mid-sampling.

    The WebUIs switch inside the sampler loop. A1111 loads an SD1.5 refiner into the UNet
    IC-Light has patched (its weights land in the merges, then conv_in's size stops the
    load with a torch error) and any other refiner as a new model without IC-Light; the
    Forge family swaps in the refiner's own UNet patcher, which samples the remaining
    steps without IC-Light (seen live on reForge: a 200 with another image). The test mirrors
    ``sd_samplers_common.apply_refiner``: no switch without a refiner, to the checkpoint
    already loaded, or at a ratio no step reaches (1.0); ``None`` switches at once.
    ``refiner_checkpoint_info`` is resolved by ``process_images`` before the ``process`` hook.
    """
    refiner = getattr(p, "refiner_checkpoint_info", None)
    if refiner is None:
        return
    switch_at = getattr(p, "refiner_switch_at", None)
    if switch_at is not None and float(switch_at) >= 1.0:
        return
    if refiner == getattr(p.sd_model, "sd_checkpoint_info", None):
        return
    # A1111's CheckpointInfo: "name.safetensors [hash]" as the UI shows it.
    titles = (getattr(refiner, attr, None) for attr in ("short_title", "title", "name"))
    name = next((t for t in titles if isinstance(t, str) and t), str(refiner))
    when = "from the first step" if switch_at is None else f"at {float(switch_at):g} of the steps"
    raise ICLightError(
        "refiner_checkpoint",
        f"IC-Light cannot run with the Refiner: switching to {name} {when} would sample the rest "
        "without IC-Light. Turn the Refiner off for IC-Light generations",
    )


def _looks_enabled(values: Sequence[Any]) -> bool:
    """Whether a script's args say it is on: a first arg ``True`` (most AlwaysOn scripts),
    or a unit with ``enabled`` set (ControlNet)."""
    if values and values[0] is True:
        return True
    for value in values:
        enabled = value.get("enabled") if isinstance(value, dict) else getattr(value, "enabled", None)
        if enabled is True:
            return True
    return False


def alwayson_scripts(p: Any) -> list[tuple[str, Any]]:
    """``(title, script)`` of every AlwaysOn script running for ``p``; one that cannot say
    its title is left out."""
    found = []
    for script in getattr(getattr(p, "scripts", None), "alwayson_scripts", None) or ():
        try:
            found.append((str(script.title()), script))
        except Exception:  # noqa: BLE001 - a script that cannot say: not named
            continue
    return found


def enabled_beside(p: Any) -> list[str]:
    """Titles of the other AlwaysOn scripts that look enabled for ``p``: the likely cause
    when IC-Light's conditioning does not reach the UNet."""
    values = list(getattr(p, "script_args", None) or ())
    titles = []
    for title, script in alwayson_scripts(p):
        start, end = getattr(script, "args_from", None), getattr(script, "args_to", None)
        if title.lower() != "ic light" and start is not None and end is not None and _looks_enabled(values[start:end]):
            titles.append(title)
    return titles


def json_ready_script_args(p: Any, args_from: int | None, args_to: int | None) -> int:
    """Turn the images among ``p.script_args[args_from:args_to]`` into PNG data URLs.

    sd-webui-distributed (8fd65eb, ``scripts/distributed.py`` l. 200-236) copies every
    AlwaysOn script's raw args into the JSON payload of its workers, and the panel gives PIL
    images: the worker's share failed with "Object of type Image is not JSON serializable".
    Its ``before_process`` must see the strings, so this runs in ours, which comes first
    where extensions load by folder name ("sd-webui-ic-light" before
    "stable-diffusion-webui-distributed"). :func:`~lib_iclight.images.decode_image` reads
    them back to the same pixels. Returns how many were turned.
    """
    values = getattr(p, "script_args", None)
    if not values or args_from is None or args_to is None:
        return 0
    changed = list(values)
    count = 0
    for index in range(args_from, min(args_to, len(changed))):
        value = changed[index]
        if isinstance(value, np.ndarray):
            value = images.numpy_to_pil(value)
        if isinstance(value, Image.Image):
            changed[index] = images.to_png_data_url(value)
            count += 1
    if count:
        p.script_args = tuple(changed) if isinstance(values, tuple) else changed
    return count


def _request_of(p: Any) -> Request | None:
    ctx = context.context_of(p)
    return None if ctx is None else ctx.request


def _guarded(hook: Callable[..., Any]) -> Callable[..., Any]:
    """Run a hook; on any error, arm the tripwire so the generation stops with it."""

    @functools.wraps(hook)
    def run(self: "ICLightController", p: Any, *args: Any, **kwargs: Any) -> Any:
        if tripwire.armed_error(p) is not None:
            return None
        try:
            return hook(self, p, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - every failure must stop the generation
            if not isinstance(error, ICLightError):
                logger.exception("IC Light failed in %s", hook.__name__)
            tripwire.arm(p, error)
            return None

    return run


class ICLightController:
    """Hook logic for one script instance; the WebUI specifics come from ``backend``."""

    def __init__(
        self,
        backend: Backend,
        model_dirs: Callable[[], Sequence[Path]],
        settings: Callable[[], ICLightSettings],
        interrupted: Callable[[], bool] = lambda: False,
        color_target: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        """``interrupted`` says whether the user stopped the generation (no UNet call is
        then no conflict); ``color_target`` is the WebUI's ``setup_color_correction``."""
        self.backend = backend
        self.model_dirs = model_dirs
        self.settings = settings
        self.interrupted = interrupted
        self.color_target = color_target
        self._latents: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._subjects: OrderedDict[tuple, PreparedImages] = OrderedDict()

    # -- before_process ----------------------------------------------------------------

    def before_process(self, p: Any, args_from: int | None, args_to: int | None) -> None:
        """Size a normal map's batch; where sd-webui-distributed is loaded, hand it args it
        can send as JSON. Best effort: ``process`` refuses what cannot be read, as for any
        request."""
        if context.borrowed(p):
            return
        self._size_normal_map_batch(p, args_from, args_to)
        if all(title != _DISTRIBUTE for title, _ in alwayson_scripts(p)):
            return
        try:
            json_ready_script_args(p, args_from, args_to)
        except Exception:  # noqa: BLE001 - process() will say what is wrong with the image
            logger.warning("IC Light: could not turn the panel's images into base64 for sd-webui-distributed", exc_info=True)

    @staticmethod
    def _size_normal_map_batch(p: Any, args_from: int | None, args_to: int | None) -> None:
        """A normal map is made from one batch of four relights (left, right, bottom, top).

        ``before_process`` runs before the WebUI lists the prompts and seeds by batch, so the
        batch size set here is the one they are made for; ``process`` then gives the four
        images of each batch one seed, as the reference relights each light with one seed.
        """
        values = getattr(p, "script_args", None)
        if not values or args_from is None or args_to is None:
            return
        try:
            # Only the two switches are read: the images are decoded once, by ``process``.
            raw = raw_values(list(values[args_from:args_to]))
            wanted = all(coerce(SPECS_BY_NAME[name], raw[name]) for name in ("enable", "normal_map"))
        except ICLightError:
            return  # process() refuses it by name
        if wanted:
            p.batch_size = len(NORMAL_LIGHTS)

    # -- process ---------------------------------------------------------------------

    @_guarded
    def process(self, p: Any, *raw_args: Any) -> None:
        """Validate and prepare everything that does not need the sampling size."""
        if context.borrowed(p):
            logger.debug("IC Light: process called on a copy of a generation it serves; left alone")
            return
        ctx = context.start(p, None)
        self._observe(p)
        overrides = ctx.axis_values  # values of X/Y/Z plot axes for this cell
        args = parse_args(axes.with_overrides(list(raw_args), overrides) if overrides else list(raw_args))
        axes.check_enabled(args.enable, overrides)
        if not args.enable:
            return
        info = resolve_model(args.model_type, self.model_dirs())
        init_images = getattr(p, "init_images", None)
        self.backend.check_model(p)
        refuse_refiner_switch(p)
        ctx.settings = settings = self.settings()
        set_cache_capacity(settings.offset_cache_size)
        width, height = self._largest_size(p)
        conditioning = prepare_conditioning(args, info, width=width, height=height,
                                            is_img2img=init_images is not None,
                                            init_image=init_images[0] if init_images else None,
                                            light_map=axes.light_map_of(overrides),
                                            prepare=self._prepare_subject)
        if args.normal_map:
            self._one_seed_per_normal_map(p)
        offsets = self.backend.load_offsets(info)
        if conditioning.init_image is not None:
            # The light map is what the WebUI encodes as the init latent; the subject goes in by concat.
            p.init_images = [conditioning.init_image]
        ctx.request = Request(args, info, offsets, conditioning,
                              local_images=int(getattr(p, "batch_size", 1)) * int(getattr(p, "n_iter", 1)))
        ctx.owner = id(p)
        self._guard_sampling(p, ctx.request)
        p.extra_generation_params.update(args.infotext(model_name=info.name))
        p.extra_generation_params.update(axes.infotext(overrides))
        logger.info("IC Light: %s (%s) on %dx%d", info.name, info.kind, width, height)

    @staticmethod
    def _one_seed_per_normal_map(p: Any) -> None:
        """Check the batch ``before_process`` sized, and give each batch of four one seed
        (the first of its batch, as the WebUI numbered them)."""
        lights = len(NORMAL_LIGHTS)
        if int(getattr(p, "batch_size", 0)) != lights:
            raise ICLightError("normal_map", f"needs a batch size of {lights} (one image per light: "
                                             f"{', '.join(NORMAL_LIGHTS)}); the WebUI set {p.batch_size}")
        prompts = [getattr(p, "prompt", ""), getattr(p, "negative_prompt", "")]
        if any(isinstance(text, str) and " AND " in text for text in prompts):
            # Composable prompts give each image its own number of UNet rows, which would
            # put one image's light on another's rows.
            raise ICLightError("normal_map", "cannot be made from a composable prompt (one with AND)")
        for name in ("all_seeds", "all_subseeds"):
            seeds = getattr(p, name, None)
            if seeds:
                setattr(p, name, [seeds[i - i % lights] for i in range(len(seeds))])

    @staticmethod
    def _largest_size(p: Any) -> tuple[int, int]:
        """The biggest pixel size any pass samples at: the hires target when hires fix is on."""
        width, height = int(p.width), int(p.height)
        if not getattr(p, "enable_hr", False):
            return width, height
        # ``process`` runs before ``p.init`` computes hr_upscale_to_x/y, so estimate the
        # target the same way A1111's calculate_target_resolution will.
        resize_x, resize_y = int(getattr(p, "hr_resize_x", 0) or 0), int(getattr(p, "hr_resize_y", 0) or 0)
        if resize_x == 0 and resize_y == 0:
            scale = float(getattr(p, "hr_scale", 1.0) or 1.0)
            target = int(width * scale), int(height * scale)
        elif resize_y == 0:
            target = resize_x, resize_x * height // width
        elif resize_x == 0:
            target = resize_y * width // height, resize_y
        else:
            target = max(resize_x, resize_y * width // height), max(resize_y, resize_x * height // width)
        return (target if target[0] * target[1] > width * height else (width, height))

    def _prepare_subject(self, image: Image.Image, args: ICLightArgs, width: int, height: int) -> PreparedImages:
        """The prepared subject, reused while the same image is sent with the same settings
        (background removal with alpha matting costs ~0.8 s at 512x512 on CPU)."""
        key = (_digest(image), width, height, tuple(sorted(subject_options(args).items())))
        return _cached(self._subjects, key, _SUBJECT_CACHE_SIZE, lambda: prepare_subject_for(image, args, width, height))

    # -- the delivery guard ------------------------------------------------------------

    def _guard_sampling(self, p: Any, request: Request) -> None:
        """Make ``p.sample`` fail unless every UNet call it makes carries IC-Light.

        ``p.sample`` (both passes, hires included) is called by ``process_images_inner``
        outside the script runner's ``try``, so its error stops the generation and reaches
        the API caller; the probe counts the calls on the UNet module itself, which every
        patcher, clone and forward replacement still ends in.
        """
        current = p.__dict__.get("sample")
        if getattr(current, _SAMPLE_GUARD, False):
            del p.__dict__["sample"]  # a copy of an already guarded ``p`` (X/Y/Z copies ``p``)
        original = p.sample
        unet = self.backend.unet_module(p)
        channels = request.info.in_channels

        def sample(*args: Any, **kwargs: Any) -> Any:
            with DeliveryProbe(unet, channels) as count:
                result = original(*args, **kwargs)
            require_delivery(count, interrupted=self.interrupted(), beside=enabled_beside(p))
            return result

        setattr(sample, _SAMPLE_GUARD, True)
        p.sample = sample

    @staticmethod
    def _unguard_sampling(p: Any) -> None:
        if getattr(p.__dict__.get("sample"), _SAMPLE_GUARD, False):
            del p.__dict__["sample"]

    # -- sampling --------------------------------------------------------------------

    @_guarded
    def process_before_every_sampling(self, p: Any, *script_args: Any, **kwargs: Any) -> None:
        """Encode the conditioning at the size of the latent about to be sampled, then install."""
        request = _request_of(p)
        if request is None:
            return
        x = kwargs.get("x")
        if x is None:
            raise RuntimeError("IC Light: process_before_every_sampling got no latent 'x'; WebUI not supported")
        latent_h, latent_w = int(x.shape[-2]), int(x.shape[-1])
        concat = request.concat_by_size.get((latent_h, latent_w))
        if concat is None:
            concat = self._encode_conditioning(p, request, latent_w * 8, latent_h * 8)
            request.concat_by_size[(latent_h, latent_w)] = concat
        self.backend.install(p, request.offsets, concat)
        self._retarget_color_correction(p, request)

    def _retarget_color_correction(self, p: Any, request: Request) -> None:
        """img2img with "Apply color correction" on: match the result to the subject photo.

        The WebUI builds its targets from ``init_images`` in ``p.init``, after ``process``
        has put the light map there, so it would match the relit image to the light map
        (a grey light map made every result grey). ``p.init`` has run by this hook.
        """
        corrections = getattr(p, "color_corrections", None)
        photo = request.conditioning.subject_photo
        if not corrections or self.color_target is None or photo is None:  # photo: img2img only
            return
        if request.color_target is None:  # only with the setting on; once for every pass and batch
            request.color_target = self.color_target(images.composite_on_grey(photo))
        p.color_corrections = [request.color_target] * len(corrections)

    def _encode_conditioning(self, p: Any, request: Request, width: int, height: int) -> torch.Tensor:
        """[1 or 4, 4 or 8, height/8, width/8] scaled latents: fg, then bg for fbc; a normal
        map has one row per light.

        Each pass crop-resizes from the sources (not from the largest pass's images), and
        fg and bg go through the VAE as one batch whose latents are joined on channels in
        that order: the reference's steps for both the first and the hires pass. A normal
        map's shared fg is encoded once.
        """
        items = request.conditioning.items_at(width, height)
        parts: list[Image.Image] = list({id(image): image for item in items for image in item}.values())
        slot = {id(image): index for index, image in enumerate(parts)}
        layout = tuple(tuple(slot[id(image)] for image in item) for item in items)
        key = (_digest(*parts), layout, width, height, self.backend.vae_fingerprint(p))

        def encode() -> torch.Tensor:
            latents = self.backend.encode(p, torch.cat([images.pil_to_pixels(part) for part in parts], dim=0))
            rows = [torch.cat([latents[index:index + 1] for index in item], dim=1) for item in layout]
            return torch.cat(rows, dim=0)

        return _cached(self._latents, key, _LATENT_CACHE_SIZE, encode)

    # -- after sampling --------------------------------------------------------------

    @_guarded
    def postprocess_image(self, p: Any, pp: Any, *script_args: Any) -> None:
        ctx = context.context_of(p)
        request = None if ctx is None else ctx.request
        if request is None or not request.args.detail_transfer:
            return
        if ctx.settings is not None and ctx.settings.detail_transfer_mode == "replace":
            pp.image = self._detail(request, pp.image)

    def _detail(self, request: Request, image: Image.Image) -> Image.Image:
        result = detail_transfer(image, request.conditioning.subject.detail_source, request.args.detail_transfer_blur_radius)
        result.info.update(image.info)
        return result

    def postprocess(self, p: Any, processed: Any, *script_args: Any) -> None:
        """Append the extra outputs, then leave the model as found. Never raises."""
        if context.borrowed(p):
            logger.debug("IC Light: postprocess called on a copy of a generation it serves; left alone")
            return
        ctx = context.context_of(p)
        request, settings = (None, None) if ctx is None else (ctx.request, ctx.settings)
        try:
            if request is not None and settings is not None and tripwire.armed_error(p) is None:
                self._append_outputs(request, settings, processed)
        except Exception:  # noqa: BLE001 - the images are made; losing an extra is not worth a 500
            logger.exception("IC Light: could not add the extra output images")
        finally:
            if ctx is not None:
                ctx.request = None
            self._unguard_sampling(p)
            keep_merged = settings.keep_merged if settings is not None else self.settings().keep_merged
            self.backend.cleanup(p, keep_merged=keep_merged)
            self._observe(p)

    def _observe(self, p: Any) -> None:
        """Let the backend look at the UNet (every generation, IC-Light or not): the merge
        ledger counts the restores the WebUI makes lazily. Never fails a generation."""
        if getattr(p, "sd_model", None) is None:
            return
        try:
            self.backend.observe(p)
        except Exception:  # noqa: BLE001 - bookkeeping only
            logger.debug("IC Light: could not look at the UNet", exc_info=True)

    # -- status ----------------------------------------------------------------------

    def status(self, sd_model: Any) -> dict[str, Any]:
        """The body of ``GET /ic-light/v1/status``: the WebUI family and adapter, what the
        UNet holds and the merges / restores since start, and what each cache holds."""
        unet: dict[str, Any]
        if sd_model is not None:
            try:
                unet = self.backend.unet_status(sd_model)
            except Exception as exc:  # noqa: BLE001 - a status must answer even mid-load
                logger.debug("IC Light: no UNet status", exc_info=True)
                unet = {**self.backend.ledger.snapshot().as_dict(), "error": type(exc).__name__}
        else:
            unet = self.backend.ledger.snapshot().as_dict()
        offsets = cache_entries()
        latents = list(self._latents.values())
        subjects = list(self._subjects.values())
        return {
            "webui": self.backend.family,
            "backend": self.backend.name,
            "checkpoint_loaded": sd_model is not None,
            "keep_merged": self.settings().keep_merged,
            "unet": unet,
            "caches": {
                "offsets": {"entries": offsets, "bytes": sum(int(e["bytes"]) for e in offsets)},  # type: ignore[call-overload]
                "latents": {"entries": len(latents), "bytes": sum(tensor_bytes(t) for t in latents)},
                "subjects": {"entries": len(subjects), "bytes": sum(_prepared_bytes(s) for s in subjects)},
            },
        }

    def _append_outputs(self, request: Request, settings: ICLightSettings, processed: Any) -> None:
        first = getattr(processed, "index_of_first_image", 0)
        end = None if request.local_images is None else first + request.local_images
        generated = list(processed.images[first:end])
        extras: list[Image.Image] = []
        args, subject = request.args, request.conditioning.subject
        if args.detail_transfer and settings.detail_transfer_mode == "append":
            extras.extend(self._detail(request, image) for image in generated)
        if args.normal_map:
            lights = len(NORMAL_LIGHTS)
            extras.extend(normal_map_image(generated[start:start + lights], subject.mask)
                          for start in range(0, len(generated) - lights + 1, lights))
        if args.relight_in_place and subject.photo is not None and subject.mask is not None:
            extras.extend(relight_in_place(image, subject.photo, subject.mask, args.erode_size) for image in generated)
        if args.remove_bg and settings.append_removed_bg and subject.removed_bg is not None:
            extras.append(subject.removed_bg)
        if not extras:
            return
        infotexts = getattr(processed, "infotexts", None)
        for image in extras:
            processed.images.append(image)
            if infotexts:
                infotexts.append(infotexts[0])

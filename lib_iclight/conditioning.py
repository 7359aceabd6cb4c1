"""The images one IC-Light generation is conditioned on, prepared from the caller's input.

:func:`prepare_conditioning` is the one place that makes them, for every mode: the subject
(txt2img ``input_fg``, img2img's input photo), the fbc background (uploaded, flipped, or a
light by name: ``bg_source``), the normal map's four backgrounds, and img2img's light map
(a preset by name or angle, or an upload), reinforced with the subject when asked.

IC-Light was trained on subjects cut out and placed on flat grey 127, so whatever the
caller sends becomes that: the background removed by rembg, or the input's own alpha,
or (neither) the picture as it is. Everything is brought to the generation size by
scaling and centre-cropping, never by stretching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image, ImageOps

from .args import ICLightArgs, subject_options
from .errors import ICLightError
from .images import composite_on_grey, decode_image, has_alpha, normalise_mode, resize_and_center_crop
from .lightmaps import DEFAULT_BG_SOURCE, make_background, make_lightmap, needs_upload
from .normal_map import NORMAL_LIGHTS
from .rembg_session import cut_out_subject
from .weights import ICModelInfo

logger = logging.getLogger("iclight.conditioning")

NORMAL_MAP_LIFT = 16
"""Levels the reference adds to the subject inside its mask for the normal map's relights."""


@dataclass(kw_only=True)
class PreparedImages:
    """The conditioning images for one generation, all ``width`` x ``height``."""

    fg: Image.Image
    """``"RGB"``: the subject on grey 127 (or the whole input when it has no mask)."""
    fg_source: Image.Image
    """``"RGB"``: what each sampling pass crop-resizes its conditioning from: the input on
    grey at its own size, as the reference resizes its composited input for every pass;
    ``fg`` itself when rembg cut the subject out at the generation size."""
    mask: Image.Image | None = None
    """``"L"`` 0..255: the subject's alpha; None when the input has none and rembg is off."""
    removed_bg: Image.Image | None = None
    """``"RGBA"``: the rembg cut-out, to show the user; None when rembg did not run."""
    detail_source: Image.Image
    """``"RGB"``: the image detail transfer copies texture from."""
    cutout: Image.Image | None = None
    """``"RGBA"``: the subject with its alpha (rembg's or the input's); None without a mask.

    Kept beside ``fg`` because ``fg`` already has grey mixed into its soft edges, and
    pasting it again with the mask would leave a grey halo."""
    photo: Image.Image | None = None
    """``"RGB"``: the input as sent (alpha flattened on grey), crop-resized: what relight in
    place puts the relit subject back onto."""


def prepare_subject(
    image: Image.Image | None,
    *,
    width: int,
    height: int,
    remove_bg: bool,
    rembg_model: str,
    foreground_threshold: int,
    background_threshold: int,
    erode_size: int,
    detail_transfer_raw: bool,
    normal_map: bool = False,
) -> PreparedImages:
    """Prepare the subject image ``image`` (PIL, any mode) for a ``width`` x ``height`` generation.

    * ``remove_bg``: rembg (``rembg_model`` with the matting thresholds and erode size)
      cuts the subject out, and it is placed on grey 127;
    * else, an input with alpha is placed on grey 127 through its own alpha;
    * else the input is used as it is.

    As in the reference, the input is flattened on grey at its own size and crop-resized
    after; rembg and matting then work on at most the pixels the generation uses (the
    reference cuts out at the input's size). ``detail_source`` is the crop-resized raw
    input (alpha flattened on grey) when ``detail_transfer_raw``, else ``fg``. For a
    ``normal_map`` the subject is lifted by :data:`NORMAL_MAP_LIFT` inside its mask, as the
    reference's ``process_normal`` does (``run_rmbg(input_fg, sigma=16)``).
    """
    if image is None:
        raise ICLightError("input_fg", "no image given; IC-Light needs a subject image")
    lift = NORMAL_MAP_LIFT if normal_map else 0
    # Normalised first: Pillow cannot LANCZOS-resize every mode (16-bit greyscale, for one).
    normalised = normalise_mode(image)
    # Flattened at the input's size and resized after, in the reference's order.
    flat = composite_on_grey(normalised)
    raw = resize_and_center_crop(flat, width, height)
    photo = raw  # never lifted: what relight in place puts the subject back onto

    mask = removed_bg = cutout = None
    if remove_bg:
        # rembg and matting work on at most the pixels the generation uses.
        cut = cut_out_subject(raw, rembg_model, foreground_threshold, background_threshold, erode_size)
        cutout = removed_bg = cut.image
        mask = cut.mask
        # The input's own colours through the mask, as the reference blends them; the
        # matted (decontaminated) colours stay in ``cutout`` for reinforce and display.
        fg = fg_source = composite_on_grey(raw, alpha=mask, lift=lift)
    elif has_alpha(normalised):
        cutout = resize_and_center_crop(normalised, width, height).convert("RGBA")
        mask = cutout.getchannel("A")
        if lift:
            rgba = normalised.convert("RGBA")
            flat = composite_on_grey(rgba.convert("RGB"), alpha=rgba.getchannel("A"), lift=lift)
            raw = resize_and_center_crop(flat, width, height)
        fg, fg_source = raw, flat
    else:
        fg, fg_source = raw, flat

    return PreparedImages(
        fg=fg,
        fg_source=fg_source,
        mask=mask,
        removed_bg=removed_bg,
        detail_source=raw if detail_transfer_raw else fg,
        cutout=cutout,
        photo=photo,
    )


def reinforce_foreground(light_map: Image.Image, subject: PreparedImages) -> Image.Image:
    """Paste the subject onto ``light_map`` (any mode, crop-resized to the subject's size)
    through its mask -> ``"RGB"``.

    This gives img2img a starting image that already holds the subject where it is
    lit. Without a mask the subject covers the whole frame, so the result is ``fg``.
    """
    size = subject.fg.size
    if subject.mask is None or subject.cutout is None:
        return subject.fg.copy()
    base = composite_on_grey(light_map)
    if base.size != size:
        base = resize_and_center_crop(base, *size)
    # The cut-out's own colours, not fg: fg's soft edges already hold grey.
    return Image.composite(subject.cutout.convert("RGB"), base, subject.mask)


PrepareSubject = Callable[[Image.Image, ICLightArgs, int, int], PreparedImages]


def prepare_subject_for(image: Image.Image, args: ICLightArgs, width: int, height: int) -> PreparedImages:
    """:func:`prepare_subject` with the options ``args`` holds (:func:`~lib_iclight.args.subject_options`)."""
    return prepare_subject(image, width=width, height=height, **subject_options(args))


Background = Image.Image | str
"""An fbc background: an image (``"RGB"`` at its own size, alpha flattened on grey), or a
light by name (:func:`~lib_iclight.lightmaps.make_background`), drawn at each pass's size."""


def background_at(background: Background, width: int, height: int) -> Image.Image:
    """``background`` at ``width`` x ``height``: a named light drawn at that size (as the
    reference draws it at the generation size), an image crop-resized."""
    if isinstance(background, str):
        return make_background(background, width, height)
    return resize_and_center_crop(background, width, height)


@dataclass
class Conditioning:
    """Everything one request is conditioned on, at the largest pass size."""

    subject: PreparedImages
    backgrounds: tuple[Background, ...] = ()
    """fbc: one background for every image, or (normal map) one per batch item; fc: none."""
    init_image: Image.Image | None = None
    """img2img: the light map (``"RGB"``, generation size) that becomes the init image."""
    subject_photo: Image.Image | None = None
    """img2img: the input photo as decoded (the colour correction's source)."""

    def items_at(self, width: int, height: int) -> list[list[Image.Image]]:
        """What a pass of ``width`` x ``height`` encodes, per conditioning batch item, in
        channel order: ``[[fg]]`` (fc), ``[[fg, bg]]`` (fbc), or one ``[fg, bg_i]`` per
        normal-map light. The shared ``fg`` is the same object in every item."""
        fg = resize_and_center_crop(self.subject.fg_source, width, height)
        if not self.backgrounds:
            return [[fg]]
        return [[fg, background_at(background, width, height)] for background in self.backgrounds]


def _background(args: ICLightArgs, model: ICModelInfo) -> tuple[Background, ...]:
    """The fbc backgrounds ``args`` ask for (see :class:`Conditioning`); none for fc."""
    if model.kind != "fbc":
        if args.bg_source != DEFAULT_BG_SOURCE:
            raise ICLightError("bg_source", f"only fbc models take a background; {model.name} is {model.kind}")
        if args.normal_map:
            raise ICLightError("normal_map", f"the normal map is the fbc model's; {model.name} is {model.kind}")
        return ()
    if args.normal_map:
        # The reference relights under its own four gradients; no upload is used.
        return NORMAL_LIGHTS
    if not needs_upload(args.bg_source):
        return (args.bg_source,)
    if args.uploaded_bg is None:
        raise ICLightError("uploaded_bg", f"no image given: the fbc model {model.name} needs a background image "
                                          "(or a bg_source such as left, right, top, bottom or ambient)")
    background = composite_on_grey(args.uploaded_bg)
    # Flipped before any crop, as the reference flips before its resize-and-crop.
    return (ImageOps.mirror(background) if args.bg_source == "upload_flip" else background,)


def prepare_conditioning(
    args: ICLightArgs,
    model: ICModelInfo,
    *,
    width: int,
    height: int,
    is_img2img: bool,
    init_image: Any = None,
    light_map: str | int | float | None = None,
    prepare: PrepareSubject = prepare_subject_for,
) -> Conditioning:
    """The conditioning images of one request for ``model``, at ``width`` x ``height``.

    In img2img ``init_image`` (anything :func:`decode_image` takes) is the subject and
    ``args.input_fg`` the light map (an image, or a light-map name), unless ``light_map``
    names one (a preset or an angle from the X/Y/Z plot, see :mod:`lib_iclight.lightmaps`);
    names are drawn at this size. In txt2img ``args.input_fg`` is the subject and an fbc
    model also takes a background (``args.bg_source``, ``args.uploaded_bg``). ``prepare``
    makes the subject (the caller may cache it). Raises ICLightError naming what is wrong.
    """
    if not is_img2img:
        if light_map is not None:
            raise ICLightError("light_map", "only img2img takes a light map; in txt2img input_fg is the subject")
        if args.input_fg is None:
            raise ICLightError("input_fg", "no image given: txt2img needs the subject image")
        if isinstance(args.input_fg, str):
            raise ICLightError("input_fg", f"a light-map name ({args.input_fg}) is only taken in img2img, where "
                                           "input_fg is the light map; in txt2img it is the subject image")
        backgrounds = _background(args, model)
        subject = _checked_subject(args, prepare(args.input_fg, args, width, height))
        return Conditioning(subject, backgrounds=backgrounds)
    if init_image is None:
        raise ICLightError("init_images", "no image given: img2img needs the subject as its input image")
    if model.kind != "fc":
        raise ICLightError("model_type", f"img2img relighting needs an fc model, {model.name} is {model.kind}")
    _background(args, model)  # refuses fbc-only options
    named = light_map if light_map is not None else args.input_fg if isinstance(args.input_fg, str) else None
    source = make_lightmap(named, width, height) if named is not None else args.input_fg
    if source is None:
        raise ICLightError("input_fg", "no image given: img2img needs a light map (a preset, a name such as "
                                       "left or angle:45, or an upload)")
    photo = decode_image(init_image, "init_images")
    subject = _checked_subject(args, prepare(photo, args, width, height))
    drawn = resize_and_center_crop(composite_on_grey(source), width, height)
    if args.reinforce_fg:
        drawn = reinforce_foreground(drawn, subject)
    return Conditioning(subject, init_image=drawn, subject_photo=photo)


def _checked_subject(args: ICLightArgs, subject: PreparedImages) -> PreparedImages:
    if args.relight_in_place and subject.mask is None:
        raise ICLightError("relight_in_place", "the subject has no mask to put it back through: turn remove_bg "
                                               "on, or send the subject with its own alpha")
    return subject

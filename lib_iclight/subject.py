"""The images one IC-Light generation is conditioned on, prepared from the caller's input.

IC-Light was trained on subjects cut out and placed on flat grey 127, so whatever the
caller sends becomes that: the background removed by rembg, or the input's own alpha,
or (neither) the picture as it is. Everything is brought to the generation size by
scaling and centre-cropping, never by stretching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .errors import ICLightError
from .images import composite_on_grey, decode_image, has_alpha, normalise_mode, resize_and_center_crop
from .lightmaps import make_lightmap
from .rembg_session import cut_out_subject

logger = logging.getLogger("iclight.subject")


@dataclass(kw_only=True)
class PreparedImages:
    """The conditioning images for one generation, all ``width`` x ``height``."""

    fg: Image.Image
    """``"RGB"``: the subject on grey 127 (or the whole input when it has no mask)."""
    fg_source: Image.Image
    """``"RGB"``: what each sampling pass crop-resizes its conditioning from: the input on
    grey at its own size, as the reference resizes its composited input for every pass;
    ``fg`` itself when rembg cut the subject out at the generation size."""
    bg: Image.Image | None = None
    """``"RGB"``: the background for the fbc model; None for fc."""
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
    background: Image.Image | None = None,
) -> PreparedImages:
    """Prepare the subject image ``image`` (PIL, any mode) for a ``width`` x ``height`` generation.

    * ``remove_bg``: rembg (``rembg_model`` with the matting thresholds and erode size)
      cuts the subject out, and it is placed on grey 127;
    * else, an input with alpha is placed on grey 127 through its own alpha;
    * else the input is used as it is.

    As in the reference, the input is flattened on grey at its own size and crop-resized
    after; rembg and matting then work on at most the pixels the generation uses (the
    reference cuts out at the input's size). ``detail_source`` is the crop-resized raw
    input (alpha flattened on grey) when ``detail_transfer_raw``, else ``fg``.
    ``background`` (optional, any mode) becomes ``bg`` through :func:`prepare_background`.
    """
    if image is None:
        raise ICLightError("input_fg", "no image given; IC-Light needs a subject image")
    # Normalised first: Pillow cannot LANCZOS-resize every mode (16-bit greyscale, for one).
    normalised = normalise_mode(image)
    # Flattened at the input's size and resized after, in the reference's order.
    flat = composite_on_grey(normalised)
    raw = resize_and_center_crop(flat, width, height)

    mask = removed_bg = cutout = None
    if remove_bg:
        # rembg and matting work on at most the pixels the generation uses.
        cut = cut_out_subject(raw, rembg_model, foreground_threshold, background_threshold, erode_size)
        cutout = removed_bg = cut.image
        mask = cut.mask
        # The input's own colours through the mask, as the reference blends them; the
        # matted (decontaminated) colours stay in ``cutout`` for reinforce and display.
        fg = fg_source = composite_on_grey(raw, alpha=mask)
    elif has_alpha(normalised):
        cutout = resize_and_center_crop(normalised, width, height).convert("RGBA")
        mask = cutout.getchannel("A")
        fg, fg_source = raw, flat
    else:
        fg, fg_source = raw, flat

    return PreparedImages(
        fg=fg,
        fg_source=fg_source,
        bg=None if background is None else prepare_background(background, width, height),
        mask=mask,
        removed_bg=removed_bg,
        detail_source=raw if detail_transfer_raw else fg,
        cutout=cutout,
    )


def prepare_background(image: Image.Image, width: int, height: int) -> Image.Image:
    """The fbc background: ``image`` (any mode) with its alpha flattened on grey 127, then
    crop-resized to ``width`` x ``height`` -> ``"RGB"``."""
    return resize_and_center_crop(composite_on_grey(image), width, height)


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


def light_map_image(
    value: Any, preset: str | float, width: int, height: int, arg: str = "light_map"
) -> Image.Image:
    """The light map for a ``width`` x ``height`` generation -> ``"RGB"``.

    ``value`` is a custom upload (anything :func:`decode_image` accepts; errors name
    ``arg``); when it is empty, ``preset`` (a preset name or an angle in degrees, see
    :mod:`lib_iclight.lightmaps`) is drawn instead.
    """
    uploaded = decode_image(value, arg)
    if uploaded is not None:
        return prepare_background(uploaded, width, height)
    return make_lightmap(preset, width, height)

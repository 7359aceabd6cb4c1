"""Relight in place: put the relit subject back onto the input photo's own background.

IC-Light regenerates the whole frame, background included. To keep the photo and change
only the subject's light, the relit image is cut out with the subject's mask, feathered
so that no hard seam shows, and laid over the original photo.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from PIL import Image

from .errors import non_negative_int
from .images import resize_and_center_crop

logger = logging.getLogger("iclight.in_place")

# The two 3x3 structuring elements whose alternation erodes by an octagon, close to a
# disc: a square alone would erode corners and diagonals sqrt(2) times further.
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_SQUARE = np.ones((3, 3), np.uint8)


def feather_mask(mask: Image.Image, erode_size: int) -> Image.Image:
    """Shrink and soften a subject mask -> ``"L"`` 0..255 (255 subject), same size.

    ``mask``: ``"L"`` 0..255 (other modes are converted). ``erode_size`` >= 0 in pixels;
    0 returns the mask unchanged.

    The mask is first eroded by ``erode_size // 2`` pixels (an octagon, near a disc), then
    blurred by a Gaussian of standard deviation ``erode_size / 4``: the blend band is
    ``erode_size`` pixels wide, inside the outline. A blur alone centres the blend on the
    subject's outline, so half of it would fall outside: there the relit image shows its
    own regenerated background, a halo around the subject on the photo's background.
    Eroding by two standard deviations first puts the blend inside the outline, where both
    sides are the subject: at the outline the relit image weighs about 2 %, half-way at
    ``erode_size / 2`` pixels inside, fully relit from about ``erode_size`` inside. The
    cost is a rim of the photo's own subject, as it was lit, which blends into the relit
    light and matches the photo's background behind it.

    Where the subject touches the image's border it is not eroded from the border, and the
    blur continues the mask past it (replicated edge), so the subject stays whole there.

    Raises ICLightError (a ValueError) for a negative or non-integer ``erode_size``.
    """
    size = non_negative_int("erode_size", erode_size)
    mask = mask.convert("L") if mask.mode != "L" else mask
    if size == 0:
        return mask.copy()
    pixels = np.asarray(mask, dtype=np.uint8)
    for step in range(size // 2):
        # OpenCV's default border for erode is the largest value: the image's edge never erodes.
        pixels = cv2.erode(pixels, _CROSS if step % 2 == 0 else _SQUARE)
    sigma = size / 4.0
    pixels = cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    return Image.fromarray(pixels, "L")


def relight_in_place(relit: Image.Image, photo: Image.Image, mask: Image.Image, erode_size: int) -> Image.Image:
    """The relit subject over the photo's background -> ``"RGB"`` at ``relit``'s size.

    ``relit``: the generated image (any size, e.g. after a hires pass). ``photo``: the
    input photo and ``mask``: its subject mask, ``"L"`` 0..255 with 255 subject, both at
    the generation size; they are scaled and centre-cropped to ``relit``'s size the way
    the conditioning was (so they line up with it). Images of other modes are converted
    to RGB (alpha is dropped: the photo's own pixels are the background wanted here).
    ``erode_size``: the feathering, see :func:`feather_mask`.

    The blend is integer arithmetic, ``(relit * m + photo * (255 - m) + 127) // 255``:
    exactly the photo where the feathered mask is 0, exactly the relit image where it is
    255, rounded to nearest in between.

    Raises TypeError when an image is missing (``None``) and ICLightError (a ValueError)
    for a negative or non-integer ``erode_size``.
    """
    for name, img in (("relit", relit), ("photo", photo), ("mask", mask)):
        if not isinstance(img, Image.Image):
            raise TypeError(f"relight_in_place: {name} must be a PIL image, got {type(img).__name__}")
    non_negative_int("erode_size", erode_size)
    relit = relit.convert("RGB") if relit.mode != "RGB" else relit
    photo = photo.convert("RGB") if photo.mode != "RGB" else photo
    mask = mask.convert("L") if mask.mode != "L" else mask
    width, height = relit.size
    if photo.size != relit.size:
        photo = resize_and_center_crop(photo, width, height)
    if mask.size != relit.size:
        mask = resize_and_center_crop(mask, width, height)

    weight = np.asarray(feather_mask(mask, erode_size), dtype=np.uint32)[..., None]
    fore = np.asarray(relit, dtype=np.uint32)
    back = np.asarray(photo, dtype=np.uint32)
    # At most 255 * 255 + 127 per pixel: uint32 cannot overflow, and // keeps 0 and 255 exact.
    out = (fore * weight + back * (255 - weight) + 127) // 255
    logger.debug("relit in place at %dx%d, erode_size %d", width, height, erode_size)
    return Image.fromarray(out.astype(np.uint8), "RGB")


"""Normal map from four relights: the fbc demo's ``process_normal``.

The reference (lllyasviel/IC-Light at bcf3f29, ``gradio_demo_bg.py``) relights one
subject four times, lit from the left, right, bottom and top, and reads a surface normal
out of how each pixel's brightness changes with the light's direction:

* ambient = the mean of the four relights;
* each relight divided by the ambient, as ``(a + 1e-5) / (ambient + 1e-5) - 1``;
* ``u = (right - left) / 2`` and ``v = (top - bottom) / 2``, averaged over the channels;
* ``h = clip(1 - u^2 - v^2, 0, 1e5) ** 5`` (``sigma = 10``, raised to ``sigma / 2``);
* the normal is ``(u, v, h)`` scaled to unit length, blended towards the flat normal
  ``(0, 0, 1)`` where the matting is below 1, and quantised as ``x * 127.5 + 127.5``,
  clipped and truncated to uint8.

Every step is float32, as in the reference (no float64 scalar takes part there, so no
step is promoted), and the steps are the same numpy operations in the same order: the
uint8 output is bit for bit the reference's (tests/parity/test_normal_map_parity.py).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from PIL import Image

from .images import resize_and_center_crop

logger = logging.getLogger("iclight.normal_map")

NORMAL_LIGHTS = ("left", "right", "bottom", "top")
"""The order of the four relights that :func:`normal_map` and :func:`normal_map_image` take."""

_EPSILON = np.float32(1e-5)
"""Keeps the ratio to the ambient finite where all four relights are black."""

_SHARPNESS = np.float32(10.0 * 0.5)
"""The reference's ``sigma = 10`` enters as the exponent ``0.5 * sigma`` of ``h``: a high
power flattens ``h`` quickly as ``u, v`` grow, which tilts the normal towards the light."""


def normal_map(
    left: np.ndarray,
    right: np.ndarray,
    bottom: np.ndarray,
    top: np.ndarray,
    matting: np.ndarray,
) -> np.ndarray:
    """The reference's normal map -> HWC uint8 0..255 (x, y, z in R, G, B; flat is 127, 127, 255).

    ``left``, ``right``, ``bottom``, ``top``: the subject relit from each side, HWC with
    3 channels, float 0..1 (the reference's ``pytorch2numpy(quant=False)``), all the same
    shape; they are computed in float32 (other float types are converted first).
    ``matting``: HW or HW1 float 0..1 at the same H, W: 1 is subject, 0 background, where
    the normal is the flat ``(0, 0, 1)``.

    Raises ValueError for mismatched shapes and for non-finite values.
    """
    relights = [_relight_array(name, arr) for name, arr in zip(NORMAL_LIGHTS, (left, right, bottom, top))]
    shape = relights[0].shape
    for name, arr in zip(NORMAL_LIGHTS[1:], relights[1:]):
        if arr.shape != shape:
            raise ValueError(f"normal_map: {name} is {arr.shape}, left is {shape}; the four relights must match")
    alpha = _matting_array(matting, shape[:2])
    lit_left, lit_right, lit_bottom, lit_top = relights

    # The sum's order is the reference's: float32 addition is not associative.
    ambient = (lit_left + lit_right + lit_bottom + lit_top) / np.float32(4.0)
    lit_left, lit_right, lit_bottom, lit_top = (_relative_to(arr, ambient) for arr in relights)

    # Halve before averaging the channels, as the reference does, so that a difference
    # too small for float32 is lost (or kept) at the same step.
    u = np.mean((lit_right - lit_left) * np.float32(0.5), axis=2)
    v = np.mean((lit_top - lit_bottom) * np.float32(0.5), axis=2)
    h = np.power((np.float32(1.0) - np.square(u) - np.square(v)).clip(0, np.float32(1e5)), _SHARPNESS)

    normal = np.stack([u, v, h], axis=2)
    # Never zero: h is 1 where u = v = 0, and u or v is nonzero wherever h is 0.
    normal /= np.sqrt(np.sum(np.square(normal), axis=2, keepdims=True))

    flat = np.zeros_like(normal)
    flat[..., 2] = 1.0
    blended = normal * alpha + flat * (np.float32(1.0) - alpha)
    logger.debug("normal map at %dx%d", shape[1], shape[0])
    # Truncation, not rounding: the reference's astype(uint8).
    return (blended * np.float32(127.5) + np.float32(127.5)).clip(0, 255).astype(np.uint8)


def normal_map_image(relights: Sequence[Image.Image], mask: Image.Image | None) -> Image.Image:
    """:func:`normal_map` for PIL images -> ``"RGB"`` at the relights' size.

    ``relights``: four images in :data:`NORMAL_LIGHTS` order (left, right, bottom, top),
    all the same size, 8 bits per channel 0..255 (converted to RGB if needed), taken as
    float32 ``x / 255``. ``mask``: the subject's ``"L"`` mask 0..255 (255 subject), or
    ``None`` for all subject; a mask of another size is scaled and centre-cropped to the
    relights' size, as the reference does with its matting.

    Raises ValueError unless there are exactly four relights of one size.
    """
    relights = list(relights)
    if len(relights) != len(NORMAL_LIGHTS):
        raise ValueError(
            f"normal_map_image: expected {len(NORMAL_LIGHTS)} relights ({', '.join(NORMAL_LIGHTS)}), got {len(relights)}"
        )
    size = relights[0].size
    for name, img in zip(NORMAL_LIGHTS, relights):
        if img.size != size:
            raise ValueError(f"normal_map_image: the {name} relight is {img.size}, the left one {size}")
    width, height = size

    arrays = [_unit_float(img.convert("RGB") if img.mode != "RGB" else img) for img in relights]
    if mask is None:
        matting = np.ones((height, width), dtype=np.float32)
    else:
        mask = mask.convert("L") if mask.mode != "L" else mask
        if mask.size != size:
            mask = resize_and_center_crop(mask, width, height)
        matting = _unit_float(mask)
    return Image.fromarray(normal_map(*arrays, matting), "RGB")


def _unit_float(img: Image.Image) -> np.ndarray:
    """uint8 0..255 -> float32 0..1, dividing as the reference does (not multiplying by 1/255)."""
    return np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255.0)


def _relight_array(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"normal_map: {name} must be HWC with 3 channels, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"normal_map: {name} must be float 0..1, got {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"normal_map: {name} contains NaN or infinity")
    return arr


def _matting_array(matting: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """HW or HW1 float 0..1 -> HW1 float32, to broadcast over the normal's 3 channels."""
    matting = np.asarray(matting)
    if matting.ndim == 3 and matting.shape[2] == 1:
        matting = matting[..., 0]
    if matting.shape != size_hw:
        raise ValueError(f"normal_map: matting must be HW or HW1 with HW = {size_hw}, got shape {matting.shape}")
    if not np.issubdtype(matting.dtype, np.floating):
        raise ValueError(f"normal_map: matting must be float 0..1, got {matting.dtype}")
    matting = matting.astype(np.float32, copy=False)
    if not np.isfinite(matting).all():
        raise ValueError("normal_map: matting contains NaN or infinity")
    return matting[..., None]


def _relative_to(arr: np.ndarray, ambient: np.ndarray) -> np.ndarray:
    """How much brighter than the ambient: ``(a + e) / (ambient + e) - 1``, float32."""
    return (arr + _EPSILON) / (ambient + _EPSILON) - np.float32(1.0)

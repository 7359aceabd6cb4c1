"""Sync resolution: a generation size with the subject's aspect ratio.

IC-Light conditions on the subject scaled and centre-cropped to the generation size, so a
size of another aspect ratio crops the subject. This picks the width and height with the
subject's aspect that keep about the pixel count (and so the cost and the detail) the user
had chosen.
"""

from __future__ import annotations

import logging
import math
import numbers

logger = logging.getLogger("iclight.resolution")


def synced_resolution(
    subject_size: tuple[int, int],
    current_size: tuple[int, int],
    *,
    multiple: int = 8,
    minimum: int = 64,
    maximum: int = 2048,
) -> tuple[int, int]:
    """``(width, height)`` with ``subject_size``'s aspect ratio and about ``current_size``'s area.

    Sizes are ``(width, height)`` in pixels, as PIL's ``Image.size``. Each side of the result
    is a multiple of ``multiple`` (8: the VAE's scale factor) within ``[minimum, maximum]``
    (rounded inwards to multiples). When the area-keeping size does not fit those bounds,
    it is scaled down until the long side fits, then up until the short side does, keeping
    the aspect ratio; only a subject too elongated for the bounds (e.g. 1:50) is then
    clamped, at ``minimum`` x ``maximum`` or the other way round.

    Each side is rounded to the nearest multiple on its own, so the aspect ratio is kept
    to within ``multiple / 2`` pixels on each side. A subject with the current size's
    aspect ratio gives back the current size (when that is on the grid and within bounds).

    Raises ValueError for a size that is not two positive finite numbers, and for bounds
    with no multiple of ``multiple`` between them.
    """
    subject_w, subject_h = _check_size("subject_size", subject_size)
    current_w, current_h = _check_size("current_size", current_size)
    for name, value in (("multiple", multiple), ("minimum", minimum), ("maximum", maximum)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    low = -(-minimum // multiple) * multiple
    high = maximum // multiple * multiple
    if low > high:
        raise ValueError(f"no multiple of {multiple} lies in [{minimum}, {maximum}]")

    area = current_w * current_h
    # Multiply before dividing: when the aspect ratios agree, area * w / h is exact and
    # the square root gives back the current sides exactly.
    width = math.sqrt(area * subject_w / subject_h)
    height = math.sqrt(area * subject_h / subject_w)
    shrink = min(1.0, high / max(width, height))
    width, height = width * shrink, height * shrink
    grow = max(1.0, low / min(width, height))
    width, height = width * grow, height * grow

    result = (_snap(width, multiple, low, high), _snap(height, multiple, low, high))
    logger.debug("synced resolution: subject %sx%s, current %sx%s -> %dx%d",
                 subject_w, subject_h, current_w, current_h, *result)
    return result


def _check_size(name: str, size: tuple[int, int]) -> tuple[float, float]:
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (width, height), got {size!r}") from None
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}: expected two positive numbers (width, height), got {size!r}")
    return width, height


def _snap(value: float, multiple: int, low: int, high: int) -> int:
    """The nearest multiple, halves rounded up (Python's round() would go to even), in [low, high]."""
    return min(high, max(low, multiple * math.floor(value / multiple + 0.5)))

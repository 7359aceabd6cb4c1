"""Light maps: the image that tells IC-Light (img2img) where the light comes from.

A light map is an RGB greyscale image, bright (255) on the lit side falling linearly
to dark (0) on the opposite side. Directions are named presets or angles in degrees,
measured counter-clockwise as on a compass rose drawn on the screen:

    0 = light from the right, 90 = from the top, 180 = from the left, 270 = from the bottom.

So ``"right"`` is the same map as ``0``, ``"top"`` as ``90`` and so on; 45 lights the
top-right corner brightest and the bottom-left corner darkest.
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
from PIL import Image

from .errors import ICLightError, describe_value

logger = logging.getLogger("iclight.lightmaps")

LIGHT_PRESETS: tuple[str, ...] = ("left", "right", "top", "bottom", "ambient")

AMBIENT_GREY = 127
"""The uniform level of the ``"ambient"`` map: the same mid grey the subject sits on."""

_PRESET_ANGLES = {"right": 0.0, "top": 90.0, "left": 180.0, "bottom": 270.0}
_ANGLE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:deg|degs|degree|degrees|°)?", re.IGNORECASE)


def parse_direction(direction: str | float | int) -> float | None:
    """The light angle in degrees [0, 360) for a preset name, number or numeric string
    (``"45"``, ``"45deg"``, ``"45°"``); ``None`` for ``"ambient"``.

    Raises ICLightError("light_map", ...) for anything else.
    """
    if isinstance(direction, bool):
        raise ICLightError.expected("light_map", _expected(), direction)
    if isinstance(direction, (int, float)):
        angle = float(direction)
    elif isinstance(direction, str):
        name = direction.strip().lower()
        if name == "ambient":
            return None
        if name in _PRESET_ANGLES:
            return _PRESET_ANGLES[name]
        match = _ANGLE.fullmatch(name)
        if match is None:
            raise ICLightError("light_map", f"unknown light direction {describe_value(direction)}; expected {_expected()}")
        angle = float(match.group(1))
    else:
        raise ICLightError.expected("light_map", _expected(), direction)
    if not math.isfinite(angle):
        raise ICLightError("light_map", f"the light angle must be a finite number of degrees, got {direction!r}")
    return angle % 360.0


def make_lightmap(direction: str | float, width: int, height: int) -> Image.Image:
    """A ``width`` x ``height`` RGB light map (uint8 0..255, all channels equal).

    ``direction`` is one of :data:`LIGHT_PRESETS` (case-insensitive) or an angle in
    degrees (see the module docstring). ``"ambient"`` is uniform grey 127; every other
    direction is a linear ramp from 255 at the lit edge/corner to 0 at the opposite one.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"make_lightmap: width and height must be positive, got {width}x{height}")
    angle = parse_direction(direction)
    logger.debug("light map %r -> angle %s at %dx%d", direction, angle, width, height)
    if angle is None:
        return Image.new("RGB", (width, height), (AMBIENT_GREY,) * 3)

    radians = math.radians(angle)
    # Rounded so that the axis-aligned presets have no stray 1e-17 component that could
    # flip a pixel's rounding and make "top" differ from 90.
    dx, dy = round(math.cos(radians), 12), round(math.sin(radians), 12)
    xs = np.arange(width, dtype=np.float64)[None, :]
    ys = np.arange(height, dtype=np.float64)[:, None]
    # Image rows grow downwards while the angle's "up" is positive, hence -dy.
    projection = xs * dx - ys * dy
    low, high = projection.min(), projection.max()
    if high - low < 1e-12:
        # A one-pixel-wide map lit along its zero-length axis: nothing to ramp across.
        ramp = np.full((height, width), AMBIENT_GREY, dtype=np.uint8)
    else:
        ramp = np.rint((projection - low) / (high - low) * 255.0).astype(np.uint8)
        ramp = np.broadcast_to(ramp, (height, width))
    return Image.fromarray(np.ascontiguousarray(ramp), "L").convert("RGB")


def _expected() -> str:
    return f"one of {', '.join(LIGHT_PRESETS)}, or an angle in degrees such as 45 (0 = right, 90 = top)"

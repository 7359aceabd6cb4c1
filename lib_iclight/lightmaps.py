"""Light maps and fbc backgrounds: the images that tell IC-Light where the light comes from.

Both are RGB greyscale images (HWC, uint8 0..255, all channels equal) holding a linear
ramp, bright on the lit side and dark on the opposite one:

* :func:`make_lightmap`: the img2img init image of an fc model, 255 -> 0, as the fc demo
  (lllyasviel/IC-Light ``gradio_demo.py``) draws it;
* :func:`make_background`: the background of an fbc model, 224 -> 32, as the fbc demo
  (``gradio_demo_bg.py``) draws it.

Directions are named presets or angles in degrees, counter-clockwise as on a compass rose
drawn on the screen:

    0 = light from the right, 90 = from the top, 180 = from the left, 270 = from the bottom.

So ``"right"`` is the same map as ``0`` or ``"angle:0"``, ``"top"`` as ``90`` and so on;
45 lights the top-right corner brightest and the bottom-left corner darkest.

Names (the API's and the X/Y/Z plot's): :data:`LIGHT_MAP_NAMES` plus ``angle:<degrees>``
(``angle:45``, ``angle:-30``, ``angle:12.5``); fbc background sources are
:data:`BG_SOURCES` plus the same ``angle:<degrees>``.
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
from PIL import Image

from .errors import ICLightError, describe_value

logger = logging.getLogger("iclight.lightmaps")

LIGHT_MAP_NAMES: tuple[str, ...] = ("left", "right", "top", "bottom", "ambient")
LIGHT_PRESETS = LIGHT_MAP_NAMES
"""The older name of :data:`LIGHT_MAP_NAMES`, kept for the UI and the X/Y/Z axes."""

BG_SOURCES: tuple[str, ...] = ("upload", "upload_flip", "left", "right", "top", "bottom", "ambient")
"""The fbc demo's ``BGSource`` values, lower-cased; its ``GREY`` ("Ambient") is ``"ambient"``."""
DEFAULT_BG_SOURCE = "upload"
_UPLOAD_SOURCES = frozenset({"upload", "upload_flip"})

AMBIENT_GREY = 127
"""The uniform level of the ``"ambient"`` light map (img2img init image).

The fc demo has no ambient light map; 127 is the grey IC-Light's subject is composited
on (``127 + (img - 127) * alpha``), so an ambient init image neither brightens nor darkens
the relit picture. It differs from :data:`AMBIENT_BACKGROUND` on purpose."""

AMBIENT_BACKGROUND = 64
"""The uniform level of the ``"ambient"`` fbc background: the fbc demo's ``GREY`` source
(``np.zeros(...) + 64``). A background behind the subject, not an init image, so it
follows the demo rather than :data:`AMBIENT_GREY`."""

LIGHTMAP_LEVELS = (255, 0)
"""(bright, dark) of :func:`make_lightmap`: the fc demo's ``np.linspace(255, 0, ...)``."""
BACKGROUND_LEVELS = (224, 32)
"""(bright, dark) of :func:`make_background`: the fbc demo's ``np.linspace(224, 32, ...)``."""

MAX_NAME_LENGTH = 64
"""Longer strings are never names: base64 images (the other thing an API field may hold)
are far longer, so :func:`parse_light_name` leaves them to the image decoder."""

ANGLE_PREFIX = "angle:"
_ANGLE_DOC = "angle:<degrees>"
_PRESET_ANGLES = {"right": 0.0, "top": 90.0, "left": 180.0, "bottom": 270.0}
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_ANGLE = re.compile(rf"({_NUMBER})\s*(?:deg|degs|degree|degrees|°)?", re.IGNORECASE)
_ANGLE_NAME = re.compile(rf"angle:\s*({_NUMBER})", re.IGNORECASE)
# angle -> (ramp along x?, does index 0 hold the lit side?), as the demos draw them.
_AXES: dict[float, tuple[bool, bool]] = {180.0: (True, True), 0.0: (True, False),
                                         90.0: (False, True), 270.0: (False, False)}


def light_map_names_doc() -> list[str]:
    """The accepted light-map names, for the API schema and error messages:
    ``["left", "right", "top", "bottom", "ambient", "angle:<degrees>"]``."""
    return [*LIGHT_MAP_NAMES, _ANGLE_DOC]


def bg_source_names() -> list[str]:
    """The accepted fbc background sources, for the API schema and error messages:
    ``["upload", "upload_flip", "left", "right", "top", "bottom", "ambient", "angle:<degrees>"]``."""
    return [*BG_SOURCES, _ANGLE_DOC]


def format_angle_name(degrees: float) -> str:
    """The canonical ``angle:<degrees>`` name: ``angle:45`` for 45.0, ``angle:12.5`` for 12.5.

    The sign and turns are kept as written (``angle:-30`` stays so): the name echoes the
    caller's request, and :func:`parse_direction` wraps it to [0, 360) when drawing."""
    if degrees.is_integer():
        return f"{ANGLE_PREFIX}{int(degrees)}"
    return f"{ANGLE_PREFIX}{degrees!r}"


def _angle_name(name: str) -> str | None:
    """Canonical ``angle:<degrees>`` for a stripped, lower-cased name; None if it is not one."""
    match = _ANGLE_NAME.fullmatch(name)
    if match is None:
        return None
    # Only digits reach float(), so the angle is finite (huge, at worst).
    return format_angle_name(float(match.group(1)))


def parse_light_name(value: object, field: str) -> str | None:
    """The canonical light-map name (lower-case, stripped) that ``value`` spells.

    Accepts :data:`LIGHT_MAP_NAMES` and ``angle:<degrees>``, case-insensitively. Returns
    None when ``value`` is not a str, or is a str that cannot be a name (blank, longer than
    :data:`MAX_NAME_LENGTH`, or a ``data:`` URL): the caller decodes those as images.
    Raises ICLightError(``field``, ...) listing the accepted names for any other str.
    """
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    if not name or len(value) > MAX_NAME_LENGTH or name.startswith("data:"):
        return None  # a blank string is "no image", as the image decoder reads it
    if name in LIGHT_MAP_NAMES:
        return name
    angle = _angle_name(name)
    if angle is not None:
        return angle
    raise ICLightError(field, f"unknown light map {describe_value(value)}; expected one of {_light_names_text()}")


def parse_bg_source(value: object) -> str:
    """The canonical fbc background source: one of :data:`BG_SOURCES` or ``angle:<degrees>``.

    Case-insensitive. Raises ICLightError("bg_source", ...) listing the accepted sources.
    """
    if isinstance(value, str) and len(value) <= MAX_NAME_LENGTH:
        name = value.strip().lower()
        if name in BG_SOURCES:
            return name
        angle = _angle_name(name)
        if angle is not None:
            return angle
    raise ICLightError("bg_source", f"unknown background source {describe_value(value)}; "
                                    f"expected one of {', '.join(bg_source_names())} (0 = right, 90 = top)")


def needs_upload(bg_source: str) -> bool:
    """Whether an fbc background source uses the uploaded background (``upload``,
    ``upload_flip``) rather than drawing one."""
    return bg_source.strip().lower() in _UPLOAD_SOURCES


def parse_direction(direction: str | float | int, field: str = "light_map") -> float | None:
    """The light angle in degrees [0, 360) for a preset name, ``angle:<degrees>``, a number
    or a numeric string (``"45"``, ``"45deg"``, ``"45°"``); ``None`` for ``"ambient"``.

    Raises ICLightError(``field``, ...) for anything else.
    """
    if isinstance(direction, bool):
        raise ICLightError.expected(field, _expected(), direction)
    if isinstance(direction, (int, float)):
        angle = float(direction)
    elif isinstance(direction, str):
        name = direction.strip().lower()
        if name == "ambient":
            return None
        if name in _PRESET_ANGLES:
            return _PRESET_ANGLES[name]
        match = _ANGLE_NAME.fullmatch(name) or _ANGLE.fullmatch(name)
        if match is None:
            raise ICLightError(field, f"unknown light direction {describe_value(direction)}; expected {_expected()}")
        angle = float(match.group(1))
    else:
        raise ICLightError.expected(field, _expected(), direction)
    if not math.isfinite(angle):
        raise ICLightError(field, f"the light angle must be a finite number of degrees, got {direction!r}")
    return angle % 360.0


def make_lightmap(direction: str | float, width: int, height: int) -> Image.Image:
    """A ``width`` x ``height`` RGB light map (HWC uint8 0..255, all channels equal).

    ``direction``: anything :func:`parse_direction` takes. Left, right, top and bottom
    (and 180, 0, 90, 270 however written) are bit-equal to the fc demo's maps: a
    ``np.linspace(255, 0, ...)`` ramp truncated to uint8. Other angles ramp linearly from
    255 at the lit edge/corner to 0 at the opposite one, truncated the same way.
    ``"ambient"`` is uniform :data:`AMBIENT_GREY` (127), the subject's grey, so it neither
    brightens nor darkens (the fc demo has none; see :data:`AMBIENT_GREY`).
    """
    return _draw("make_lightmap", "light_map", direction, width, height, LIGHTMAP_LEVELS, AMBIENT_GREY)


def make_background(direction: str | float, width: int, height: int) -> Image.Image:
    """A ``width`` x ``height`` RGB fbc background lit from ``direction`` (HWC uint8, all
    channels equal, values in 32..224).

    ``direction``: anything :func:`parse_direction` takes (not ``upload``: the caller
    brings that image). Left, right, top and bottom are bit-equal to the fbc demo's
    backgrounds (``np.linspace(224, 32, ...)`` truncated to uint8); other angles ramp
    224 -> 32 the same way; ``"ambient"`` is uniform :data:`AMBIENT_BACKGROUND` (64), the
    demo's ``GREY``. Raises ICLightError("bg_source", ...) for an unknown direction.
    """
    return _draw("make_background", "bg_source", direction, width, height, BACKGROUND_LEVELS, AMBIENT_BACKGROUND)


def _ramp(angle: float, width: int, height: int, bright: int, dark: int) -> np.ndarray:
    """An HW uint8 ramp from ``bright`` on the side lit from ``angle`` (degrees, [0, 360))
    to ``dark`` on the opposite side, truncated as the demos' ``astype(np.uint8)``."""
    axis = _AXES.get(angle)
    if axis is not None:
        along_x, lit_first = axis
        # The demos always run linspace from index 0 to the last index: (bright, dark) for
        # left/top but (dark, bright) for right/bottom. Reversing one for the other is not
        # the same after truncation (1 ulp below an integer drops a level), so follow them.
        start, stop = (bright, dark) if lit_first else (dark, bright)
        profile = np.linspace(start, stop, width if along_x else height).astype(np.uint8)
        shaped = profile[None, :] if along_x else profile[:, None]
        return np.ascontiguousarray(np.broadcast_to(shaped, (height, width)))

    radians = math.radians(angle)
    # Rounded so that mirror-image angles (45 and 135, 45 and -45) get equal magnitudes
    # and, with the integer distances below, draw bit-exact mirror-image maps.
    dx, dy = round(math.cos(radians), 12), round(math.sin(radians), 12)
    # Whole pixels from the lit column and row: the right column when the light has a
    # rightward component, the top row (index 0) when it has an upward one.
    from_lit_x = np.arange(width, dtype=np.float64)[None, :]
    if dx > 0:
        from_lit_x = from_lit_x[:, ::-1]
    from_lit_y = np.arange(height, dtype=np.float64)[:, None]
    if dy < 0:
        from_lit_y = from_lit_y[::-1, :]
    distance = abs(dx) * from_lit_x + abs(dy) * from_lit_y
    span = abs(dx) * (width - 1) + abs(dy) * (height - 1)
    if span == 0:
        # Every pixel lies on the lit edge (a 1x1 map, or an angle a hair off an axis
        # whose length is 1 pixel): nothing to ramp across, and no division by zero.
        return np.full((height, width), bright, dtype=np.uint8)
    # 0 on the lit edge, 1 on the opposite one; never outside [0, 1], so the levels stay
    # within [dark, bright] and the truncation cannot wrap.
    levels = bright + (dark - bright) * (distance / span)
    return levels.astype(np.uint8)


def _draw(what: str, field: str, direction: str | float, width: int, height: int,
          levels: tuple[int, int], ambient: int) -> Image.Image:
    """``"RGB"`` ``width`` x ``height``: the ``levels`` (bright, dark) ramp lit from
    ``direction``, or uniform ``ambient`` for ``"ambient"``; errors name ``field``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"{what}: width and height must be positive, got {width}x{height}")
    angle = parse_direction(direction, field=field)
    logger.debug("%s %r -> angle %s at %dx%d", what, direction, angle, width, height)
    if angle is None:
        return Image.new("RGB", (width, height), (ambient,) * 3)
    return Image.fromarray(_ramp(angle, width, height, *levels), "L").convert("RGB")


def _light_names_text() -> str:
    return f"{', '.join(light_map_names_doc())} (0 = right, 90 = top)"


def _expected() -> str:
    return f"one of {_light_names_text()}, or a number of degrees such as 45"

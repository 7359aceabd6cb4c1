"""The extension's WebUI settings, as data.

The WebUI glue (``backends/webui_glue.py``) turns :data:`OPTIONS` into ``shared.OptionInfo``
entries under :data:`SECTION`; the script reads them back with :func:`read_settings`.
Nothing here imports a WebUI or Gradio, so the defaults and the reader are testable alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal

logger = logging.getLogger("iclight.settings")

SECTION: tuple[str, str] = ("ic_light", "IC Light")
"""(section id, title) as A1111's ``OptionInfo(section=...)`` expects."""

KNOWN_REMBG_MODELS: tuple[str, ...] = (
    "u2net_human_seg",
    "isnet-general-use",
    "u2net",
    "isnet-anime",
    "silueta",
    "u2netp",
    "u2net_cloth_seg",
    "birefnet-general",
    "birefnet-general-lite",
    "birefnet-portrait",
    "birefnet-dis",
    "birefnet-hrsod",
    "birefnet-cod",
    "birefnet-massive",
    "bria-rmbg",
)
"""Model names offered in the setting's multi-select. A static list on purpose: asking
rembg for its registry would import it, which costs about a minute on a fresh install and
must not happen while the settings page is built. The panel still only offers the models
the installed rembg actually has."""

DEFAULT_REMBG_MODELS: tuple[str, ...] = ("u2net_human_seg", "isnet-general-use", "u2net", "isnet-anime", "silueta")
"""Small, general models that cover people, objects and anime; the BiRefNet ones are
several hundred MB each, so a user opts into them."""

DetailTransferMode = Literal["append", "replace"]
DETAIL_TRANSFER_MODES: tuple[str, ...] = ("append", "replace")

CACHE_SIZE_RANGE: tuple[int, int] = (1, 4)


@dataclass(frozen=True)
class OptionSpec:
    """One setting: its key in ``shared.opts``, default, label and widget.

    ``widget`` is ``"checkbox"``, ``"radio"``, ``"slider"`` or ``"multiselect"``; ``choices``
    applies to radio and multiselect, ``minimum``/``maximum`` to the slider.
    """

    key: str
    default: Any
    label: str
    widget: Literal["checkbox", "radio", "slider", "multiselect"]
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    info: str = ""


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "iclight_rembg_models", list(DEFAULT_REMBG_MODELS), "Background removal models listed in the IC Light panel",
        "multiselect", choices=KNOWN_REMBG_MODELS,
        info="rembg downloads a model on its first use; the API accepts any model rembg has",
    ),
    OptionSpec(
        "iclight_detail_transfer_mode", "append", "Detail transfer result", "radio", choices=DETAIL_TRANSFER_MODES,
        info="append: add the detail-transferred image to the outputs; replace: use it instead of the generated one",
    ),
    OptionSpec(
        "iclight_append_removed_bg", True, "Append the background-removed input to the outputs", "checkbox",
    ),
    OptionSpec(
        "iclight_offset_cache_size", 2, "IC-Light models kept in memory (Forge family)", "slider",
        minimum=CACHE_SIZE_RANGE[0], maximum=CACHE_SIZE_RANGE[1],
        info="each model costs its file's size in RAM: 1.7 GB for the official fp16 files, 0.86 GB for fp8 ones; "
             "AUTOMATIC1111 reads the file when it merges and keeps none",
    ),
    OptionSpec(
        "iclight_keep_merged", True, "Keep IC-Light merged between generations",
        "checkbox",
        info="repeated IC-Light generations merge nothing. AUTOMATIC1111: one extra copy of the UNet weights "
             "in memory; Forge family: the UNet stays merged, as with a LoRA, and the WebUI restores it before "
             "the next plain generation. Off: the UNet is restored after every generation",
    ),
)

OPTIONS_BY_KEY: dict[str, OptionSpec] = {option.key: option for option in OPTIONS}


def component_args(option: OptionSpec) -> dict[str, Any]:
    """The keyword arguments of the option's Gradio widget (A1111's ``component_args``)."""
    if option.widget in ("radio", "multiselect"):
        return {"choices": list(option.choices)}
    if option.widget == "slider":
        return {"minimum": option.minimum, "maximum": option.maximum, "step": 1}
    return {}


@dataclass(frozen=True)
class ICLightSettings:
    """The settings as the script uses them, already validated."""

    rembg_models: tuple[str, ...] = DEFAULT_REMBG_MODELS
    detail_transfer_mode: DetailTransferMode = "append"
    append_removed_bg: bool = True
    offset_cache_size: int = 2
    keep_merged: bool = True


def read_settings(get: Callable[[str, Any], Any]) -> ICLightSettings:
    """Read the settings with ``get(key, default)`` (e.g. ``shared.opts.data.get``).

    A value of the wrong type or out of range (a hand-edited config.json, an older
    version's value) falls back to the default with a warning, rather than failing a
    generation over a preference.
    """
    defaults = ICLightSettings()

    def value(key: str) -> Any:
        return get(key, OPTIONS_BY_KEY[key].default)

    def flag(key: str) -> bool:
        got = value(key)
        if isinstance(got, bool):
            return got
        _warn(key, got)
        return OPTIONS_BY_KEY[key].default

    raw_models = value("iclight_rembg_models")
    if isinstance(raw_models, str):  # an older config may hold a comma-separated string
        raw_models = [part.strip() for part in raw_models.split(",")]
    if isinstance(raw_models, (list, tuple)) and all(isinstance(m, str) for m in raw_models):
        rembg_models = tuple(dict.fromkeys(m for m in raw_models if m))
    else:
        _warn("iclight_rembg_models", raw_models)
        rembg_models = defaults.rembg_models

    mode = value("iclight_detail_transfer_mode")
    if mode not in DETAIL_TRANSFER_MODES:
        _warn("iclight_detail_transfer_mode", mode)
        mode = defaults.detail_transfer_mode

    append = flag("iclight_append_removed_bg")

    size = value("iclight_offset_cache_size")
    if isinstance(size, float) and size.is_integer():  # sliders may store 2.0
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int) or not CACHE_SIZE_RANGE[0] <= size <= CACHE_SIZE_RANGE[1]:
        _warn("iclight_offset_cache_size", size)
        size = defaults.offset_cache_size

    keep = flag("iclight_keep_merged")

    return ICLightSettings(rembg_models, mode, append, size, keep)


def _warn(key: str, got: Any) -> None:
    logger.warning("setting %s has an unusable value %r; using its default %r", key, got, OPTIONS_BY_KEY[key].default)

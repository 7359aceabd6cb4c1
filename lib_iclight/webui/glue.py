"""The few places the extension meets the WebUI itself: settings, API routes, model
folders, and the panel's inputs (model names, the rembg models chosen in settings).

Shared by A1111 1.10, Forge 2, Forge Classic and reForge, which keep the same
``modules.shared`` / ``modules.script_callbacks`` / ``modules.paths`` names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from modules import paths, script_callbacks, scripts, shared
from PIL import Image

from . import api_request_args, ui
from .api_routes import register_routes
from ..rembg_session import cut_out_subject, list_rembg_models
from .settings import OPTIONS, SECTION, ICLightSettings, OptionSpec, component_args, read_settings
from ..weights import ICModelInfo, list_models, list_unreadable, resolve_model
from . import xyz_axes

logger = logging.getLogger("iclight.webui_glue")

EXTENSION_DIR = Path(__file__).resolve().parents[2]

_WIDGETS = {"checkbox": gr.Checkbox, "radio": gr.Radio, "slider": gr.Slider, "multiselect": gr.CheckboxGroup}


def model_dirs() -> list[Path]:
    """Folders searched for IC-Light files, first match wins: ``--ic-light-dir``,
    ``<models>/ic-light``, then the extension's own ``models`` folder."""
    dirs: list[Path] = []
    flag = getattr(shared.cmd_opts, "ic_light_dir", None)
    if flag:
        dirs.append(Path(flag).expanduser())
    dirs.append(Path(paths.models_path) / "ic-light")
    dirs.append(EXTENSION_DIR / "models")
    return dirs


def list_ic_models() -> list[ICModelInfo]:
    return list_models(model_dirs())


def settings() -> ICLightSettings:
    return read_settings(shared.opts.data.get)


def interrupted() -> bool:
    """Whether the user interrupted or skipped the generation running now."""
    state = getattr(shared, "state", None)
    return any(bool(getattr(state, flag, False)) for flag in ("interrupted", "skipped", "stopping_generation"))


def color_target(image: Image.Image) -> Any:
    """The WebUI's colour correction target for ``image`` (``processing.setup_color_correction``)."""
    from modules import processing

    return processing.setup_color_correction(image)


def _preview(image: Image.Image, model: str, fg: int, bg: int, erode: int) -> Image.Image:
    return cut_out_subject(image, model, fg, bg, erode).image


def _model_kinds() -> dict[str, str]:
    return {info.name: info.kind for info in list_ic_models()}


SIZE_FIELD_IDS = {False: ("txt2img_width", "txt2img_height"), True: ("img2img_width", "img2img_height")}
"""The elem_ids of the WebUI's own width and height sliders, per tab (``modules/ui.py``)."""
SUBJECT_FIELD_ID = "img2img_image"
"""The img2img input image; Forge 2's is a canvas, not an image widget, and gets no button."""
_REMEMBERED_IDS = frozenset({*SIZE_FIELD_IDS[False], *SIZE_FIELD_IDS[True], SUBJECT_FIELD_ID})


def remember_field(fields: dict[str, Any], component: Any, elem_id: str | None) -> None:
    """The script's ``after_component``: keep the widgets Sync resolution reads and sets."""
    if elem_id in _REMEMBERED_IDS and (elem_id != SUBJECT_FIELD_ID or hasattr(component, "upload")):
        fields[elem_id] = component


def build_panel(is_img2img: bool, accordion_factory: Callable[..., Any], fields: dict[str, Any] | None = None) -> ui.Panel:
    """The script's ``ui()``. Lists model files (headers only) but never imports rembg:
    the rembg choices are the ones picked in settings. ``fields`` are the WebUI widgets
    :func:`remember_field` kept."""
    fields = fields or {}
    width_id, height_id = SIZE_FIELD_IDS[is_img2img]
    size_fields = (fields[width_id], fields[height_id]) if width_id in fields and height_id in fields else None
    kinds = _model_kinds()
    return ui.build_panel(
        is_img2img,
        accordion_factory,
        ic_model_names=list(kinds),
        rembg_model_names=list(settings().rembg_models),
        ic_model_kinds=kinds,
        refresh_models=_model_kinds,
        preview_fn=_preview,
        size_fields=size_fields,
        subject_field=fields.get(SUBJECT_FIELD_ID),
    )


def _option_info(option: OptionSpec) -> shared.OptionInfo:
    info = shared.OptionInfo(
        option.default, option.label, _WIDGETS[option.widget], component_args(option), section=SECTION
    )
    return info.info(option.info) if option.info else info


def _add_settings() -> None:
    for option in OPTIONS:
        shared.opts.add_option(option.key, _option_info(option))


def register_settings() -> None:
    script_callbacks.on_ui_settings(_add_settings)


def loaded_sd_model() -> Any:
    """The checkpoint loaded now, or None; never loads one (``shared.sd_model`` would)."""
    try:
        from modules import sd_models

        return getattr(getattr(sd_models, "model_data", None), "sd_model", None)
    except Exception:  # noqa: BLE001 - a WebUI without model_data: no model to report
        return None


def register_api_routes(status: Callable[[], dict[str, Any]] | None = None) -> None:
    """The ``/ic-light/v1`` routes, and the middleware that puts IC Light's ``args`` in
    generation requests in list form or answers 422 (:mod:`lib_iclight.webui.api_request_args`)."""

    def started(_demo: Any, app: Any) -> None:
        # Listing rembg models imports rembg (slow the first time), so it happens per
        # request, never while the app starts.
        register_routes(app, list_ic_models, list_rembg_models, lambda: list_unreadable(model_dirs()), status)
        api_request_args.install(app)

    script_callbacks.on_app_started(started)


def _add_xyz_axes() -> None:
    xyz_axes.register(
        scripts.scripts_data,
        model_kinds=_model_kinds,
        rembg_models=lambda: list(settings().rembg_models),
        resolve_model=lambda name: resolve_model(name, model_dirs()),
    )


def register_xyz_axes() -> None:
    # before_ui: every script is loaded (the X/Y/Z plot among them) and no tab has been
    # built yet; the WebUIs call it with and without --nowebui.
    script_callbacks.on_before_ui(_add_xyz_axes)

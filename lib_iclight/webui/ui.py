"""The IC Light panel: plain Gradio, the same code on Gradio 3.41 (A1111, Forge Classic,
reForge) and Gradio 4.40 (Forge 2).

Every argument widget is derived from :data:`lib_iclight.args.ARG_SPECS` (label, default,
range); this module only decides where each one sits and wires the helpers around them
(light-map presets, model refresh, background-removal preview).

Building the panel has no side effects: A1111 builds every script's UI when the API starts,
so nothing here imports rembg, reads a model file or touches the network. The callbacks
that do such work are handed in by the caller and only run on a click.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import gradio as gr
from PIL import Image

from ..args import ARG_NAMES, ARG_SPECS, LIGHT_MAP_INFOTEXT, SPECS_BY_NAME, ArgSpec
from ..errors import ICLightError
from ..images import decode_image
from ..lightmaps import BG_SOURCES, LIGHT_PRESETS, make_lightmap, parse_direction
from ..resolution import synced_resolution

logger = logging.getLogger("iclight.ui")

TITLE = "IC Light"
"""The accordion's title; also the script's name, so A1111 files it under the same heading."""

MODEL_ALIASES: tuple[str, ...] = ("fc", "fbc")
"""Names that stand for "the first model of that kind", accepted next to the file stems."""

PRESET_ANGLE = "angle"
PRESET_CUSTOM = "custom"
LIGHT_MAP_CHOICES: tuple[str, ...] = (*LIGHT_PRESETS, PRESET_ANGLE, PRESET_CUSTOM)
DEFAULT_LIGHT_ANGLE = 180  # light from the left, the first preset
LIGHT_MAP_SIZE = (512, 512)
"""The size of a rendered light map when the image slot is empty; the script resizes it
to the generation anyway, so this only has to be a sensible aspect-free default."""

REFRESH_SYMBOL = "\U0001f504"  # the same glyph A1111 uses on its refresh tool buttons

IMAGE_HEIGHT = 320
"""Pixels of every image slot, on both Gradios: without a height, an empty slot on Forge 2
(Gradio 4) took about 700 px."""


def _image_format_args() -> dict[str, str]:
    """Gradio 4 sends images to the browser as lossy WebP unless told otherwise. A light
    map drawn by a preset makes the round trip (browser, then back as the generation's
    input), so it must arrive as drawn: PNG. Gradio 3 always sends PNG and has no
    ``format``."""
    return {"format": "png"} if "format" in inspect.signature(gr.Image.__init__).parameters else {}

# Where each argument sits: one tuple per row below the accordion's header (``enable``),
# from each argument's ``row`` in ARG_SPECS.
_ROWS: tuple[tuple[str, ...], ...] = tuple(
    tuple(spec.name for spec in ARG_SPECS if spec.row == row) for row in sorted({s.row for s in ARG_SPECS[1:]})
)

AccordionFactory = Callable[..., Any]
"""``factory(value=bool, label=str, elem_id=str)`` -> a context manager that is itself the
``enable`` checkbox component (A1111's ``InputAccordion``)."""

PreviewFn = Callable[[Image.Image, str, int, int, int], Image.Image]
"""``preview(image, rembg_model, foreground_threshold, background_threshold, erode_size)``
-> the subject with its background removed."""

RefreshFn = Callable[[], Mapping[str, str]]
"""Re-lists the IC-Light models: ``{name: kind}`` in display order, kind ``"fc"``/``"fbc"``."""


@dataclass
class Panel:
    """The built panel.

    ``components`` are the argument components in ARG_SPECS order (the accordion, i.e.
    ``enable``, first; the 13 of the contract, then the options after them): what the
    script's ``ui()`` returns. ``infotext_fields`` pairs
    every non-image component with its infotext key. ``controls`` holds the helper widgets
    that are not arguments, and ``handlers`` the plain functions wired to their events, so
    that they can be exercised without a running server.
    """

    is_img2img: bool
    components: list[Any]
    infotext_fields: list[tuple[Any, str]]
    by_name: dict[str, Any]
    controls: dict[str, Any] = field(default_factory=dict)
    handlers: dict[str, Callable[..., Any]] = field(default_factory=dict)


def tab_name(is_img2img: bool) -> str:
    return "img2img" if is_img2img else "txt2img"


def elem_id(is_img2img: bool, name: str) -> str:
    """``iclight_<tab>_<name>``: unique per tab, as A1111's CSS and JS hooks expect."""
    return f"iclight_{tab_name(is_img2img)}_{name}"


def model_kind(name: str | None, kinds: Mapping[str, str]) -> str:
    """The kind (``"fc"``/``"fbc"``) of a model name shown in the dropdown.

    Known files answer from their header (``kinds``); the aliases stand for themselves;
    anything else (a name pasted from infotext of another machine) is guessed from the
    name, which is what community repacks put there.
    """
    if not name:
        return "fc"
    if name in kinds:
        return kinds[name]
    lowered = name.lower()
    if lowered in MODEL_ALIASES:
        return lowered
    return "fbc" if "fbc" in lowered else "fc"


def background_visible(is_img2img: bool, model_name: str | None, kinds: Mapping[str, str]) -> bool:
    """``uploaded_bg``, ``bg_source`` and ``normal_map`` are only used by fbc models, and
    only in txt2img (img2img's background comes from the light map)."""
    return not is_img2img and model_kind(model_name, kinds) == "fbc"


FBC_ONLY: tuple[str, ...] = ("uploaded_bg", "bg_source", "normal_map")
"""The arguments shown only while an fbc model is picked (txt2img)."""


def pasted_light_preset(params: Mapping[str, str]) -> Any:
    """The preset radio's value for a pasted ``IC Light light map`` entry: the name, or
    ``"angle"`` for an angle; no change without the entry."""
    value = params.get(LIGHT_MAP_INFOTEXT)
    if value is None:
        return gr.update()
    name = value.strip().lower()
    return name if name in LIGHT_PRESETS else PRESET_ANGLE


def pasted_light_angle(params: Mapping[str, str]) -> Any:
    """The angle slider's value for a pasted ``IC Light light map`` entry given as an angle."""
    value = params.get(LIGHT_MAP_INFOTEXT)
    try:
        angle = None if value is None or value.strip().lower() in LIGHT_PRESETS else parse_direction(value)
    except ICLightError:
        angle = None
    return gr.update() if angle is None else round(angle)


def model_choices(names: Sequence[str]) -> list[str]:
    """The dropdown's choices: the files found, then the aliases they do not shadow."""
    choices = list(dict.fromkeys(names))
    choices += [alias for alias in MODEL_ALIASES if alias not in choices]
    return choices


def render_lightmap(preset: str | None, angle: float | None, current: Image.Image | None) -> Image.Image | None:
    """The light map for a preset choice, at the size of the image already in the slot
    (else :data:`LIGHT_MAP_SIZE`); None for ``"custom"`` or no choice (keep the upload)."""
    if preset in LIGHT_PRESETS:
        direction: str | float = preset
    elif preset == PRESET_ANGLE:
        direction = float(angle if angle is not None else DEFAULT_LIGHT_ANGLE)
    else:
        return None
    width, height = current.size if current is not None else LIGHT_MAP_SIZE
    return make_lightmap(direction, width, height)


def build_panel(
    is_img2img: bool,
    accordion_factory: AccordionFactory,
    ic_model_names: Sequence[str],
    rembg_model_names: Sequence[str],
    default_rembg: str = SPECS_BY_NAME["rembg_model"].default,
    ic_model_kinds: Mapping[str, str] | None = None,
    refresh_models: RefreshFn | None = None,
    preview_fn: PreviewFn | None = None,
    size_fields: tuple[Any, Any] | None = None,
    subject_field: Any = None,
) -> Panel:
    """Build the panel inside the caller's Gradio context (A1111's script ``ui()``).

    ``ic_model_kinds`` maps model names to ``"fc"``/``"fbc"`` (from the file headers);
    without it, kinds are guessed from the names. ``refresh_models`` adds a refresh button,
    ``preview_fn`` (txt2img) a background-removal preview. Neither is called here.
    ``size_fields`` are the WebUI's width and height widgets; with them a "Sync resolution"
    button sets them from the subject: ``input_fg`` in txt2img, ``subject_field`` (the
    WebUI's img2img input) in img2img, where the button is left out without it.
    """
    kinds: dict[str, str] = dict(ic_model_kinds or {})
    builder = _Builder(is_img2img, list(ic_model_names), list(rembg_model_names), default_rembg, kinds)
    subject = subject_field if is_img2img else None

    enable_spec = ARG_SPECS[0]
    with accordion_factory(value=enable_spec.default, label=TITLE, elem_id=elem_id(is_img2img, enable_spec.name)) as enable:
        builder.by_name[enable_spec.name] = enable
        for row in _ROWS:
            with gr.Row():
                for name in row:
                    builder.add(SPECS_BY_NAME[name])
                if row[-1] == "model_type" and refresh_models is not None:
                    builder.add_refresh_button()
                # The image row: the subject and what is made of it, side by side.
                if row[-1] == "uploaded_bg":
                    if is_img2img:
                        builder.add_light_map_presets()
                    elif preview_fn is not None:
                        builder.add_preview()
            if row[-1] == "uploaded_bg":
                builder.add_image_buttons(preview="preview" in builder.controls,
                                          sync=size_fields is not None and (not is_img2img or subject is not None))
        # Events are wired once every widget exists: several read widgets placed after them.
        builder.wire(refresh_models, preview_fn)
        if "sync_resolution" in builder.controls and size_fields is not None:
            builder.wire_sync_resolution(subject if is_img2img else builder.by_name["input_fg"], *size_fields)

    components = [builder.by_name[name] for name in ARG_NAMES]
    infotext_fields: list[tuple[Any, Any]] = [
        (builder.by_name[spec.name], spec.infotext_key) for spec in ARG_SPECS if spec.infotext_key is not None
    ]
    if "light_preset" in builder.controls:
        infotext_fields += [(builder.controls["light_preset"], pasted_light_preset),
                            (builder.controls["light_angle"], pasted_light_angle)]
    logger.debug("built the %s panel: %d components", tab_name(is_img2img), len(components))
    return Panel(is_img2img, components, infotext_fields, builder.by_name, builder.controls, builder.handlers)


class _Builder:
    """Creates the widgets of one panel, remembers them by name, then wires their events."""

    def __init__(
        self, is_img2img: bool, model_names: list[str], rembg_names: list[str], default_rembg: str, kinds: dict[str, str]
    ) -> None:
        self.is_img2img = is_img2img
        self.model_names = model_names
        self.rembg_names = rembg_names
        self.default_rembg = default_rembg
        self.kinds = kinds  # updated in place by the refresh button
        self.by_name: dict[str, Any] = {}
        self.controls: dict[str, Any] = {}
        self.handlers: dict[str, Callable[..., Any]] = {}

    def _id(self, name: str) -> str:
        return elem_id(self.is_img2img, name)

    # ---------------------------------------------------------------- widgets

    def add(self, spec: ArgSpec) -> Any:
        """The widget of one argument, typed by its spec."""
        if spec.kind == "bool":
            component = gr.Checkbox(value=spec.default, label=spec.label, visible=self._visible(spec),
                                    elem_id=self._id(spec.name))
        elif spec.kind == "int":
            component = gr.Slider(
                minimum=spec.minimum, maximum=spec.maximum, value=spec.default, step=1,
                label=spec.label, elem_id=self._id(spec.name),
            )
        elif spec.kind == "image":
            component = self._image(spec)
        elif spec.name == "model_type":
            component = self._dropdown(spec, model_choices(self.model_names), spec.default)
        elif spec.name == "rembg_model":
            choices = list(dict.fromkeys([*self.rembg_names, self.default_rembg]))
            component = self._dropdown(spec, choices, self.default_rembg)
        elif spec.name == "bg_source":
            # Custom values take an angle: "angle:45".
            component = self._dropdown(spec, list(BG_SOURCES), spec.default, visible=self._visible(spec))
        else:  # pragma: no cover - a new str argument needs its choices decided here
            component = gr.Textbox(value=spec.default, label=spec.label, elem_id=self._id(spec.name))
        self.by_name[spec.name] = component
        return component

    def _visible(self, spec: ArgSpec) -> bool:
        if spec.name == "reinforce_fg":
            return self.is_img2img  # it only applies to img2img
        if spec.name in FBC_ONLY:
            return background_visible(self.is_img2img, SPECS_BY_NAME["model_type"].default, self.kinds)
        return True

    def _dropdown(self, spec: ArgSpec, choices: list[str], value: str, visible: bool = True) -> Any:
        # Custom values keep a model name pasted from someone else's infotext instead of
        # dropping it; the script reports it by name if it really is missing.
        return gr.Dropdown(
            choices=choices, value=value, label=spec.label, allow_custom_value=True, visible=visible,
            elem_id=self._id(spec.name),
        )

    def _image(self, spec: ArgSpec) -> Any:
        label = spec.label
        visible = True
        if spec.name == "input_fg" and self.is_img2img:
            label = "Light map"  # img2img's own input is the subject
        if spec.name == "uploaded_bg":
            visible = self._visible(spec)
        # No source=/sources=/tool=: they differ between Gradio 3 and 4, and the defaults
        # (upload, plus webcam/clipboard on 4) are what we want.
        return gr.Image(
            type="pil", image_mode="RGBA", label=label, visible=visible, height=IMAGE_HEIGHT,
            elem_id=self._id(spec.name), **_image_format_args(),
        )

    def add_refresh_button(self) -> None:
        self.controls["refresh_models"] = gr.Button(
            value=REFRESH_SYMBOL, elem_classes=["tool"], elem_id=self._id("refresh_models")
        )

    def add_light_map_presets(self) -> None:
        """img2img, beside the light map: presets that draw it into ``input_fg``;
        "custom" = upload."""
        with gr.Column():
            self.controls["light_preset"] = gr.Radio(
                choices=list(LIGHT_MAP_CHOICES), value=None, label="Light map preset",
                elem_id=self._id("light_preset"),
            )
            self.controls["light_angle"] = gr.Slider(
                minimum=0, maximum=359, value=DEFAULT_LIGHT_ANGLE, step=1,
                label="Light angle (0 = right, 90 = top)", visible=False, elem_id=self._id("light_angle"),
            )

    def add_preview(self) -> None:
        """txt2img, beside ``input_fg``: the subject with its background removed, shown
        once :meth:`add_image_buttons`' preview button is pressed."""
        self.controls["preview"] = gr.Image(
            type="pil", label="Background removed", interactive=False, visible=False, height=IMAGE_HEIGHT,
            elem_id=self._id("preview"), **_image_format_args(),
        )

    def add_image_buttons(self, *, preview: bool, sync: bool) -> None:
        """Below the images: the background-removal preview (txt2img) and Sync resolution."""
        if not (preview or sync):
            return
        with gr.Row():
            if preview:
                self.controls["preview_button"] = gr.Button(
                    value="Preview background removal", elem_id=self._id("preview_button")
                )
            if sync:
                self.controls["sync_resolution"] = gr.Button(
                    value="Sync resolution", elem_id=self._id("sync_resolution")
                )

    # ---------------------------------------------------------------- events

    def wire(self, refresh_models: RefreshFn | None, preview_fn: PreviewFn | None) -> None:
        if not self.is_img2img:
            self._wire_background_visibility()
        if "refresh_models" in self.controls and refresh_models is not None:
            self._wire_refresh(refresh_models)
        if "light_preset" in self.controls:
            self._wire_light_map_presets()
        if "preview_button" in self.controls and preview_fn is not None:
            self._wire_preview(preview_fn)

    def _wire_background_visibility(self) -> None:
        def on_model_change(name: str | None) -> tuple[Any, ...]:
            visible = background_visible(False, name, self.kinds)
            return tuple(gr.update(visible=visible) for _ in FBC_ONLY)

        model_type = self.by_name["model_type"]
        model_type.change(fn=on_model_change, inputs=[model_type], outputs=[self.by_name[name] for name in FBC_ONLY])
        self.handlers["model_type"] = on_model_change

    def wire_sync_resolution(self, subject: Any, width: Any, height: Any) -> None:
        """Sync resolution: the subject's aspect at about the current area, multiples of 8."""

        def sync(image: Any, current_width: float, current_height: float) -> tuple[int, int]:
            try:
                subject = decode_image(image, "subject")  # what an image widget sends, dicts included
            except ICLightError as exc:
                raise gr.Error(f"Sync resolution: {exc}") from exc
            if subject is None:
                raise gr.Error("Sync resolution: upload the subject image first")
            return synced_resolution(subject.size, (int(current_width), int(current_height)))

        self.controls["sync_resolution"].click(fn=sync, inputs=[subject, width, height], outputs=[width, height])
        self.handlers["sync_resolution"] = sync

    def _wire_refresh(self, refresh_models: RefreshFn) -> None:
        def refresh(current: str | None) -> Any:
            found = dict(refresh_models())
            self.kinds.clear()
            self.kinds.update(found)
            logger.info("IC-Light models: %s", ", ".join(found) or "none found")
            dropdown = gr.update(choices=model_choices(list(found)), value=current or SPECS_BY_NAME["model_type"].default)
            if self.is_img2img:
                return dropdown
            visible = background_visible(False, current, self.kinds)
            return (dropdown, *(gr.update(visible=visible) for _ in FBC_ONLY))

        def clear(current: str | None) -> tuple[str | None, Any]:
            # Gradio 4.40's dropdown, when it allows custom values, keeps the index of its
            # checked entry when only its choices change: after a refresh the check mark
            # sits on whichever model moved into that place, and a click on that model
            # does nothing. A change of value re-derives the index, so the refresh first
            # empties the value (kept here), then sets it again with the new choices.
            return current, gr.update(value=None)

        model_type = self.by_name["model_type"]
        held = gr.State()
        outputs = [model_type] if self.is_img2img else [model_type, *(self.by_name[name] for name in FBC_ONLY)]
        self.controls["refresh_models"].click(fn=clear, inputs=[model_type], outputs=[held, model_type]).then(
            fn=refresh, inputs=[held], outputs=outputs
        )
        self.handlers["refresh_models"] = refresh

    def _wire_light_map_presets(self) -> None:
        light_map = self.by_name["input_fg"]
        preset, angle = self.controls["light_preset"], self.controls["light_angle"]

        def on_preset(choice: str | None, degrees: float, current: Image.Image | None) -> tuple[Any, Any]:
            rendered = render_lightmap(choice, degrees, current)
            return (rendered if rendered is not None else gr.update()), gr.update(visible=choice == PRESET_ANGLE)

        def on_angle(choice: str | None, degrees: float, current: Image.Image | None) -> Any:
            rendered = render_lightmap(choice, degrees, current) if choice == PRESET_ANGLE else None
            return rendered if rendered is not None else gr.update()

        def on_upload() -> Any:
            # The user's own picture is a custom light map; saying so keeps the radio honest
            # and makes the next preset click a real change that redraws the map.
            return gr.update(value=PRESET_CUSTOM)

        preset.change(fn=on_preset, inputs=[preset, angle, light_map], outputs=[light_map, angle])
        # release fires once per drag, where change would redraw on every step of it.
        angle_event = getattr(angle, "release", None) or angle.change
        angle_event(fn=on_angle, inputs=[preset, angle, light_map], outputs=[light_map])
        upload_event = getattr(light_map, "upload", None)
        if upload_event is not None:
            upload_event(fn=on_upload, inputs=[], outputs=[preset])
        self.handlers.update(light_preset=on_preset, light_angle=on_angle)

    def _wire_preview(self, preview_fn: PreviewFn) -> None:
        def preview(image: Image.Image | None, model: str, fg: float, bg: float, erode: float) -> Any:
            if image is None:
                raise gr.Error("input_fg: upload a subject image first")
            try:
                result = preview_fn(image, model, int(fg), int(bg), int(erode))
            except ICLightError as exc:
                raise gr.Error(str(exc)) from exc
            return gr.update(value=result, visible=True)

        names = ("input_fg", "rembg_model", "foreground_threshold", "background_threshold", "erode_size")
        self.controls["preview_button"].click(
            fn=preview, inputs=[self.by_name[name] for name in names], outputs=[self.controls["preview"]]
        )
        self.handlers["preview"] = preview


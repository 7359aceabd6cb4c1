"""IC Light's axes for the WebUIs' built-in X/Y/Z plot: what each one sets, how its values
are checked, and how a cell's value reaches the script.

The X/Y/Z plot makes each cell from a shallow ``copy(p)`` and calls every axis's
``apply(pc, value, values)`` on it before ``process_images(pc)``. The script's own args
come from ``pc.script_args``, which the copy shares with every other cell, so an axis
cannot edit them. Instead an axis records its parsed value (:func:`parse_value`) on the
cell's ``p`` (the WebUI layer's request context), and the ``process`` hook lays those
values over the args it was given (:func:`with_overrides`) before validating them. The
13-arg contract is untouched; the values only live on the cell's copy of ``p``.

An axis changes a value, never the switch: IC Light must be enabled in its panel (or in
the API's args). A grid whose IC Light axis would change nothing is refused by name
(:func:`check_enabled`), instead of drawing identical cells.

Nothing here imports a WebUI; :mod:`lib_iclight.webui.xyz_axes` registers the axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

from .args import ARG_NAMES, LIGHT_MAP_INFOTEXT, SPECS_BY_NAME, coerce, raw_values
from .errors import ICLightError
from .lightmaps import BG_SOURCES, LIGHT_PRESETS, parse_direction

LIGHT_MAP = "light_map"
"""The one axis target that is not an argument: a light-map direction (preset name or
angle in degrees) drawn with :func:`lib_iclight.lightmaps.make_lightmap` as ``input_fg``."""

Choices = Literal["models", "rembg_models", "bool", "light_presets", "bg_sources"]


@dataclass(frozen=True)
class AxisSpec:
    """One X/Y/Z axis: its label, the argument (or :data:`LIGHT_MAP`) it sets, the type
    the X/Y/Z plot converts each typed value with (``int`` enables its ``1-9 (+2)`` ranges),
    where its dropdown's choices come from, the tabs it appears on, and its ``cost``: the
    X/Y/Z plot loops over the costliest axis outermost, so a model switch (reading 0.9 to
    1.7 GB of offsets) happens once per value rather than once per cell."""

    label: str
    target: str
    value_type: type
    choices: Choices | None = None
    img2img_only: bool = False
    cost: float = 0.0
    txt2img_only: bool = False

    def on_tab(self, is_img2img: bool) -> bool:
        return not self.txt2img_only if is_img2img else not self.img2img_only


def _arg_axis(name: str, value_type: type, choices: Choices | None = None, cost: float = 0.0) -> AxisSpec:
    # Labelled like the argument's infotext entry, so a cell's infotext names the axis.
    label = SPECS_BY_NAME[name].infotext_key
    assert label is not None  # images have no infotext entry and no axis
    return AxisSpec(label, name, value_type, choices, cost=cost)


AXES: tuple[AxisSpec, ...] = (
    # Below the plot's checkpoint (1.0) and VAE (0.7): those reload more.
    _arg_axis("model_type", str, "models", cost=0.5),
    AxisSpec(LIGHT_MAP_INFOTEXT, LIGHT_MAP, str, "light_presets", img2img_only=True),
    AxisSpec("IC Light light angle", LIGHT_MAP, int, img2img_only=True),
    AxisSpec(SPECS_BY_NAME["bg_source"].infotext_key or "", "bg_source", str, "bg_sources", txt2img_only=True),
    _arg_axis("remove_bg", str, "bool"),
    _arg_axis("rembg_model", str, "rembg_models"),
    _arg_axis("detail_transfer_blur_radius", int),
    _arg_axis("foreground_threshold", int),
    _arg_axis("background_threshold", int),
    _arg_axis("erode_size", int),
)

AXES_BY_LABEL: dict[str, AxisSpec] = {axis.label: axis for axis in AXES}

BOOL_CHOICES = ("True", "False")


def axes_for(is_img2img: bool) -> list[AxisSpec]:
    """The axes shown on one tab."""
    return [axis for axis in AXES if axis.on_tab(is_img2img)]


def choices(axis: AxisSpec, is_img2img: bool, model_kinds: Mapping[str, str],
            rembg_models: Sequence[str]) -> list[str] | None:
    """The dropdown choices of ``axis`` (None: a free text field).

    img2img relights with fc models only, so its model axis offers only those.
    """
    if axis.choices == "models":
        return [name for name, kind in model_kinds.items() if not is_img2img or kind == "fc"]
    if axis.choices == "rembg_models":
        return list(dict.fromkeys(rembg_models))
    if axis.choices == "bool":
        return list(BOOL_CHOICES)
    if axis.choices == "light_presets":
        return list(LIGHT_PRESETS)
    if axis.choices == "bg_sources":
        return list(BG_SOURCES)
    return None


def parse_value(axis: AxisSpec, value: object) -> Any:
    """One axis value, checked and typed as the script will use it.

    Raises ICLightError naming the argument (``light_map`` for the light-map axes).
    """
    if axis.target == LIGHT_MAP:
        parse_direction(value)  # type: ignore[arg-type] - raises for anything else
        return value.strip() if isinstance(value, str) else value
    return coerce(SPECS_BY_NAME[axis.target], value)


def confirm(axis: AxisSpec, values: Sequence[object], is_img2img: bool,
            resolve_model: Callable[[str], Any] | None = None) -> None:
    """Check every value of a grid's axis before the first cell runs.

    ``resolve_model(name)`` returns the model's info (with ``.kind`` and ``.name``) or
    raises ICLightError; with it, unknown models, and fbc models in img2img, are refused.
    """
    for value in values:
        parsed = parse_value(axis, value)
        if axis.target == "model_type" and resolve_model is not None:
            info = resolve_model(parsed)
            if is_img2img and info.kind != "fc":
                raise ICLightError("model_type", f"img2img relighting needs an fc model, {info.name} is {info.kind}")


def with_overrides(raw_args: Sequence[Any] | Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The script's raw args by name, with the axis values laid over them.

    Accepts every form :func:`lib_iclight.args.parse_args` does; the light map is not an
    argument and is left to :func:`light_map_of`.
    """
    named = raw_values(raw_args)
    named.update({name: value for name, value in overrides.items() if name in ARG_NAMES})
    return named


def light_map_of(overrides: Mapping[str, Any]) -> str | int | float | None:
    """The light-map direction an axis set, or None."""
    return overrides.get(LIGHT_MAP)


def check_enabled(enabled: bool, overrides: Mapping[str, Any]) -> None:
    """Refuse an IC Light axis on a generation whose IC Light panel is off.

    The axes change values, not the switch: a grid over them would otherwise draw the
    same image in every cell without a word.
    """
    if overrides and not enabled:
        first_label: dict[str, str] = {}
        for axis in AXES:
            first_label.setdefault(axis.target, axis.label)
        raise not_enabled([first_label[target] for target in overrides if target in first_label])


def not_enabled(labels: Sequence[str]) -> ICLightError:
    """The error for IC Light axes (by label) on a generation with IC Light off."""
    return ICLightError(
        "enable",
        f"the X/Y/Z plot sets {', '.join(labels)}, but IC Light is not enabled; tick IC Light in its panel "
        "(an axis changes a value, it does not turn IC Light on)",
    )


def infotext(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Infotext entries for axis values that are not already among the args' entries."""
    direction = light_map_of(overrides)
    return {} if direction is None else {LIGHT_MAP_INFOTEXT: str(direction)}


def is_enabled(raw_args: Sequence[Any] | Mapping[str, Any]) -> bool:
    """Whether raw script args (any form) have IC Light enabled; False when they cannot
    be read (the ``process`` hook reports those)."""
    try:
        return bool(coerce(SPECS_BY_NAME["enable"], raw_values(raw_args)["enable"]))
    except ICLightError:
        return False


def markdown_table() -> str:
    """The README's table of axes, generated so it cannot drift from :data:`AXES`."""
    values = {
        "models": "the IC-Light models found (img2img: fc models)",
        "rembg_models": "the rembg models listed in settings",
        "bool": "`True`, `False`",
        "light_presets": "`left`, `right`, `top`, `bottom`, `ambient`, `angle:<degrees>`",
        "bg_sources": "`upload`, `upload_flip`, `left`, `right`, `top`, `bottom`, `ambient`, `angle:<degrees>`",
    }
    lines = ["| axis | tabs | values | sets |", "|---|---|---|---|"]
    for axis in AXES:
        tabs = "img2img" if axis.img2img_only else "txt2img" if axis.txt2img_only else "txt2img, img2img"
        if axis.choices is not None:
            accepted = values[axis.choices]
        elif axis.target == LIGHT_MAP:
            accepted = "degrees, e.g. `0-270 (+90)` (0 = right, 90 = top)"
        else:
            spec = SPECS_BY_NAME[axis.target]
            accepted = f"{spec.minimum}..{spec.maximum}, ranges like `4-16 (+4)`"
        target = "the light map (drawn for each cell)" if axis.target == LIGHT_MAP else f"`{axis.target}`"
        lines.append(f"| {axis.label} | {tabs} | {accepted} | {target} |")
    return "\n".join(lines)

"""The arguments of the "IC Light" script, defined once: the 13 of the public contract, then
the lighting options added after them.

The UI panel, the API parsing, the infotext, the ``/ic-light/v1/schema`` route and the
README table are all derived from ``ARG_SPECS``; nothing else lists the arguments.

Values arrive three ways, all handled by :func:`parse_args`:

- the positional list, in contract order: the 13 of the API wiki, optionally followed by
  the options after them (the UI panel sends them all);
- one dict with the same names (API), where a missing key takes its default: the way an
  API caller sets the options after the 13;
- JSON-ish values: ``true``/``1``/``"true"`` for bools, ``225.0`` or ``"225"`` for ints.

Anything else raises :class:`ICLightError` naming the argument, what it got and what
it accepts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

from PIL import Image

from .errors import ICLightError
from .images import decode_image
from .lightmaps import DEFAULT_BG_SOURCE, bg_source_names, light_map_names_doc, parse_bg_source, parse_light_name

ArgKind = Literal["bool", "str", "int", "image"]

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


@dataclass(frozen=True)
class ArgSpec:
    """One argument of the contract: its place, type, default, range, wording, the panel
    row it sits on, and whether it changes the prepared subject (:func:`subject_options`)."""

    name: str
    kind: ArgKind
    default: Any
    label: str
    doc: str
    minimum: int | None = None
    maximum: int | None = None
    row: int = 0
    subject: bool = False
    parser: Callable[[object], Any] | None = None
    """Coerces a ``"str"`` value (and refuses what it does not accept), instead of
    :func:`coerce_str`."""
    light_names: bool = False
    """An image argument that also takes a light map by name (``"left"``, ``"angle:45"``)."""
    extended: bool = False
    """After the 13 of the contract: written into infotext only when not at its default, so
    a request that does not use it makes the same image and the same infotext as before."""

    @property
    def infotext_key(self) -> str | None:
        """The infotext label, or None for images, which never go into infotext."""
        if self.kind == "image":
            return None
        return "IC Light" if self.name == "enable" else f"IC Light {self.label.lower()}"

    def accepts(self) -> str:
        """Human wording of what this argument accepts, for error messages and docs."""
        if self.kind == "bool":
            return "a bool (true/false, 1/0)"
        if self.kind == "int":
            return f"an int in {self.minimum}..{self.maximum}"
        if self.kind == "image":
            names = " or a light-map name" if self.light_names else ""
            return f"a base64 image string{names}, a PIL image, a numpy array or null"
        return "a string"


def _arg(default: Any, label: str, doc: str, *, row: int, minimum: int | None = None, maximum: int | None = None,
         subject: bool = False, parser: Callable[[object], Any] | None = None, light_names: bool = False,
         extended: bool = False) -> Any:
    """One field of :class:`ICLightArgs`, carrying its :class:`ArgSpec` (without name and kind,
    which come from the field)."""
    spec = dict(label=label, doc=doc, minimum=minimum, maximum=maximum, row=row, subject=subject, parser=parser,
                light_names=light_names, extended=extended)
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class ICLightArgs:
    """Validated arguments of one request, in contract order: the one place an argument is
    declared (its type, default, wording, panel row). Images are decoded PIL images."""

    enable: bool = _arg(False, "Enable", "Turn IC-Light on for this generation.", row=0)
    model_type: str = _arg(
        "fc", "Model", "IC-Light model: the file name without extension (e.g. `IC-Light-SD15-FC-fp8`), "
        "or `fc` / `fbc` for the first model of that kind.", row=1)
    input_fg: Image.Image | str | None = _arg(
        None, "Foreground", "txt2img: the subject. img2img: the light map, which becomes the init image "
        "(the img2img input is the subject): an image, or a light map by name: `left`, `right`, `top`, "
        "`bottom`, `ambient` or `angle:<degrees>` (0 = right, 90 = top), drawn at the generation size.",
        row=2, light_names=True)
    uploaded_bg: Image.Image | None = _arg(
        None, "Background", "The background image, required by fbc models in txt2img.", row=2)
    remove_bg: bool = _arg(
        True, "Remove background",
        "Cut the subject out with rembg and put it on grey 127. Off: the input's own alpha is used.",
        row=3, subject=True)
    rembg_model: str = _arg("u2net_human_seg", "Rembg model", "The rembg model name.", row=3, subject=True)
    foreground_threshold: int = _arg(225, "Foreground threshold", "Alpha-matting foreground threshold (rembg).",
                                     row=4, minimum=0, maximum=255, subject=True)
    background_threshold: int = _arg(16, "Background threshold", "Alpha-matting background threshold (rembg).",
                                     row=4, minimum=0, maximum=255, subject=True)
    erode_size: int = _arg(16, "Erode size", "Alpha-matting erode size (rembg).", row=4, minimum=0, maximum=128,
                           subject=True)
    detail_transfer: bool = _arg(
        False, "Detail transfer", "Copy fine detail from the input into the result (difference of Gaussians).", row=5)
    detail_transfer_raw: bool = _arg(
        False, "Detail transfer raw", "Take the detail from the raw input instead of the background-removed subject.",
        row=5, subject=True)
    detail_transfer_blur_radius: int = _arg(5, "Detail transfer blur radius", "Blur radius of the difference of Gaussians.",
                                            row=5, minimum=1, maximum=64)
    reinforce_fg: bool = _arg(False, "Reinforce foreground",
                              "img2img: paste the subject onto the light map before sampling.", row=6)
    # -- after the 13 of the contract: named keys of the dict form, panel controls below --
    bg_source: str = _arg(
        DEFAULT_BG_SOURCE, "Background source",
        "fbc: where the background comes from: `upload` (uploaded_bg), `upload_flip` (it mirrored), or a light "
        "by name, which needs no upload: `left`, `right`, `top`, `bottom` (gradients 224 to 32), `ambient` "
        "(grey 64) or `angle:<degrees>`, as the reference fbc demo draws them.",
        row=7, parser=parse_bg_source, extended=True)
    normal_map: bool = _arg(
        False, "Normal map",
        "fbc txt2img: relight with left, right, bottom and top light as one batch of 4 (one seed), and append "
        "the normal map the reference computes from them.", row=7, subject=True, extended=True)
    relight_in_place: bool = _arg(
        False, "Relight in place",
        "Also put each relit subject back onto the input photo's own background, through the subject's "
        "mask feathered by erode_size (an extra output).", row=7, extended=True)

    def infotext(self, model_name: str | None = None) -> dict[str, str]:
        """Infotext entries for this request: every non-image argument, never images.

        ``model_name`` replaces an alias like ``fc`` with the file actually used, so that
        pasting the infotext back picks the same model.
        """
        entries: dict[str, str] = {}
        for spec in ARG_SPECS:
            if spec.infotext_key is None:
                continue
            value = getattr(self, spec.name)
            if spec.extended and value == spec.default:
                continue
            if spec.name == "model_type" and model_name:
                value = model_name
            entries[spec.infotext_key] = str(value)
        if isinstance(self.input_fg, str):
            entries[LIGHT_MAP_INFOTEXT] = self.input_fg
        return entries


_KINDS: dict[str, ArgKind] = {"bool": "bool", "str": "str", "int": "int", "Image.Image | None": "image",
                              "Image.Image | str | None": "image"}
"""Field annotation (a string, under ``from __future__ import annotations``) -> ArgKind."""

ARG_SPECS: tuple[ArgSpec, ...] = tuple(
    ArgSpec(f.name, _KINDS[str(f.type)], f.default, **f.metadata["spec"]) for f in dataclasses.fields(ICLightArgs)
)
ARG_NAMES: tuple[str, ...] = tuple(spec.name for spec in ARG_SPECS)
SPECS_BY_NAME: dict[str, ArgSpec] = {spec.name: spec for spec in ARG_SPECS}
LIGHT_MAP_INFOTEXT = "IC Light light map"
"""The infotext entry of a light map given by name (the API's ``input_fg``, the X/Y/Z axes)."""
CONTRACT_ARGS = 13
"""How many arguments the public contract (the API wiki) lists; the rest are ``extended``."""
assert not any(spec.extended for spec in ARG_SPECS[:CONTRACT_ARGS])
assert all(spec.extended for spec in ARG_SPECS[CONTRACT_ARGS:])


def subject_options(args: ICLightArgs) -> dict[str, Any]:
    """The arguments that change the prepared subject (``subject=True``), by name: the
    keyword arguments of :func:`lib_iclight.conditioning.prepare_subject`."""
    return {spec.name: getattr(args, spec.name) for spec in ARG_SPECS if spec.subject}


def coerce_bool(spec: ArgSpec, value: object) -> bool:
    """JSON-ish bool: true/false, 1/0, "true"/"false"/"yes"/"no"/"on"/"off"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise ICLightError.expected(spec.name, spec.accepts(), value)


def coerce_int(spec: ArgSpec, value: object) -> int:
    """An int in range; integral floats (225.0) and numeric strings ("225") are accepted."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            as_float = float(text)
        except ValueError:
            as_float = math.nan
        if math.isfinite(as_float) and as_float.is_integer():
            number = int(as_float)
    if number is None or not (spec.minimum <= number <= spec.maximum):
        raise ICLightError.expected(spec.name, spec.accepts(), value)
    return number


def coerce_str(spec: ArgSpec, value: object) -> str:
    """A non-empty string, stripped; or what the spec's own ``parser`` makes of it."""
    if spec.parser is not None:
        return spec.parser(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ICLightError.expected(spec.name, "a non-empty string", value)


def coerce_image(spec: ArgSpec, value: object) -> Image.Image | str | None:
    """A decoded image; for an argument that takes light maps by name, a short string is
    that name (canonical, e.g. ``"angle:45"``), refused with the list of names if unknown."""
    if spec.light_names:
        try:
            name = parse_light_name(value, spec.name)
        except ICLightError as error:
            # A short string is a name or nothing: no image's base64 is that short.
            raise ICLightError(spec.name, f"{error.problem}; or a base64 image") from None
        if name is not None:
            return name
    return decode_image(value, spec.name)


def coerce(spec: ArgSpec, value: object) -> Any:
    """Coerce one raw value to its argument's type, or raise ICLightError."""
    if spec.kind == "bool":
        return coerce_bool(spec, value)
    if spec.kind == "int":
        return coerce_int(spec, value)
    if spec.kind == "str":
        return coerce_str(spec, value)
    return coerce_image(spec, value)


def raw_values(values: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """Name the raw values of a positional list or a dict; missing names take defaults.

    A list whose first item is a dict is the API's named form: A1111 hands the script
    the caller's one dict followed by the UI defaults for the remaining slots.
    """
    if isinstance(values, Mapping):
        named = dict(values)
    elif isinstance(values, (list, tuple)):
        if values and isinstance(values[0], Mapping):
            named = dict(values[0])
        else:
            if len(values) > len(ARG_SPECS):
                raise ICLightError(
                    "args", f"expected at most {len(ARG_SPECS)} values ({', '.join(ARG_NAMES)}), got {len(values)}"
                )
            named = dict(zip(ARG_NAMES, values))  # the 13, then the options after them (the panel)
    else:
        raise ICLightError.expected("args", f"a list of {len(ARG_SPECS)} values or a dict", values)
    unknown = sorted(str(key) for key in named if key not in SPECS_BY_NAME)
    if unknown:
        raise ICLightError("args", f"unknown argument(s) {', '.join(unknown)}; known: {', '.join(ARG_NAMES)}")
    return {spec.name: named.get(spec.name, spec.default) for spec in ARG_SPECS}


def parse_args(values: Sequence[Any] | Mapping[str, Any] | ICLightArgs) -> ICLightArgs:
    """Validate raw script args into :class:`ICLightArgs`.

    When ``enable`` is false nothing else is looked at: AlwaysOn scripts run on every
    generation, and a disabled panel must never break an unrelated request.
    """
    if isinstance(values, ICLightArgs):
        return values
    raw = raw_values(values)
    enable = coerce(SPECS_BY_NAME["enable"], raw["enable"])
    if not enable:
        return ICLightArgs(enable=False)
    parsed = {spec.name: coerce(spec, raw[spec.name]) for spec in ARG_SPECS}
    return ICLightArgs(**parsed)


def parse_infotext(params: Mapping[str, str]) -> dict[str, Any]:
    """Read IC-Light entries back from pasted infotext, typed per ARG_SPECS.

    Entries that are missing or do not parse are left out, so the UI keeps its value; but
    an IC-Light infotext without an option after the 13 was made with that option at its
    default (only other values are written), so pasting it restores the default.
    """
    restored: dict[str, Any] = {}
    ic_light = SPECS_BY_NAME["enable"].infotext_key in params
    for spec in ARG_SPECS:
        key = spec.infotext_key
        if key is not None and key not in params and spec.extended and ic_light:
            restored[spec.name] = spec.default
            continue
        if key is None or key not in params:
            continue
        try:
            restored[spec.name] = coerce(spec, params[key])
        except ICLightError:
            continue
    return restored


def json_schema() -> dict[str, Any]:
    """A JSON schema of the named (dict) form of the args, for the API's schema route."""
    properties: dict[str, Any] = {}
    for spec in ARG_SPECS:
        prop: dict[str, Any] = {"description": spec.doc, "default": spec.default}
        if spec.kind == "bool":
            prop["type"] = "boolean"
        elif spec.kind == "int":
            prop.update(type="integer", minimum=spec.minimum, maximum=spec.maximum)
        elif spec.kind == "str":
            prop["type"] = "string"
            if spec.name == "bg_source":
                prop["x-names"] = bg_source_names()
        else:
            prop["type"] = ["string", "null"]
            prop["contentEncoding"] = "base64"
            if spec.light_names:
                prop["x-light-map-names"] = light_map_names_doc()
        properties[spec.name] = prop
    return {
        "title": "IC Light",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "x-positional-order": list(ARG_NAMES),
        "x-contract-args": CONTRACT_ARGS,
        "x-light-map-names": light_map_names_doc(),
    }


def markdown_table() -> str:
    """The README's argument table, generated so it cannot drift from the contract."""
    lines = ["| # | name | type | default | meaning |", "|---|---|---|---|---|"]
    for index, spec in enumerate(ARG_SPECS):
        kind = f"int {spec.minimum}..{spec.maximum}" if spec.kind == "int" else spec.kind
        default = "null" if spec.default is None else repr(spec.default).replace("'", '"')
        lines.append(f"| {index} | `{spec.name}` | {kind} | `{default}` | {spec.doc} |")
    return "\n".join(lines)

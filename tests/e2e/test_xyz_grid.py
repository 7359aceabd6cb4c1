"""IC Light's X/Y/Z plot axes on a live WebUI, through the API (skipped without WEBUI_URL).

A 2x2 img2img grid of IC Light model x light-map preset must give four different images,
each the same as that cell's request made alone, with the same seed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lib_iclight.lightmaps import make_lightmap

from .conftest import SIZE, WebUI, encode, make_subject
from .test_webui_api import images_of

XYZ = "x/y/z plot"
PRESETS = ("left", "right")


def plot_script(webui: WebUI, is_img2img: bool) -> dict[str, Any]:
    """The plot's entry in /sdapi/v1/script-info: its args (label, default) in API order."""
    response = webui.get("/sdapi/v1/script-info")
    assert response.status_code == 200, response.text
    script = next((s for s in response.json() if s["name"] == XYZ and s["is_img2img"] == is_img2img), None)
    assert script is not None, "the X/Y/Z plot script is missing"
    return script


def axis_index(webui: WebUI, label: str, is_img2img: bool) -> int:
    """The index of an axis in the plot's "X type" dropdown (the API takes the index),
    read from /sdapi/v1/script-info so that other extensions' axes do not shift it."""
    x_type = next(arg for arg in plot_script(webui, is_img2img)["args"] if arg["label"] == "X type")
    choices = [c[0] if isinstance(c, list) else c for c in x_type["choices"]]
    assert label in choices, f"{label!r} is not among the plot's axes: IC Light did not register it"
    return choices.index(label)


_SET_BY_LABEL = {
    "Draw legend": True,
    "Include Sub Images": True,  # the cells come back after the grid
    "Include Sub Grids": False,
    "Keep -1 for seeds": False,
    "Vary seeds for X": False, "Vary seeds for Y": False, "Vary seeds for Z": False,
    "Use text inputs instead of dropdowns": True,  # values typed as text
    "Grid margins (px)": 0,
}


def xyz_args(webui: WebUI, x_type: int, x_values: str, y_type: int = 0, y_values: str = "",
             is_img2img: bool = True) -> list[Any]:
    """The plot's positional args, built by label from /sdapi/v1/script-info: A1111 has 18,
    reForge more (draw individual labels, skip grid, items per grid), in its own order.
    Anything not set here keeps the WebUI's default."""
    axes = {"X": (x_type, x_values), "Y": (y_type, y_values), "Z": (0, "")}
    args: list[Any] = []
    seen: dict[str, int] = {}
    for arg in plot_script(webui, is_img2img=is_img2img)["args"]:
        label = arg["label"]
        count = seen[label] = seen.get(label, 0) + 1
        value = arg.get("value")
        if label.endswith(" type") and label[0] in axes:
            value = axes[label[0]][0]
        elif label.endswith(" values") and label[0] in axes:
            value = axes[label[0]][1] if count == 1 else []  # the textbox, then the dropdown
        elif label in _SET_BY_LABEL:
            value = _SET_BY_LABEL[label]
        args.append(value)
    return args


def img2img_payload(webui: WebUI, ic_args: dict[str, Any], xyz: list[Any] | None = None) -> dict[str, Any]:
    """The img2img request, through the X/Y/Z plot when ``xyz`` (its script args) is given."""
    payload = webui.ic_payload(ic_args, init_images=[encode(make_subject())], denoising_strength=0.9)
    if xyz is not None:
        payload.update(script_name=XYZ, script_args=xyz)
    return payload


@pytest.fixture(scope="module")
def fc_models(webui: WebUI) -> list[str]:
    models = [m["name"] for m in webui.models() if m["kind"] == "fc"]
    if len(models) < 2:
        pytest.skip(f"needs two fc models on the server, found {models}")
    return models[:2]


def test_models_by_presets_grid_equals_each_request_alone(webui: WebUI, fc_models: list[str]) -> None:
    x = axis_index(webui, "IC Light model", is_img2img=True)
    y = axis_index(webui, "IC Light light map", is_img2img=True)
    args = webui.ic_args(input_fg=None, remove_bg=False)  # no light map in the panel: the axis draws it
    payload = img2img_payload(webui, args, xyz_args(webui, x, ", ".join(fc_models), y, ", ".join(PRESETS)))
    response = webui.post("img2img", payload)
    images = images_of(response)
    assert len(images) == 1 + 4, f"expected the grid and 4 cells, got {len(images)} images"
    grid, cells = images[0], images[1:]
    assert grid.width >= 2 * SIZE and grid.height >= 2 * SIZE  # with the legend's margins
    pixels = [cell.convert("RGB").tobytes() for cell in cells]
    assert len(set(pixels)) == 4, "the 4 cells are not all different"

    infotexts = json.loads(response.json()["info"])["infotexts"]
    assert "X Type: IC Light model" in infotexts[0] and "Y Type: IC Light light map" in infotexts[0]

    for index, (preset, model) in enumerate((p, m) for p in PRESETS for m in fc_models):
        assert f"IC Light model: {model}," in infotexts[1 + index] and f"IC Light light map: {preset}" in infotexts[1 + index]
        light = encode(make_lightmap(preset, SIZE, SIZE))
        alone = images_of(webui.post("img2img", img2img_payload(
            webui, webui.ic_args(model_type=model, input_fg=light, remove_bg=False))))[0]
        assert alone.convert("RGB").tobytes() == pixels[index], f"cell {model} x {preset} differs from it alone"


def test_an_ic_light_axis_with_ic_light_off_is_refused(webui: WebUI, fc_models: list[str]) -> None:
    x = axis_index(webui, "IC Light model", is_img2img=True)
    payload = img2img_payload(webui, webui.ic_args(enable=False), xyz_args(webui, x, fc_models[0], 0, ""))
    response = webui.post("img2img", payload)
    assert response.status_code == 422, response.text[:2000]
    assert "enable: the X/Y/Z plot sets IC Light model" in response.text


def test_the_light_map_axes_are_img2img_only(webui: WebUI) -> None:
    axis_index(webui, "IC Light model", is_img2img=False)
    with pytest.raises(AssertionError, match="is not among the plot's axes"):
        axis_index(webui, "IC Light light map", is_img2img=False)


"""The lighting options after the 13 contract args (issue 21) through a live WebUI's API
(skipped unless WEBUI_URL is set): ``bg_source`` for fbc models, img2img light maps by
name, ``normal_map`` and ``relight_in_place``, their refusals, the schema, the X/Y/Z axis,
and that leaving them at their defaults changes nothing.

Requests are 64x64 with a few steps (see conftest.py). The subject photo here is a light
figure on a darker, textured wall, sent at the generation size: background removal finds
the figure and leaves the wall out, so the corners are surely outside the subject's mask.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from lib_iclight.lightmaps import make_lightmap

from .conftest import SEED, SIZE, WebUI, encode
from .test_webui_api import images_of
from .test_xyz_grid import XYZ, plot_script, xyz_args

NEW_DEFAULTS = {"bg_source": "upload", "normal_map": False, "relight_in_place": False}
LIGHT_MAP_NAMES = ["left", "right", "top", "bottom", "ambient", "angle:<degrees>"]
BG_SOURCE_NAMES = ["upload", "upload_flip", "left", "right", "top", "bottom", "ambient", "angle:<degrees>"]
FLAT_NORMAL = (127, 127, 255)


def make_photo(size: int = SIZE) -> Image.Image:
    """A light head and shoulders on a darker wall that changes from left to right."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    s = size / 64
    for x in range(size):
        draw.line([(x, 0), (x, size)], fill=(30 + int(x / s) // 2, 120, 70 + int(x / s)))
    draw.ellipse([20 * s, 6 * s, 44 * s, 32 * s], fill=(236, 190, 160))
    draw.polygon([(6 * s, 64 * s), (14 * s, 30 * s), (50 * s, 30 * s), (58 * s, 64 * s)], fill=(220, 215, 235))
    return image


def make_asymmetric_background() -> Image.Image:
    """80x64 and unlike its mirror image: a red ramp left to right, a blue block at the left."""
    image = Image.new("RGB", (80, 64))
    draw = ImageDraw.Draw(image)
    for x in range(80):
        draw.line([(x, 0), (x, 64)], fill=(40 + 2 * x, 90, 60))
    draw.rectangle([4, 10, 24, 40], fill=(20, 40, 220))
    return image


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def infotexts_of(response: Any) -> list[str]:
    return json.loads(response.json()["info"])["infotexts"]


def has_entry(infotext: str, key: str, value: str) -> bool:
    """``key: value`` in an infotext; the WebUIs quote values holding ':' or ','."""
    return f"{key}: {value}" in infotext or f'{key}: "{value}"' in infotext


def neighbourhood(mask: np.ndarray, radius: int, reduce: Any) -> np.ndarray:
    """The min or max of ``mask`` over each pixel's (2 * radius + 1) square, edges replicated."""
    padded = np.pad(mask, radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1))
    return reduce(windows, axis=(-2, -1))


def _fc(webui: WebUI) -> str:
    return webui.model_of_kind("fc") or pytest.skip("no fc model on the server")


def _fbc(webui: WebUI) -> str:
    return webui.model_of_kind("fbc") or pytest.skip("no fbc model on the server")


@pytest.fixture(scope="module")
def fbc(webui: WebUI) -> str:
    return _fbc(webui)


@pytest.fixture(scope="module")
def fc(webui: WebUI) -> str:
    return _fc(webui)


def photo_args(model: str, **values: Any) -> dict[str, Any]:
    """The 13 args by name (the photo as the subject) and any option after them."""
    return WebUI.ic_args(**{"model_type": model, "input_fg": encode(make_photo()), **values})


def txt2img_payload(webui: WebUI, args: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The args in the API's dict form: ``ic_payload`` would send a dict's values by position."""
    return webui.ic_payload([args], **overrides)


def img2img_payload(webui: WebUI, args: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return webui.ic_payload([args], init_images=[encode(make_photo())], denoising_strength=0.9, **overrides)


# ------------------------------------------------------------------ schema


def test_schema_lists_the_lighting_options(webui: WebUI) -> None:
    response = webui.get("/ic-light/v1/schema")
    assert response.status_code == 200, response.text
    schema = response.json()
    assert schema["x-contract-args"] == 13
    names = list(schema["properties"])
    assert names[13:] == list(NEW_DEFAULTS), names
    assert schema["x-positional-order"] == names
    assert schema["x-light-map-names"] == LIGHT_MAP_NAMES
    assert schema["properties"]["input_fg"]["x-light-map-names"] == LIGHT_MAP_NAMES
    assert schema["properties"]["bg_source"]["x-names"] == BG_SOURCE_NAMES
    for name, default in NEW_DEFAULTS.items():
        assert schema["properties"][name]["default"] == default, name


# ------------------------------------------------------------------ defaults


def test_the_options_at_their_defaults_change_nothing(webui: WebUI, fc: str) -> None:
    """The 13 positional args, the 16 with the options at their defaults, and the dict form
    with them by name: the same images (the cut-out too) and the same infotext."""
    args = photo_args(fc)
    forms = {
        "13 positional": list(args.values()),
        "16 positional": list(args.values()) + list(NEW_DEFAULTS.values()),
        "dict": [{**args, **NEW_DEFAULTS}],
    }
    results = {}
    for form, script_args in forms.items():
        response = webui.post("txt2img", webui.ic_payload(script_args))
        results[form] = (images_of(response), infotexts_of(response))
    images, infotexts = results["13 positional"]
    assert len(images) == 1 + webui.expected_extras()
    for form, (other_images, other_infotexts) in results.items():
        assert len(other_images) == len(images), form
        assert all(same(a, b) and a.mode == b.mode for a, b in zip(images, other_images)), f"{form}: other images"
        assert other_infotexts[0] == infotexts[0], f"{form}: other infotext"
    for key in ("IC Light background source", "IC Light normal map", "IC Light relight in place", "IC Light light map"):
        assert key not in infotexts[0], f"{key} written at its default: {infotexts[0]}"


# ------------------------------------------------------------------ fbc background sources


def test_a_named_background_needs_no_upload(webui: WebUI, fbc: str, assert_model_untouched) -> None:
    """``left`` by position (the 14th value), the others by name in the dict form."""
    relit = {}
    for source in ("left", "ambient", "angle:45"):
        if source == "left":
            payload = webui.ic_payload([*photo_args(fbc, uploaded_bg=None).values(), source])
        else:
            payload = txt2img_payload(webui, photo_args(fbc, uploaded_bg=None, bg_source=source))
        response = webui.post("txt2img", payload)
        images = images_of(response)
        assert len(images) == 1 + webui.expected_extras(), source
        assert images[0].size == (SIZE, SIZE)
        infotext = infotexts_of(response)[0]
        assert has_entry(infotext, "IC Light background source", source), infotext
        relit[source] = images[0].convert("RGB").tobytes()
    assert len(set(relit.values())) == len(relit), "two background sources gave the same image"
    assert_model_untouched()


def test_upload_flip_is_the_upload_of_the_mirror(webui: WebUI, fbc: str) -> None:
    background = make_asymmetric_background()
    requests_ = {
        "upload_flip": photo_args(fbc, uploaded_bg=encode(background), bg_source="upload_flip"),
        "mirror uploaded": photo_args(fbc, uploaded_bg=encode(ImageOps.mirror(background))),
        "upload": photo_args(fbc, uploaded_bg=encode(background)),
    }
    results = {name: webui.post("txt2img", txt2img_payload(webui, args)) for name, args in requests_.items()}
    relit = {name: images_of(response)[0] for name, response in results.items()}
    assert same(relit["upload_flip"], relit["mirror uploaded"]), "upload_flip differs from uploading the mirror"
    assert not same(relit["upload_flip"], relit["upload"]), "upload_flip gave the unflipped background's image"
    assert has_entry(infotexts_of(results["upload_flip"])[0], "IC Light background source", "upload_flip")
    assert "IC Light background source" not in infotexts_of(results["mirror uploaded"])[0]


# ------------------------------------------------------------------ light maps by name


def test_a_light_map_by_name_is_its_angle_and_the_drawn_map(webui: WebUI, fc: str) -> None:
    """img2img: ``left`` is ``angle:180`` and the map drawn at the generation size, uploaded."""
    light_maps = {"left": "left", "angle:180": "angle:180", "drawn": encode(make_lightmap("left", SIZE, SIZE))}
    results = {name: webui.post("img2img", img2img_payload(webui, WebUI.ic_args(model_type=fc, input_fg=value)))
               for name, value in light_maps.items()}
    relit = {name: images_of(response)[0] for name, response in results.items()}
    assert relit["left"].size == (SIZE, SIZE)
    assert same(relit["left"], relit["angle:180"]), "input_fg left differs from angle:180"
    assert same(relit["left"], relit["drawn"]), "input_fg left differs from the drawn left light map"
    assert has_entry(infotexts_of(results["left"])[0], "IC Light light map", "left")
    assert has_entry(infotexts_of(results["angle:180"])[0], "IC Light light map", "angle:180")
    assert "IC Light light map" not in infotexts_of(results["drawn"])[0]


# ------------------------------------------------------------------ refusals


# case: (endpoint, make args, what the answer must say)
REFUSALS = {
    "fc with a bg_source": ("txt2img", lambda w: photo_args(_fc(w), bg_source="left"),
                            ["bg_source: only fbc models take a background"]),
    "a light-map name in txt2img": ("txt2img", lambda w: WebUI.ic_args(model_type=_fc(w), input_fg="left"),
                                    ["input_fg: a light-map name (left) is only taken in img2img"]),
    "an unknown light map": ("img2img", lambda w: WebUI.ic_args(model_type=_fc(w), input_fg="lefty"),
                             ["input_fg: unknown light map", *LIGHT_MAP_NAMES]),
    "an unknown bg_source": ("txt2img", lambda w: photo_args(_fbc(w), bg_source="sideways"),
                             ["bg_source: unknown background source", *BG_SOURCE_NAMES]),
    "a normal map with fc": ("txt2img", lambda w: photo_args(_fc(w), normal_map=True),
                             ["normal_map: the normal map is the fbc model's"]),
    "relight in place without a mask": ("txt2img", lambda w: photo_args(_fc(w), remove_bg=False, relight_in_place=True),
                                        ["relight_in_place: the subject has no mask"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refusal_names_the_field(webui: WebUI, assert_model_untouched, case: str) -> None:
    endpoint, make_args, expected = REFUSALS[case]
    args = make_args(webui)
    payload = img2img_payload(webui, args) if endpoint == "img2img" else txt2img_payload(webui, args)
    response = webui.post(endpoint, payload)
    assert response.status_code == 422, f"{case}: expected a 422 refusal, got {response.status_code}: {response.text[:1000]}"
    for text in expected:
        assert text in response.text, f"{case}: the answer should say {text!r}: {response.text[:2000]}"
    assert_model_untouched()


# ------------------------------------------------------------------ normal map


def test_the_normal_map(webui: WebUI, fbc: str, assert_model_untouched) -> None:
    """One batch of 4 relights (left, right, bottom, top) with one seed, then the normal map,
    then the cut-out; outside the subject the normal faces the viewer."""
    response = webui.post("txt2img", txt2img_payload(webui, photo_args(fbc, uploaded_bg=None, normal_map=True)))
    images = images_of(response)
    extras = webui.expected_extras()
    assert len(images) == 4 + 1 + extras, f"expected 4 relights, the normal map and {extras} cut-out, got {len(images)}"
    relights, normal = images[:4], images[4]
    assert all(image.size == (SIZE, SIZE) for image in relights)
    assert len({image.convert("RGB").tobytes() for image in relights}) == 4, "the 4 relights should differ"
    assert normal.mode == "RGB" and normal.size == (SIZE, SIZE)
    normals = rgb(normal)
    for x, y in ((0, 0), (SIZE - 1, 0)):
        assert tuple(normals[y, x]) == FLAT_NORMAL, f"normal map at ({x}, {y}): {tuple(normals[y, x])}"
    if extras:
        cutout = images[-1]
        assert cutout.mode == "RGBA", cutout.mode
        outside = np.asarray(cutout.getchannel("A")) == 0
        assert outside.any() and not outside.all()
        assert (normals[outside] == FLAT_NORMAL).all(), "where the mask is 0 the normal map is not (127, 127, 255)"
        assert not (normals[~outside] == FLAT_NORMAL).all(), "the normal map is flat on the subject too"

    info = json.loads(response.json()["info"])
    assert info["all_seeds"] == [SEED] * 4, info["all_seeds"]
    assert info["batch_size"] == 4
    assert all(has_entry(text, "Seed", str(SEED)) for text in info["infotexts"][:4])
    assert has_entry(info["infotexts"][0], "IC Light normal map", "True"), info["infotexts"][0]
    assert_model_untouched()


# ------------------------------------------------------------------ relight in place


def check_relit_in_place(in_place: Image.Image, relit: Image.Image, photo: Image.Image, mask: np.ndarray,
                         erode_size: int) -> None:
    """Exactly the photo far from the subject, exactly the relit image deep inside it."""
    assert in_place.mode == "RGB" and in_place.size == relit.size == photo.size
    out, new, old = rgb(in_place), rgb(relit), rgb(photo)
    for x, y in ((0, 0), (SIZE - 1, 0)):
        assert (out[y, x] == old[y, x]).all(), f"at ({x}, {y}) {tuple(out[y, x])}, the photo has {tuple(old[y, x])}"
    margin = 2 * erode_size + 1
    background = neighbourhood(mask, margin, np.max) == 0
    subject = neighbourhood(mask, margin, np.min) == 255
    assert background.sum() > 100 and subject.sum() > 20, (background.sum(), subject.sum())
    assert (out[background] == old[background]).all(), "far from the subject the image is not the photo's"
    assert (out[subject] == new[subject]).all(), "deep inside the subject the image is not the relit one"
    assert not same(in_place, relit) and not same(in_place, photo)


def test_relight_in_place_txt2img(webui: WebUI, fc: str, assert_model_untouched) -> None:
    """One image in place per generated image, after them and before the cut-out."""
    if not webui.expected_extras():
        pytest.skip("the server does not append the cut-out, which these checks read the mask from")
    erode_size = 4
    payload = txt2img_payload(webui, photo_args(fc, relight_in_place=True, erode_size=erode_size), batch_size=2)
    response = webui.post("txt2img", payload)
    images = images_of(response)
    assert len(images) == 2 + 2 + 1, f"expected 2 relit, 2 in place and the cut-out, got {len(images)}"
    relit, in_place, cutout = images[:2], images[2:4], images[4]
    assert cutout.mode == "RGBA"
    assert not same(relit[0], relit[1])
    mask = np.asarray(cutout.getchannel("A"))
    for index in range(2):
        check_relit_in_place(in_place[index], relit[index], make_photo(), mask, erode_size)
    assert has_entry(infotexts_of(response)[0], "IC Light relight in place", "True")
    assert_model_untouched()


def test_relight_in_place_img2img(webui: WebUI, fc: str) -> None:
    """img2img: the photo is the input image; the light map comes by name."""
    if not webui.expected_extras():
        pytest.skip("the server does not append the cut-out, which these checks read the mask from")
    erode_size = 4
    args = WebUI.ic_args(model_type=fc, input_fg="right", relight_in_place=True, erode_size=erode_size)
    response = webui.post("img2img", img2img_payload(webui, args))
    images = images_of(response)
    assert len(images) == 1 + 1 + 1, f"expected the relit image, the one in place and the cut-out, got {len(images)}"
    mask = np.asarray(images[2].getchannel("A"))
    check_relit_in_place(images[1], images[0], make_photo(), mask, erode_size)
    infotext = infotexts_of(response)[0]
    assert has_entry(infotext, "IC Light relight in place", "True") and has_entry(infotext, "IC Light light map", "right")


# ------------------------------------------------------------------ X/Y/Z plot


def test_the_bg_source_axis(webui: WebUI, fbc: str, assert_model_untouched) -> None:
    """A txt2img grid over two background sources: two different cells, each the same as its
    request made alone. The panel has no upload: each cell's source needs none."""
    sources = ("left", "ambient")
    script = plot_script(webui, is_img2img=False)
    x_type = next(arg for arg in script["args"] if arg["label"] == "X type")
    choices = [c[0] if isinstance(c, list) else c for c in x_type["choices"]]
    label = "IC Light background source"
    assert label in choices, f"{label!r} is not among the txt2img plot's axes"
    args = photo_args(fbc, uploaded_bg=None, remove_bg=False)
    payload = txt2img_payload(webui, args)
    payload.update(script_name=XYZ, script_args=xyz_args(webui, choices.index(label), ", ".join(sources), is_img2img=False))
    response = webui.post("txt2img", payload)
    images = images_of(response)
    assert len(images) == 1 + len(sources), f"expected the grid and {len(sources)} cells, got {len(images)}"
    cells = images[1:]
    assert not same(cells[0], cells[1]), "the two cells are the same image"
    infotexts = infotexts_of(response)
    assert f"X Type: {label}" in infotexts[0], infotexts[0]
    for index, source in enumerate(sources):
        assert has_entry(infotexts[1 + index], label, source), infotexts[1 + index]
        alone = images_of(webui.post("txt2img", txt2img_payload(
            webui, photo_args(fbc, uploaded_bg=None, remove_bg=False, bg_source=source))))[0]
        assert same(alone, cells[index]), f"the {source} cell differs from its request alone"
    assert_model_untouched()

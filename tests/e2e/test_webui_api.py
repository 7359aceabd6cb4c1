"""The "IC Light" script through a live WebUI's API (skipped unless WEBUI_URL is set).

See conftest.py for how to run these. Each request is 64x64 with a few steps: the tests
check that requests are served or refused correctly, not how good the relighting looks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import IC_MODEL, SIZE, WebUI, decode, encode, make_background, make_light_map, make_subject

ARG_NAMES = (
    "enable", "model_type", "input_fg", "uploaded_bg", "remove_bg", "rembg_model", "foreground_threshold",
    "background_threshold", "erode_size", "detail_transfer", "detail_transfer_raw",
    "detail_transfer_blur_radius", "reinforce_fg",
)
"""The 13 of the contract (the API wiki); the lighting options follow them."""
OPTIONS = ("bg_source", "normal_map", "relight_in_place")


def images_of(response: Any) -> list:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    data = response.json().get("images") or []
    assert data, "the server answered 200 without an image"
    return [decode(item) for item in data]


def check_cutout_appended(webui: WebUI, images: list, generated: int) -> None:
    """The removed-background subject comes after the generated images (default setting)."""
    extras = webui.expected_extras(remove_bg=True)
    assert len(images) >= generated + extras
    if extras and webui.option("samples_format", "png").lower() == "png":
        cutout = images[-1]
        assert cutout.mode in ("RGBA", "LA"), f"the last image should be the RGBA cut-out, got {cutout.mode}"


# ------------------------------------------------------------------ routes


def test_models_route(webui: WebUI) -> None:
    response = webui.get("/ic-light/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"models", "rembg_models", "unreadable"}
    assert body["models"], "no IC-Light model installed on the server"
    for model in body["models"]:
        assert set(model) == {"name", "kind", "in_channels"}  # never a path
        assert (model["kind"], model["in_channels"]) in {("fc", 8), ("fbc", 12)}
    for entry in body["unreadable"]:
        assert set(entry) == {"name", "reason"} and "/" not in entry["name"]
    assert "u2net_human_seg" in body["rembg_models"]


def test_schema_and_version_routes(webui: WebUI) -> None:
    schema = webui.get("/ic-light/v1/schema").json()
    assert tuple(schema["properties"]) == ARG_NAMES + OPTIONS
    assert schema["x-positional-order"][:13] == list(ARG_NAMES)
    version = webui.get("/ic-light/v1/version")
    assert version.status_code == 200 and tuple(version.json()["args"]) == ARG_NAMES + OPTIONS


# ------------------------------------------------------------------ modes


def test_wiki_example_payload(webui: WebUI) -> None:
    """The wiki's example, unchanged but for size, steps and the model name."""
    subject = encode(make_subject(), "JPEG", quality=100, optimize=True)
    payload = {
        "prompt": "high quality, best quality, a photo of a gentleman in suit, standing under sunset",
        "negative_prompt": "worst quality, bad quality, low quality",
        "sampler_name": "DPM++ 2M Karras",
        "steps": 32,
        "width": 512,
        "height": 512,
        "cfg_scale": 7.5,
        "alwayson_scripts": {
            "IC Light": {
                "args": [True, "IC-Light-SD15-FC-fp8", subject, None, True, "u2net_human_seg",
                         225, 16, 16, False, False, 3, False]
            }
        },
    }
    payload.update(steps=4, width=SIZE, height=SIZE)
    payload["alwayson_scripts"]["IC Light"]["args"][1] = IC_MODEL
    images = images_of(webui.post("txt2img", payload))
    assert images[0].size == (SIZE, SIZE)
    check_cutout_appended(webui, images, generated=1)


def test_dict_form(webui: WebUI, assert_model_untouched) -> None:
    """One dict of named args; the names left out take their defaults."""
    payload = webui.plain_payload(alwayson_scripts={"IC Light": {"args": [
        {"enable": True, "model_type": IC_MODEL, "input_fg": encode(make_subject()), "detail_transfer": True}
    ]}})
    images = images_of(webui.post("txt2img", payload))
    assert images[0].size == (SIZE, SIZE)
    assert_model_untouched()


def test_disabled_panel_is_a_plain_request(webui: WebUI, plain_baseline) -> None:
    payload = webui.ic_payload(webui.ic_args(enable=False, input_fg=None))
    image = images_of(webui.post("txt2img", payload))[0]
    assert image.convert("RGB").tobytes() == plain_baseline.convert("RGB").tobytes()


def test_fbc(webui: WebUI, assert_model_untouched) -> None:
    fbc = webui.model_of_kind("fbc")
    if fbc is None:
        pytest.skip("no fbc model on the server")
    args = webui.ic_args(model_type=fbc, uploaded_bg=encode(make_background()))
    images = images_of(webui.post("txt2img", webui.ic_payload(args)))
    assert images[0].size == (SIZE, SIZE)
    check_cutout_appended(webui, images, generated=1)
    assert_model_untouched()


@pytest.mark.parametrize("reinforce_fg", [False, True])
def test_img2img(webui: WebUI, reinforce_fg: bool) -> None:
    """img2img: the subject is the init image, input_fg the light map (lit from the left)."""
    args = webui.ic_args(input_fg=encode(make_light_map()), reinforce_fg=reinforce_fg)
    payload = webui.ic_payload(args, init_images=[encode(make_subject())], denoising_strength=0.9)
    images = images_of(webui.post("img2img", payload))
    assert images[0].size == (SIZE, SIZE)
    check_cutout_appended(webui, images, generated=1)


def test_hires_fix(webui: WebUI, assert_model_untouched) -> None:
    extra: dict[str, Any] = {}
    if webui.is_forge2:
        extra["hr_additional_modules"] = ["Use same choices"]
    payload = webui.ic_payload(
        webui.ic_args(), enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2,
        denoising_strength=0.6, **extra,
    )
    images = images_of(webui.post("txt2img", payload))
    assert images[0].size == (2 * SIZE, 2 * SIZE)
    assert_model_untouched()


def test_batch_size_and_count(webui: WebUI, assert_model_untouched) -> None:
    payload = webui.ic_payload(webui.ic_args(), batch_size=2, n_iter=2)
    images = images_of(webui.post("txt2img", payload))
    # The API sets do_not_save_grid = not save_images, so a grid only comes back with save_images.
    grid = 1 if payload.get("save_images") and webui.option("return_grid", True) else 0
    extras = webui.expected_extras()
    assert len(images) == grid + 4 + extras, (
        f"expected {grid} grid + 4 images + {extras} cut-out (one per request, not per image), got {len(images)}"
    )
    generated = images[grid:grid + 4]
    assert all(image.size == (SIZE, SIZE) for image in generated)
    assert len({image.convert("RGB").tobytes() for image in generated}) == 4, "the 4 images should differ (seeds)"
    assert_model_untouched()


# ------------------------------------------------------------------ refused requests


def _fbc_without_background(webui: WebUI) -> dict[str, Any]:
    fbc = webui.model_of_kind("fbc")
    if fbc is None:
        pytest.skip("no fbc model on the server")
    return webui.ic_args(model_type=fbc, uploaded_bg=None)


BAD_REQUESTS = {
    "no image": ("input_fg", lambda webui: webui.ic_args(input_fg=None)),
    "fbc without background": ("uploaded_bg", _fbc_without_background),
    "unknown model": ("model_type", lambda webui: webui.ic_args(model_type="no-such-ic-light-model")),
    "unknown rembg model": ("rembg_model", lambda webui: webui.ic_args(rembg_model="no_such_rembg_model")),
    "bad base64": ("input_fg", lambda webui: webui.ic_args(input_fg="this is not base64!!")),
    "threshold out of range": ("foreground_threshold", lambda webui: webui.ic_args(foreground_threshold=999)),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_refused_by_name(webui: WebUI, assert_model_untouched, case: str) -> None:
    arg, make_args = BAD_REQUESTS[case]
    response = webui.post("txt2img", webui.ic_payload(make_args(webui)))
    assert response.status_code == 422, f"{case}: expected a 422 refusal, got {response.status_code}: {response.text[:500]}"
    assert arg in response.text, f"{case}: the answer should name {arg}: {response.text[:2000]}"
    assert_model_untouched()


def test_refiner_switch_is_refused(webui: WebUI, assert_model_untouched) -> None:
    """The Refiner would sample the steps after its switch without IC-Light; needs a second
    checkpoint on the server to switch to."""
    # The loaded checkpoint as the generation reports it: the option can be unset (Forge Classic).
    response = webui.post("txt2img", webui.plain_payload())
    assert response.status_code == 200, response.text
    loaded = json.loads(response.json()["info"])["sd_model_name"]
    response = webui.get("/sdapi/v1/sd-models")
    assert response.status_code == 200, response.text
    others = [m["title"] for m in response.json() if m["model_name"] != loaded]
    if not others:
        pytest.skip("the server has one checkpoint: nothing for the Refiner to switch to")
    response = webui.post("txt2img", webui.ic_payload(webui.ic_args(), refiner_checkpoint=others[0],
                                                      refiner_switch_at=0.5))
    assert response.status_code == 422, f"expected a 422 refusal, got {response.status_code}: {response.text[:500]}"
    assert "refiner_checkpoint" in response.text and "Refiner" in response.text, response.text[:2000]
    assert_model_untouched()

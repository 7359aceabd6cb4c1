"""The panel in headless Chromium: every event the panel wires, clicked as a user would,
on the Gradio this venv has (3.41 in the main run, 4.40 in the second).

The checks are plain functions of a :class:`PanelPage`, so that the negative control can
serve a panel with one event wiring left out and show that its check then fails.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from PIL import Image

from lib_iclight.args import parse_args
from lib_iclight.lightmaps import BG_SOURCES, LIGHT_PRESETS, make_lightmap
from lib_iclight.rembg_session import cut_out_subject
from lib_iclight.resolution import synced_resolution
from lib_iclight.webui.ui import DEFAULT_LIGHT_ANGLE, FBC_ONLY, IMAGE_HEIGHT, LIGHT_MAP_SIZE
from tests.helpers.images import disc_image
from tests.helpers.panel_page import PanelPage, max_difference
from tests.helpers.tiny_weights import make_offset_file, tiny_unet_shapes

from .conftest import img2img, txt2img
from .panel_app import REMBG_CHOICES, SIZE_SLIDER, Served, serve

GRADIO = f"gradio{gr.__version__.split('.')[0]}"
SUBJECT_SIZE = 96
SYNC_CASES = {  # tab: (subject width x height, the size sliders before the click)
    "txt2img": ((300, 600), (512, 512)),
    "img2img": ((600, 300), (512, 768)),
}
SYNC_ERROR = "Sync resolution: upload the subject image first"


@pytest.fixture(scope="module")
def subject_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "subject.png"
    disc_image(SUBJECT_SIZE, radius=30).save(path)
    return path


# ------------------------------------------------------------------ the checks


def expect_fbc_only(panel: PanelPage, visible: bool) -> None:
    for name in FBC_ONLY:  # uploaded_bg first: the negative control matches on it
        panel.expect_visible(name, visible)


def check_background_toggle(panel: PanelPage) -> None:
    """fbc shows the fbc-only controls (the Background slot, Background source and Normal
    map), fc hides them again."""
    expect_fbc_only(panel, False)
    panel.choose("model_type", "fbc")
    expect_fbc_only(panel, True)
    panel.choose("model_type", "fc")
    expect_fbc_only(panel, False)


def check_light_map_presets(panel: PanelPage) -> None:
    """Every preset draws make_lightmap's picture into the slot; "angle" shows the slider,
    which redraws at its angle; "custom" keeps the map and hides the slider."""
    width, height = LIGHT_MAP_SIZE
    src = panel.image_src("input_fg")
    for preset in LIGHT_PRESETS:
        panel.pick_radio("light_preset", preset)
        src = panel.wait_for_new_image("input_fg", src)
        drawn = panel.read_image(src)
        assert max_difference(drawn, make_lightmap(preset, width, height)) == 0, preset
        panel.expect_visible("light_angle", False)

    panel.pick_radio("light_preset", "angle")
    src = panel.wait_for_new_image("input_fg", src)
    assert max_difference(panel.read_image(src), make_lightmap(float(DEFAULT_LIGHT_ANGLE), width, height)) == 0
    panel.expect_visible("light_angle", True)
    for degrees in (45, 300):
        panel.set_slider("light_angle", degrees)
        src = panel.wait_for_new_image("input_fg", src)
        assert max_difference(panel.read_image(src), make_lightmap(float(degrees), width, height)) == 0, degrees

    panel.pick_radio("light_preset", "custom")
    panel.expect_visible("light_angle", False)
    assert panel.image_src("input_fg") == src  # "custom" leaves the map alone


def check_preview(panel: PanelPage, subject_file: Path) -> None:
    """Upload a subject, press the preview button: the cut-out appears beside it, the
    same one lib_iclight.rembg_session makes."""
    panel.upload("input_fg", subject_file)
    panel.expect_visible("preview", False)
    panel.click("preview_button")
    panel.expect_visible("preview", True)
    shown = panel.read_image(panel.wait_for_new_image("preview", None))
    expected = cut_out_subject(Image.open(subject_file).convert("RGBA"), REMBG_CHOICES[0], 225, 16, 16).image
    assert shown.mode == "RGBA"
    assert max_difference(shown, expected, "RGBA") <= 1


def check_refresh(panel: PanelPage, model_dir: Path) -> None:
    """A model file added after the page loaded appears after the refresh button; its kind
    comes from the file (no "fbc" in the name), so choosing it shows the Background slot.
    The new name sorts into the place "fc" had: Gradio 4.40's dropdown once left its check
    mark there, and a click on the new model did nothing (see ui._wire_refresh)."""
    name = "studio-relight-bg"
    assert name not in panel.dropdown_options("model_type")
    path = model_dir / f"{name}.safetensors"
    make_offset_file(path, tiny_unet_shapes(), kind="fbc")
    try:
        panel.click("refresh_models")
        options: list[str] = []
        for _ in range(50):  # the dropdown's choices change when the server answers
            options = panel.dropdown_options("model_type")
            if name in options:
                break
            panel.page.wait_for_timeout(200)
        assert name in options, options
        panel.choose("model_type", name)
        panel.expect_visible("uploaded_bg", True)
        panel.choose("model_type", "fc")
        panel.expect_visible("uploaded_bg", False)
    finally:
        path.unlink()


def check_preview_error(panel: PanelPage, subject_file: Path) -> None:
    """A preview that cannot run (no file for the chosen rembg model, no download) shows
    the reason in an error toast, naming the argument and the file to put in place."""
    panel.upload("input_fg", subject_file)
    panel.choose("rembg_model", REMBG_CHOICES[1])
    panel.click("preview_button")
    text = panel.expect_error("u2net.onnx")
    assert "rembg_model" in text and "U2NET_HOME" in text, text
    panel.close_toasts()


def check_sync_resolution(panel: PanelPage, subject_css: str, subject_file: Path, current: tuple[int, int]) -> None:
    """Without a subject the button says so in an error toast and leaves the size alone;
    with one it sets the WebUI's width and height sliders to synced_resolution's size."""
    width, height = panel.webui_css("width"), panel.webui_css("height")
    panel.click("sync_resolution")
    panel.expect_error(SYNC_ERROR)
    panel.close_toasts()
    default = SIZE_SLIDER["value"]
    assert (panel.slider_value(width), panel.slider_value(height)) == (default, default)

    panel.set_slider(width, current[0])
    panel.set_slider(height, current[1])
    panel.upload(subject_css, subject_file)
    with Image.open(subject_file) as subject:
        expected = synced_resolution(subject.size, current)
    assert expected != current
    panel.click("sync_resolution")
    panel.expect_slider(width, expected[0])
    panel.expect_slider(height, expected[1])


def generate(panel: PanelPage, served: Served, timeout_s: float = 20.0) -> dict[str, Any]:
    """Press the tab's Generate button; the raw values the panel sent, by argument name."""
    before = served.sent.count(panel.tab)
    panel.page.locator(panel.webui_css("generate")).click()
    deadline = time.monotonic() + timeout_s
    while served.sent.count(panel.tab) == before:
        assert time.monotonic() < deadline, f"{panel.tab}: Generate sent nothing in {timeout_s} s"
        panel.page.wait_for_timeout(50)
    return served.sent.last(panel.tab)


def check_no_page_errors(watch: Any) -> None:
    assert watch.errors == [], "\n".join(watch.errors)


# ------------------------------------------------------------------ the tests


def test_fbc_only_controls_follow_fc_and_fbc(panel_page: Any) -> None:
    """txt2img: the fbc-only controls follow the model; img2img never shows them;
    Relight in place is on both tabs whatever the model."""
    page, watch = panel_page
    text, image = txt2img(page), img2img(page)
    text.open()
    image.open()
    text.expect_visible("relight_in_place", True)
    image.expect_visible("relight_in_place", True)
    check_background_toggle(text)
    text.expect_visible("relight_in_place", True)
    image.choose("model_type", "fbc")
    expect_fbc_only(image, False)
    image.expect_visible("relight_in_place", True)
    check_no_page_errors(watch)


def test_light_map_presets_and_angle(panel_page: Any) -> None:
    page, watch = panel_page
    panel = img2img(page)
    panel.open()
    panel.expect_visible("uploaded_bg", False)
    check_light_map_presets(panel)
    check_no_page_errors(watch)


def test_upload_and_preview_background_removal(panel_page: Any, subject_file: Path) -> None:
    page, watch = panel_page
    panel = txt2img(page)
    panel.open()
    check_preview(panel, subject_file)
    check_no_page_errors(watch)


def test_refresh_lists_a_model_added_later(panel_page: Any, panel_env: Path) -> None:
    page, watch = panel_page
    panel = txt2img(page)
    panel.open()
    check_refresh(panel, panel_env)
    check_no_page_errors(watch)


def test_a_failing_preview_shows_gr_error(panel_page: Any, subject_file: Path) -> None:
    page, watch = panel_page
    panel = txt2img(page)
    panel.open()
    check_preview_error(panel, subject_file)
    check_no_page_errors(watch)


def test_lighting_options_reach_the_generation_args(panel_page: Any, served: Served) -> None:
    """Background source picked from its list, then typed as ``angle:45``, Normal map and
    Relight in place ticked: the Generate button sends each, and parse_args takes them."""
    page, watch = panel_page
    panel = txt2img(page)
    panel.open()
    sent = generate(panel, served)
    assert (sent["bg_source"], sent["normal_map"], sent["relight_in_place"]) == ("upload", False, False), sent

    panel.choose("model_type", "fbc")
    panel.expect_visible("bg_source", True)
    assert panel.dropdown_options("bg_source") == list(BG_SOURCES)
    panel.choose("bg_source", "left")
    panel.set_checkbox("normal_map", True)
    panel.set_checkbox("relight_in_place", True)
    sent = generate(panel, served)
    assert (sent["model_type"], sent["bg_source"], sent["normal_map"], sent["relight_in_place"]) == (
        "fbc", "left", True, True), sent

    panel.type_custom("bg_source", "angle:45")
    sent = generate(panel, served)
    assert sent["bg_source"] == "angle:45", sent
    args = parse_args({**sent, "enable": True})
    assert (args.bg_source, args.normal_map, args.relight_in_place) == ("angle:45", True, True)

    image = img2img(page)
    image.open()
    image.set_checkbox("relight_in_place", True)
    assert generate(image, served)["relight_in_place"] is True
    check_no_page_errors(watch)


def test_sync_resolution(panel_page: Any, tmp_path: Path) -> None:
    """txt2img syncs to the panel's subject (input_fg), img2img to the WebUI's input image
    (its light map slot stays empty, so reading that instead would raise the error)."""
    page, watch = panel_page
    for tab, (size, current) in SYNC_CASES.items():
        subject_file = tmp_path / f"subject-{tab}.png"
        disc_image(size[0], radius=min(size) / 3, height=size[1]).save(subject_file)
        panel = txt2img(page) if tab == "txt2img" else img2img(page)
        panel.open()
        subject_css = "input_fg" if tab == "txt2img" else panel.webui_css("image")
        check_sync_resolution(panel, subject_css, subject_file, current)
    check_no_page_errors(watch)


def _box(panel: PanelPage, name: str) -> dict[str, float]:
    box = panel.loc(name).first.bounding_box()
    assert box is not None, name
    return box


def test_layout_and_screenshots(panel_page: Any, subject_file: Path, screenshots: Path) -> None:
    """The tidy panel: the subject and its cut-out side by side, image slots of a set
    height on this Gradio, the light map beside its presets. Screenshots of both panels
    go to the artefacts folder."""
    page, watch = panel_page
    text = txt2img(page)
    text.open()
    check_preview(text, subject_file)
    subject, cutout = _box(text, "input_fg"), _box(text, "preview")
    assert abs(subject["y"] - cutout["y"]) < 2 and cutout["x"] >= subject["x"] + subject["width"] - 1, (subject, cutout)
    for box in (subject, cutout):
        assert IMAGE_HEIGHT <= box["height"] <= IMAGE_HEIGHT + 120, box
    text.loc("enable").screenshot(path=str(screenshots / f"panel-txt2img-{GRADIO}.png"))

    image = img2img(page)
    image.open()
    image.pick_radio("light_preset", "left")
    image.wait_for_new_image("input_fg", None)
    light_map, presets = _box(image, "input_fg"), _box(image, "light_preset")
    assert abs(light_map["y"] - presets["y"]) < 2 and presets["x"] > light_map["x"], (light_map, presets)
    assert IMAGE_HEIGHT <= light_map["height"] <= IMAGE_HEIGHT + 120, light_map
    image.loc("enable").screenshot(path=str(screenshots / f"panel-img2img-{GRADIO}.png"))
    check_no_page_errors(watch)


# ------------------------------------------------------------------ the negative control

NEGATIVE_TIMEOUT_MS = 3_000
"""A check that must fail only waits this long for what never comes."""


@pytest.mark.parametrize("wiring", ["background_visibility", "light_map_presets"])
def test_a_missing_event_wiring_fails_its_check(wiring: str, open_page: Any, panel_env: Path) -> None:
    """The panel served with one of its event wirings left out: that wiring's browser
    check fails, while the check of another wiring on the same page still passes (so the
    failure is the missing event, not a broken page)."""
    app = serve(panel_env, without_wiring=wiring)
    try:
        page, _ = open_page(app)
        text, image = txt2img(page, timeout_ms=NEGATIVE_TIMEOUT_MS), img2img(page, timeout_ms=NEGATIVE_TIMEOUT_MS)
        text.open()
        image.open()
        if wiring == "background_visibility":
            with pytest.raises(AssertionError, match="uploaded_bg did not become visible"):
                check_background_toggle(text)
            image.timeout_ms = 20_000
            check_light_map_presets(image)
        else:
            with pytest.raises(AssertionError, match="input_fg shows no new image"):
                check_light_map_presets(image)
            text.timeout_ms = 20_000
            check_background_toggle(text)
    finally:
        app.close()

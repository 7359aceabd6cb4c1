"""The IC Light panel of a live WebUI, in headless Chromium (skipped unless WEBUI_URL is set).

The same browser checks as tests/browser (there on a bare Gradio app), here on the WebUI's
own page, plus what only a WebUI has: the Generate button, the infotext it shows, and the
paste button (↙) that puts that infotext back into every panel widget. Needs playwright
and a Chromium (see tests/helpers/panel_page.py); screenshots go to
``$ICLIGHT_ARTEFACTS/e2e`` (default tests/artefacts/e2e, git-ignored).

The checks use the server's own models (``fc``/``fbc`` aliases and the listed files) and
its rembg models; the error check asks for a rembg model that does not exist.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from lib_iclight.args import ARG_SPECS, SPECS_BY_NAME, parse_infotext
from lib_iclight.lightmaps import LIGHT_PRESETS, make_lightmap
from tests.helpers.panel_page import (
    ConsoleWatch,
    PanelPage,
    artefacts_dir,
    find_chromium,
    keep_local,
    launch_args,
    max_difference,
)

from .conftest import SEED, SIZE, WebUI, make_subject

PAGE_LOAD_MS = 180_000
GENERATION_MS = 900_000
# The 13's entries; the lighting options after them are written only away from their defaults.
IC_KEYS = [spec.infotext_key for spec in ARG_SPECS if spec.infotext_key is not None and not spec.extended]
# What the generation test sets away from the defaults, so that the paste has work to do.
CHANGED = {"foreground_threshold": 200, "erode_size": 8, "detail_transfer_blur_radius": 7}


@pytest.fixture(scope="module")
def chromium(webui: WebUI) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the browser tests need playwright")
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set ICLIGHT_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=launch_args())
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = artefacts_dir("e2e")
    print(f"\nscreenshots of the live WebUI: {folder}")
    return folder


@pytest.fixture(scope="module")
def subject_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e-upload") / "subject.png"
    make_subject(128).save(path)
    return path


@contextlib.contextmanager
def open_webui(chromium: Any, url: str) -> Iterator[tuple[Any, ConsoleWatch]]:
    """The WebUI's page in a fresh browser context, once its UI is up, with its console watched."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1100})
    try:
        page = context.new_page()
        watch = ConsoleWatch(url)
        watch.attach(page)
        keep_local(page, url)
        page.goto(url + "/", wait_until="domcontentloaded", timeout=PAGE_LOAD_MS)
        # The WebUI's own script adds a visible checkbox to every InputAccordion once the UI is up.
        page.locator("#iclight_txt2img_enable-visible-checkbox").wait_for(state="attached", timeout=PAGE_LOAD_MS)
        yield page, watch
    finally:
        context.close()


@pytest.fixture
def webui_page(chromium: Any, webui: WebUI) -> Iterator[tuple[Any, ConsoleWatch]]:
    with open_webui(chromium, webui.url) as opened:
        yield opened


def _tab(page: Any, name: str) -> None:
    # Forge 2 labels its tabs "Txt2img" / "Img2img": match the name in any case.
    pattern = re.compile(rf"^\s*{name}\s*$", re.IGNORECASE)
    page.locator("#tabs > .tab-nav button").filter(has_text=pattern).first.click()
    page.locator(f"#tab_{name}").wait_for(state="visible")


def _page_errors(watch: ConsoleWatch) -> list[str]:
    return [e for e in watch.errors if e.startswith("pageerror")]


# ------------------------------------------------------------------ the panel's own events


def test_live_background_toggle_and_refresh(webui: WebUI, webui_page: Any, shots: Path) -> None:
    page, watch = webui_page
    panel = PanelPage(page, "txt2img")
    panel.open()
    panel.expect_visible("uploaded_bg", False)
    panel.choose("model_type", "fbc")
    panel.expect_visible("uploaded_bg", True)
    page.locator("#iclight_txt2img_enable").screenshot(path=str(shots / "live-txt2img-fbc.png"))
    panel.choose("model_type", "fc")
    panel.expect_visible("uploaded_bg", False)

    panel.click("refresh_models")
    served = [m["name"] for m in webui.models()]
    for _ in range(50):
        options = panel.dropdown_options("model_type")
        if set(served) <= set(options):
            break
        page.wait_for_timeout(200)
    assert set(served) <= set(options), (served, options)
    fbc_file = next((m["name"] for m in webui.models() if m["kind"] == "fbc"), None)
    if fbc_file is not None:
        panel.choose("model_type", fbc_file)
        panel.expect_visible("uploaded_bg", True)
        panel.choose("model_type", "fc")
    assert _page_errors(watch) == []


def test_live_light_map_presets(webui_page: Any, shots: Path) -> None:
    page, watch = webui_page
    _tab(page, "img2img")
    panel = PanelPage(page, "img2img")
    panel.open()
    src = panel.image_src("input_fg")
    for preset in LIGHT_PRESETS:
        panel.pick_radio("light_preset", preset)
        src = panel.wait_for_new_image("input_fg", src)
        drawn = panel.read_image(src)
        assert max_difference(drawn, make_lightmap(preset, *drawn.size)) == 0, preset
    panel.pick_radio("light_preset", "angle")
    panel.expect_visible("light_angle", True)
    src = panel.wait_for_new_image("input_fg", src)
    panel.set_slider("light_angle", 45)
    src = panel.wait_for_new_image("input_fg", src)
    drawn = panel.read_image(src)
    assert max_difference(drawn, make_lightmap(45.0, *drawn.size)) == 0
    page.locator("#iclight_img2img_enable").screenshot(path=str(shots / "live-img2img-angle.png"))
    assert _page_errors(watch) == []


def test_live_preview_and_its_error(webui_page: Any, subject_file: Path, shots: Path) -> None:
    page, watch = webui_page
    panel = PanelPage(page, "txt2img", timeout_ms=GENERATION_MS)
    panel.open()
    panel.upload("input_fg", subject_file)
    panel.click("preview_button")
    cutout = panel.read_image(panel.wait_for_new_image("preview", None))
    assert cutout.mode == "RGBA" and cutout.size == (128, 128)
    alpha = cutout.getchannel("A")
    assert alpha.getextrema()[0] < 128 < alpha.getextrema()[1], "the cut-out has no transparent and opaque parts"
    page.locator("#iclight_txt2img_enable").screenshot(path=str(shots / "live-txt2img-preview.png"))

    panel.type_custom("rembg_model", "no-such-rembg-model")
    panel.click("preview_button")
    text = panel.expect_error("no-such-rembg-model")
    assert "rembg_model" in text, text
    panel.close_toasts()
    assert _page_errors(watch) == []


def _wait_for_size(page: Any, tab: str, expected: tuple[int, int], timeout_ms: int = 30_000) -> tuple[int, int]:
    size = (0, 0)
    for _ in range(timeout_ms // 200):
        size = tuple(int(float(page.locator(f"#{tab}_{name} input[type=number]").first.input_value()))
                     for name in ("width", "height"))
        if size == expected:
            break
        page.wait_for_timeout(200)
    return size  # type: ignore[return-value]


def test_live_sync_resolution_sets_the_webuis_own_size(
    webui_page: Any, tmp_path: Path, shots: Path, webui_own_errors: set[str]
) -> None:
    """The button reads the subject and sets the WebUI's own width and height sliders
    (found through the script's after_component): the subject's aspect, about the area.
    A1111 1.10.1's page raises its own error when its size sliders change (see
    ``webui_own_errors``); only errors beyond those fail the test."""
    from PIL import Image

    from lib_iclight.resolution import synced_resolution

    page, watch = webui_page
    tall = tmp_path / "tall.png"
    make_subject(128).resize((96, 192)).save(tall)
    panel = PanelPage(page, "txt2img", timeout_ms=GENERATION_MS)
    panel.open()
    for name, value in (("width", 512), ("height", 512)):
        _set_number(page, f"#txt2img_{name}", value)
    panel.upload("input_fg", tall)
    panel.wait_for_new_image("input_fg", None)
    panel.click("sync_resolution")
    expected = synced_resolution((96, 192), (512, 512))
    assert _wait_for_size(page, "txt2img", expected) == expected
    page.locator("#iclight_txt2img_enable").screenshot(path=str(shots / "live-txt2img-sync-resolution.png"))

    _tab(page, "img2img")
    img = PanelPage(page, "img2img", timeout_ms=GENERATION_MS)
    img.open()
    if img.loc("sync_resolution").count() == 0:
        # Forge 2's img2img input is a canvas, not an image widget: no button there, by design.
        assert page.locator("#img2img_image input[type=file]").count() == 0 or "forge" in page.content().lower()
        assert _messages(watch) <= webui_own_errors, watch.errors
        return
    wide = tmp_path / "wide.png"
    Image.new("RGB", (200, 100), (120, 90, 60)).save(wide)
    page.locator("#img2img_image input[type=file]").first.set_input_files(str(wide))
    page.wait_for_timeout(1000)
    for name, value in (("width", 512), ("height", 512)):
        _set_number(page, f"#img2img_{name}", value)
    img.click("sync_resolution")
    expected = synced_resolution((200, 100), (512, 512))
    assert _wait_for_size(page, "img2img", expected) == expected
    assert _messages(watch) <= webui_own_errors, watch.errors


# ------------------------------------------------------------------ generate, infotext, paste


def _infotext_entries(text: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for key in IC_KEYS:
        match = re.search(rf"(?:^|[,\n]\s*){re.escape(key)}: ([^,\n]+)", text)
        if match:
            entries[key] = match.group(1).strip()
    return entries


def _panel_values(panel: PanelPage) -> dict[str, str]:
    """Every infotext-carrying widget of the panel, as the infotext writes it."""
    values: dict[str, str] = {}
    for spec in ARG_SPECS:
        if spec.infotext_key is None or spec.extended:
            continue
        if spec.name != "enable" and panel.loc(spec.name).count() == 0:
            continue  # Gradio 4 leaves a hidden widget (reinforce_fg in txt2img) out of the page
        if spec.name == "enable":
            checked = panel.page.locator("#iclight_txt2img_enable-checkbox input").first.is_checked()
            values[spec.infotext_key] = str(checked)
        elif spec.kind == "bool":
            values[spec.infotext_key] = str(panel.loc(spec.name).locator("input[type=checkbox]").first.is_checked())
        elif spec.kind == "int":
            values[spec.infotext_key] = panel.loc(spec.name).locator("input[type=number]").first.input_value()
        else:
            values[spec.infotext_key] = panel.dropdown_value(spec.name)
    return values


def _set_number(page: Any, selector: str, value: int) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def _generate(page: Any, expect_in_info: str, tab: str = "txt2img") -> str:
    """Fill the WebUI's own settings of ``tab`` (tiny and fast), press Generate, wait for the
    infotext under the image; its text."""
    page.locator(f"#{tab}_prompt textarea").fill("a photo of a person, soft light from the left")
    for name, value in (("steps", 4), ("width", SIZE), ("height", SIZE)):
        _set_number(page, f"#{tab}_{name}", value)
    page.locator(f"#{tab}_seed input").first.fill(str(SEED))
    page.locator(f"#{tab}_generate").click()
    page.wait_for_function(
        "([id, needle]) => (document.querySelector(id) || {}).innerText?.includes(needle)",
        arg=[f"#html_info_{tab}", expect_in_info], timeout=GENERATION_MS,
    )
    return page.locator(f"#html_info_{tab}").first.inner_text()  # Gradio 3 repeats the id on the wrapper


def _messages(watch: ConsoleWatch) -> set[str]:
    return {error.split(" | ")[0] for error in _page_errors(watch)}


@pytest.fixture(scope="module")
def webui_own_errors(chromium: Any, webui: WebUI) -> set[str]:
    """The page errors the WebUI raises by itself for the same clicks with IC Light left
    alone (A1111 1.10.1 raises "Cannot read properties of undefined (reading 'props')"
    from Gradio's Blocks script when its size sliders change): not the panel's to answer for."""
    with open_webui(chromium, webui.url) as (page, watch):
        _generate(page, "Steps")
    if watch.errors:
        print(f"\nthe WebUI's own page errors, without IC Light: {sorted(_messages(watch))}")
    return _messages(watch)


def test_live_generate_infotext_and_paste(
    webui: WebUI, webui_page: Any, subject_file: Path, shots: Path, webui_own_errors: set[str]
) -> None:
    page, watch = webui_page
    panel = PanelPage(page, "txt2img", timeout_ms=GENERATION_MS)
    panel.open()  # opening the WebUI's InputAccordion ticks it
    assert page.locator("#iclight_txt2img_enable-checkbox input").first.is_checked()
    panel.upload("input_fg", subject_file)
    for name, value in CHANGED.items():
        panel.set_slider(name, value)
    panel.loc("detail_transfer").locator("input[type=checkbox]").first.check()
    assert _page_errors(watch) == []

    text = _generate(page, "IC Light model")
    entries = _infotext_entries(text)
    assert list(entries) == IC_KEYS, f"IC Light entries missing from the infotext: {text}"
    assert entries["IC Light"] == "True"
    for name, value in CHANGED.items():
        assert entries[SPECS_BY_NAME[name].infotext_key] == str(value), name
    assert entries[SPECS_BY_NAME["detail_transfer"].infotext_key] == "True"
    gallery = page.locator("#txt2img_gallery img")
    assert gallery.count() >= 2, "the relit image and the cut-out should both be in the gallery"
    page.screenshot(path=str(shots / "live-txt2img-generated.png"), full_page=False)

    # A fresh page has every default; the paste must restore all of the generation's values.
    page.reload(wait_until="domcontentloaded")
    page.locator("#iclight_txt2img_enable-visible-checkbox").wait_for(state="attached", timeout=PAGE_LOAD_MS)
    fresh = PanelPage(page, "txt2img")
    assert _panel_values(fresh) != entries
    page.locator("#txt2img_prompt textarea").fill(text)
    page.locator("#txt2img_tools #paste").click()
    page.locator("#iclight_txt2img_model_type").wait_for(state="visible", timeout=fresh.timeout_ms)
    for _ in range(100):
        restored = _panel_values(fresh)
        if restored == {key: entries[key] for key in restored}:
            break
        page.wait_for_timeout(200)
    assert len(restored) >= len(entries) - 1 and restored == {key: entries[key] for key in restored}
    page.locator("#iclight_txt2img_enable").screenshot(path=str(shots / "live-txt2img-pasted.png"))
    assert _messages(watch) <= webui_own_errors, watch.errors


def test_live_agent_scheduler_ui_queue_runs_ic_light(webui: WebUI, webui_page: Any, subject_file: Path, shots: Path) -> None:
    """A task queued from the page with agent-scheduler's Enqueue button carries the panel's
    images and runs with IC-Light (its infotext has IC-Light's entries)."""
    import time

    if webui.get("/agent-scheduler/v1/queue").status_code != 200:
        pytest.skip("no agent-scheduler on this server")
    page, _ = webui_page
    if page.locator("#txt2img_enqueue").count() == 0:
        pytest.skip("agent-scheduler's Enqueue button is not on the page")
    before = {task["id"] for task in webui.get("/agent-scheduler/v1/history?limit=100").json()["tasks"]}
    panel = PanelPage(page, "txt2img", timeout_ms=GENERATION_MS)
    panel.open()
    panel.upload("input_fg", subject_file)
    page.locator("#txt2img_prompt textarea").fill("a photo of a person, queued")
    for name, value in (("steps", 4), ("width", SIZE), ("height", SIZE)):
        _set_number(page, f"#txt2img_{name}", value)
    page.locator("#txt2img_seed input").first.fill(str(SEED))
    page.locator("#txt2img_enqueue").click()
    deadline = time.monotonic() + GENERATION_MS / 1000
    task = None
    while time.monotonic() < deadline and task is None:
        page.wait_for_timeout(2000)
        history = webui.get("/agent-scheduler/v1/history?limit=100").json()["tasks"]
        task = next((t for t in history if t["id"] not in before), None)
    assert task is not None, "the queued task never finished"
    assert task["status"] == "done", task
    results = webui.get(f"/agent-scheduler/v1/task/{task['id']}/results").json()
    assert results["success"], results
    entries = _infotext_entries(results["data"][0]["infotext"])
    assert entries.get("IC Light") == "True" and "IC Light model" in entries, results["data"][0]["infotext"]
    page.screenshot(path=str(shots / "live-agent-scheduler-queued.png"), full_page=False)


# ------------------------------------------------------------------ img2img Batch tab


def _infotext_fields(text: str) -> dict[str, str]:
    """The WebUI's infotext, split: ``Prompt``, ``Negative prompt`` and each ``key: value``
    of its last line (values with commas are quoted there, and none used here has one)."""
    lines = text.strip().split("\n")
    fields = {"Prompt": lines[0]}
    for line in lines[1:-1]:
        if line.startswith("Negative prompt: "):
            fields["Negative prompt"] = line[len("Negative prompt: "):]
    for match in re.finditer(r"\s*([\w \-/]+): (\"(?:[^\"\\]|\\.)*\"|[^,]*)(?:,|$)", lines[-1]):
        fields[match.group(1).strip()] = match.group(2).strip()
    return fields


def _batch_subjects() -> dict[str, Any]:
    from PIL import Image

    subjects = {"subject_a": make_subject(128), "subject_b": make_subject(128).transpose(Image.FLIP_LEFT_RIGHT)}
    subjects["subject_b"].paste((150, 90, 60), (0, 0, 128, 20))  # a second subject, not a mirror only
    return subjects


def _run_batch_tab(webui: WebUI, page: Any, folder: Path, shots: Path, ic_light: bool) -> dict[str, dict[str, int]]:
    """Run the img2img Batch tab ("From directory") on two subjects, with IC Light on (the
    panel's "left" light map) or left alone, then replay each saved file's infotext through
    ``/sdapi/v1/img2img`` once per subject. Returns, per saved file, the largest pixel
    difference to each subject's replay."""
    import json

    from PIL import Image

    from .conftest import decode, encode

    source, target = folder / "in", folder / "out"
    source.mkdir()
    target.mkdir()
    subjects = _batch_subjects()
    for stem, image in subjects.items():
        image.save(source / f"{stem}.png")

    _tab(page, "img2img")
    page.locator("#mode_img2img > .tab-nav button").filter(has_text=re.compile(r"^\s*Batch\s*$")).first.click()
    page.locator("#img2img_batch_tab").wait_for(state="visible")
    if page.locator("#img2img_batch_source").count():  # A1111 1.10, Forge 2; Forge Classic and reForge have no upload tab
        from_dir = page.locator("#img2img_batch_source > .tab-nav button").filter(
            has_text=re.compile(r"^\s*From directory\s*$"))
        from_dir.first.click()
        page.locator("#img2img_batch_from_dir_tab").wait_for(state="visible")
    input_dir = page.locator("#img2img_batch_input_dir textarea, #img2img_batch_input_dir input").first
    if not input_dir.is_visible():
        pytest.skip("the server hides the batch directories (--hide-ui-dir-config)")
    input_dir.fill(str(source))
    page.locator("#img2img_batch_output_dir textarea, #img2img_batch_output_dir input").first.fill(str(target))

    light_map = None
    if ic_light:
        panel = PanelPage(page, "img2img", timeout_ms=GENERATION_MS)
        panel.open()  # opening the WebUI's InputAccordion ticks it
        src = panel.image_src("input_fg")
        panel.pick_radio("light_preset", "left")
        light_map = panel.read_image(panel.wait_for_new_image("input_fg", src))
        assert max_difference(light_map, make_lightmap("left", *light_map.size)) == 0

    label = "with" if ic_light else "without"
    _generate(page, "IC Light model" if ic_light else "Steps", tab="img2img")
    page.screenshot(path=str(shots / f"live-img2img-batch-{label}-ic-light.png"), full_page=False)
    saved = sorted(p.name for p in target.iterdir())
    print(f"\nthe Batch tab saved ({label} IC Light): {saved}")
    # One file a subject: the cut-out IC Light appends is shown, not saved. A1111 names each
    # after its subject; Forge 2 does so only with "img2img_batch_use_original_name" (off by
    # default) and walks the folder unsorted, so each file is matched to a subject by content.
    assert len(saved) == len(subjects), saved

    def replay(subject: Image.Image, fields: dict[str, str]) -> Image.Image:
        width, height = (int(v) for v in fields["Size"].split("x"))
        payload = {
            "prompt": fields["Prompt"],
            "negative_prompt": fields.get("Negative prompt", ""),
            "steps": int(fields["Steps"]),
            "sampler_name": fields["Sampler"],
            "cfg_scale": float(fields["CFG scale"]),
            "seed": int(fields["Seed"]),
            "width": width,
            "height": height,
            "denoising_strength": float(fields["Denoising strength"]),
            "resize_mode": 0,
            "init_images": [encode(subject)],
        }
        if light_map is not None:
            # the 13 by name in contract order, then the options parse_infotext adds after them
            args = {**webui.ic_args(input_fg=encode(light_map.convert("RGB"))), **parse_infotext(fields)}
            payload["alwayson_scripts"] = {"IC Light": {"args": list(args.values())}}
        if "Schedule type" in fields:
            payload["scheduler"] = fields["Schedule type"]
        response = webui.post("img2img", payload)
        assert response.status_code == 200, response.text
        print(f"via the API: {json.loads(response.json()['info'])['infotexts'][0]!r}")
        return decode(response.json()["images"][0])

    found: dict[str, dict[str, int]] = {}
    for name in saved:
        output = Image.open(target / name)
        output.load()
        info = output.info.get("parameters", "")
        print(f"{name} {output.size} {output.mode}: {info!r}")
        fields = _infotext_fields(info)
        assert (fields.get("IC Light") == "True") == ic_light, info
        differences = {}
        for stem, subject in subjects.items():
            alone = replay(subject, fields)
            alone.save(shots / f"live-img2img-batch-{label}-ic-light-{stem}-api.png")
            differences[stem] = max_difference(output, alone)
        print(f"{name}: largest difference batch vs API per subject = {differences}")
        found[name] = differences
        stem = min(differences, key=differences.get)
        if re.search(r"subject_[ab]", name):
            assert stem in name, f"{name} is named after another subject than its own ({stem})"
    matched = [min(differences, key=differences.get) for differences in found.values()]
    assert sorted(matched) == sorted(subjects), f"each subject must have its own file: {found}"
    return found


@pytest.fixture(scope="module")
def batch_tab_own_difference(chromium: Any, webui: WebUI, tmp_path_factory: Any) -> int:
    """The WebUI's own difference between its Batch tab and its API, IC Light left alone:
    the largest pixel difference of each saved file to its subject's replay (0 on
    AUTOMATIC1111, Forge 2 and reForge; measured, not assumed)."""
    shots = tmp_path_factory.mktemp("batch-own-shots")
    with open_webui(chromium, webui.url) as (page, _watch):
        found = _run_batch_tab(webui, page, tmp_path_factory.mktemp("batch-own"), shots, ic_light=False)
    own = max(min(differences.values()) for differences in found.values())
    print(f"\nthe WebUI's own Batch tab vs API difference, without IC Light: {own}")
    return own


def test_live_img2img_batch_tab_matches_the_api(
    webui: WebUI, webui_page: Any, tmp_path: Path, shots: Path, webui_own_errors: set[str],
    batch_tab_own_difference: int,
) -> None:
    """The img2img Batch tab ("From directory") with IC Light on and the "left" light map:
    the WebUI's ``process_batch`` (A1111's, and the Forge family's copies of it) runs every
    file of the folder through the same ``p`` (the script's process / postprocess once per
    file). Each saved image must equal the same request made alone through the API, as
    closely as the WebUI's own Batch tab equals its API without IC Light (0 where measured
    so far but on Forge Classic): nothing of one subject may leak into the next."""
    page, watch = webui_page
    found = _run_batch_tab(webui, page, tmp_path, shots, ic_light=True)
    for name, differences in found.items():
        own = min(differences.values())
        assert own <= batch_tab_own_difference, (
            f"{name}: differs from its request alone by {own}, more than the WebUI's own "
            f"Batch tab without IC Light ({batch_tab_own_difference}): {found}")
        # the other subject's request gives another image: the comparison could tell them apart
        assert max(differences.values()) > batch_tab_own_difference, found
    assert _messages(watch) <= webui_own_errors, watch.errors

"""The Gradio panel: 13 components in contract order, typed and ranged by ARG_SPECS,
built without side effects. Runs on Gradio 3.41 and 4.40 alike."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from typing import Any
from unittest import mock

import pytest

gr = pytest.importorskip("gradio")

from PIL import Image  # noqa: E402

from lib_iclight.webui import ui  # noqa: E402
from lib_iclight.args import ARG_NAMES, ARG_SPECS, SPECS_BY_NAME  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRADIO_4 = int(gr.__version__.split(".")[0]) >= 4

KINDS = {"IC-Light-SD15-FC-fp8": "fc", "iclight_sd15_fbc": "fbc", "my-relight": "fbc"}


@contextlib.contextmanager
def _no_pyi_files():
    """Gradio 4 writes a .pyi next to the source of every Component subclass; Forge
    patches that out for InputAccordion, and this keeps the tests folder clean the same way."""
    meta = getattr(gr, "component_meta", None)
    if meta is not None and hasattr(meta, "create_or_modify_pyi"):
        with mock.patch.object(meta, "create_or_modify_pyi", lambda *args, **kwargs: None):
            yield
    else:
        yield


def _make_accordion_class() -> type:
    with _no_pyi_files():

        class FakeInputAccordion(gr.Checkbox):
            """A1111's InputAccordion, reduced to what the panel relies on: a hidden checkbox
            (the ``enable`` value) that opens an Accordion when used as a context manager."""

            def __init__(self, value: bool = False, label: str = "Accordion", elem_id: str | None = None) -> None:
                super().__init__(value=value, label=label, elem_id=f"{elem_id}-checkbox", visible=False)
                self.accordion = gr.Accordion(label=label, open=value, elem_id=elem_id)

            def __enter__(self) -> "FakeInputAccordion":
                self.accordion.__enter__()
                return self

            def __exit__(self, *exc: Any) -> None:
                self.accordion.__exit__(*exc)

    return FakeInputAccordion


FakeInputAccordion = _make_accordion_class()


def build(is_img2img: bool, **kwargs: Any) -> ui.Panel:
    kwargs.setdefault("ic_model_names", list(KINDS))
    kwargs.setdefault("rembg_model_names", ["u2net_human_seg", "isnet-general-use", "u2net"])
    kwargs.setdefault("ic_model_kinds", KINDS)
    with gr.Blocks():
        return ui.build_panel(is_img2img, FakeInputAccordion, **kwargs)


def _value(component: Any) -> Any:
    return getattr(component, "value", None)


def _visible(component: Any) -> bool:
    return bool(getattr(component, "visible", True))


@pytest.mark.parametrize("is_img2img", [False, True])
def test_the_components_in_contract_order(is_img2img: bool) -> None:
    panel = build(is_img2img)
    assert len(panel.components) == len(ARG_SPECS) == 16  # the 13 of the contract, then the options
    assert isinstance(panel.components[0], FakeInputAccordion)
    assert [panel.by_name[name] for name in ARG_NAMES] == panel.components
    assert len({id(c) for c in panel.components}) == 16


@pytest.mark.parametrize("is_img2img", [False, True])
def test_types_defaults_and_ranges_follow_arg_specs(is_img2img: bool) -> None:
    panel = build(is_img2img)
    for spec, component in zip(ARG_SPECS, panel.components, strict=True):
        if spec.kind == "bool":
            assert isinstance(component, gr.Checkbox), spec.name
            assert _value(component) is spec.default, spec.name
        elif spec.kind == "int":
            assert isinstance(component, gr.Slider), spec.name
            assert (component.minimum, component.maximum) == (spec.minimum, spec.maximum), spec.name
            assert _value(component) == spec.default, spec.name
            assert component.step == 1
        elif spec.kind == "image":
            assert isinstance(component, gr.Image), spec.name
            assert component.type == "pil" and component.image_mode == "RGBA"
            assert _value(component) is None
        else:
            assert isinstance(component, gr.Dropdown), spec.name
            assert _value(component) == spec.default, spec.name
        if spec.name != "enable" and not (spec.name == "input_fg" and is_img2img):
            assert component.label == spec.label, spec.name
    tab = "img2img" if is_img2img else "txt2img"
    for spec, component in zip(ARG_SPECS[1:], panel.components[1:], strict=True):
        assert component.elem_id == f"iclight_{tab}_{spec.name}"
    assert panel.components[0].accordion.elem_id == f"iclight_{tab}_enable"
    assert panel.components[0].accordion.label == "IC Light"


def test_dropdown_choices() -> None:
    panel = build(False, rembg_model_names=["isnet-anime"], default_rembg="u2net_human_seg")
    model_choices = _choice_values(panel.by_name["model_type"])
    assert model_choices == [*KINDS, "fc", "fbc"]
    assert _choice_values(panel.by_name["rembg_model"]) == ["isnet-anime", "u2net_human_seg"]


def _choice_values(dropdown: Any) -> list[str]:
    # Gradio 4 stores (label, value) pairs, Gradio 3 plain values.
    return [c[1] if isinstance(c, (tuple, list)) else c for c in dropdown.choices]


@pytest.mark.parametrize("is_img2img", [False, True])
def test_infotext_fields(is_img2img: bool) -> None:
    panel = build(is_img2img)
    expected = [(panel.by_name[s.name], s.infotext_key) for s in ARG_SPECS if s.kind != "image"]
    if is_img2img:  # a light map by name pastes into the preset radio and the angle slider
        expected += [(panel.controls["light_preset"], ui.pasted_light_preset),
                     (panel.controls["light_angle"], ui.pasted_light_angle)]
    assert panel.infotext_fields == expected
    assert len(panel.infotext_fields) == 14 + 2 * is_img2img
    assert panel.infotext_fields[0] == (panel.components[0], "IC Light")


def test_a_pasted_light_map_name_sets_the_preset_and_angle() -> None:
    assert ui.pasted_light_preset({"IC Light light map": "Left"}) == "left"
    assert ui.pasted_light_preset({"IC Light light map": "angle:45"}) == "angle"
    assert ui.pasted_light_angle({"IC Light light map": "angle:45"}) == 45
    assert ui.pasted_light_angle({"IC Light light map": "135"}) == 135
    assert ui.pasted_light_angle({"IC Light light map": "left"}) == gr.update()
    assert ui.pasted_light_preset({}) == gr.update()


def test_fbc_background_visibility() -> None:
    assert not ui.background_visible(False, "IC-Light-SD15-FC-fp8", KINDS)
    assert ui.background_visible(False, "iclight_sd15_fbc", KINDS)
    assert ui.background_visible(False, "my-relight", KINDS)  # kind from the header, not the name
    assert ui.background_visible(False, "fbc", {})
    assert not ui.background_visible(False, "fc", {})
    assert ui.background_visible(False, "someone-elses-FBC-repack", {})  # guessed from the name
    assert not ui.background_visible(True, "iclight_sd15_fbc", KINDS)  # never in img2img

    txt = build(False)
    assert not _visible(txt.by_name["uploaded_bg"])  # default "fc"
    assert [u["visible"] for u in txt.handlers["model_type"]("my-relight")] == [True] * 3
    assert [u["visible"] for u in txt.handlers["model_type"]("IC-Light-SD15-FC-fp8")] == [False] * 3
    assert ui.FBC_ONLY == ("uploaded_bg", "bg_source", "normal_map")
    assert not any(_visible(txt.by_name[name]) for name in ui.FBC_ONLY)
    assert _visible(txt.by_name["relight_in_place"])
    assert not _visible(txt.by_name["reinforce_fg"])

    img = build(True)
    assert not any(_visible(img.by_name[name]) for name in ui.FBC_ONLY)
    assert _visible(img.by_name["relight_in_place"])
    assert "model_type" not in img.handlers
    assert _visible(img.by_name["reinforce_fg"])
    assert img.by_name["input_fg"].label == "Light map"

    with gr.Blocks():
        fbc_first = ui.build_panel(False, FakeInputAccordion, ["fbc"], ["u2net"], "u2net")
    assert _visible(fbc_first.by_name["uploaded_bg"]) is False  # the default is still "fc"


def test_refresh_button_updates_choices_and_kinds() -> None:
    calls: list[int] = []

    def refresh() -> dict[str, str]:
        calls.append(1)
        return {"new-fc": "fc", "new-bg": "fbc"}

    panel = build(False, refresh_models=refresh)
    assert calls == []  # building must not list models
    assert "refresh_models" in panel.controls
    dropdown, *fbc_only = panel.handlers["refresh_models"]("new-bg")
    assert dropdown["choices"] == ["new-fc", "new-bg", "fc", "fbc"]
    assert dropdown["value"] == "new-bg"
    assert [u["visible"] for u in fbc_only] == [True] * 3
    assert [u["visible"] for u in panel.handlers["model_type"]("new-fc")] == [False] * 3

    no_refresh = build(False)
    assert "refresh_models" not in no_refresh.controls


def test_light_map_presets_render_into_input_fg() -> None:
    panel = build(True)
    assert panel.controls["light_preset"].choices is not None
    assert _choice_values(panel.controls["light_preset"]) == ["left", "right", "top", "bottom", "ambient", "angle", "custom"]

    image, angle_update = panel.handlers["light_preset"]("left", 180, None)
    assert isinstance(image, Image.Image) and image.size == (512, 512) and image.mode == "RGB"
    assert image.getpixel((0, 256))[0] > image.getpixel((511, 256))[0]  # lit from the left
    assert angle_update["visible"] is False

    existing = Image.new("RGBA", (96, 64))
    image, angle_update = panel.handlers["light_preset"]("angle", 90, existing)
    assert image.size == (96, 64)
    assert image.getpixel((48, 0))[0] > image.getpixel((48, 63))[0]  # 90 = from the top
    assert angle_update["visible"] is True

    kept, _ = panel.handlers["light_preset"]("custom", 0, existing)
    assert isinstance(kept, dict) and "value" not in kept  # an upload is left alone

    redrawn = panel.handlers["light_angle"]("angle", 0, existing)
    assert redrawn.getpixel((95, 32))[0] > redrawn.getpixel((0, 32))[0]  # 0 = from the right
    assert "value" not in panel.handlers["light_angle"]("left", 0, existing)

    ambient = ui.render_lightmap("ambient", None, None)
    assert ambient.getpixel((0, 0)) == ambient.getpixel((511, 511))
    assert ui.render_lightmap(None, 0, None) is None

    assert "light_preset" not in build(False).controls


def test_preview_button_calls_the_callback_on_click_only() -> None:
    calls: list[tuple] = []

    def preview(image: Image.Image, model: str, fg: int, bg: int, erode: int) -> Image.Image:
        calls.append((image.size, model, fg, bg, erode))
        return Image.new("RGBA", image.size)

    panel = build(False, preview_fn=preview)
    assert calls == []
    update = panel.handlers["preview"](Image.new("RGBA", (8, 8)), "u2net", 225.0, 16.0, 16.0)
    assert calls == [((8, 8), "u2net", 225, 16, 16)]
    assert update["visible"] is True and isinstance(update["value"], Image.Image)
    with pytest.raises(gr.Error):
        panel.handlers["preview"](None, "u2net", 225, 16, 16)

    assert "preview_button" not in build(True, preview_fn=preview).controls


def test_building_the_panel_imports_no_rembg_and_touches_nothing() -> None:
    """A fresh interpreter, so that no other test's import of rembg can hide one here."""
    script = textwrap.dedent(
        f"""
        import sys, socket
        sys.path.insert(0, {ROOT!r})
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        def no_network(*args, **kwargs):
            raise AssertionError("network touched while building the panel")
        socket.socket.connect = no_network
        import gradio as gr
        import test_ui
        test_ui.build(False, preview_fn=lambda *a: 1 / 0, refresh_models=lambda: 1 / 0)
        test_ui.build(True, refresh_models=lambda: 1 / 0)
        bad = sorted(m for m in sys.modules if m == "rembg" or m.startswith(("rembg.", "onnxruntime", "pymatting")))
        print("IMPORTED", bad)
        """
    )
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IMPORTED []" in result.stdout, result.stdout


def test_rows_place_every_argument_once() -> None:
    placed = [name for row in ui._ROWS for name in row]
    assert placed == list(ARG_NAMES[1:])
    assert SPECS_BY_NAME["enable"] is ARG_SPECS[0]


@pytest.mark.parametrize("is_img2img", [False, True])
def test_panel_serialises_to_a_gradio_config(is_img2img: bool) -> None:
    """What the browser receives: every widget and event must serialise on this Gradio."""
    with gr.Blocks() as demo:
        panel = ui.build_panel(
            is_img2img, FakeInputAccordion, list(KINDS), ["u2net"], ic_model_kinds=KINDS,
            refresh_models=lambda: KINDS, preview_fn=lambda *args: Image.new("RGBA", (8, 8)),
        )
    config = demo.get_config_file()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    tab = "img2img" if is_img2img else "txt2img"
    assert {f"iclight_{tab}_{spec.name}" for spec in ARG_SPECS[1:]} <= ids
    assert len(config["dependencies"]) >= (3 if is_img2img else 2)
    assert panel.components[0].accordion is not None


# -- the lighting options (issue 21) ---------------------------------------------------


def test_the_background_source_is_a_dropdown_of_the_sources() -> None:
    panel = build(False)
    dropdown = panel.by_name["bg_source"]
    assert _choice_values(dropdown) == ["upload", "upload_flip", "left", "right", "top", "bottom", "ambient"]
    assert _value(dropdown) == "upload"
    assert getattr(dropdown, "allow_custom_value", True)  # "angle:45" is typed in
    assert _value(panel.by_name["normal_map"]) is False and _value(panel.by_name["relight_in_place"]) is False


def _with_size_fields(is_img2img: bool, subject: bool = True) -> ui.Panel:
    with gr.Blocks():
        width = gr.Slider(minimum=64, maximum=2048, step=8, value=512, elem_id="w")
        height = gr.Slider(minimum=64, maximum=2048, step=8, value=768, elem_id="h")
        init = gr.Image(type="pil", elem_id="init") if subject else None
        return ui.build_panel(is_img2img, FakeInputAccordion, ["IC-Light-SD15-FC-fp8"], ["u2net"], "u2net",
                              size_fields=(width, height), subject_field=init)


def test_sync_resolution_sets_the_subjects_aspect_at_about_the_current_area() -> None:
    panel = _with_size_fields(False)
    assert "sync_resolution" in panel.controls
    sync = panel.handlers["sync_resolution"]
    assert sync(Image.new("RGB", (1000, 1000)), 512, 768) == (624, 624)
    assert sync(Image.new("RGBA", (1000, 1500)), 512, 768) == (512, 768)
    width, height = sync(Image.new("RGB", (1600, 900)), 512, 512)
    assert width % 8 == 0 and height % 8 == 0 and abs(width / height - 16 / 9) < 0.05
    w, h = sync({"image": Image.new("RGB", (300, 600)), "mask": None}, 512, 512)
    assert (w, h) == (360, 728) and abs(w * h - 512 * 512) < 0.01 * 512 * 512
    with pytest.raises(gr.Error, match="upload the subject image first"):
        sync(None, 512, 512)


def test_sync_resolution_in_img2img_reads_the_webuis_input_image() -> None:
    assert "sync_resolution" in _with_size_fields(True).controls
    # Without an image widget to read (Forge 2's img2img canvas), no button.
    assert "sync_resolution" not in _with_size_fields(True, subject=False).controls
    # Without the WebUI's size sliders, no button either.
    assert "sync_resolution" not in build(False).controls

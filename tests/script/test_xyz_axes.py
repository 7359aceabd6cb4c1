"""IC Light's X/Y/Z plot axes, registered by the real script into the stand-in X/Y/Z plot
(tests/script/standins/scripts/xyz_grid.py) and run through the stand-in pipeline."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from lib_iclight import axes
from lib_iclight.webui import context
from lib_iclight.errors import ICLightError
from lib_iclight.lightmaps import make_lightmap
from tests.helpers.images import to_base64
from tests.script.conftest import STANDINS
from tests.script.test_script_a1111 import SUBJECT, default_args, ic_args, pixels, run, same_images

FC = "IC-Light-SD15-FC-fp8"
FBC = "iclight_sd15_fbc"
BACKGROUND = Image.new("RGB", (80, 64), (200, 120, 40))


@pytest.fixture(scope="module")
def xyz(webui):
    """The stand-in X/Y/Z plot loaded as load_scripts does, then the WebUI's before_ui."""
    from modules import script_callbacks, scripts

    path = STANDINS / "scripts" / "xyz_grid.py"
    spec = importlib.util.spec_from_file_location("xyz_grid.py", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry = scripts.ScriptClassData(module.Script, str(path), str(path.parent.parent), module)
    scripts.scripts_data.append(entry)
    try:
        script_callbacks.before_ui_callback()
        yield module
    finally:
        scripts.scripts_data.remove(entry)


def pixels_of(image):
    return pixels(SimpleNamespace(images=[image]))[0]


def tab(xyz, is_img2img):
    script = xyz.Script()
    script.ui(is_img2img)
    return script


def option(script, label):
    return next(opt for opt in script.current_axis_options if opt.label == label)


def grid(webui, xyz, args, x=("Nothing", ""), y=("Nothing", ""), img2img=False, **kwargs):
    """Run the X/Y/Z plot as the WebUI runs a selected script: values typed as text (csv
    mode), the cells returned after the grid."""
    from modules import processing, scripts

    script = tab(xyz, img2img)
    labels = [opt.label for opt in script.current_axis_options]
    if img2img:
        p = processing.StableDiffusionProcessingImg2Img(prompt="a photo", init_images=[kwargs.pop("init_image", SUBJECT)], **kwargs)
    else:
        p = processing.StableDiffusionProcessingTxt2Img(prompt="a photo", **kwargs)
    p.scripts = scripts.ScriptRunner([webui.script])
    p.script_args = tuple(args)
    xyz_args = [labels.index(x[0]), x[1], [], labels.index(y[0]), y[1], [], 0, "", [],
                True, True, False, False, False, False, False, 0, True]
    return p, script.run(p, *xyz_args)


def test_the_axes_register_on_both_tabs(xyz):
    txt2img = [opt.label for opt in tab(xyz, False).current_axis_options]
    img2img = [opt.label for opt in tab(xyz, True).current_axis_options]
    for axis in axes.AXES:
        assert (axis.label in img2img) is not axis.txt2img_only
        assert (axis.label in txt2img) is not axis.img2img_only
    assert "IC Light light map" in img2img and "IC Light light map" not in txt2img
    assert "Seed" in txt2img and "Image CFG Scale" in img2img  # the plot's own axes stay


def test_registering_again_replaces_instead_of_adding(xyz):
    from modules import script_callbacks

    before = len(xyz.axis_options)
    script_callbacks.before_ui_callback()
    assert len(xyz.axis_options) == before
    labels = [opt.label for opt in tab(xyz, True).current_axis_options]
    assert len(labels) == len(set(labels))


def test_choices_come_from_the_models_found(webui, xyz):
    assert option(tab(xyz, False), "IC Light model").choices() == [FC, FBC]
    assert option(tab(xyz, True), "IC Light model").choices() == [FC]  # img2img relights with fc only
    assert "u2net_human_seg" in option(tab(xyz, False), "IC Light rembg model").choices()
    assert option(tab(xyz, True), "IC Light light map").choices() == ["left", "right", "top", "bottom", "ambient"]
    assert option(tab(xyz, False), "IC Light remove background").choices() == ["True", "False"]
    assert option(tab(xyz, False), "IC Light erode size").choices is None


def test_apply_sets_what_the_process_hook_reads_on_the_cell_only(xyz):
    from copy import copy

    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img()
    script = tab(xyz, False)
    option(script, "IC Light model").apply(p, FBC, [FBC])
    cell = copy(p)  # the plot's cells are shallow copies
    option(script, "IC Light foreground threshold").apply(cell, 200, [200])
    option(script, "IC Light remove background").apply(cell, "False", ["False"])
    assert context.context_of(p).axis_values == {"model_type": FBC}
    assert context.context_of(cell).axis_values == {"model_type": FBC, "foreground_threshold": 200, "remove_bg": False}


def test_txt2img_grid_over_models_runs_each_cell_with_its_model(webui, xyz):
    args = ic_args(uploaded_bg=to_base64(BACKGROUND))
    _, processed = grid(webui, xyz, args, x=("IC Light model", f"{FC}, {FBC}"))
    grid_image, *cells = processed.images
    assert len(cells) == 2 and grid_image.size == (128, 64)
    for cell, text, model in zip(cells, processed.infotexts[1:], (FC, FBC)):
        alone = run(webui, ic_args(model_type=model, uploaded_bg=to_base64(BACKGROUND)))[1]
        assert same_images(pixels(alone, 1), [pixels_of(cell)])
        assert f"IC Light model: {model}" in text
    assert not same_images([pixels_of(cells[0])], [pixels_of(cells[1])])
    assert "X Type: IC Light model" in processed.infotexts[0]
    assert f"X Values: {FC}, {FBC}" in processed.infotexts[0]
    assert f"IC Light model: {FC}" in processed.infotexts[0]


def test_img2img_grid_over_presets_and_background_removal(webui, xyz):
    args = ic_args(input_fg=None)  # no light map in the panel: the axis draws it
    _, processed = grid(webui, xyz, args, img2img=True,
                        x=("IC Light light map", "left, right"), y=("IC Light remove background", "True, False"))
    cells = processed.images[1:]
    assert len(cells) == 4
    expected = [("left", True), ("right", True), ("left", False), ("right", False)]
    for cell, text, (preset, remove_bg) in zip(cells, processed.infotexts[1:], expected):
        light = to_base64(make_lightmap(preset, 64, 64))
        alone = run(webui, ic_args(input_fg=light, remove_bg=remove_bg), img2img=True)[1]
        assert same_images(pixels(alone, 1), [pixels_of(cell)]), (preset, remove_bg)
        assert f"IC Light light map: {preset}" in text
        assert f"IC Light remove background: {remove_bg}" in text
    assert len({bytes(c.tobytes()) for c in cells}) == 4
    assert "X Type: IC Light light map" in processed.infotexts[0]
    assert "Y Type: IC Light remove background" in processed.infotexts[0]


def test_img2img_angle_axis_with_int_ranges(webui, xyz):
    _, processed = grid(webui, xyz, ic_args(), img2img=True, x=("IC Light light angle", "0-180 (+180)"))
    cells = processed.images[1:]
    for cell, preset in zip(cells, ("right", "left")):
        alone = run(webui, ic_args(input_fg=to_base64(make_lightmap(preset, 64, 64))), img2img=True)[1]
        assert same_images(pixels(alone, 1), [pixels_of(cell)])
    assert "IC Light light map: 180" in processed.infotexts[2]


def test_txt2img_grid_over_background_sources(webui, xyz):
    args = ic_args(model_type=FBC, uploaded_bg=to_base64(BACKGROUND))
    _, processed = grid(webui, xyz, args, x=("IC Light background source", "upload, left, angle:45"))
    cells = processed.images[1:]
    assert len(cells) == 3
    for cell, text, source in zip(cells, processed.infotexts[1:], ("upload", "left", "angle:45")):
        alone = run(webui, ic_args(model_type=FBC, uploaded_bg=to_base64(BACKGROUND), bg_source=source))[1]
        assert same_images(pixels(alone, 1), [pixels_of(cell)]), source
        # The default is not written; the other sources are.
        assert (f"IC Light background source: {source}" in text) is (source != "upload")
    assert len({bytes(c.tobytes()) for c in cells}) == 3


def test_img2img_light_map_axis_takes_angle_names(webui, xyz):
    _, processed = grid(webui, xyz, ic_args(), img2img=True, x=("IC Light light map", "angle:180, angle:0"))
    for cell, preset in zip(processed.images[1:], ("left", "right")):
        alone = run(webui, ic_args(input_fg=preset), img2img=True)[1]
        assert same_images(pixels(alone, 1), [pixels_of(cell)])
    assert "IC Light light map: angle:180" in processed.infotexts[1]


def test_int_axes_reach_the_script(webui, xyz):
    p, processed = grid(webui, xyz, ic_args(detail_transfer=True), x=("IC Light detail transfer blur radius", "3, 9"),
                        y=("IC Light erode size", "4"))
    texts = processed.infotexts[1:]
    assert "IC Light detail transfer blur radius: 3" in texts[0] and "IC Light erode size: 4" in texts[0]
    assert "IC Light detail transfer blur radius: 9" in texts[1]


BAD_GRIDS = [
    (dict(x=("IC Light model", "IC-Light-SD15-XL")), False, "^model_type: unknown model"),
    (dict(x=("IC Light model", FBC)), True, "^model_type: img2img relighting needs an fc model"),
    (dict(x=("IC Light light map", "left, sideways")), True, "^light_map: unknown light direction"),
    (dict(x=("IC Light foreground threshold", "200, 300")), False, "^foreground_threshold: expected an int in 0..255"),
    (dict(x=("IC Light remove background", "maybe")), False, "^remove_bg: expected a bool"),
    (dict(x=("IC Light background source", "upload, sideways")), False, "^bg_source: unknown background source"),
]


@pytest.mark.parametrize("axis,img2img,message", BAD_GRIDS)
def test_bad_axis_values_are_refused_before_any_cell(webui, xyz, axis, img2img, message):
    from modules import errors

    reported = len(errors.reported)
    with pytest.raises(ICLightError, match=message):
        grid(webui, xyz, ic_args(), img2img=img2img, **axis)
    assert len(errors.reported) == reported  # no cell ran


def test_an_axis_with_ic_light_off_is_refused_by_name(webui, xyz):
    with pytest.raises(ICLightError, match=r"^enable: the X/Y/Z plot sets IC Light model, but IC Light is not enabled"):
        grid(webui, xyz, default_args(), x=("IC Light model", FC))


def test_the_process_hook_refuses_axis_values_with_ic_light_off(webui):
    """A cell reached without the plot's confirm (another grid script) still stops by name."""
    from modules import processing, scripts

    p = processing.StableDiffusionProcessingTxt2Img(prompt="a photo")
    p.scripts = scripts.ScriptRunner([webui.script])
    p.script_args = tuple(default_args())
    context.with_axis_value(p, axes.AXES_BY_LABEL["IC Light model"].target, axes.parse_value(axes.AXES_BY_LABEL["IC Light model"], FC))
    with pytest.raises(ICLightError, match="^enable: "):
        processing.process_images(p)


def test_the_light_map_axis_is_refused_in_txt2img(webui):
    from modules import processing, scripts

    p = processing.StableDiffusionProcessingTxt2Img(prompt="a photo")
    p.scripts = scripts.ScriptRunner([webui.script])
    p.script_args = tuple(ic_args())
    context.with_axis_value(p, axes.AXES_BY_LABEL["IC Light light map"].target, axes.parse_value(axes.AXES_BY_LABEL["IC Light light map"], "left"))
    with pytest.raises(ICLightError, match="^light_map: only img2img"):
        processing.process_images(p)


def test_the_standin_is_loaded_from_its_file(xyz):
    assert Path(xyz.__file__).name == "xyz_grid.py" and xyz.__name__ == "xyz_grid.py"


# -- Forge Classic's layout -----------------------------------------------------------
# Its extensions-builtin/xyz/scripts/xyz_grid.py imports only AxisOption from
# lib_xyz/classes.py, which also holds the per-tab classes (same code as A1111's).


@pytest.fixture
def forge_classic_xyz(monkeypatch):
    """A script module holding ``AxisOption`` only, its classes living in ``lib_xyz.classes``
    (a second load of the stand-in's file, so its classes are not the ones above)."""
    from modules import scripts

    path = STANDINS / "scripts" / "xyz_grid.py"
    spec = importlib.util.spec_from_file_location("lib_xyz.classes", path)
    classes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(classes)
    monkeypatch.setitem(sys.modules, "lib_xyz.classes", classes)
    script = types.ModuleType("xyz_grid.py")
    script.AxisOption = classes.AxisOption
    script.axis_options = [classes.AxisOption("Nothing", str, classes.do_nothing)]
    other = types.ModuleType("other.py")
    data = [scripts.ScriptClassData(object, "/webui/scripts/other.py", "/webui", other),
            scripts.ScriptClassData(object, "/webui/extensions-builtin/xyz/scripts/xyz_grid.py", "/webui/extensions-builtin/xyz", script)]
    return classes, script, data


def register(data):
    from lib_iclight.webui import xyz_axes

    return xyz_axes.register(data, model_kinds=lambda: {FC: "fc"}, rembg_models=lambda: ["u2net"],
                             resolve_model=lambda name: SimpleNamespace(name=name, kind="fc"))


def test_forge_classic_axis_classes_are_found_next_to_axis_option(forge_classic_xyz):
    classes, script, data = forge_classic_xyz
    assert register(data)
    ours = script.axis_options[1:]
    assert len(ours) == len(axes.axes_for(False)) + len(axes.axes_for(True))
    assert {type(opt) for opt in ours} == {classes.AxisOptionTxt2Img, classes.AxisOptionImg2Img}
    assert "IC Light light map" in {opt.label for opt in ours if opt.is_img2img}
    assert "IC Light light map" not in {opt.label for opt in ours if not opt.is_img2img}


def test_no_xyz_plot_registers_nothing(forge_classic_xyz):
    assert not register(forge_classic_xyz[2][:1])


def test_an_xyz_plot_without_per_tab_classes_is_left_alone(forge_classic_xyz, monkeypatch):
    _, script, data = forge_classic_xyz
    monkeypatch.delitem(sys.modules, "lib_xyz.classes")
    assert register(data)
    assert [opt.label for opt in script.axis_options] == ["Nothing"]


def test_script_args_of_finds_the_ic_light_slice():
    from lib_iclight.webui import xyz_axes

    script = SimpleNamespace(title=lambda: "IC Light", args_from=2, args_to=4)
    other = SimpleNamespace(title=lambda: "Other", args_from=0, args_to=2)
    p = SimpleNamespace(scripts=SimpleNamespace(alwayson_scripts=[other, script]), script_args=("a", "b", True, "fc", "z"))
    assert xyz_axes.script_args_of(p) == [True, "fc"]
    assert xyz_axes.script_args_of(SimpleNamespace()) is None


def test_the_angle_axis_with_ic_light_off_is_refused_by_its_label(webui, xyz):
    with pytest.raises(ICLightError, match=r"^enable: the X/Y/Z plot sets IC Light light angle, but"):
        grid(webui, xyz, default_args(), img2img=True, x=("IC Light light angle", "0, 90"))

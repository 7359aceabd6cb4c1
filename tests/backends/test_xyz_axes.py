"""Finding the X/Y/Z plot and its axis classes in the layouts of each WebUI.

A1111 1.10, Forge 2 and reForge define ``AxisOption`` and its per-tab subclasses in
``scripts/xyz_grid.py`` itself (covered with the real script in tests/script); Forge
Classic's ``extensions-builtin/xyz/scripts/xyz_grid.py`` imports only ``AxisOption`` from
``lib_xyz.classes``, which also holds ``AxisOptionTxt2Img`` / ``AxisOptionImg2Img``.
"""

from __future__ import annotations

import sys
import types
from collections import namedtuple

from lib_iclight import axes
from lib_iclight.backends import xyz_axes

ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
CLASSES_MODULE = "lib_xyz.classes"


class AxisOption:
    """lib_xyz/classes.py's AxisOption (same constructor as A1111's)."""

    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label, self.type, self.apply, self.confirm, self.choices = label, type, apply, confirm, choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


for _cls in (AxisOption, AxisOptionImg2Img, AxisOptionTxt2Img):
    _cls.__module__ = CLASSES_MODULE


def forge_classic_layout(monkeypatch):
    classes = types.ModuleType(CLASSES_MODULE)
    classes.AxisOption, classes.AxisOptionImg2Img, classes.AxisOptionTxt2Img = AxisOption, AxisOptionImg2Img, AxisOptionTxt2Img
    monkeypatch.setitem(sys.modules, CLASSES_MODULE, classes)
    xyz = types.ModuleType("xyz_grid.py")
    xyz.AxisOption = AxisOption  # what `from lib_xyz.classes import AxisOption` leaves in the script
    xyz.axis_options = [AxisOption("Nothing", str, None)]
    other = types.ModuleType("other.py")
    data = [ScriptClassData(object, "/webui/scripts/other.py", "/webui", other),
            ScriptClassData(object, "/webui/extensions-builtin/xyz/scripts/xyz_grid.py", "/webui/extensions-builtin/xyz", xyz)]
    return xyz, data


def register(data):
    return xyz_axes.register(data, model_kinds=lambda: {"fc_a": "fc"}, rembg_models=lambda: ["u2net"],
                             resolve_model=lambda name: types.SimpleNamespace(name=name, kind="fc"))


def test_forge_classic_axis_classes_are_found_next_to_axis_option(monkeypatch):
    xyz, data = forge_classic_layout(monkeypatch)
    assert register(data)
    ours = [opt for opt in xyz.axis_options if opt.label != "Nothing"]
    assert len(ours) == len(axes.axes_for(False)) + len(axes.axes_for(True))
    assert {type(opt) for opt in ours} == {AxisOptionTxt2Img, AxisOptionImg2Img}
    img2img = {opt.label for opt in ours if opt.is_img2img}
    assert "IC Light light map" in img2img
    assert "IC Light light map" not in {opt.label for opt in ours if not opt.is_img2img}


def test_no_xyz_plot_registers_nothing(monkeypatch):
    _, data = forge_classic_layout(monkeypatch)
    assert not register(data[:1])


def test_an_xyz_plot_without_per_tab_classes_is_left_alone(monkeypatch):
    xyz, data = forge_classic_layout(monkeypatch)
    monkeypatch.delitem(sys.modules, CLASSES_MODULE)
    assert register(data)
    assert [opt.label for opt in xyz.axis_options] == ["Nothing"]


def test_script_args_of_finds_the_ic_light_slice():
    script = types.SimpleNamespace(title=lambda: "IC Light", args_from=2, args_to=4)
    other = types.SimpleNamespace(title=lambda: "Other", args_from=0, args_to=2)
    p = types.SimpleNamespace(scripts=types.SimpleNamespace(alwayson_scripts=[other, script]), script_args=("a", "b", True, "fc", "z"))
    assert xyz_axes.script_args_of(p) == [True, "fc"]
    assert xyz_axes.script_args_of(types.SimpleNamespace()) is None

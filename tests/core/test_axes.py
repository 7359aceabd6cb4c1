"""The pure part of the X/Y/Z plot axes: specs, value checks and how values meet the args."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lib_iclight import axes
from lib_iclight.args import ARG_NAMES, ARG_SPECS, SPECS_BY_NAME, parse_args
from lib_iclight.errors import ICLightError

BY = axes.AXES_BY_LABEL
KINDS = {"fc_a": "fc", "fbc_b": "fbc", "fc_c": "fc"}


def test_arg_axes_are_labelled_like_their_infotext_entries():
    for axis in axes.AXES:
        if axis.target != axes.LIGHT_MAP:
            assert axis.label == SPECS_BY_NAME[axis.target].infotext_key
            assert axis.value_type is (int if SPECS_BY_NAME[axis.target].kind == "int" else str)
    assert len(BY) == len(axes.AXES)
    assert {a.target for a in axes.AXES} == {
        "model_type", "light_map", "remove_bg", "rembg_model", "detail_transfer_blur_radius",
        "foreground_threshold", "background_threshold", "erode_size", "bg_source",
    }


def test_light_map_axes_are_img2img_only_and_the_background_source_txt2img_only():
    txt2img = {a.label for a in axes.axes_for(False)}
    img2img = {a.label for a in axes.axes_for(True)}
    assert img2img - txt2img == {"IC Light light map", "IC Light light angle"}
    assert txt2img - img2img == {"IC Light background source"}


def test_the_background_source_axis():
    axis = BY["IC Light background source"]
    assert axes.choices(axis, False, {}, []) == ["upload", "upload_flip", "left", "right", "top", "bottom", "ambient"]
    assert axes.parse_value(axis, " Left ") == "left"
    assert axes.parse_value(axis, "angle:45.0") == "angle:45"
    with pytest.raises(ICLightError, match="^bg_source: unknown background source"):
        axes.parse_value(axis, "sideways")
    assert axes.with_overrides([True], {"bg_source": "top"})["bg_source"] == "top"


def test_the_light_map_axis_takes_angle_names():
    axis = BY["IC Light light map"]
    assert axes.parse_value(axis, "angle:45") == "angle:45"
    assert axes.parse_value(axis, "left") == "left"


def test_choices():
    assert axes.choices(BY["IC Light model"], False, KINDS, []) == ["fc_a", "fbc_b", "fc_c"]
    assert axes.choices(BY["IC Light model"], True, KINDS, []) == ["fc_a", "fc_c"]
    assert axes.choices(BY["IC Light rembg model"], False, {}, ["u2net", "u2net", "isnet"]) == ["u2net", "isnet"]
    assert axes.choices(BY["IC Light remove background"], False, {}, []) == ["True", "False"]
    assert axes.choices(BY["IC Light light map"], True, {}, [])[:2] == ["left", "right"]
    assert axes.choices(BY["IC Light erode size"], False, KINDS, ["u2net"]) is None


@pytest.mark.parametrize("label,raw,expected", [
    ("IC Light model", " fc_a ", "fc_a"),
    ("IC Light remove background", "False", False),
    ("IC Light remove background", "true", True),
    ("IC Light erode size", 12, 12),
    ("IC Light foreground threshold", "200", 200),
    ("IC Light light map", " Left ", "Left"),
    ("IC Light light angle", 45, 45),
])
def test_parse_value(label, raw, expected):
    assert axes.parse_value(BY[label], raw) == expected


@pytest.mark.parametrize("label,raw,message", [
    ("IC Light erode size", 129, "^erode_size: expected an int in 0..128"),
    ("IC Light detail transfer blur radius", 0, "^detail_transfer_blur_radius: "),
    ("IC Light remove background", "maybe", "^remove_bg: "),
    ("IC Light model", "  ", "^model_type: "),
    ("IC Light light map", "sideways", "^light_map: unknown light direction"),
    ("IC Light light angle", float("nan"), "^light_map: "),
])
def test_bad_values_name_their_argument(label, raw, message):
    with pytest.raises(ICLightError, match=message):
        axes.parse_value(BY[label], raw)


def test_confirm_resolves_models_and_wants_fc_in_img2img():
    def resolve(name):
        if name not in KINDS:
            raise ICLightError("model_type", f"unknown model {name!r}")
        return SimpleNamespace(name=name, kind=KINDS[name])

    axes.confirm(BY["IC Light model"], ["fc_a", "fbc_b"], False, resolve)
    with pytest.raises(ICLightError, match="^model_type: img2img relighting needs an fc model, fbc_b is fbc"):
        axes.confirm(BY["IC Light model"], ["fc_a", "fbc_b"], True, resolve)
    with pytest.raises(ICLightError, match="^model_type: unknown model 'nope'"):
        axes.confirm(BY["IC Light model"], ["nope"], False, resolve)
    with pytest.raises(ICLightError, match="^erode_size: "):
        axes.confirm(BY["IC Light erode size"], [1, 500], False, resolve)


def positional(**values):
    named = {spec.name: spec.default for spec in ARG_SPECS}
    named.update(values)
    return [named[name] for name in ARG_NAMES]


def test_with_overrides_lays_values_over_every_args_form():
    overrides = {"model_type": "fbc_b", "erode_size": 4, "light_map": "left"}
    for raw in (positional(enable=True), [{"enable": True}] + positional()[1:], {"enable": True}):
        merged = axes.with_overrides(raw, overrides)
        assert "light_map" not in merged
        args = parse_args(merged)
        assert (args.enable, args.model_type, args.erode_size) == (True, "fbc_b", 4)
        assert args.foreground_threshold == 225


def test_light_map_and_infotext():
    assert axes.light_map_of({"light_map": "top"}) == "top"
    assert axes.light_map_of({"model_type": "x"}) is None
    assert axes.infotext({"light_map": 45, "model_type": "x"}) == {"IC Light light map": "45"}
    assert axes.infotext({}) == {}


def test_check_enabled_names_the_axes():
    axes.check_enabled(True, {"model_type": "x"})
    axes.check_enabled(False, {})
    with pytest.raises(ICLightError, match=r"^enable: the X/Y/Z plot sets IC Light model, IC Light light map, "
                                           r"but IC Light is not enabled"):
        axes.check_enabled(False, {"model_type": "x", "light_map": "left"})


def test_is_enabled_reads_every_args_form():
    assert axes.is_enabled(positional(enable=True))
    assert axes.is_enabled([{"enable": "true"}])
    assert not axes.is_enabled(positional())
    assert not axes.is_enabled(["not a bool"])
    assert not axes.is_enabled(positional() + ["one too many"])

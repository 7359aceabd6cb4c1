"""The 13-argument contract: order, forms, coercion, and one clear error per bad value."""

from __future__ import annotations

import pytest
from PIL import Image

from lib_iclight.args import (
    ARG_NAMES, ARG_SPECS, CONTRACT_ARGS, ICLightArgs, json_schema, markdown_table, parse_args, parse_infotext,
)
from lib_iclight.errors import ICLightError
from tests.helpers.images import disc_image, to_base64

WIKI_ORDER = (
    "enable", "model_type", "input_fg", "uploaded_bg", "remove_bg", "rembg_model", "foreground_threshold",
    "background_threshold", "erode_size", "detail_transfer", "detail_transfer_raw",
    "detail_transfer_blur_radius", "reinforce_fg",
)
B64 = to_base64(disc_image(32), fmt="JPEG")


def wiki_args(**changes):
    """The positional list exactly as the wiki's example sends it."""
    values = [True, "IC-Light-SD15-FC-fp8", B64, None, True, "u2net_human_seg", 225, 16, 16, False, False, 3, False]
    for name, value in changes.items():
        values[WIKI_ORDER.index(name)] = value
    return values


def test_order_is_the_contract():
    assert ARG_NAMES[:CONTRACT_ARGS] == WIKI_ORDER
    assert CONTRACT_ARGS == 13
    # The lighting options come after the 13, in the panel's order.
    assert ARG_NAMES[CONTRACT_ARGS:] == ("bg_source", "normal_map", "relight_in_place")
    assert [spec.extended for spec in ARG_SPECS] == [False] * 13 + [True] * 3


def test_wiki_positional_list():
    args = parse_args(wiki_args())
    assert args.enable and args.model_type == "IC-Light-SD15-FC-fp8"
    assert isinstance(args.input_fg, Image.Image) and args.input_fg.size == (32, 32)
    assert args.uploaded_bg is None
    assert (args.foreground_threshold, args.background_threshold, args.erode_size) == (225, 16, 16)
    assert args.detail_transfer_blur_radius == 3


def test_dict_form_with_defaults_and_the_api_shape():
    args = parse_args({"enable": True, "input_fg": B64})
    assert args.model_type == "fc" and args.foreground_threshold == 225 and args.remove_bg is True
    # A1111's API puts the caller's one dict in the first slot and UI defaults after it
    args2 = parse_args([{"enable": "true", "input_fg": B64, "erode_size": 3.0}] + [None] * 12)
    assert args2.enable and args2.erode_size == 3


@pytest.mark.parametrize("raw,expected", [(True, True), (1, True), ("true", True), ("TRUE", True), ("1", True),
                                           (False, False), (0, False), ("false", False), ("0", False), ("off", False)])
def test_bool_coercion(raw, expected):
    assert parse_args(wiki_args(remove_bg=raw)).remove_bg is expected


@pytest.mark.parametrize("raw,expected", [(225, 225), (225.0, 225), ("225", 225), (" 7 ", 7), ("7.0", 7)])
def test_int_coercion(raw, expected):
    assert parse_args(wiki_args(foreground_threshold=raw)).foreground_threshold == expected


@pytest.mark.parametrize("name,value,message", [
    ("foreground_threshold", "abc", 'foreground_threshold: expected an int in 0..255, got "abc"'),
    ("foreground_threshold", 256, "foreground_threshold: expected an int in 0..255, got 256"),
    ("background_threshold", -1, "background_threshold: expected an int in 0..255, got -1"),
    ("erode_size", 2.5, "erode_size: expected an int in 0..128, got 2.5"),
    ("erode_size", True, "erode_size: expected an int in 0..128, got True"),
    ("detail_transfer_blur_radius", 0, "detail_transfer_blur_radius: expected an int in 1..64, got 0"),
    ("remove_bg", "maybe", 'remove_bg: expected a bool (true/false, 1/0), got "maybe"'),
    ("remove_bg", 2, "remove_bg: expected a bool (true/false, 1/0), got 2"),
    ("model_type", "", 'model_type: expected a non-empty string, got ""'),
    ("model_type", 5, "model_type: expected a non-empty string, got 5"),
    ("rembg_model", None, "rembg_model: expected a non-empty string, got None"),
    ("input_fg", 12, "input_fg: "),
    ("uploaded_bg", "!!!not base64!!!", "uploaded_bg: "),
])
def test_bad_values_name_the_argument(name, value, message):
    with pytest.raises(ICLightError) as info:
        parse_args(wiki_args(**{name: value}))
    assert str(info.value).startswith(message)
    assert info.value.arg == name


def test_bad_enable_is_an_error_but_disabled_ignores_the_rest():
    with pytest.raises(ICLightError, match="^enable: "):
        parse_args(wiki_args(enable="perhaps"))
    args = parse_args(wiki_args(enable=False, foreground_threshold="junk", input_fg=12))
    assert args == ICLightArgs()


def test_shape_errors():
    with pytest.raises(ICLightError, match=f"^args: expected at most {len(ARG_SPECS)}"):
        parse_args(wiki_args() + ["upload", False, False, 1])
    with pytest.raises(ICLightError, match="^args: unknown argument.*forground_threshold"):
        parse_args({"enable": True, "forground_threshold": 3})
    with pytest.raises(ICLightError, match="^args: "):
        parse_args("enable")


def test_short_positional_list_takes_defaults():
    args = parse_args([True, "fc", B64])
    assert args.rembg_model == "u2net_human_seg" and args.remove_bg is True


def test_infotext_round_trip_without_images():
    args = parse_args(wiki_args(uploaded_bg=B64))
    entries = args.infotext(model_name="IC-Light-SD15-FC-fp8")
    assert "IC Light" in entries and entries["IC Light model"] == "IC-Light-SD15-FC-fp8"
    assert all(B64 not in v for v in entries.values())
    assert len(entries) == 11  # every argument but the two images
    restored = parse_infotext(entries)
    assert restored["foreground_threshold"] == 225 and restored["enable"] is True
    assert "input_fg" not in restored
    assert parse_infotext({"IC Light erode size": "bad"}) == {}


def test_schema_and_table_come_from_the_specs():
    schema = json_schema()
    assert list(schema["properties"]) == list(ARG_NAMES)
    assert schema["properties"]["foreground_threshold"]["maximum"] == 255
    table = markdown_table()
    assert all(f"`{name}`" in table for name in ARG_NAMES)


def test_refusals_are_client_errors_for_the_webui_api_handler():
    """A1111's and Forge's API handler answer with vars(e).get("status_code", 500)."""
    error = ICLightError("input_fg", "no image given")
    assert vars(error)["status_code"] == 422


def test_an_argument_is_declared_once_as_a_field():
    """ARG_SPECS, the panel rows and the subject options all come from ICLightArgs' fields."""
    import dataclasses

    from lib_iclight.args import ARG_SPECS, ICLightArgs, subject_options

    fields = dataclasses.fields(ICLightArgs)
    assert [spec.name for spec in ARG_SPECS] == [f.name for f in fields]
    assert all(spec.default == f.default for spec, f in zip(ARG_SPECS, fields))
    assert {spec.kind for spec in ARG_SPECS} == {"bool", "str", "int", "image"}
    assert [spec.row for spec in ARG_SPECS] == sorted(spec.row for spec in ARG_SPECS)  # rows in contract order
    assert set(subject_options(ICLightArgs())) == {
        "remove_bg", "rembg_model", "foreground_threshold", "background_threshold", "erode_size", "detail_transfer_raw",
        "normal_map"}  # the normal map lifts the subject, as the reference does


# -- the lighting options after the 13 (issue 21) -------------------------------------


def test_the_options_after_the_13_default_to_nothing_new():
    args = parse_args(wiki_args())
    assert (args.bg_source, args.normal_map, args.relight_in_place) == ("upload", False, False)
    assert parse_args(wiki_args() + ["upload", False, False]) == args
    assert parse_args({**dict(zip(WIKI_ORDER, wiki_args())), "bg_source": "upload"}) == args


def test_the_options_are_named_keys_of_the_dict_form():
    args = parse_args({"enable": True, "bg_source": " Upload_Flip ", "normal_map": "true", "relight_in_place": 1})
    assert (args.bg_source, args.normal_map, args.relight_in_place) == ("upload_flip", True, True)
    with pytest.raises(ICLightError, match="^bg_source: unknown background source"):
        parse_args({"enable": True, "bg_source": "sideways"})
    with pytest.raises(ICLightError, match="^normal_map: expected a bool"):
        parse_args({"enable": True, "normal_map": "maybe"})


@pytest.mark.parametrize("value, name", [("left", "left"), (" TOP ", "top"), ("ambient", "ambient"),
                                         ("angle:45", "angle:45"), ("angle:12.50", "angle:12.5")])
def test_input_fg_takes_a_light_map_by_name(value, name):
    assert parse_args(wiki_args(input_fg=value)).input_fg == name


@pytest.mark.parametrize("value", ["lefty", "45", "angle:", "angle:north"])
def test_an_unknown_light_map_name_lists_the_accepted_ones(value):
    with pytest.raises(ICLightError, match="^input_fg: unknown light map") as raised:
        parse_args(wiki_args(input_fg=value))
    assert "left, right, top, bottom, ambient, angle:<degrees>" in str(raised.value)


def test_a_base64_image_is_still_an_image():
    assert isinstance(parse_args(wiki_args()).input_fg, Image.Image)


def test_infotext_writes_an_option_only_away_from_its_default():
    plain = parse_args(wiki_args()).infotext()
    assert not any(key in plain for key in ("IC Light background source", "IC Light normal map",
                                             "IC Light relight in place", "IC Light light map"))
    entries = parse_args({"enable": True, "bg_source": "left", "normal_map": True, "input_fg": "angle:30"}).infotext()
    assert entries["IC Light background source"] == "left"
    assert entries["IC Light normal map"] == "True"
    assert entries["IC Light light map"] == "angle:30"


def test_pasting_restores_the_options():
    restored = parse_infotext({"IC Light": "True", "IC Light background source": "top"})
    assert restored["bg_source"] == "top"
    assert restored["normal_map"] is False and restored["relight_in_place"] is False
    # An infotext without IC Light leaves the panel as it is.
    assert "bg_source" not in parse_infotext({"Steps": "20"})


def test_the_schema_lists_the_light_map_and_background_names():
    schema = json_schema()
    names = ["left", "right", "top", "bottom", "ambient", "angle:<degrees>"]
    assert schema["x-light-map-names"] == names
    assert schema["properties"]["input_fg"]["x-light-map-names"] == names
    assert schema["properties"]["bg_source"]["x-names"] == ["upload", "upload_flip", *names]
    assert schema["x-contract-args"] == 13


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_input_fg_is_still_no_image(blank):
    assert parse_args(wiki_args(input_fg=blank)).input_fg is None

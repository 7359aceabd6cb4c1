"""lib_iclight.lightmaps: light maps and fbc backgrounds for every preset and angle, the
names the API takes, and the refusals. Bit-parity with the demos is in
tests/parity/test_lightmap_parity.py."""

from __future__ import annotations

import numpy as np
import pytest

from lib_iclight.errors import ICLightError
from lib_iclight.lightmaps import (
    AMBIENT_BACKGROUND,
    AMBIENT_GREY,
    BG_SOURCES,
    DEFAULT_BG_SOURCE,
    LIGHT_MAP_NAMES,
    LIGHT_PRESETS,
    bg_source_names,
    light_map_names_doc,
    make_background,
    make_lightmap,
    needs_upload,
    parse_bg_source,
    parse_direction,
    parse_light_name,
)

W, H = 48, 32
LIGHT_NAMES_TEXT = "left, right, top, bottom, ambient, angle:<degrees> (0 = right, 90 = top)"


def grey(direction, width=W, height=H, draw=make_lightmap) -> np.ndarray:
    img = draw(direction, width, height)
    assert img.mode == "RGB" and img.size == (width, height)
    pixels = np.asarray(img)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])
    return pixels[..., 0].astype(int)


def background(direction, width=W, height=H) -> np.ndarray:
    return grey(direction, width, height, draw=make_background)


# --- names ------------------------------------------------------------------------------

def test_names_are_the_documented_ones():
    assert LIGHT_MAP_NAMES == ("left", "right", "top", "bottom", "ambient")
    assert LIGHT_PRESETS is LIGHT_MAP_NAMES
    assert light_map_names_doc() == ["left", "right", "top", "bottom", "ambient", "angle:<degrees>"]
    assert BG_SOURCES == ("upload", "upload_flip", "left", "right", "top", "bottom", "ambient")
    assert bg_source_names() == [*BG_SOURCES, "angle:<degrees>"]
    assert DEFAULT_BG_SOURCE == "upload"


@pytest.mark.parametrize("value, canonical", [
    ("left", "left"), (" Ambient ", "ambient"), ("TOP", "top"),
    ("angle:45", "angle:45"), ("Angle:45.0", "angle:45"), ("angle: 45", "angle:45"), ("angle:+45", "angle:45"),
    ("angle:-30", "angle:-30"), ("angle:12.5", "angle:12.5"), ("angle:.5", "angle:0.5"), ("angle:-0", "angle:0"),
    ("angle:720", "angle:720"),
])
def test_parse_light_name_canonical(value, canonical):
    assert parse_light_name(value, "input_fg") == canonical


@pytest.mark.parametrize("value", [None, 45, 1.5, b"left", ["left"], "x" * 65, "data:image/png;base64,iVBOR",
                                   " DATA:image/png;base64,", "", "   ", "iVBORw0KGgo" + "A" * 100])
def test_parse_light_name_leaves_non_names_to_the_image_decoder(value):
    assert parse_light_name(value, "input_fg") is None


@pytest.mark.parametrize("value", ["sideways", "45", "angle:", "angle:abc", "angle:nan", "angle:45 rad", "leftish"])
def test_parse_light_name_refuses_short_unknown_strings(value):
    with pytest.raises(ICLightError) as info:
        parse_light_name(value, "input_fg")
    assert info.value.arg == "input_fg"
    message = str(info.value)
    assert message.startswith("input_fg: ") and LIGHT_NAMES_TEXT in message


@pytest.mark.parametrize("value, canonical", [
    ("upload", "upload"), (" Upload_Flip ", "upload_flip"), ("LEFT", "left"), ("ambient", "ambient"),
    ("angle:45.0", "angle:45"), ("angle:-12.25", "angle:-12.25"),
])
def test_parse_bg_source(value, canonical):
    assert parse_bg_source(value) == canonical


@pytest.mark.parametrize("value", ["grey", "", "45", "flip", None, 3, "x" * 100, "angle:x"])
def test_parse_bg_source_refusals_list_the_sources(value):
    with pytest.raises(ICLightError) as info:
        parse_bg_source(value)
    assert info.value.arg == "bg_source"
    assert "upload, upload_flip, left, right, top, bottom, ambient, angle:<degrees>" in str(info.value)


def test_needs_upload():
    assert needs_upload("upload") and needs_upload("upload_flip")
    assert not any(needs_upload(name) for name in ("left", "right", "top", "bottom", "ambient", "angle:45"))


def test_every_canonical_name_draws():
    for name in [*LIGHT_MAP_NAMES, "angle:45", "angle:-30", "angle:12.5"]:
        canonical = parse_light_name(name, "input_fg")
        assert canonical is not None
        assert np.array_equal(grey(canonical), grey(name))
        assert np.array_equal(background(canonical), background(name))


# --- light maps (fc, img2img init image) ----------------------------------------------

def test_left_is_bright_on_the_left_and_truncated_like_the_demo():
    g = grey("left")
    assert (g[:, 0] == 255).all() and (g[:, -1] == 0).all()
    assert (np.diff(g, axis=1) <= 0).all()
    assert (g == g[0]).all()  # constant down each column
    # The demo's astype(np.uint8) truncates; rounding would differ at half the columns.
    assert np.array_equal(g[0], np.linspace(255, 0, W).astype(np.uint8))
    assert not np.array_equal(g[0], np.rint(np.linspace(255, 0, W)))


def test_right_top_bottom():
    assert (grey("right")[:, -1] == 255).all() and (grey("right")[:, 0] == 0).all()
    assert np.abs(grey("right") - grey("left")[:, ::-1]).max() <= 1
    top = grey("top")
    assert (top[0] == 255).all() and (top[-1] == 0).all()
    assert (np.diff(top, axis=0) <= 0).all() and (top == top[:, :1]).all()
    assert np.array_equal(top[:, 0], np.linspace(255, 0, H).astype(np.uint8))
    assert np.array_equal(grey("bottom")[:, 0], np.linspace(0, 255, H).astype(np.uint8))


def test_ambient_is_the_subjects_grey():
    """127 is the grey the subject is composited on: an ambient init image neither
    brightens nor darkens the relit picture (the fc demo has no ambient map)."""
    assert (grey("ambient") == AMBIENT_GREY).all()
    assert AMBIENT_GREY == 127


@pytest.mark.parametrize("name", ["LEFT", " Top ", "Ambient", "ANGLE:45"])
def test_names_are_case_and_space_insensitive(name):
    assert np.array_equal(grey(name), grey(name.strip().lower()))


@pytest.mark.parametrize("angle, preset", [
    (0, "right"), (90, "top"), (180, "left"), (270, "bottom"), (360, "right"), (-90, "bottom"), (-180, "left"),
    (540, "left"), ("angle:180", "left"), ("angle:180.0", "left"), ("angle:-270", "top"), ("180deg", "left"),
    (" Angle: 0 ", "right"), ("angle:630", "bottom"),
])
def test_axis_angles_equal_presets_bit_for_bit(angle, preset):
    for width, height in [(W, H), (106, 95), (1, 7), (7, 1)]:
        assert np.array_equal(grey(angle, width, height), grey(preset, width, height))
        assert np.array_equal(background(angle, width, height), background(preset, width, height))
    if not isinstance(angle, str):
        assert np.array_equal(grey(float(angle)), grey(preset))


@pytest.mark.parametrize("text", ["45", "45deg", "45 deg", "45°", "45.0", " 45 DEGREES ", "+45", "405",
                                  "angle:45", "angle:405", "angle:-315"])
def test_numeric_strings_are_angles(text):
    assert np.array_equal(grey(text), grey(45))


def test_diagonal_45_is_brightest_top_right():
    g = grey(45, 40, 40)
    assert g[0, -1] == 255 and g[-1, 0] == 0
    # Symmetric about the anti-diagonal: the top-left and bottom-right corners match.
    assert g[0, 0] == g[-1, -1] == 127  # 127.5 truncated
    assert np.array_equal(g, g.T[::-1, ::-1])
    assert (np.diff(g, axis=1) >= 0).all() and (np.diff(g, axis=0) <= 0).all()


def test_mirror_angles_draw_mirror_maps():
    assert np.array_equal(grey(135, 40, 30), grey(45, 40, 30)[:, ::-1])
    assert np.array_equal(grey(-45, 40, 30), grey(45, 40, 30)[::-1])


def test_225_is_the_opposite_of_45():
    # Truncation turns floor(255 t) into ceil on the reversed map: at most one level apart.
    assert np.abs(grey(225, 40, 40) - (255 - grey(45, 40, 40))).max() <= 1


@pytest.mark.parametrize("angle", [30.5, 1e6 + 0.25, -1e6, 359.999, 0.001, 89.9999999999, 1e300])
def test_generic_angles_span_the_full_range(angle):
    g = grey(angle)
    assert g.max() == 255 and g.min() == 0


def test_large_and_negative_angles_wrap():
    assert np.array_equal(grey(-30), grey(330)) and np.array_equal(grey("angle:-30"), grey(330))
    assert np.array_equal(grey(3600 + 45), grey(45))
    assert np.array_equal(background(-30), background(330))


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (5, 1), (1, 2), (2, 1)])
@pytest.mark.parametrize("direction", ["left", "right", "top", "bottom", "ambient", 45, 200, 0.001, 89.9999999999])
def test_one_pixel_maps_do_not_crash(size, direction):
    for draw in (make_lightmap, make_background):
        with np.errstate(all="raise"):  # no division by zero, no invalid values
            pixels = grey(direction, *size, draw=draw)
        assert pixels.shape == (size[1], size[0])


def test_one_pixel_maps_follow_the_demo():
    # linspace(start, stop, 1) is [start]: the demos' left/top start bright and their
    # right/bottom start dark, so a 1-wide left map is all 255 and a right one all 0.
    assert (grey("left", 1, 5) == 255).all() and (grey("right", 1, 5) == 0).all()
    assert (grey("top", 5, 1) == 255).all() and (grey("bottom", 5, 1) == 0).all()
    assert grey("top", 1, 5)[:, 0].tolist() == [255, 191, 127, 63, 0]
    # A generic angle on a single pixel: the pixel is on the lit edge.
    assert grey(45, 1, 1).tolist() == [[255]] and background(45, 1, 1).tolist() == [[224]]


# --- backgrounds (fbc) ------------------------------------------------------------------

def test_background_left_is_224_to_32_truncated():
    b = background("left")
    assert (b[:, 0] == 224).all() and (b[:, -1] == 32).all() and (b == b[0]).all()
    assert np.array_equal(b[0], np.linspace(224, 32, W).astype(np.uint8))
    assert np.array_equal(background("right")[0], np.linspace(32, 224, W).astype(np.uint8))
    assert np.array_equal(background("top")[:, 0], np.linspace(224, 32, H).astype(np.uint8))
    assert np.array_equal(background("bottom")[:, 0], np.linspace(32, 224, H).astype(np.uint8))


@pytest.mark.parametrize("angle", [45, 200.5, "angle:-30", 1e6 + 0.25])
def test_background_angles_ramp_224_to_32(angle):
    b = background(angle)
    assert b.max() == 224 and b.min() == 32


def test_background_and_light_map_share_the_ramp():
    """Same direction, same shape: only the levels differ (255..0 vs 224..32)."""
    for direction in ["left", "bottom", 45, 200.5]:
        g, b = grey(direction), background(direction)
        assert (np.sign(np.diff(g, axis=1)) * np.sign(np.diff(b, axis=1)) >= 0).all()
        assert (np.sign(np.diff(g, axis=0)) * np.sign(np.diff(b, axis=0)) >= 0).all()
        assert np.abs(b - (32 + g * 192 / 255)).max() <= 1


def test_ambient_background_is_the_demos_64_not_the_subjects_127():
    """The fbc demo's GREY background is 64; the ambient light map is 127 on purpose: it is
    an img2img init image, which must sit at the subject's grey to neither brighten nor
    darken, while the background is a backdrop the fbc model was trained with at 64."""
    assert (background("ambient") == AMBIENT_BACKGROUND).all() and AMBIENT_BACKGROUND == 64
    assert (grey("ambient") == AMBIENT_GREY).all() and AMBIENT_GREY != AMBIENT_BACKGROUND


@pytest.mark.parametrize("bad", ["upload", "upload_flip", "sideways"])
def test_background_refuses_non_directions_naming_bg_source(bad):
    with pytest.raises(ICLightError, match=r"^bg_source: "):
        make_background(bad, W, H)


# --- parse_direction and refusals -------------------------------------------------------

def test_parse_direction():
    assert parse_direction("ambient") is None
    assert parse_direction("left") == 180.0
    assert parse_direction(-30) == 330.0
    assert parse_direction("12.5deg") == 12.5
    assert parse_direction("angle:45") == 45.0
    assert parse_direction("ANGLE:-30") == 330.0
    assert parse_direction("angle:12.5") == 12.5


@pytest.mark.parametrize("bad", ["sideways", "", "45 rad", "4 5", "deg", "nan", "inf", "angle:", "angle:left"])
def test_unknown_names_list_the_names(bad):
    with pytest.raises(ICLightError) as info:
        make_lightmap(bad, W, H)
    message = str(info.value)
    assert message.startswith("light_map: unknown light direction")
    assert LIGHT_NAMES_TEXT in message


@pytest.mark.parametrize("bad", [None, True, [45], float("nan"), float("inf")])
def test_bad_types_and_non_finite_numbers(bad):
    with pytest.raises(ICLightError, match=r"^light_map: "):
        make_lightmap(bad, W, H)


@pytest.mark.parametrize("draw", [make_lightmap, make_background])
def test_bad_size(draw):
    with pytest.raises(ValueError):
        draw("left", 0, 10)
    with pytest.raises(ValueError):
        draw("ambient", 10, -1)

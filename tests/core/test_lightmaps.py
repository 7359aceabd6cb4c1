"""lib_iclight.lightmaps: every preset, angles, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from lib_iclight.errors import ICLightError
from lib_iclight.lightmaps import AMBIENT_GREY, LIGHT_PRESETS, make_lightmap, parse_direction

W, H = 48, 32


def grey(direction, width=W, height=H) -> np.ndarray:
    img = make_lightmap(direction, width, height)
    assert img.mode == "RGB" and img.size == (width, height)
    pixels = np.asarray(img)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])
    return pixels[..., 0].astype(int)


def test_presets_are_the_documented_five():
    assert LIGHT_PRESETS == ("left", "right", "top", "bottom", "ambient")


def test_left_is_bright_on_the_left_and_linear():
    g = grey("left")
    assert (g[:, 0] == 255).all() and (g[:, -1] == 0).all()
    assert (np.diff(g, axis=1) <= 0).all()
    assert (g == g[0]).all()  # constant down each column
    expected = np.rint(np.linspace(255, 0, W)).astype(int)
    assert np.array_equal(g[0], expected)


def test_right_mirrors_left():
    assert np.array_equal(grey("right"), grey("left")[:, ::-1])
    assert (grey("right")[:, -1] == 255).all()


def test_top_and_bottom():
    top = grey("top")
    assert (top[0] == 255).all() and (top[-1] == 0).all()
    assert (np.diff(top, axis=0) <= 0).all() and (top == top[:, :1]).all()
    assert np.array_equal(grey("bottom"), top[::-1])


def test_ambient_is_uniform_mid_grey():
    assert (grey("ambient") == AMBIENT_GREY).all()
    assert AMBIENT_GREY == 127


@pytest.mark.parametrize("name", ["LEFT", " Top ", "Ambient"])
def test_names_are_case_and_space_insensitive(name):
    assert np.array_equal(grey(name), grey(name.strip().lower()))


@pytest.mark.parametrize("angle, preset", [(0, "right"), (90, "top"), (180, "left"), (270, "bottom"), (360, "right"), (-90, "bottom")])
def test_axis_angles_equal_presets(angle, preset):
    assert np.array_equal(grey(angle), grey(preset))
    assert np.array_equal(grey(float(angle)), grey(preset))


@pytest.mark.parametrize("text", ["45", "45deg", "45 deg", "45°", "45.0", " 45 DEGREES ", "+45", "405"])
def test_numeric_strings_are_angles(text):
    assert np.array_equal(grey(text), grey(45))


def test_diagonal_45_is_brightest_top_right():
    g = grey(45, 40, 40)
    assert g[0, -1] == 255 and g[-1, 0] == 0
    # Symmetric about the anti-diagonal: the top-left and bottom-right corners match.
    assert g[0, 0] == g[-1, -1]
    assert abs(g[0, 0] - 127) <= 1
    assert (np.diff(g, axis=1) >= 0).all() and (np.diff(g, axis=0) <= 0).all()


def test_225_is_the_opposite_of_45():
    assert np.abs(grey(225, 40, 40) - (255 - grey(45, 40, 40))).max() <= 1


def test_fractional_angle_and_one_pixel_maps():
    g = grey("30.5")
    assert g.max() == 255 and g.min() == 0
    # A 1-pixel-wide map lit from the side has nothing to ramp across.
    assert (grey("left", 1, 5) == AMBIENT_GREY).all()
    column = grey("top", 1, 5)[:, 0]
    assert column.tolist() == [255, 191, 128, 64, 0]


def test_parse_direction():
    assert parse_direction("ambient") is None
    assert parse_direction("left") == 180.0
    assert parse_direction(-30) == 330.0
    assert parse_direction("12.5deg") == 12.5


@pytest.mark.parametrize("bad", ["sideways", "", "45 rad", "4 5", "deg", "nan", "inf"])
def test_unknown_names_list_the_presets(bad):
    with pytest.raises(ICLightError) as info:
        make_lightmap(bad, W, H)
    message = str(info.value)
    assert message.startswith("light_map: ")
    assert "left, right, top, bottom, ambient" in message


@pytest.mark.parametrize("bad", [None, True, [45], float("nan"), float("inf")])
def test_bad_types_and_non_finite_numbers(bad):
    with pytest.raises(ICLightError, match=r"^light_map: "):
        make_lightmap(bad, W, H)


def test_bad_size():
    with pytest.raises(ValueError):
        make_lightmap("left", 0, 10)

"""lib_iclight.normal_map: the fbc demo's normal map from four relights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_iclight.normal_map import NORMAL_LIGHTS, normal_map, normal_map_image

FLAT = (127, 127, 255)


def uniform(value: float, width: int = 16, height: int = 12) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.float32)


def grey_image(value: int, width: int = 16, height: int = 12) -> Image.Image:
    return Image.new("RGB", (width, height), (value, value, value))


def test_light_order():
    assert NORMAL_LIGHTS == ("left", "right", "bottom", "top")


def test_flat_lighting_gives_the_flat_normal():
    out = normal_map(uniform(0.5), uniform(0.5), uniform(0.5), uniform(0.5), np.ones((12, 16), np.float32))
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    assert (out == FLAT).all()


def test_black_relights_give_the_flat_normal():
    """All four black: the 1e-5 guard makes every ratio 0, not NaN."""
    black = uniform(0.0)
    assert (normal_map(black, black, black, black, np.ones((12, 16), np.float32)) == FLAT).all()


def test_brighter_on_the_right_tilts_the_normal_right():
    out = normal_map(uniform(0.3), uniform(0.7), uniform(0.5), uniform(0.5), np.ones((12, 16), np.float32))
    assert (out[..., 0] > 127).all()
    assert (out[..., 1] == 127).all()


def test_brighter_from_the_top_tilts_the_normal_up():
    out = normal_map(uniform(0.5), uniform(0.5), uniform(0.2), uniform(0.8), np.ones((12, 16), np.float32))
    assert (out[..., 1] > 127).all()
    assert (out[..., 0] == 127).all()


def test_brighter_on_the_left_tilts_left():
    out = normal_map(uniform(0.9), uniform(0.1), uniform(0.5), uniform(0.5), np.ones((12, 16), np.float32))
    assert (out[..., 0] < 127).all()


def test_unit_length_before_quantisation():
    rng = np.random.default_rng(0)
    relights = [rng.uniform(0.1, 1, size=(12, 16, 3)).astype(np.float32) for _ in NORMAL_LIGHTS]
    out = normal_map(*relights, np.ones((12, 16), np.float32)).astype(np.float64)
    vec = (out + 0.5 - 127.5) / 127.5  # undo the truncation on average
    length = np.linalg.norm(vec, axis=2)
    assert np.abs(length - 1).max() < 0.03
    assert (out[..., 2] >= 127).all()  # h >= 0: the normal never faces away


def test_outside_the_matting_is_exactly_flat():
    rng = np.random.default_rng(1)
    relights = [rng.uniform(0, 1, size=(12, 16, 3)).astype(np.float32) for _ in NORMAL_LIGHTS]
    matting = np.ones((12, 16), np.float32)
    matting[:, :8] = 0.0
    out = normal_map(*relights, matting)
    assert (out[:, :8] == FLAT).all()
    assert not (out[:, 8:] == FLAT).all()


def test_matting_hw1_equals_hw():
    rng = np.random.default_rng(2)
    relights = [rng.uniform(0, 1, size=(12, 16, 3)).astype(np.float32) for _ in NORMAL_LIGHTS]
    matting = rng.uniform(0, 1, size=(12, 16)).astype(np.float32)
    np.testing.assert_array_equal(normal_map(*relights, matting), normal_map(*relights, matting[..., None]))


def test_float64_inputs_are_computed_in_float32():
    rng = np.random.default_rng(3)
    relights = [rng.uniform(0, 1, size=(12, 16, 3)).astype(np.float32) for _ in NORMAL_LIGHTS]
    matting = rng.uniform(0, 1, size=(12, 16)).astype(np.float32)
    np.testing.assert_array_equal(
        normal_map(*relights, matting),
        normal_map(*(r.astype(np.float64) for r in relights), matting.astype(np.float64)),
    )


def test_mismatched_relight_shapes_are_refused():
    with pytest.raises(ValueError, match="right"):
        normal_map(uniform(0.5), uniform(0.5, 8), uniform(0.5), uniform(0.5), np.ones((12, 16), np.float32))


@pytest.mark.parametrize("shape", [(12, 16), (12, 16, 4)])
def test_relights_must_be_hwc_rgb(shape):
    bad = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match="left"):
        normal_map(bad, uniform(0.5), uniform(0.5), uniform(0.5), np.ones((12, 16), np.float32))


def test_uint8_relights_are_refused():
    """0..255 taken for 0..1 would be a silent 255x error."""
    u8 = np.full((12, 16, 3), 128, np.uint8)
    with pytest.raises(ValueError, match="float"):
        normal_map(u8, u8, u8, u8, np.ones((12, 16), np.float32))


@pytest.mark.parametrize("shape", [(12, 15), (11, 16, 1), (12, 16, 3)])
def test_matting_of_the_wrong_shape_is_refused(shape):
    with pytest.raises(ValueError, match="matting"):
        normal_map(uniform(0.5), uniform(0.5), uniform(0.5), uniform(0.5), np.ones(shape, np.float32))


def test_non_finite_values_are_refused():
    bad = uniform(0.5)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        normal_map(uniform(0.5), uniform(0.5), bad, uniform(0.5), np.ones((12, 16), np.float32))


# ------------------------------------------------------------------------- PIL level


def test_image_helper_mode_and_size():
    out = normal_map_image([grey_image(100)] * 4, Image.new("L", (16, 12), 255))
    assert out.mode == "RGB" and out.size == (16, 12)
    assert (np.asarray(out) == FLAT).all()


def test_image_helper_right_light_and_mask():
    """A subject brighter under the right light, masked to its right half."""
    mask = Image.new("L", (16, 12), 0)
    mask.paste(255, (8, 0, 16, 12))
    out = np.asarray(normal_map_image([grey_image(60), grey_image(200), grey_image(130), grey_image(130)], mask))
    assert (out[:, :8] == FLAT).all()
    assert (out[:, 8:, 0] > 127).all()


def test_image_helper_without_mask_is_all_subject():
    relights = [grey_image(60), grey_image(200), grey_image(130), grey_image(130)]
    full = Image.new("L", (16, 12), 255)
    assert np.array_equal(np.asarray(normal_map_image(relights, None)), np.asarray(normal_map_image(relights, full)))


def test_image_helper_scales_a_mask_of_another_size():
    mask = Image.new("L", (32, 24), 0)  # all background at twice the size
    out = normal_map_image([grey_image(60), grey_image(200), grey_image(130), grey_image(130)], mask)
    assert out.size == (16, 12)
    assert (np.asarray(out) == FLAT).all()


def test_image_helper_converts_other_modes():
    relights = [grey_image(60).convert("RGBA"), grey_image(200).convert("L"), grey_image(130), grey_image(130)]
    out = normal_map_image(relights, Image.new("1", (16, 12), 1))
    assert out.mode == "RGB"
    assert (np.asarray(out)[..., 0] > 127).all()


@pytest.mark.parametrize("count", [0, 3, 5])
def test_image_helper_needs_four_relights(count):
    with pytest.raises(ValueError, match="4 relights"):
        normal_map_image([grey_image(100)] * count, None)


def test_image_helper_refuses_mismatched_sizes():
    relights = [grey_image(100), grey_image(100), grey_image(100, 17), grey_image(100)]
    with pytest.raises(ValueError, match="bottom"):
        normal_map_image(relights, None)

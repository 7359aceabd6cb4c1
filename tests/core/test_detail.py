"""lib_iclight.detail: the Difference-of-Gaussians detail transfer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from lib_iclight.detail import detail_transfer
from lib_iclight.errors import ICLightError
from lib_iclight.images import resize_and_center_crop
from tests.helpers.images import checker, high_frequency_energy


def smooth(width: int = 64, height: int = 64) -> Image.Image:
    """RGB: a slow diagonal gradient with no fine detail (a 'relit' image)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 60 + 120 * xs / (width - 1)
    green = 80 + 100 * ys / (height - 1)
    blue = np.full_like(red, 140)
    return Image.fromarray(np.rint(np.dstack([red, green, blue])).astype(np.uint8), "RGB")


def blur(img: Image.Image, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    return cv2.GaussianBlur(np.asarray(img, np.float32), (k, k), 0)


def test_formula_blur_generated_plus_original_minus_its_blur():
    gen, orig, r = smooth(), checker(), 3
    out = np.asarray(detail_transfer(gen, orig, r)).astype(np.float32)
    expected = np.clip(np.rint(blur(gen, r) + np.asarray(orig, np.float32) - blur(orig, r)), 0, 255)
    assert np.array_equal(out, expected)


def test_high_frequencies_come_from_the_original():
    gen, orig = smooth(), checker()
    out = detail_transfer(gen, orig, 3)
    assert out.mode == "RGB" and out.size == (64, 64)
    assert high_frequency_energy(gen) < 1.0
    assert high_frequency_energy(out) > 0.8 * high_frequency_energy(orig)


def test_low_frequencies_come_from_the_generated_image():
    gen, orig = smooth(), checker()
    out = detail_transfer(gen, orig, 3)
    # Blurred hard enough to wash out the checker, the result is the generated image's light.
    diff = np.abs(blur(out, 8) - blur(gen, 8))[10:-10, 10:-10]
    assert diff.mean() < 2.0
    # ...and it is not the original's flat mean level.
    assert np.abs(blur(out, 8) - blur(orig, 8))[10:-10, 10:-10].mean() > 10


def test_radius_zero_returns_the_generated_image():
    gen = smooth()
    assert np.array_equal(np.asarray(detail_transfer(gen, checker(), 0)), np.asarray(gen))


def test_result_is_clipped_not_wrapped():
    bright = Image.new("RGB", (32, 32), (250, 250, 250))
    out = np.asarray(detail_transfer(bright, checker(32, 32, low=0, high=255), 2))
    assert out.max() == 255 and out.min() < 200
    assert out.dtype == np.uint8


def test_original_is_crop_resized_not_stretched():
    # Texture only in the centre square of a 2:1 original, flat grey on both sides.
    # Cropped to the square generated image, texture covers it edge to edge; stretched,
    # the flat sides would show up at the left and right of the result.
    texture = np.asarray(checker(64, 64, cell=2), np.uint8)
    wide = np.full((64, 128, 3), 128, np.uint8)
    wide[:, 32:96] = texture
    original = Image.fromarray(wide, "RGB")
    gen = smooth()
    out = detail_transfer(gen, original, 2)
    assert np.array_equal(np.asarray(out), np.asarray(detail_transfer(gen, resize_and_center_crop(original, 64, 64), 2)))
    left = high_frequency_energy(out.crop((4, 8, 16, 56)))
    right = high_frequency_energy(out.crop((48, 8, 60, 56)))
    assert left > 5 and right > 5


def test_original_of_another_size_is_matched_to_the_generated_size():
    gen = smooth(48, 32)
    out = detail_transfer(gen, checker(200, 100), 2)
    assert out.size == (48, 32)


def test_alpha_is_flattened_on_grey():
    gen = smooth(16, 16)
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    # A fully transparent original is flat grey: no detail, so the result is blur(gen).
    out = np.asarray(detail_transfer(gen, rgba, 1)).astype(np.float32)
    assert np.abs(out - np.clip(np.rint(blur(gen, 1)), 0, 255)).max() <= 1


@pytest.mark.parametrize("radius", [-1, 2.5, "3", None, True])
def test_bad_radius(radius):
    with pytest.raises(ICLightError, match=r"^detail_transfer_blur_radius: expected an int >= 0"):
        detail_transfer(smooth(), checker(), radius)

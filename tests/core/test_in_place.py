"""lib_iclight.in_place: the relit subject back on the photo's own background."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_iclight.images import resize_and_center_crop
from lib_iclight.in_place import feather_mask, relight_in_place


def noise(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, box)
    return mask


def random_mask(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Blocks of 0, 255 and soft values, and a 255 corner large enough to outlast erosion."""
    coarse = rng.integers(0, 3, size=(height // 16 + 1, width // 16 + 1))
    coarse[0, 0] = 0
    blocks = np.kron(coarse, np.ones((16, 16), np.int64))[:height, :width]
    soft = rng.integers(1, 255, size=(height, width))
    mask = np.where(blocks == 0, 0, np.where(blocks == 1, 255, soft)).astype(np.uint8)
    mask[height // 3:, width // 2:] = 255
    return Image.fromarray(mask, "L")


# ------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("erode_size", [0, 1, 3, 8])
@pytest.mark.parametrize("seed", range(6))
def test_exactly_photo_at_0_and_relit_at_255(seed, erode_size):
    rng = np.random.default_rng(seed)
    width, height = 96, 80
    relit, photo, mask = noise(rng, width, height), noise(rng, width, height), random_mask(rng, width, height)
    out = np.asarray(relight_in_place(relit, photo, mask, erode_size))
    weight = np.asarray(feather_mask(mask, erode_size))
    assert (weight == 0).any() and (weight == 255).any()
    np.testing.assert_array_equal(out[weight == 0], np.asarray(photo)[weight == 0])
    np.testing.assert_array_equal(out[weight == 255], np.asarray(relit)[weight == 255])


def test_blend_rounds_to_nearest_in_between():
    relit = Image.new("RGB", (4, 4), (255, 255, 255))
    photo = Image.new("RGB", (4, 4), (0, 0, 0))
    for m in (1, 64, 127, 128, 200, 254):
        out = np.asarray(relight_in_place(relit, photo, Image.new("L", (4, 4), m), 0))
        assert (out == m).all()
    out = np.asarray(relight_in_place(Image.new("RGB", (4, 4), (200, 10, 0)), Image.new("RGB", (4, 4), (0, 30, 255)),
                                      Image.new("L", (4, 4), 100), 0))
    expected = [round((200 * 100 + 0 * 155) / 255), round((10 * 100 + 30 * 155) / 255), round(255 * 155 / 255)]
    assert (out == expected).all()


def test_erode_size_zero_is_the_hard_mask():
    rng = np.random.default_rng(10)
    relit, photo = noise(rng, 48, 40), noise(rng, 48, 40)
    mask = box_mask(48, 40, (10, 8, 30, 32))
    assert np.array_equal(np.asarray(feather_mask(mask, 0)), np.asarray(mask))
    out = np.asarray(relight_in_place(relit, photo, mask, 0))
    inside = np.asarray(mask) == 255
    np.testing.assert_array_equal(out[inside], np.asarray(relit)[inside])
    np.testing.assert_array_equal(out[~inside], np.asarray(photo)[~inside])


# ------------------------------------------------------------------------- feathering


@pytest.mark.parametrize("erode_size", [4, 8, 16])
def test_feather_band_lies_inside_the_outline(erode_size):
    """A profile across the left edge of a large box: ~2 % at the outline, half-way
    ``erode_size / 2`` inside, fully subject by about ``erode_size`` inside."""
    edge = 80
    half = erode_size // 2
    mask = box_mask(256, 64, (edge, 0, 256, 64))  # touches the top, bottom and right borders
    profile = np.asarray(feather_mask(mask, erode_size))[32].astype(int)
    assert profile[edge - half] == 0
    assert profile[edge] <= 0.07 * 255  # 2 % for a smooth Gaussian; a 1-pixel sigma is coarser
    assert 0.3 * 255 <= profile[edge + half] <= 0.75 * 255
    assert profile[edge + erode_size] >= 0.96 * 255
    assert profile[edge + 2 * erode_size] == 255
    band = np.count_nonzero((profile > 0) & (profile < 255))
    assert erode_size <= band <= 2 * erode_size
    assert (np.diff(profile) >= 0).all()


def test_feather_does_not_erode_from_the_image_border():
    full = Image.new("L", (40, 30), 255)
    assert (np.asarray(feather_mask(full, 8)) == 255).all()
    empty = Image.new("L", (40, 30), 0)
    assert (np.asarray(feather_mask(empty, 8)) == 0).all()


def test_feather_is_round_not_square():
    """A disc stays a disc: its half-way contour is as far in along the diagonals as
    along the axes (a square kernel would erode the diagonals sqrt(2) times further)."""
    size, radius, erode = 161, 60, 16
    ys, xs = np.mgrid[0:size, 0:size]
    disc = (np.hypot(xs - size // 2, ys - size // 2) <= radius).astype(np.uint8) * 255
    out = np.asarray(feather_mask(Image.fromarray(disc, "L"), erode)).astype(int)
    centre = size // 2
    axis = np.argmax(out[centre, centre:] < 128)
    diagonal = np.argmax(np.diagonal(out)[centre:] < 128) * np.sqrt(2)
    assert radius - 0.75 * erode < axis < radius - 0.25 * erode
    assert abs(axis - diagonal) <= 3


def test_feather_keeps_the_size_and_converts_the_mode():
    mask = box_mask(30, 20, (5, 5, 25, 15)).convert("1")
    out = feather_mask(mask, 2)
    assert out.mode == "L" and out.size == (30, 20)


# ------------------------------------------------------------------------- sizes, modes


def test_relit_twice_the_photo_size():
    rng = np.random.default_rng(20)
    photo = noise(rng, 40, 32)
    mask = box_mask(40, 32, (10, 8, 30, 24))
    relit = Image.new("RGB", (80, 64), (250, 10, 10))
    out = relight_in_place(relit, photo, mask, 2)
    assert out.mode == "RGB" and out.size == (80, 64)
    arr = np.asarray(out)
    assert (arr[30:34, 38:42] == (250, 10, 10)).all()  # deep inside the subject
    scaled = np.asarray(resize_and_center_crop(photo, 80, 64))
    np.testing.assert_array_equal(arr[:8], scaled[:8])  # far outside it


def test_photo_of_another_aspect_is_cropped_like_the_conditioning():
    rng = np.random.default_rng(21)
    photo = noise(rng, 60, 30)
    relit = noise(rng, 40, 40)
    out = relight_in_place(relit, photo, Image.new("L", (60, 30), 0), 0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(resize_and_center_crop(photo, 40, 40)))


def test_modes_are_converted():
    rng = np.random.default_rng(22)
    photo = noise(rng, 24, 24).convert("RGBA")
    photo.putalpha(Image.new("L", (24, 24), 0))  # transparent: its RGB is still the background
    relit = noise(rng, 24, 24).convert("RGBA")
    out = relight_in_place(relit, photo, Image.new("L", (24, 24), 0).convert("RGB"), 3)
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(photo.convert("RGB")))


@pytest.mark.parametrize("missing", ["relit", "photo", "mask"])
def test_missing_image_is_refused(missing):
    images = {"relit": Image.new("RGB", (8, 8)), "photo": Image.new("RGB", (8, 8)), "mask": Image.new("L", (8, 8))}
    images[missing] = None
    with pytest.raises((TypeError, ValueError), match=missing):
        relight_in_place(images["relit"], images["photo"], images["mask"], 4)


@pytest.mark.parametrize("erode_size", [-1, 2.5, True, "4", None])
def test_bad_erode_size_is_refused(erode_size):
    img, mask = Image.new("RGB", (8, 8)), Image.new("L", (8, 8))
    with pytest.raises(ValueError, match="erode_size"):
        relight_in_place(img, img, mask, erode_size)
    with pytest.raises(ValueError, match="erode_size"):
        feather_mask(mask, erode_size)

"""lib_iclight.normal_map computes the fbc demo's normal map bit for bit.

The reference side is the transcription of ``process_normal``'s combination step
(tests/parity/reference_iclight.py ``reference_normal_map``); ours is
``normal_map`` (float relights) and ``normal_map_image`` (PIL relights and mask). Inputs
are fixed random relights of two kinds: shaded spheres (what four relights of a subject
look like: brighter on the lit side) and plain noise with exact 0s and 1s (the ``1e-5``
guard and the ``h`` clip), with mattings of 0, 1 and soft values, at several sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_iclight.normal_map import NORMAL_LIGHTS, normal_map, normal_map_image
from tests.parity.reference_iclight import reference_normal_map, resize_and_center_crop

SEEDS = (0, 1, 2, 3)
SIZES = ((64, 64), (96, 40), (33, 57))  # width, height


def shaded_relights(rng: np.random.Generator, width: int, height: int) -> list[np.ndarray]:
    """Four float32 HWC 0..1 relights of a sphere lit from left, right, bottom, top, with noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    nx = (xs - width / 2) / (0.45 * width)
    ny = (height / 2 - ys) / (0.45 * height)  # up is +y, as the demo's "top" light
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1))
    albedo = rng.uniform(0.2, 1.0, size=(height, width, 3)).astype(np.float32)
    out = []
    for lx, ly in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        shade = np.clip(lx * nx + ly * ny + 0.3 * nz, 0, 1)[..., None]
        noise = rng.normal(0, 0.02, size=(height, width, 3))
        out.append(np.clip(albedo * shade + 0.05 + noise, 0, 1).astype(np.float32))
    return out


def noise_relights(rng: np.random.Generator, width: int, height: int) -> list[np.ndarray]:
    """Four float32 HWC 0..1 relights of uniform noise, a tenth of the values exactly 0 or 1."""
    out = []
    for _ in NORMAL_LIGHTS:
        arr = rng.uniform(0, 1, size=(height, width, 3)).astype(np.float32)
        arr[rng.uniform(size=arr.shape) < 0.05] = 0.0
        arr[rng.uniform(size=arr.shape) < 0.05] = 1.0
        out.append(arr)
    return out


def matting_u8(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """HW uint8: a third 0, a third 255, a third soft values."""
    choice = rng.integers(0, 3, size=(height, width))
    soft = rng.integers(1, 255, size=(height, width))
    return np.where(choice == 0, 0, np.where(choice == 1, 255, soft)).astype(np.uint8)


def to_u8_images(relights: list[np.ndarray]) -> list[Image.Image]:
    return [Image.fromarray((r * 255.0).round().astype(np.uint8), "RGB") for r in relights]


@pytest.mark.parametrize("kind", [shaded_relights, noise_relights], ids=["shaded", "noise"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("seed", SEEDS)
def test_float_relights_bit_exact(seed, size, kind):
    rng = np.random.default_rng(seed)
    width, height = size
    relights = kind(rng, width, height)
    matting = matting_u8(rng, width, height)
    expected = reference_normal_map(*relights, matting)
    ours = normal_map(*relights, matting.astype(np.float32) / 255.0)
    assert ours.dtype == np.uint8 and ours.shape == (height, width, 3)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_hw1_matting_and_full_matting_bit_exact(seed):
    rng = np.random.default_rng(100 + seed)
    relights = shaded_relights(rng, 48, 48)
    full = np.full((48, 48), 255, np.uint8)
    expected = reference_normal_map(*relights, full)
    np.testing.assert_array_equal(normal_map(*relights, np.ones((48, 48, 1), np.float32)), expected)
    zero = np.zeros((48, 48), np.uint8)
    expected = reference_normal_map(*relights, zero)
    np.testing.assert_array_equal(normal_map(*relights, np.zeros((48, 48, 1), np.float32)), expected)


@pytest.mark.parametrize("kind", [shaded_relights, noise_relights], ids=["shaded", "noise"])
@pytest.mark.parametrize("seed", SEEDS)
def test_pil_relights_and_mask_bit_exact(seed, kind):
    rng = np.random.default_rng(200 + seed)
    images = to_u8_images(kind(rng, 80, 56))
    mask = matting_u8(rng, 80, 56)
    floats = [np.asarray(img).astype(np.float32) / 255.0 for img in images]
    expected = reference_normal_map(*floats, mask)
    ours = normal_map_image(images, Image.fromarray(mask, "L"))
    assert ours.mode == "RGB" and ours.size == (80, 56)
    np.testing.assert_array_equal(np.asarray(ours), expected)


@pytest.mark.parametrize("mask_size", [(160, 112), (40, 90), (81, 57)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_mask_of_another_size_bit_exact(seed, mask_size):
    """The mask is scaled and cropped as the demo scales its matting (LANCZOS, centred crop)."""
    rng = np.random.default_rng(300 + seed)
    images = to_u8_images(shaded_relights(rng, 80, 56))
    mask_w, mask_h = mask_size
    ys, xs = np.mgrid[0:mask_h, 0:mask_w]
    # A soft disc: LANCZOS rings on a hard random mask would only test clipping.
    dist = np.hypot((xs - mask_w / 2) / (0.35 * mask_w), (ys - mask_h / 2) / (0.35 * mask_h))
    mask = (np.clip(1.5 - dist, 0, 1) * 255).astype(np.uint8)
    floats = [np.asarray(img).astype(np.float32) / 255.0 for img in images]
    expected = reference_normal_map(*floats, resize_and_center_crop(mask, 80, 56))
    ours = normal_map_image(images, Image.fromarray(mask, "L"))
    np.testing.assert_array_equal(np.asarray(ours), expected)


def test_no_mask_is_full_matting():
    rng = np.random.default_rng(7)
    images = to_u8_images(shaded_relights(rng, 40, 40))
    floats = [np.asarray(img).astype(np.float32) / 255.0 for img in images]
    expected = reference_normal_map(*floats, np.full((40, 40), 255, np.uint8))
    np.testing.assert_array_equal(np.asarray(normal_map_image(images, None)), expected)


def test_negative_control_float64_differs():
    """The comparison is sharp enough to see float64 arithmetic: the reference fed float64
    relights (every step promoted) differs from ours on some pixel of these inputs."""
    differing = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        relights = noise_relights(rng, 64, 64)
        matting = matting_u8(rng, 64, 64)
        ours = normal_map(*relights, matting.astype(np.float32) / 255.0)
        in_float64 = reference_normal_map(*(r.astype(np.float64) for r in relights), matting)
        differing += int(np.count_nonzero(ours != in_float64))
    assert differing > 0

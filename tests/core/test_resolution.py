"""lib_iclight.resolution: a generation size with the subject's aspect ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lib_iclight.resolution import synced_resolution

CURRENT_SIZES = [(512, 512), (512, 768), (768, 512), (1024, 1024), (640, 360), (1216, 832)]
SUBJECT_SIZES = [(1, 1), (1000, 1500), (1920, 1080), (3000, 2000), (777, 1333), (512, 300), (90, 160)]


def test_square_subject_at_512x768():
    assert synced_resolution((800, 800), (512, 768)) == (624, 624)


@pytest.mark.parametrize("subject,current", [((1000, 1500), (512, 768)), ((1500, 1000), (768, 512)),
                                              ((7, 7), (1024, 1024)), ((1920, 1080), (1024, 576))])
def test_subject_with_the_current_aspect_keeps_the_current_size(subject, current):
    assert synced_resolution(subject, current) == current


@pytest.mark.parametrize("current", CURRENT_SIZES)
@pytest.mark.parametrize("subject", SUBJECT_SIZES)
def test_multiples_area_and_aspect(subject, current):
    width, height = synced_resolution(subject, current)
    assert width % 8 == 0 and height % 8 == 0
    assert 64 <= width <= 2048 and 64 <= height <= 2048
    area = current[0] * current[1]
    assert abs(width * height - area) / area < 0.04
    # Each side is within 4 px (half a multiple) of the exact size with that aspect and area.
    exact_w = math.sqrt(area * subject[0] / subject[1])
    exact_h = math.sqrt(area * subject[1] / subject[0])
    assert abs(width - exact_w) <= 4 and abs(height - exact_h) <= 4


def test_random_sizes_hold_the_same_properties():
    rng = np.random.default_rng(0)
    for _ in range(500):
        subject = tuple(int(x) for x in rng.integers(50, 4000, size=2))
        current = tuple(int(x) for x in rng.integers(32, 128, size=2) * 8)
        width, height = synced_resolution(subject, current)
        assert width % 8 == 0 and height % 8 == 0 and 64 <= min(width, height) and max(width, height) <= 2048
        aspect, wanted = width / height, subject[0] / subject[1]
        if 64 < min(width, height) and max(width, height) < 2048:
            area = current[0] * current[1]
            assert abs(width * height - area) / area < 0.06
            # Rounding each side by at most 4 px bounds the aspect's relative error.
            assert abs(aspect / wanted - 1) <= 4 / width + 4 / height + 1e-9


def test_large_area_is_scaled_down_keeping_the_aspect():
    # 2:1 at 2048x2048's area: 2896x1448 does not fit, 2048x1024 does.
    assert synced_resolution((2000, 1000), (2048, 2048)) == (2048, 1024)


def test_small_area_is_scaled_up_keeping_the_aspect():
    # 1:4 at 64x64's area would be 32x128; the short side is raised to 64.
    assert synced_resolution((100, 400), (64, 64)) == (64, 256)


@pytest.mark.parametrize("subject,expected", [((100, 10000), (64, 2048)), ((10000, 100), (2048, 64))])
def test_extreme_aspect_is_clamped(subject, expected):
    assert synced_resolution(subject, (512, 512)) == expected


def test_elongated_subject_within_bounds_keeps_its_aspect():
    width, height = synced_resolution((100, 1600), (512, 512))  # 1:16 -> 128x2048 exactly
    assert (width, height) == (128, 2048)


def test_custom_grid_and_bounds():
    width, height = synced_resolution((1, 1), (500, 700), multiple=64, minimum=100, maximum=600)
    assert (width, height) == (576, 576)  # sqrt(350000) = 592 -> 576; bounds become 128..576
    assert synced_resolution((1, 1), (100, 100), multiple=64, minimum=100, maximum=600) == (128, 128)


def test_current_size_off_the_grid_is_snapped():
    assert synced_resolution((510, 765), (510, 765)) == (512, 768)


@pytest.mark.parametrize("bad", [(0, 512), (512, -1), (512,), (512, 512, 3), None, ("512", 512), (True, 512),
                                 (float("nan"), 512), (float("inf"), 512)])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="subject_size"):
        synced_resolution(bad, (512, 512))
    with pytest.raises(ValueError, match="current_size"):
        synced_resolution((512, 512), bad)


@pytest.mark.parametrize("kwargs", [{"multiple": 0}, {"minimum": -8}, {"maximum": 0}, {"multiple": 2.0},
                                    {"minimum": 100, "maximum": 120, "multiple": 64}])
def test_bad_bounds_are_refused(kwargs):
    with pytest.raises(ValueError):
        synced_resolution((512, 512), (512, 512), **kwargs)

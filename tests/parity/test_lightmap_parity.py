"""Our light maps and fbc backgrounds are bit-equal to lllyasviel/IC-Light's (commit bcf3f29):
``make_lightmap`` to ``gradio_demo.py``'s LEFT/RIGHT/TOP/BOTTOM maps, ``make_background``
to ``gradio_demo_bg.py``'s LEFT/RIGHT/TOP/BOTTOM/GREY backgrounds, and our flip of an
uploaded background to the demo's ``np.fliplr`` (the reference side is the transcription
in tests/parity/reference_iclight.py).

Sizes include one-pixel-wide and one-pixel-high maps, and widths where reversing the
demo's ``linspace(255, 0, n)`` is *not* its ``linspace(0, 255, n)`` after truncation, so a
shortcut that mirrors one direction to get the other fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from lib_iclight.lightmaps import make_background, make_lightmap
from tests.parity import reference_iclight as ref

# (width, height); 106 and 95 are lengths where the mirrored linspace truncates differently
# (for 255..0 and 224..32 respectively), 1 is linspace's start-only case.
SIZES = [(64, 64), (48, 80), (512, 768), (1, 7), (7, 1), (1, 1), (106, 95), (95, 106)]
FC_SOURCES = {"LEFT": "left", "RIGHT": "right", "TOP": "top", "BOTTOM": "bottom"}
FBC_SOURCES = {**FC_SOURCES, "GREY": "ambient"}
# The same directions as angles, in the spellings the API and the X/Y/Z plot may send.
ANGLES = {"LEFT": ["angle:180", 180, -180.0, "540"], "RIGHT": ["angle:0", 0, 360.0, "angle:-360"],
          "TOP": ["angle:90", 90.0, "-270deg"], "BOTTOM": ["angle:270", -90, "angle:270.0"]}


def size_id(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("source", list(FC_SOURCES))
def test_light_maps_equal_the_fc_demo(source, size):
    width, height = size
    expected = ref.reference_fc_light_map(source, width, height)
    assert np.array_equal(np.asarray(make_lightmap(FC_SOURCES[source], width, height)), expected)
    for angle in ANGLES[source]:
        assert np.array_equal(np.asarray(make_lightmap(angle, width, height)), expected), angle


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("source", list(FBC_SOURCES))
def test_backgrounds_equal_the_fbc_demo(source, size):
    width, height = size
    expected = ref.reference_fbc_background(source, None, width, height)
    assert np.array_equal(np.asarray(make_background(FBC_SOURCES[source], width, height)), expected)
    for angle in ANGLES.get(source, []):
        assert np.array_equal(np.asarray(make_background(angle, width, height)), expected), angle


def test_the_sizes_catch_a_mirrored_shortcut():
    """Drawing right as left mirrored is off by one level at some lengths: the sizes above
    include such lengths, for both demos' levels."""
    for length, (bright, dark) in [(106, (255, 0)), (95, (224, 32))]:
        mirrored = np.linspace(bright, dark, length)[::-1].astype(np.uint8)
        assert not np.array_equal(mirrored, np.linspace(dark, bright, length).astype(np.uint8))


@pytest.mark.parametrize("size", [(64, 48), (7, 1), (1, 7)], ids=size_id)
def test_upload_flip_mirrors_as_fliplr(size):
    """Our conditioning flips an uploaded background with ImageOps.mirror before resizing,
    as the demo flips with np.fliplr before its resize-and-crop."""
    width, height = size
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert ref.reference_fbc_background("UPLOAD", pixels, width, height) is pixels
    flipped = np.asarray(ImageOps.mirror(Image.fromarray(pixels, "RGB")))
    assert np.array_equal(flipped, ref.reference_fbc_background("UPLOAD_FLIP", pixels, width, height))

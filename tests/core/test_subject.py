"""lib_iclight.subject: preparing the conditioning images for one generation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_iclight.errors import ICLightError
from lib_iclight.lightmaps import make_lightmap
from lib_iclight.rembg_session import clear_session_cache
from lib_iclight.subject import (
    PreparedImages,
    light_map_image,
    prepare_background,
    prepare_subject,
    reinforce_foreground,
)
from tests.helpers.images import DISC_COLOUR, DARK, disc_image, disc_rgba, halves, to_base64
from tests.helpers.onnx_models import use_model_home

MODEL = "u2net_human_seg"
GREY3 = (127, 127, 127)


@pytest.fixture
def standin(tmp_path, monkeypatch):
    pytest.importorskip("rembg")
    yield use_model_home(monkeypatch, tmp_path / "u2net", (MODEL,))
    clear_session_cache()


def prepare(image, **overrides) -> PreparedImages:
    args = dict(
        width=64,
        height=64,
        remove_bg=False,
        rembg_model=MODEL,
        foreground_threshold=225,
        background_threshold=16,
        erode_size=16,
        detail_transfer_raw=False,
    )
    args.update(overrides)
    return prepare_subject(image, **args)


# ------------------------------------------------------------------ subject


def test_remove_bg_puts_the_cut_out_on_grey(standin):
    prepared = prepare(disc_image(), remove_bg=True)
    assert prepared.fg.mode == "RGB" and prepared.fg.size == (64, 64)
    assert prepared.fg.getpixel((0, 0)) == GREY3
    assert np.abs(np.subtract(prepared.fg.getpixel((32, 32)), DISC_COLOUR)).max() <= 2
    assert prepared.mask.mode == "L" and prepared.mask.getpixel((32, 32)) == 255 and prepared.mask.getpixel((0, 0)) == 0
    assert prepared.removed_bg.mode == "RGBA" and prepared.removed_bg.size == (64, 64)
    assert np.array_equal(np.asarray(prepared.removed_bg.getchannel("A")), np.asarray(prepared.mask))
    assert prepared.cutout is prepared.removed_bg
    assert prepared.bg is None


def test_remove_bg_detail_source_raw_or_cut_out(standin):
    cut = prepare(disc_image(), remove_bg=True)
    assert cut.detail_source is cut.fg
    raw = prepare(disc_image(), remove_bg=True, detail_transfer_raw=True)
    # The raw input keeps its dark background where the subject image has grey.
    assert raw.detail_source.getpixel((0, 0)) == DARK
    assert raw.fg.getpixel((0, 0)) == GREY3


def test_remove_bg_runs_at_the_generation_size(standin, monkeypatch):
    import lib_iclight.subject as subject

    sizes = []
    real = subject.cut_out_subject

    def spy(img, *args, **kwargs):
        sizes.append(img.size)
        return real(img, *args, **kwargs)

    monkeypatch.setattr(subject, "cut_out_subject", spy)
    prepared = prepare(disc_image(size=256, radius=80), remove_bg=True, width=64, height=48)
    assert sizes == [(64, 48)]
    assert prepared.fg.size == prepared.mask.size == prepared.removed_bg.size == (64, 48)


def test_remove_bg_passes_the_thresholds(standin, monkeypatch):
    import lib_iclight.subject as subject

    seen = []

    def spy(img, model, fg, bg, erode, *args, **kwargs):
        seen.append((model, fg, bg, erode))
        return real(img, model, fg, bg, erode, *args, **kwargs)

    real = subject.cut_out_subject
    monkeypatch.setattr(subject, "cut_out_subject", spy)
    prepare(disc_image(), remove_bg=True, foreground_threshold=200, background_threshold=30, erode_size=3)
    assert seen == [(MODEL, 200, 30, 3)]


def test_alpha_input_uses_its_own_alpha_without_rembg(monkeypatch):
    import lib_iclight.subject as subject

    monkeypatch.setattr(subject, "cut_out_subject", lambda *a, **k: pytest.fail("rembg must not run"))
    rgba = disc_rgba()
    prepared = prepare(rgba)
    assert np.array_equal(np.asarray(prepared.mask), np.asarray(rgba.getchannel("A")))
    assert prepared.fg.getpixel((0, 0)) == GREY3
    assert prepared.fg.getpixel((32, 32)) == DISC_COLOUR
    assert prepared.removed_bg is None
    assert prepared.cutout.mode == "RGBA"


def test_plain_input_is_used_as_it_is():
    img = disc_image()
    prepared = prepare(img, detail_transfer_raw=True)
    assert np.array_equal(np.asarray(prepared.fg), np.asarray(img))
    assert prepared.mask is None and prepared.removed_bg is None and prepared.cutout is None
    assert np.array_equal(np.asarray(prepared.detail_source), np.asarray(img))


def test_subject_is_crop_resized_not_stretched():
    prepared = prepare(disc_image(size=128, radius=24, height=64), width=32, height=32)
    bright = np.asarray(prepared.fg)[..., 0] > 120
    ys, xs = np.nonzero(bright)
    assert prepared.fg.size == (32, 32)
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 1


def test_background_is_prepared_when_given():
    bg = halves(200, 100)
    prepared = prepare(disc_image(), background=bg)
    assert prepared.bg.mode == "RGB" and prepared.bg.size == (64, 64)


def test_missing_subject_is_an_input_fg_error():
    with pytest.raises(ICLightError, match=r"^input_fg: no image given"):
        prepare(None)


# --------------------------------------------------------------- background


def test_prepare_background_crops_and_flattens():
    rgba = Image.new("RGBA", (100, 50), (255, 0, 0, 0))
    out = prepare_background(rgba, 40, 40)
    assert out.mode == "RGB" and out.size == (40, 40) and out.getpixel((20, 20)) == GREY3
    wide = prepare_background(halves(200, 50), 20, 20)
    assert wide.getpixel((2, 10))[0] > 200 and wide.getpixel((17, 10))[2] > 200


def test_prepare_background_accepts_other_modes():
    assert prepare_background(Image.new("L", (10, 10), 9), 5, 5).getpixel((2, 2)) == (9, 9, 9)


# --------------------------------------------------------------- reinforce


def test_reinforce_pastes_the_subject_through_its_mask():
    prepared = prepare(disc_rgba())
    light = make_lightmap("left", 64, 64)
    out = reinforce_foreground(light, prepared)
    assert out.mode == "RGB" and out.size == (64, 64)
    assert out.getpixel((32, 32)) == DISC_COLOUR
    assert out.getpixel((0, 0)) == light.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((63, 63)) == light.getpixel((63, 63)) == (0, 0, 0)


def test_reinforce_soft_edges_have_no_grey_halo():
    # Half-transparent white over a black light map: the subject's own colour blends
    # with the map (~128), not grey-mixed fg (~191).
    rgba = Image.new("RGBA", (8, 8), (255, 255, 255, 128))
    prepared = prepare(rgba, width=8, height=8)
    out = reinforce_foreground(Image.new("RGB", (8, 8), (0, 0, 0)), prepared)
    assert abs(out.getpixel((4, 4))[0] - 128) <= 1


def test_reinforce_without_mask_is_the_whole_subject():
    img = disc_image()
    prepared = prepare(img)
    out = reinforce_foreground(make_lightmap("top", 64, 64), prepared)
    assert np.array_equal(np.asarray(out), np.asarray(img))


def test_reinforce_fits_a_light_map_of_another_size():
    prepared = prepare(disc_rgba())
    out = reinforce_foreground(make_lightmap("left", 128, 32), prepared)
    assert out.size == (64, 64)


# ---------------------------------------------------------------- light map


def test_light_map_preset_when_nothing_uploaded():
    for empty in (None, "", {"image": None}):
        out = light_map_image(empty, "right", 48, 32)
        assert np.array_equal(np.asarray(out), np.asarray(make_lightmap("right", 48, 32)))


def test_light_map_angle_preset():
    out = light_map_image(None, "45deg", 32, 32)
    assert np.array_equal(np.asarray(out), np.asarray(make_lightmap(45, 32, 32)))


def test_light_map_upload_wins_and_is_crop_resized():
    upload = halves(200, 50)
    out = light_map_image(to_base64(upload), "left", 20, 20)
    assert out.mode == "RGB" and out.size == (20, 20)
    assert out.getpixel((2, 10))[0] > 200 and out.getpixel((17, 10))[2] > 200


def test_light_map_errors_name_the_argument():
    with pytest.raises(ICLightError, match=r"^input_fg: not valid base64"):
        light_map_image("???", "left", 8, 8, arg="input_fg")
    with pytest.raises(ICLightError, match=r"^light_map: unknown light direction"):
        light_map_image(None, "sideways", 8, 8)


def test_any_pil_mode_is_accepted():
    # Pillow refuses to LANCZOS-resize 16-bit greyscale; the mode is normalised first.
    sixteen = Image.fromarray(np.full((20, 30), 32896, np.uint16))
    prepared = prepare(sixteen, width=16, height=16)
    assert prepared.fg.mode == "RGB" and prepared.fg.getpixel((5, 5)) == (128, 128, 128)
    la = Image.merge("LA", (Image.new("L", (8, 8), 200), Image.new("L", (8, 8), 0)))
    assert prepare(la, width=8, height=8).fg.getpixel((1, 1)) == GREY3

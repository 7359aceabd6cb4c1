"""lib_iclight.conditioning: preparing the conditioning images for one generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_iclight.args import ICLightArgs
from lib_iclight.conditioning import (
    PreparedImages,
    prepare_conditioning,
    prepare_subject,
    reinforce_foreground,
)
from lib_iclight.errors import ICLightError
from lib_iclight.images import composite_on_grey, resize_and_center_crop
from lib_iclight.lightmaps import make_lightmap
from lib_iclight.rembg_session import clear_session_cache
from lib_iclight.weights import ICModelInfo
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


def test_remove_bg_detail_source_raw_or_cut_out(standin):
    cut = prepare(disc_image(), remove_bg=True)
    assert cut.detail_source is cut.fg
    raw = prepare(disc_image(), remove_bg=True, detail_transfer_raw=True)
    # The raw input keeps its dark background where the subject image has grey.
    assert raw.detail_source.getpixel((0, 0)) == DARK
    assert raw.fg.getpixel((0, 0)) == GREY3


def test_remove_bg_runs_at_the_generation_size(standin, monkeypatch):
    import lib_iclight.conditioning as subject

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
    import lib_iclight.conditioning as subject

    seen = []

    def spy(img, model, fg, bg, erode, *args, **kwargs):
        seen.append((model, fg, bg, erode))
        return real(img, model, fg, bg, erode, *args, **kwargs)

    real = subject.cut_out_subject
    monkeypatch.setattr(subject, "cut_out_subject", spy)
    prepare(disc_image(), remove_bg=True, foreground_threshold=200, background_threshold=30, erode_size=3)
    assert seen == [(MODEL, 200, 30, 3)]


def test_alpha_input_uses_its_own_alpha_without_rembg(monkeypatch):
    import lib_iclight.conditioning as subject

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


def test_missing_subject_is_an_input_fg_error():
    with pytest.raises(ICLightError, match=r"^input_fg: no image given"):
        prepare(None)


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


# ------------------------------------------------------------ conditioning

def model(kind: str) -> ICModelInfo:
    return ICModelInfo(f"test-{kind}", Path(f"test-{kind}.safetensors"), kind, 8 if kind == "fc" else 12)


def conditioning(args: ICLightArgs, kind: str = "fc", **kwargs):
    options = dict(width=64, height=64, is_img2img=False)
    options.update(kwargs)
    return prepare_conditioning(args, model(kind), **options)


def test_txt2img_fc_is_the_subject_alone():
    made = conditioning(ICLightArgs(enable=True, input_fg=disc_image(), remove_bg=False))
    assert made.backgrounds == () and made.init_image is None and made.subject_photo is None
    [[fg]] = made.items_at(64, 64)
    assert fg.tobytes() == made.subject.fg_source.tobytes()


def test_txt2img_fbc_background_is_flattened_at_its_own_size():
    rgba = Image.new("RGBA", (100, 50), (255, 0, 0, 0))
    made = conditioning(ICLightArgs(enable=True, input_fg=disc_image(), uploaded_bg=rgba, remove_bg=False), "fbc")
    [background] = made.backgrounds
    assert background.mode == "RGB" and background.size == (100, 50)
    assert background.getpixel((50, 25)) == GREY3
    [[fg, bg]] = made.items_at(64, 32)
    assert bg.tobytes() == resize_and_center_crop(background, 64, 32).tobytes()
    assert fg.size == bg.size == (64, 32)


def test_img2img_light_map_is_crop_resized_and_the_photo_is_the_subject():
    photo = disc_image()
    made = conditioning(ICLightArgs(enable=True, input_fg=halves(200, 50), remove_bg=False),
                        width=20, height=20, is_img2img=True, init_image=to_base64(photo))
    assert made.init_image.mode == "RGB" and made.init_image.size == (20, 20)
    assert made.init_image.getpixel((2, 10))[0] > 200 and made.init_image.getpixel((17, 10))[2] > 200
    assert np.array_equal(np.asarray(made.subject_photo), np.asarray(photo))


def test_img2img_light_map_by_name_is_drawn_at_the_size():
    args = ICLightArgs(enable=True, input_fg=None, remove_bg=False)
    for name in ("right", 45):
        made = conditioning(args, width=48, height=32, is_img2img=True, init_image=disc_image(), light_map=name)
        expected = resize_and_center_crop(composite_on_grey(make_lightmap(name, 48, 32)), 48, 32)
        assert np.array_equal(np.asarray(made.init_image), np.asarray(expected))


def test_img2img_reinforce_pastes_the_subject():
    args = ICLightArgs(enable=True, input_fg=make_lightmap("left", 64, 64), remove_bg=False, reinforce_fg=True)
    made = conditioning(args, is_img2img=True, init_image=disc_rgba())
    assert made.init_image.getpixel((32, 32)) == DISC_COLOUR


@pytest.mark.parametrize("args, kind, kwargs, message", [
    (ICLightArgs(enable=True), "fc", {}, r"^input_fg: no image given"),
    (ICLightArgs(enable=True, input_fg=disc_image()), "fbc", {}, r"^uploaded_bg: no image given: the fbc model test-fbc"),
    (ICLightArgs(enable=True, input_fg=disc_image()), "fc", {"light_map": "left"}, r"^light_map: only img2img"),
    (ICLightArgs(enable=True, input_fg=disc_image()), "fc", {"is_img2img": True}, r"^init_images: no image given"),
    (ICLightArgs(enable=True), "fc", {"is_img2img": True, "init_image": disc_image()}, r"^input_fg: no image given"),
    (ICLightArgs(enable=True, input_fg=disc_image()), "fbc", {"is_img2img": True, "init_image": disc_image()},
     r"^model_type: img2img relighting needs an fc model"),
    (ICLightArgs(enable=True, input_fg=disc_image()), "fc", {"is_img2img": True, "init_image": "???"},
     r"^init_images: not valid base64"),
    (ICLightArgs(enable=True), "fc", {"is_img2img": True, "init_image": disc_image(), "light_map": "sideways"},
     r"^light_map: unknown light direction"),
])
def test_conditioning_errors_name_the_argument(args, kind, kwargs, message):
    with pytest.raises(ICLightError, match=message):
        conditioning(args, kind, **kwargs)


def test_any_pil_mode_is_accepted():
    # Pillow refuses to LANCZOS-resize 16-bit greyscale; the mode is normalised first.
    sixteen = Image.fromarray(np.full((20, 30), 32896, np.uint16))
    prepared = prepare(sixteen, width=16, height=16)
    assert prepared.fg.mode == "RGB" and prepared.fg.getpixel((5, 5)) == (128, 128, 128)
    la = Image.merge("LA", (Image.new("L", (8, 8), 200), Image.new("L", (8, 8), 0)))
    assert prepare(la, width=8, height=8).fg.getpixel((1, 1)) == GREY3


# -- the lighting options (issue 21) ---------------------------------------------------


@pytest.mark.parametrize("source", ["left", "right", "top", "bottom", "ambient", "angle:45"])
def test_a_named_background_is_drawn_at_each_pass_size(source):
    from lib_iclight.lightmaps import make_background

    made = conditioning(ICLightArgs(enable=True, input_fg=disc_image(), remove_bg=False, bg_source=source), "fbc")
    assert made.backgrounds == (source,)
    for width, height in ((64, 64), (96, 48)):
        [[_, bg]] = made.items_at(width, height)
        assert bg.tobytes() == make_background(source, width, height).tobytes()


def test_upload_flip_mirrors_before_the_crop():
    from PIL import ImageOps

    bg = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 90, 3), dtype=np.uint8), "RGB")
    made = conditioning(ICLightArgs(enable=True, input_fg=disc_image(), remove_bg=False, uploaded_bg=bg,
                                    bg_source="upload_flip"), "fbc")
    [[_, got]] = made.items_at(64, 64)
    assert got.tobytes() == resize_and_center_crop(ImageOps.mirror(bg), 64, 64).tobytes()


def test_the_normal_map_has_one_item_per_light_sharing_the_lifted_subject():
    from lib_iclight.lightmaps import make_background
    from lib_iclight.normal_map import NORMAL_LIGHTS

    rgba = disc_rgba()
    made = conditioning(ICLightArgs(enable=True, input_fg=rgba, remove_bg=False, normal_map=True), "fbc")
    items = made.items_at(64, 64)
    assert len(items) == 4 and all(item[0] is items[0][0] for item in items)
    assert [item[1].tobytes() for item in items] == [make_background(n, 64, 64).tobytes() for n in NORMAL_LIGHTS]
    lifted = np.asarray(made.subject.fg).astype(int)
    flat = np.asarray(composite_on_grey(rgba)).astype(int)
    inside = np.asarray(rgba.getchannel("A")) == 255
    assert (lifted[inside] == np.minimum(flat[inside] + 16, 255)).all()
    # The photo relight in place uses is not lifted.
    assert made.subject.photo.tobytes() == flat.astype(np.uint8).tobytes()


def test_the_fbc_options_are_refused_for_fc_by_name():
    with pytest.raises(ICLightError, match="^bg_source: only fbc models"):
        conditioning(ICLightArgs(enable=True, input_fg=disc_image(), bg_source="left"))
    with pytest.raises(ICLightError, match="^normal_map: the normal map is the fbc model's"):
        conditioning(ICLightArgs(enable=True, input_fg=disc_image(), normal_map=True))


def test_a_light_map_name_is_drawn_in_img2img_and_refused_in_txt2img():
    made = conditioning(ICLightArgs(enable=True, input_fg="angle:200", remove_bg=False), is_img2img=True,
                        init_image=disc_image())
    assert made.init_image.tobytes() == make_lightmap(200, 64, 64).tobytes()
    with pytest.raises(ICLightError, match="^input_fg: a light-map name"):
        conditioning(ICLightArgs(enable=True, input_fg="left", remove_bg=False))


def test_relight_in_place_needs_a_mask():
    with pytest.raises(ICLightError, match="^relight_in_place: the subject has no mask"):
        conditioning(ICLightArgs(enable=True, input_fg=disc_image(), remove_bg=False, relight_in_place=True))
    made = conditioning(ICLightArgs(enable=True, input_fg=disc_rgba(), remove_bg=False, relight_in_place=True))
    assert made.subject.mask is not None and made.subject.photo.size == (64, 64)

"""lib_iclight.images: decoding every accepted input, refusing every malformed one, and
the geometry / tensor conversions."""

from __future__ import annotations

import base64
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lib_iclight.errors import ICLightError
from lib_iclight.images import (
    GREY,
    MAX_PIXELS,
    composite_on_grey,
    decode_image,
    has_alpha,
    numpy_to_pil,
    pil_to_numpy,
    pil_to_pixels,
    resize_and_center_crop,
    tensor_to_pil,
    vae_pixels,
)
from tests.helpers.images import disc_image, disc_rgba, encode, halves, png_header_only, to_base64

ARG = "input_fg"


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------ empty values


@pytest.mark.parametrize("value", [None, "", "   ", "\n", {"image": None, "mask": None}, "data:image/png;base64,"])
def test_empty_values_mean_no_image(value):
    assert decode_image(value, ARG) is None


# ------------------------------------------------------------------------ base64


def test_plain_base64_png_round_trips():
    img = disc_image()
    out = decode_image(to_base64(img), ARG)
    assert out.mode == "RGB" and same_pixels(out, img)


def test_data_url_prefix_is_stripped():
    img = disc_image()
    assert same_pixels(decode_image(to_base64(img, data_url=True), ARG), img)


def test_data_url_prefix_is_case_insensitive_and_takes_parameters():
    img = disc_image()
    text = "DATA:image/png;name=x.png;BASE64," + to_base64(img)
    assert same_pixels(decode_image(text, ARG), img)


def test_whitespace_and_newlines_are_tolerated():
    img = disc_image()
    text = to_base64(img)
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert same_pixels(decode_image("  " + wrapped.replace("A", "A \t", 3) + "\r\n", ARG), img)


@pytest.mark.parametrize("trim", [1, 2])
def test_missing_padding_is_tolerated(trim):
    # A 1x1 PNG encodes to a length that needs padding; strip what is there and re-pad.
    data = encode(Image.new("RGB", (3, 1), (1, 2, 3)))
    for extra in range(3):
        text = base64.b64encode(data + b"\0" * extra).decode()
        if text.endswith("=" * trim):
            break
    else:
        pytest.skip("no padded length found")
    out = decode_image(text.rstrip("="), ARG)
    assert out.getpixel((0, 0)) == (1, 2, 3)


def test_urlsafe_alphabet_is_accepted():
    img = disc_image(size=48)
    raw = encode(img)
    text = base64.urlsafe_b64encode(raw).decode()
    assert "-" in text or "_" in text or text == base64.b64encode(raw).decode()
    assert same_pixels(decode_image(text, ARG), img)


def test_jpeg_webp_gif_bmp_tiff_decode():
    img = disc_image()
    for fmt in ("JPEG", "WEBP", "BMP", "TIFF"):
        out = decode_image(to_base64(img, fmt), ARG)
        assert out.mode == "RGB" and out.size == img.size, fmt
    gif = decode_image(to_base64(img.convert("P"), "GIF"), ARG)
    assert gif.mode == "RGB" and gif.size == img.size


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("not base64 at all!", "not valid base64"),
        ("abc$def", "unexpected character '$'"),
        ("/tmp/subject.png", "file paths and URLs are not accepted"),
        ("C:\\images\\subject.png", "file paths and URLs are not accepted"),
        ("abcde", "truncated"),
        ("data:image/png,iVBORw0KGgo=", "not base64-encoded"),
        ("data:image/png;base64", "no comma"),
    ],
)
def test_bad_base64_names_the_argument(text, fragment):
    with pytest.raises(ICLightError) as info:
        decode_image(text, ARG)
    message = str(info.value)
    assert message.startswith("input_fg: not valid base64")
    assert fragment in message


@pytest.mark.parametrize("url", ["http://example.com/a.png", "https://example.com/a.png", "file:///etc/passwd"])
def test_urls_are_refused_not_fetched(url):
    with pytest.raises(ICLightError, match=r"^input_fg: got a URL"):
        decode_image(url, ARG)


def test_valid_base64_that_is_not_an_image():
    text = base64.b64encode(b"hello, this is plainly text and no picture").decode()
    with pytest.raises(ICLightError, match=r"^input_fg: the base64 decodes to \d+ bytes that are not an image"):
        decode_image(text, ARG)


def test_unsupported_risky_format_is_refused():
    # EPS would make Pillow run Ghostscript; it is not in the accepted list.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ICLightError, match=r"^input_fg: .*not an image"):
        decode_image(base64.b64encode(eps).decode(), ARG)


def test_truncated_image_is_a_clear_error():
    data = encode(disc_image(size=128), "PNG")
    text = base64.b64encode(data[: len(data) // 2]).decode()
    with pytest.raises(ICLightError, match=r"^input_fg: the PNG image is damaged or incomplete"):
        decode_image(text, ARG)


# ---------------------------------------------------------------- size limits


def test_max_pixels_is_4096_squared():
    assert MAX_PIXELS == 4096 * 4096


def test_oversize_image_states_size_and_limit():
    text = base64.b64encode(encode(Image.new("RGB", (30, 20)))).decode()
    with pytest.raises(ICLightError) as info:
        decode_image(text, ARG, max_pixels=500)
    message = str(info.value)
    assert message.startswith("input_fg: the image is 30x20 = 600 pixels")
    assert "limit of 500 pixels" in message


def test_header_is_checked_before_pixels_are_decoded():
    # 5000x5000 passes Pillow's own bomb check but not ours; the file has no pixel data,
    # so reaching load() would raise a different ("damaged") error.
    text = base64.b64encode(png_header_only(5000, 5000)).decode()
    with pytest.raises(ICLightError, match=r"^input_fg: the image is 5000x5000 = 25,000,000 pixels, more than the limit of 16,777,216"):
        decode_image(text, ARG)


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_decompression_bombs_become_iclight_errors(side):
    # 10000^2 is between Pillow's warning and error limits, 20000^2 past its error limit.
    text = base64.b64encode(png_header_only(side, side)).decode()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ICLightError, match=r"^input_fg: image too large to decode safely"):
            decode_image(text, ARG, max_pixels=10**12)


def test_oversize_pil_and_numpy_are_refused_too():
    with pytest.raises(ICLightError, match=r"^input_fg: the image is 30x20"):
        decode_image(Image.new("RGB", (30, 20)), ARG, max_pixels=100)
    with pytest.raises(ICLightError, match=r"^input_fg: the image is 30x20"):
        decode_image(np.zeros((20, 30, 3), np.uint8), ARG, max_pixels=100)


def test_empty_images_are_refused():
    with pytest.raises(ICLightError, match=r"^input_fg: the image is empty"):
        decode_image(np.zeros((0, 5, 3), np.uint8), ARG)
    with pytest.raises(ICLightError, match=r"^input_fg: the image is empty"):
        decode_image(Image.new("RGB", (0, 0)), ARG)


# ------------------------------------------------------------------ wrong types


@pytest.mark.parametrize("value", [123, 1.5, b"\x89PNG", ["a"], object(), True])
def test_wrong_types(value):
    with pytest.raises(ICLightError, match=r"^input_fg: expected a base64 image string, a PIL image or a numpy array, got"):
        decode_image(value, ARG)


def test_error_message_uses_the_given_argument_name():
    with pytest.raises(ICLightError, match=r"^uploaded_bg: "):
        decode_image(42, "uploaded_bg")


@pytest.mark.parametrize(
    "value",
    [
        {"path": "/etc/passwd"},
        {"url": "http://example.com/a.png"},
        {"path": "/tmp/x.png", "url": "/file=/tmp/x.png", "orig_name": "x.png"},
        {"image": {"path": "/tmp/x.png"}, "mask": None},
        {"composite": {"url": "http://x/y.png"}},
    ],
)
def test_path_like_dicts_are_refused(value):
    with pytest.raises(ICLightError, match=r"^input_fg: got a file reference .*not accepted"):
        decode_image(value, ARG)


def test_dict_without_an_image_key():
    with pytest.raises(ICLightError, match=r'^input_fg: expected .*"image" key'):
        decode_image({"foo": 1}, ARG)


def test_gradio_editor_dicts_are_unwrapped():
    img = disc_image()
    mask = Image.new("L", img.size, 255)
    assert same_pixels(decode_image({"image": img, "mask": mask}, ARG), img)
    assert same_pixels(decode_image({"image": to_base64(img), "mask": to_base64(mask)}, ARG), img)
    assert same_pixels(decode_image({"composite": img, "layers": [], "background": None}, ARG), img)


# ----------------------------------------------------------------- PIL inputs


def test_pil_rgb_passes_and_rgba_keeps_alpha():
    assert decode_image(disc_image(), ARG).mode == "RGB"
    rgba = disc_rgba()
    out = decode_image(rgba, ARG)
    assert out.mode == "RGBA" and same_pixels(out, rgba)


def test_la_becomes_rgba():
    la = Image.merge("LA", (Image.new("L", (4, 4), 200), Image.new("L", (4, 4), 50)))
    out = decode_image(to_base64(la), ARG)
    assert out.mode == "RGBA" and out.getpixel((0, 0)) == (200, 200, 200, 50)


def test_l_and_1_become_rgb():
    assert decode_image(Image.new("L", (4, 4), 77), ARG).getpixel((1, 1)) == (77, 77, 77)
    assert decode_image(Image.new("1", (4, 4), 1), ARG).getpixel((1, 1)) == (255, 255, 255)


def test_palette_without_transparency_becomes_rgb():
    p = disc_image().convert("P")
    out = decode_image(to_base64(p), ARG)
    assert out.mode == "RGB" and not has_alpha(out)


def test_palette_transparency_becomes_rgba():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0
    out = decode_image(to_base64(p), ARG)
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0)) == (200, 100, 50, 255)
    assert out.getpixel((1, 1))[3] == 0


def test_gif_transparency_becomes_rgba():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((2, 2), 1)
    out = decode_image(to_base64(p, "GIF", transparency=0), ARG)
    assert out.mode == "RGBA" and out.getpixel((0, 0))[3] == 0 and out.getpixel((2, 2)) == (255, 0, 0, 255)


def test_rgb_colour_key_transparency_becomes_rgba():
    img = Image.new("RGB", (4, 4), (1, 2, 3))
    img.putpixel((0, 0), (9, 9, 9))
    out = decode_image(to_base64(img, transparency=(1, 2, 3)), ARG)
    assert out.mode == "RGBA" and out.getpixel((1, 1))[3] == 0 and out.getpixel((0, 0))[3] == 255


def test_cmyk_becomes_rgb():
    out = decode_image(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), ARG)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_png_scales_to_eight_bit():
    # Pillow's own convert("L") clips I;16 at 255, turning 1000 (of 65535) white.
    values = np.array([[0, 257, 32896, 65535, 1000]], dtype=np.uint16)
    out = decode_image(to_base64(Image.fromarray(values)), ARG)
    assert out.mode == "RGB"
    assert [out.getpixel((x, 0))[0] for x in range(5)] == [0, 1, 128, 255, 4]


def test_mode_i_and_f_scale_correctly():
    i32 = Image.fromarray(np.array([[0, 65535, 32896]], dtype=np.int32), "I")
    assert [decode_image(i32, ARG).getpixel((x, 0))[0] for x in range(3)] == [0, 255, 128]
    f = Image.fromarray(np.array([[0.0, 1.0, 0.5, 2.0]], dtype=np.float32), "F")
    assert [decode_image(f, ARG).getpixel((x, 0))[0] for x in range(4)] == [0, 255, 128, 255]


def test_exif_orientation_is_applied():
    # Orientation 6: the camera was turned, the viewer rotates 90 degrees clockwise, so the
    # left (red) half of a 40x20 image ends up at the top of a 20x40 one.
    img = halves(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_image(to_base64(img, "JPEG", exif=exif.tobytes(), quality=95), ARG)
    assert out.size == (20, 40)
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_exif_orientation_on_pil_input_and_not_mutated():
    img = Image.open(__import__("io").BytesIO(encode(halves(40, 20), "PNG", exif=_exif(8))))
    out = decode_image(img, ARG)
    assert out.size == (20, 40)
    assert img.size == (40, 20)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# ---------------------------------------------------------------- numpy inputs


def test_numpy_hw_and_hwc_uint8():
    grey = np.full((3, 4), 90, np.uint8)
    assert decode_image(grey, ARG).getpixel((0, 0)) == (90, 90, 90)
    one = np.full((3, 4, 1), 91, np.uint8)
    assert decode_image(one, ARG).getpixel((0, 0)) == (91, 91, 91)
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 1] = 200
    out = decode_image(rgb, ARG)
    assert out.mode == "RGB" and out.size == (4, 3) and out.getpixel((0, 0)) == (0, 200, 0)
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 3] = 128
    assert decode_image(rgba, ARG).mode == "RGBA"


def test_numpy_uint16_float_bool_and_wide_ints():
    u16 = np.array([[0, 65535, 32896]], np.uint16)
    assert [decode_image(u16, ARG).getpixel((x, 0))[0] for x in range(3)] == [0, 255, 128]
    f = np.array([[0.0, 1.0, 0.5, -0.2, 1.7]], np.float64)
    assert [decode_image(f, ARG).getpixel((x, 0))[0] for x in range(5)] == [0, 255, 128, 0, 255]
    f16 = np.full((2, 2, 3), 0.25, np.float16)
    assert decode_image(f16, ARG).getpixel((0, 0)) == (64, 64, 64)
    b = np.array([[True, False]])
    assert [decode_image(b, ARG).getpixel((x, 0))[0] for x in range(2)] == [255, 0]
    ints = np.array([[0, 255, 7]], np.int64)
    assert [decode_image(ints, ARG).getpixel((x, 0))[0] for x in range(3)] == [0, 255, 7]


def test_numpy_non_contiguous_view():
    rgb = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)[::2, ::2]
    out = decode_image(rgb, ARG)
    assert np.array_equal(np.asarray(out), rgb)


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((2, 2, 2), np.uint8), "got shape (2, 2, 2)"),
        (np.zeros((2, 2, 3, 1), np.uint8), "got shape (2, 2, 3, 1)"),
        (np.zeros(5, np.uint8), "got shape (5,)"),
        (np.array([[0, 300]], np.int32), "values must be in 0..255"),
        (np.array([[-1, 3]], np.int16), "values must be in 0..255"),
        (np.array([[np.nan, 0.5]]), "NaN or infinity"),
        (np.array([["a", "b"]]), "unsupported array dtype"),
    ],
)
def test_numpy_malformed(array, fragment):
    with pytest.raises(ICLightError) as info:
        decode_image(array, ARG)
    assert str(info.value).startswith("input_fg: ") and fragment in str(info.value)


def test_numpy_round_trip_helpers():
    rgba = disc_rgba()
    arr = pil_to_numpy(rgba)
    assert arr.shape == (64, 64, 4) and arr.dtype == np.uint8
    assert same_pixels(numpy_to_pil(arr), rgba)
    assert pil_to_numpy(Image.new("L", (2, 2), 9)).shape == (2, 2, 3)


# ----------------------------------------------------------------- compositing


def test_composite_on_grey():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    out = composite_on_grey(rgba)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (GREY, GREY, GREY) == (127, 127, 127)
    assert out.getpixel((1, 0)) == (255, 0, 0)


def test_composite_half_alpha_blends_and_custom_grey():
    rgba = Image.new("RGBA", (1, 1), (255, 255, 255, 128))
    value = composite_on_grey(rgba).getpixel((0, 0))[0]
    # The reference blend truncates: 127 + 128 * 128/255 = 191.25 -> 191; and 0 at
    # alpha 128 gives 127 - 127 * 128/255 = 63.25 -> 63.
    assert value == 191
    assert composite_on_grey(Image.new("RGBA", (1, 1), (0, 0, 0, 128))).getpixel((0, 0)) == (63, 63, 63)
    assert composite_on_grey(Image.new("RGBA", (1, 1), (0, 0, 0, 0)), grey=10).getpixel((0, 0)) == (10, 10, 10)


def test_composite_is_the_reference_blend_in_float32_truncated():
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (16, 24, 4), dtype=np.uint8)
    alpha = rgba[..., 3:].astype(np.float32) / np.float32(255)
    expected = (127 + (rgba[..., :3].astype(np.float32) - 127) * alpha).clip(0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(composite_on_grey(Image.fromarray(rgba, "RGBA"))), expected)


def test_composite_through_a_given_mask_ignores_the_image_alpha():
    rgba = Image.new("RGBA", (2, 1), (200, 100, 0, 0))
    mask = Image.new("L", (2, 1), 255)
    mask.putpixel((1, 0), 0)
    out = composite_on_grey(rgba, alpha=mask)
    assert out.getpixel((0, 0)) == (200, 100, 0) and out.getpixel((1, 0)) == (127, 127, 127)
    with pytest.raises(ValueError):
        composite_on_grey(rgba, alpha=Image.new("L", (3, 1)))


def test_composite_passes_rgb_through_and_handles_other_modes():
    rgb = disc_image()
    assert composite_on_grey(rgb) is rgb
    la = Image.merge("LA", (Image.new("L", (1, 1), 255), Image.new("L", (1, 1), 0)))
    assert composite_on_grey(la).getpixel((0, 0)) == (127, 127, 127)
    assert composite_on_grey(Image.new("L", (1, 1), 5)).getpixel((0, 0)) == (5, 5, 5)


# --------------------------------------------------------------- crop-resize


def test_resize_same_size_is_a_copy():
    img = disc_image()
    out = resize_and_center_crop(img, 64, 64)
    assert out is not img and same_pixels(out, img)


def test_crop_never_stretches_wide_to_square():
    # A disc in the middle of a 2:1 frame must stay round in the square crop.
    wide = disc_image(size=128, radius=24, height=64)
    out = np.asarray(resize_and_center_crop(wide, 32, 32))[..., 0] > 120
    ys, xs = np.nonzero(out)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width - height) <= 1, (width, height)
    assert 22 <= width <= 26  # radius 24 at scale 0.5 -> diameter ~24


def test_crop_never_stretches_tall_to_wide():
    # 40x120 -> 80x40 scales by 2 and keeps the centre 40x20 band; the disc (diameter 16)
    # fits in it and must come out round at diameter ~32.
    tall = disc_image(size=40, radius=8, height=120)
    out = np.asarray(resize_and_center_crop(tall, 80, 40))[..., 0] > 120
    ys, xs = np.nonzero(out)
    assert ys.min() > 0 and ys.max() < 39
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width - height) <= 1 and 30 <= width <= 34, (width, height)


def test_crop_takes_the_centre():
    # Red | blue halves; a square crop of the centre keeps both, split in the middle.
    img = halves(200, 50)
    out = resize_and_center_crop(img, 20, 20)
    assert out.size == (20, 20)
    assert out.getpixel((2, 10))[0] > 200 and out.getpixel((17, 10))[2] > 200
    # A crop of width 200 -> 50 would stretch; the crop must keep ~1/4 of the width.
    thin = resize_and_center_crop(halves(200, 50, left=(255, 0, 0), right=(255, 0, 0)), 50, 50)
    assert thin.getpixel((25, 25)) == (255, 0, 0)


def test_crop_keeps_mode_and_upscales():
    rgba = disc_rgba(size=16, radius=5)
    out = resize_and_center_crop(rgba, 64, 32)
    assert out.mode == "RGBA" and out.size == (64, 32)
    mask = resize_and_center_crop(Image.new("L", (10, 10), 200), 30, 20)
    assert mask.mode == "L" and mask.getpixel((15, 10)) == 200


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (10.5, 10)])
def test_crop_rejects_bad_sizes(size):
    with pytest.raises(ValueError):
        resize_and_center_crop(disc_image(), *size)


# ------------------------------------------------------------------- tensors


def test_pil_to_pixels_layout_and_range():
    img = Image.new("RGB", (5, 3), (255, 0, 51))
    t = pil_to_pixels(img)
    assert t.shape == (1, 3, 3, 5) and t.dtype == torch.uint8 and t.is_contiguous()
    assert t[0, :, 1, 2].tolist() == [255, 0, 51]


def test_pil_to_pixels_flattens_alpha_on_grey():
    t = pil_to_pixels(Image.new("RGBA", (2, 2), (255, 0, 0, 0)))
    assert torch.equal(t, torch.full_like(t, 127))


def test_vae_pixels_is_the_reference_normalisation():
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    out = vae_pixels(levels)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 16, 16)
    assert torch.equal(out, levels.float() / 127.0 - 1.0)
    assert out.is_contiguous(memory_format=torch.channels_last)  # the reference's layout
    assert out.flatten()[127].item() == 0.0  # grey is exactly zero, not -0.0039
    assert out.min().item() == -1.0 and out.max().item() == pytest.approx(255 / 127 - 1, abs=1e-7)


def test_the_unit_range_form_gives_the_same_bits_after_the_webuis_2p_minus_1():
    """Forge 2, Forge Classic and reForge compute 2 * p - 1 inside VAE.encode."""
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    unit = vae_pixels(levels, webui_maps_unit_range=True)
    assert torch.equal(2.0 * unit - 1.0, vae_pixels(levels))
    # The WebUIs take BHWC and move the channels back: the layout survives the round trip.
    assert (2.0 * unit.movedim(1, -1).movedim(-1, 1) - 1.0).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(unit * 2.0 - 1.0, vae_pixels(levels))


def test_vae_pixels_refuses_anything_but_uint8_rgb_batches():
    for bad in (torch.zeros(1, 3, 4, 4), torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(1, 4, 4, 4, dtype=torch.uint8)):
        with pytest.raises(ValueError):
            vae_pixels(bad)


def test_tensor_round_trip_and_clamping():
    img = disc_image()
    t = pil_to_pixels(img).float() / 255.0
    assert same_pixels(tensor_to_pil(t), img)
    assert same_pixels(tensor_to_pil(t[0]), img)
    wild = torch.tensor([-1.0, 0.5, 2.0]).view(3, 1, 1).expand(3, 2, 2)
    assert tensor_to_pil(wild).getpixel((0, 0)) == (0, 128, 255)


def test_tensor_to_pil_rejects_bad_shapes():
    for shape in [(2, 3, 4, 4), (4, 4, 4), (3, 4)]:
        with pytest.raises(ValueError):
            tensor_to_pil(torch.zeros(shape))

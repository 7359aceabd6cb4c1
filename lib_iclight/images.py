"""Image input and conversion: decoding what API callers and the UI send, and the few
geometric and tensor conversions the rest of the extension needs.

Every image leaving :func:`decode_image` is a PIL image in mode ``"RGB"`` or ``"RGBA"``
(8 bits per channel), upright (EXIF orientation applied), with at most ``max_pixels``
pixels. Nothing here reads a local file or a URL: callers send the image itself.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import ICLightError, describe_value

logger = logging.getLogger("iclight.images")

MAX_PIXELS = 4096 * 4096
"""The largest image (width x height) accepted from a caller: 16,777,216 pixels.

IC-Light works at SD1.5 sizes (512..1024 px a side), so anything larger is downscaled
anyway; the limit keeps a single request from holding gigabytes of decoded pixels
(a 4096x4096 RGBA image is 64 MiB as uint8, 256 MiB as float32).
"""

GREY = 127
"""The neutral grey IC-Light was trained with behind subjects (127, not 128)."""

# Only the formats a browser or camera produces. Pillow can open many more, and some
# of them run external programs while decoding (EPS calls Ghostscript), which an
# image sent over an API must never trigger.
_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")

_STD_B64 = re.compile(r"[A-Za-z0-9+/]*")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*")
_BAD_CHAR = re.compile(r"[^A-Za-z0-9+/=_-]")

_EXPECTED = "a base64 image string, a PIL image or a numpy array"
_GRADIO_IMAGE_KEYS = ("image", "composite")
_PATH_KEYS = ("path", "url", "name", "orig_name", "file")


# --------------------------------------------------------------------------- decoding


def decode_image(value: Any, arg: str, max_pixels: int = MAX_PIXELS) -> Image.Image | None:
    """Turn what a caller sent for image argument ``arg`` into an upright RGB/RGBA image.

    Accepted:
      * ``None`` or an empty / blank string -> ``None`` (no image given);
      * a base64 string of a PNG/JPEG/WEBP/GIF/BMP/TIFF file, with or without a
        ``data:image/...;base64,`` prefix; whitespace, newlines and missing ``=``
        padding are tolerated, as is the URL-safe alphabet;
      * a PIL image of any mode;
      * a numpy array: HW, or HWC with 1, 3 or 4 channels; uint8 0..255, uint16
        0..65535, bool, or float 0..1 (other integer types if their values are 0..255);
      * a dict as Gradio sends it from an image editor: ``{"image": ..., "mask": ...}``
        (Gradio 3) or ``{"composite": ...}`` (Gradio 4); the image part is decoded.

    A dict that names a file (``path``, ``url``) is refused: the extension never reads
    local paths or fetches URLs on a caller's behalf.

    Returns ``"RGBA"`` when the input carries alpha (an alpha channel or palette /
    colour-key transparency), else ``"RGB"``. 16-bit and float inputs are scaled to
    8 bits (65535 -> 255, 1.0 -> 255).

    Raises ICLightError (message starting with ``arg``) for anything else, for data
    that is not an image, and for images over ``max_pixels`` pixels.
    """
    if isinstance(value, dict):
        value = _unwrap_gradio_dict(value, arg)
    if value is None:
        return None
    if isinstance(value, str):
        data = _decode_base64(value, arg)
        if data is None:
            return None
        return _open_image_bytes(data, arg, max_pixels)
    if isinstance(value, Image.Image):
        return _from_pil(value, arg, max_pixels)
    if isinstance(value, np.ndarray):
        return numpy_to_pil(value, arg, max_pixels)
    raise ICLightError.expected(arg, _EXPECTED, value)


def _unwrap_gradio_dict(value: dict, arg: str) -> Any:
    """The image inside a Gradio editor dict; refuses file references."""
    path_keys = [k for k in _PATH_KEYS if k in value]
    if path_keys:
        raise ICLightError(
            arg,
            f"got a file reference ({', '.join(path_keys)}); file paths and URLs are not "
            "accepted, send the image itself as base64",
        )
    for key in _GRADIO_IMAGE_KEYS:
        if key in value:
            inner = value[key]
            # One level only: a nested dict is either a file reference or garbage.
            if isinstance(inner, dict):
                _unwrap_gradio_dict(inner, arg)
                raise ICLightError.expected(arg, _EXPECTED, inner)
            return inner
    raise ICLightError.expected(arg, _EXPECTED + ' (or a dict with an "image" key)', value)


def _decode_base64(text: str, arg: str) -> bytes | None:
    """The bytes of a base64 string, ``None`` for a blank one."""
    text = text.strip()
    if not text:
        return None
    lowered = text[:16].lower()
    if lowered.startswith(("http://", "https://", "file:", "ftp://")):
        raise ICLightError(
            arg,
            f"got a URL {describe_value(text)}; URLs are not fetched, send the image itself as base64",
        )
    if lowered.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma:
            raise ICLightError(arg, f"not valid base64: a data URL with no comma {describe_value(header)}")
        if ";base64" not in header.lower():
            raise ICLightError(arg, f"not valid base64: the data URL {describe_value(header)} is not base64-encoded")

    body = "".join(text.split()).rstrip("=")
    if not body:
        return None
    if _STD_B64.fullmatch(body):
        altchars = None
    elif _URLSAFE_B64.fullmatch(body):
        altchars = b"-_"
    else:
        bad = _BAD_CHAR.search(body)
        where = f"unexpected character {bad.group()!r} at position {bad.start()}" if bad else "mixed alphabets"
        hint = ""
        if re.search(r"[.\\:]", body):
            hint = "; file paths and URLs are not accepted, send the image itself base64-encoded"
        raise ICLightError(arg, f"not valid base64 ({where}){hint}")
    if len(body) % 4 == 1:
        # No amount of padding makes 4n+1 characters decodable.
        raise ICLightError(arg, f"not valid base64 (truncated: {len(body)} characters)")
    body += "=" * (-len(body) % 4)
    try:
        return base64.b64decode(body, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ICLightError(arg, f"not valid base64 ({exc})") from None


def _open_image_bytes(data: bytes, arg: str, max_pixels: int) -> Image.Image:
    """Decode an image file's bytes, checking the pixel count from the header first."""
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its own limit; treat that as refusal too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ICLightError(arg, f"image too large to decode safely: {exc} (the limit here is {max_pixels:,} pixels)") from None
        except Image.UnidentifiedImageError:
            raise ICLightError(
                arg,
                f"the base64 decodes to {len(data):,} bytes that are not an image "
                f"(supported formats: {', '.join(_FORMATS)})",
            ) from None
        except Exception as exc:  # noqa: BLE001 - any parser failure is the caller's data
            raise ICLightError(arg, f"the base64 decodes to data that is not a readable image ({exc})") from None

        _check_pixels(img.size, arg, max_pixels)
        try:
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ICLightError(arg, f"image too large to decode safely: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
            raise ICLightError(arg, f"the {img.format} image is damaged or incomplete ({exc})") from None
    logger.debug("%s: decoded %s %s %s", arg, img.format, img.mode, img.size)
    return normalise_mode(ImageOps.exif_transpose(img))


def _from_pil(img: Image.Image, arg: str, max_pixels: int) -> Image.Image:
    _check_pixels(img.size, arg, max_pixels)
    try:
        img.load()
    except Exception as exc:  # noqa: BLE001 - a lazily opened image may fail here
        raise ICLightError(arg, f"the image could not be read ({exc})") from None
    return normalise_mode(ImageOps.exif_transpose(img))


def _check_pixels(size: tuple[int, int], arg: str, max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ICLightError(arg, f"the image is empty ({width}x{height})")
    if width * height > max_pixels:
        raise ICLightError(
            arg,
            f"the image is {width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {max_pixels:,} pixels; downscale it before sending",
        )


# ------------------------------------------------------------------- mode handling

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def has_alpha(img: Image.Image) -> bool:
    """Whether ``img`` carries transparency: an alpha band, or palette / colour-key transparency."""
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def normalise_mode(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> ``"RGB"``, or ``"RGBA"`` when it carries transparency."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode == "RGBA":
        return img
    if mode in _SIXTEEN_BIT or mode == "F":
        return _high_depth_to_rgb(img)
    if has_alpha(img):
        # P, L, 1 and RGB with a tRNS entry, LA, PA: Pillow maps transparency to alpha.
        return img.convert("RGBA")
    # L, 1, P without transparency, CMYK, YCbCr, LAB, HSV.
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit (I;16*, and I as PNG/TIFF load 16-bit files) and float (F, 0..1) greyscale.

    Pillow's own convert("L") clips these at 255 instead of scaling, which turns any
    real 16-bit photo white.
    """
    arr = np.asarray(img)
    alpha = None
    trns = img.info.get("transparency")
    if isinstance(trns, int) and img.mode != "F":
        alpha = np.where(arr == trns, 0, 255).astype(np.uint8)
    grey = _float01_to_uint8(arr.astype(np.float64)) if img.mode == "F" else _uint16_to_uint8(arr)
    rgb = Image.fromarray(grey, "L").convert("RGB")
    if alpha is not None:
        rgb.putalpha(Image.fromarray(alpha, "L"))
    return rgb


def _uint16_to_uint8(arr: np.ndarray) -> np.ndarray:
    # 65535 / 257 == 255 exactly, so the full range maps onto the full range.
    return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _float01_to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------- numpy


def numpy_to_pil(array: np.ndarray, arg: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A numpy image -> PIL ``"RGB"`` (or ``"RGBA"`` for 4 channels).

    ``array`` is HW or HWC with C in 1, 3, 4. uint8 is taken as 0..255, uint16 as
    0..65535, bool as 0/255, float as 0..1 (clipped; NaN or inf is refused); other
    integer types must hold values in 0..255.
    """
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ICLightError(
            arg, f"expected an HxW or HxWxC array with C in 1, 3, 4, got shape {tuple(array.shape)}"
        )
    height, width = array.shape[:2]
    _check_pixels((width, height), arg, max_pixels)

    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.uint16:
        pixels = _uint16_to_uint8(array)
    elif array.dtype == np.bool_:
        pixels = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ICLightError(arg, "the float array contains NaN or infinity")
        pixels = _float01_to_uint8(array)
    elif np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ICLightError(
                arg, f"{array.dtype} values must be in 0..255 (use uint16 for 16-bit), got {low}..{high}"
            )
        pixels = array.astype(np.uint8)
    else:
        raise ICLightError(arg, f"unsupported array dtype {array.dtype}")

    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim == 2:
        return Image.fromarray(pixels, "L").convert("RGB")
    return Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")


def to_png_data_url(img: Image.Image) -> str:
    """``img`` as a ``data:image/png;base64,...`` string: lossless, and what
    :func:`decode_image` reads back to the same pixels and mode."""
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pil_to_numpy(img: Image.Image) -> np.ndarray:
    """A PIL image -> HWC uint8 0..255 (3 channels for RGB, 4 for RGBA; other modes become RGB)."""
    if img.mode not in ("RGB", "RGBA"):
        img = normalise_mode(img)
    return np.array(img, dtype=np.uint8)


# ---------------------------------------------------------------- compositing


def composite_on_grey(img: Image.Image, grey: int = GREY, alpha: Image.Image | None = None,
                      lift: int = 0) -> Image.Image:
    """Flatten ``img`` onto a uniform ``(grey, grey, grey)`` background -> ``"RGB"``.

    ``alpha`` (``"L"``, same size) overrides the image's own transparency; without either,
    the image is only converted to RGB (an RGB image passes through unchanged).

    The blend is the reference's (lllyasviel/IC-Light ``run_rmbg``, whose ``sigma`` is
    ``lift``): ``grey + (pixel - grey + lift) * a`` in float32 with ``a = alpha / 255``,
    clipped to 0..255 and truncated (not rounded) to uint8. Pillow's ``alpha_composite``
    rounds instead, and differs from it by one level on about half of the partly
    transparent pixels. The reference lifts the subject by 16 for its normal map only.
    """
    if alpha is None:
        if lift:
            raise ValueError("composite_on_grey: a lift needs an alpha")
        if img.mode == "RGB" and "transparency" not in img.info:
            return img
        img = normalise_mode(img)
        if img.mode == "RGB":
            return img
        alpha = img.getchannel("A")
    if alpha.size != img.size:
        raise ValueError(f"composite_on_grey: alpha is {alpha.size}, the image {img.size}")
    rgb = np.asarray(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)
    weight = np.asarray(alpha.convert("L"), dtype=np.float32)[..., None] / np.float32(255.0)
    blended = np.float32(grey) + (rgb.astype(np.float32) - np.float32(grey) + np.float32(lift)) * weight
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8), "RGB")


def resize_and_center_crop(img: Image.Image, width: int, height: int) -> Image.Image:
    """Scale ``img`` (any mode, kept) to cover ``width`` x ``height``, then crop the centre.

    The reference's steps (lllyasviel/IC-Light ``resize_and_center_crop``), so that the
    conditioning pixels are the ones the models were published with: one LANCZOS resize
    to ``round(w * s)`` x ``round(h * s)`` with ``s`` the covering scale, then a crop at the
    centred box, whose half-pixel edges Pillow rounds. The aspect ratio is kept (up to
    that rounding). Pillow premultiplies alpha for RGBA/LA, so transparent pixels do not
    bleed colour into the edges.
    """
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        raise ValueError(f"resize_and_center_crop: width and height must be positive ints, got {width}x{height}")
    src_w, src_h = img.size
    if (src_w, src_h) == (width, height):
        return img.copy()
    scale = max(width / src_w, height / src_h)
    resized_w, resized_h = int(round(src_w * scale)), int(round(src_h * scale))
    resized = img.resize((resized_w, resized_h), Image.Resampling.LANCZOS)
    box = ((resized_w - width) / 2, (resized_h - height) / 2, (resized_w + width) / 2, (resized_h + height) / 2)
    return resized.crop(box)


# ---------------------------------------------------------------------- tensors


VAE_GREY_SCALE = 127.0
"""The reference's pixel scale: ``x / 127 - 1`` maps grey 127 to exactly 0.0 (and 255 to 1.0079)."""


def pil_to_pixels(img: Image.Image) -> torch.Tensor:
    """A PIL image -> ``[1, 3, H, W]`` uint8 0..255 on the CPU (what :func:`vae_pixels` takes).

    Non-RGB images are converted first; transparency is flattened onto grey 127,
    the background IC-Light expects behind a subject.
    """
    rgb = np.asarray(composite_on_grey(img), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def vae_pixels(pixels: torch.Tensor, *, webui_maps_unit_range: bool = False) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` 0..255 -> float32 ``[B, 3, H, W]`` for a VAE encoder, on the CPU.

    The one place the conditioning pixels are normalised, as the reference does it
    (lllyasviel/IC-Light ``numpy2pytorch``): ``x / 127 - 1``, so grey 127 is exactly 0.0
    and the range is -1..1.0079. Computed in float32 on the CPU, where the reference
    computes it, before any move to the VAE's device and dtype.

    The result is laid out channels-last in memory, as the reference's tensor is (it
    stacks HWC arrays and moves the channel axis): CPU convolutions pick other kernels
    for the other layout, and that alone moved a test VAE's latents by 4e-5 of their
    range, more than the parity test allows.

    ``webui_maps_unit_range``: for a WebUI VAE whose ``encode`` takes 0..1 and applies
    ``2 * p - 1`` itself (Forge 2, Forge Classic, reForge). Returns ``x / 254`` instead
    (0..1.0039, no clamping happens there): halving is exact in binary floating point, so
    the WebUI's ``2 * (x / 254) - 1`` is bit for bit ``x / 127 - 1``.
    """
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"vae_pixels: expected uint8 [B, 3, H, W], got {pixels.dtype} {tuple(pixels.shape)}")
    values = pixels.to(device="cpu", dtype=torch.float32).contiguous(memory_format=torch.channels_last)
    if webui_maps_unit_range:
        return values / (2.0 * VAE_GREY_SCALE)
    return values / VAE_GREY_SCALE - 1.0


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` or ``[1, 3, H, W]`` float 0..1 (any device, clamped) -> PIL ``"RGB"``."""
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"tensor_to_pil: expected a batch of 1, got shape {tuple(tensor.shape)}")
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"tensor_to_pil: expected [3, H, W] or [1, 3, H, W], got shape {tuple(tensor.shape)}")
    pixels = tensor.detach().to("cpu", torch.float32).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy(), "RGB")

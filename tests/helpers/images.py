"""Tiny synthetic images for the tests: made in memory, a few kB at most."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image

DISC_COLOUR = (230, 200, 180)
DARK = (20, 25, 30)


def disc_coverage(size: int = 64, radius: float = 20.0, height: int | None = None) -> np.ndarray:
    """HW float 0..1: an anti-aliased disc centred in a ``size`` x ``height`` frame.

    The edge is one pixel wide (coverage ramps over the pixel the circle crosses), so a
    model mask or a matting solver sees real intermediate values there.
    """
    height = size if height is None else height
    ys, xs = np.mgrid[0:height, 0:size].astype(np.float64)
    dist = np.hypot(xs - (size - 1) / 2.0, ys - (height - 1) / 2.0)
    return np.clip(radius + 0.5 - dist, 0.0, 1.0)


def disc_image(
    size: int = 64,
    radius: float = 20.0,
    fg: tuple[int, int, int] = DISC_COLOUR,
    bg: tuple[int, int, int] = DARK,
    height: int | None = None,
) -> Image.Image:
    """RGB: a bright disc on a dark background."""
    cover = disc_coverage(size, radius, height)[..., None]
    pixels = cover * np.array(fg, np.float64) + (1.0 - cover) * np.array(bg, np.float64)
    return Image.fromarray(np.rint(pixels).astype(np.uint8), "RGB")


def disc_rgba(size: int = 64, radius: float = 20.0, fg: tuple[int, int, int] = DISC_COLOUR) -> Image.Image:
    """RGBA: an opaque disc, fully transparent (black) outside, soft one-pixel edge."""
    alpha = np.rint(disc_coverage(size, radius) * 255).astype(np.uint8)
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[alpha > 0] = fg
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def halves(width: int = 40, height: int = 20, left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    """RGB: left half one colour, right half another (to see rotations and crops)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = left
    pixels[:, width // 2 :] = right
    return Image.fromarray(pixels, "RGB")


def checker(width: int = 64, height: int = 64, cell: int = 2, low: int = 100, high: int = 156) -> Image.Image:
    """RGB: a fine checkerboard, nearly all high-frequency energy."""
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.where(((xs // cell) + (ys // cell)) % 2 == 0, low, high).astype(np.uint8)
    return Image.fromarray(np.repeat(pixels[..., None], 3, axis=2), "RGB")


def encode(img: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    """The bytes of ``img`` saved as ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **save_args)
    return buf.getvalue()


def to_base64(img: Image.Image, fmt: str = "PNG", data_url: bool = False, **save_args) -> str:
    """``img`` as a base64 string, optionally as a ``data:image/...;base64,`` URL."""
    text = base64.b64encode(encode(img, fmt, **save_args)).decode("ascii")
    return f"data:image/{fmt.lower()};base64,{text}" if data_url else text


def png_header_only(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but holds no pixel data.

    Pillow reads the size from the header alone, so this stands in for a
    decompression bomb without allocating anything. CRCs are correct, so it passes
    Pillow's chunk checks until the pixels are decoded.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def high_frequency_energy(img: Image.Image, radius: int = 2) -> float:
    """Mean absolute difference between ``img`` and its Gaussian blur (0..255 scale)."""
    import cv2

    pixels = np.asarray(img.convert("RGB"), np.float32)
    k = 2 * radius + 1
    return float(np.abs(pixels - cv2.GaussianBlur(pixels, (k, k), 0)).mean())

"""Which crop-resize lands closer to the source: one LANCZOS resize from the exact centred
box, or the reference's (lllyasviel/IC-Light ``resize_and_center_crop``: LANCZOS to
``round(w * s)`` x ``round(h * s)``, then a crop at the rounded centred box)?

The source is a smooth analytic picture (a sum of sinusoids well below every target's
Nyquist frequency) sampled at pixel centres, so the ideal target is known exactly: the
same function sampled at the target's pixel centres mapped into the exact centred box.
Prints, per source -> target size, each method's mean and max absolute error against the
ideal (0..255 levels), and how far the two methods are apart.

Run: python bench/bench_resize_reference.py
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

WAVES = [  # (cycles across the width, cycles across the height, phase, amplitude)
    (1.3, 0.7, 0.2, 40.0), (2.1, -1.7, 1.1, 30.0), (-0.9, 2.6, 2.3, 25.0), (3.2, 1.9, 0.7, 15.0),
]


def field(u: np.ndarray, v: np.ndarray, width: float, height: float, channel: int) -> np.ndarray:
    """The picture at source coordinates (u, v) in pixels, values about 127 +- 110."""
    out = np.full(np.broadcast(u, v).shape, 127.0)
    for k, (fx, fy, phase, amp) in enumerate(WAVES):
        out += amp * np.sin(2 * math.pi * (fx * u / width + fy * v / height) + phase + channel + k)
    return out


def render(width: int, height: int) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    return np.stack([field(u, v, width, height, c) for c in range(3)], axis=-1)


def ideal(src_w: int, src_h: int, width: int, height: int) -> np.ndarray:
    scale = min(src_w / width, src_h / height)
    box_w, box_h = width * scale, height * scale
    left, top = (src_w - box_w) / 2, (src_h - box_h) / 2
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    su, sv = left + u * box_w / width, top + v * box_h / height
    return np.stack([field(su, sv, src_w, src_h, c) for c in range(3)], axis=-1)


def box_resize(img: Image.Image, width: int, height: int) -> np.ndarray:
    src_w, src_h = img.size
    scale = min(src_w / width, src_h / height)
    box_w, box_h = width * scale, height * scale
    left, top = (src_w - box_w) / 2.0, (src_h - box_h) / 2.0
    return np.asarray(img.resize((width, height), Image.LANCZOS, box=(left, top, left + box_w, top + box_h)))


def reference_resize(img: Image.Image, width: int, height: int) -> np.ndarray:
    src_w, src_h = img.size
    scale = max(width / src_w, height / src_h)
    rw, rh = int(round(src_w * scale)), int(round(src_h * scale))
    resized = img.resize((rw, rh), Image.LANCZOS)
    box = ((rw - width) / 2, (rh - height) / 2, (rw + width) / 2, (rh + height) / 2)
    return np.asarray(resized.crop(box))


CASES = [
    ((1000, 700), (512, 512)), ((1000, 700), (512, 384)), ((1000, 700), (640, 448)),
    ((333, 517), (512, 768)), ((300, 200), (512, 384)), ((777, 555), (512, 512)),
    ((1920, 1080), (768, 512)), ((513, 511), (512, 512)), ((640, 481), (448, 320)),
]


def main() -> None:
    print(f"{'source':>10} -> {'target':>8}  {'box mean/max':>14}  {'ref mean/max':>14}  {'apart mean/max':>15}")
    for (sw, sh), (tw, th) in CASES:
        src = Image.fromarray(np.clip(np.rint(render(sw, sh)), 0, 255).astype(np.uint8))
        truth = ideal(sw, sh, tw, th)
        ours = box_resize(src, tw, th).astype(np.float64)
        theirs = reference_resize(src, tw, th).astype(np.float64)
        eo, et, apart = np.abs(ours - truth), np.abs(theirs - truth), np.abs(ours - theirs)
        print(f"{sw}x{sh:<5} -> {tw}x{th:<4}  {eo.mean():6.3f}/{eo.max():6.2f}  {et.mean():6.3f}/{et.max():6.2f}"
              f"  {apart.mean():7.3f}/{apart.max():6.1f}")


if __name__ == "__main__":
    main()

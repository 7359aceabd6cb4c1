"""Detail transfer: put the input's fine detail back into the relit result.

IC-Light regenerates the whole subject through the VAE and the UNet, which softens
text, fabric and skin texture. Lighting lives in the low frequencies and texture in
the high ones, so a Difference of Gaussians splits the two cleanly:

    out = blur(generated) + (original - blur(original))

keeps the generated image's light and colour and the original's texture.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from PIL import Image

from .errors import non_negative_int
from .images import composite_on_grey, resize_and_center_crop

logger = logging.getLogger("iclight.detail")


def detail_transfer(generated: Image.Image, original: Image.Image, blur_radius: int) -> Image.Image:
    """Low frequencies of ``generated`` plus high frequencies of ``original`` -> ``"RGB"``.

    ``generated`` and ``original`` are PIL images of any mode (alpha is flattened onto
    grey 127). ``original`` is scaled and centre-cropped to ``generated``'s size (never
    stretched). ``blur_radius`` >= 0 sets the Gaussian kernel to ``2 * blur_radius + 1``
    pixels; 0 returns ``generated`` unchanged. The sum is computed in float32 on 0..255
    and clipped back to uint8, so bright detail on a bright area saturates rather than wraps.
    """
    radius = non_negative_int("detail_transfer_blur_radius", blur_radius)

    generated = composite_on_grey(generated)
    original = resize_and_center_crop(composite_on_grey(original), *generated.size)
    if radius == 0:
        return generated.copy()

    kernel = (2 * radius + 1, 2 * radius + 1)
    gen = np.asarray(generated, dtype=np.float32)
    orig = np.asarray(original, dtype=np.float32)
    # sigma 0: OpenCV derives it from the kernel size, so the radius alone sets the cut-off.
    low = cv2.GaussianBlur(gen, kernel, 0)
    high = orig - cv2.GaussianBlur(orig, kernel, 0)
    out = np.clip(np.rint(low + high), 0, 255).astype(np.uint8)
    logger.debug("detail transfer at %dx%d, radius %d", generated.width, generated.height, radius)
    return Image.fromarray(out, "RGB")

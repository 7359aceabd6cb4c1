"""Stand-in for Forge 2 ``backend/diffusion_engine/base.py``.

``ForgeObjects`` (unet, clip, vae, clipvision; ``shallow_copy`` keeps the same objects) and
the model flags ``ForgeDiffusionEngine`` sets: ``is_sd1 / is_sd2 / is_sdxl / is_sd3`` all
False by default (``fix_for_webui_backward_compatibility``; the SD1.5 engine sets
``is_sd1``), ``is_inpaint`` from the estimated config, and the three ``forge_objects*``
slots that ``modules/processing.py`` resets from.
"""

from __future__ import annotations

from typing import Any


class ForgeObjects:
    def __init__(self, unet: Any, clip: Any, vae: Any, clipvision: Any) -> None:
        self.unet = unet
        self.clip = clip
        self.vae = vae
        self.clipvision = clipvision

    def shallow_copy(self) -> "ForgeObjects":
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


class ForgeDiffusionEngine:
    def __init__(self, forge_objects: ForgeObjects, is_inpaint: bool = False) -> None:
        self.is_inpaint = is_inpaint
        self.is_sd1 = False
        self.is_sd2 = False
        self.is_sdxl = False
        self.is_sd3 = False
        self.forge_objects = forge_objects
        self.forge_objects_original = forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = forge_objects.shallow_copy()

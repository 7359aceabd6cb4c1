"""Stand-in for Forge 2 ``backend/patcher/unet.py``: ``UnetPatcher``.

Mirrors ``clone`` (a ``UnetPatcher`` that also carries ``controlnet_linked_list``,
``extra_concat_condition`` and the extra patchers) on top of :class:`ModelPatcher`.
"""

from __future__ import annotations

import copy
from typing import Any

from backend.patcher.base import ModelPatcher


class UnetPatcher(ModelPatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.controlnet_linked_list = None
        self.extra_preserved_memory_during_sampling = 0
        self.extra_model_patchers_during_sampling: list = []
        self.extra_concat_condition = None

    def clone(self) -> "UnetPatcher":
        n = UnetPatcher(self.model, self.load_device, self.offload_device, self.size, self.current_device)
        n.lora_patches = self.lora_patches.copy()
        n.object_patches = self.object_patches.copy()
        n.model_options = copy.deepcopy(self.model_options)
        n.controlnet_linked_list = self.controlnet_linked_list
        n.extra_preserved_memory_during_sampling = self.extra_preserved_memory_during_sampling
        n.extra_model_patchers_during_sampling = self.extra_model_patchers_during_sampling.copy()
        n.extra_concat_condition = self.extra_concat_condition
        return n

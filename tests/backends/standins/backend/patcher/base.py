"""Stand-in for Forge 2 ``backend/patcher/base.py``: ``ModelPatcher``.

Mirrors the interface and semantics IC-Light relies on:

* ``__init__`` attaches one ``LoraLoader`` per *model* (``model.lora_loader``), shared by
  every clone;
* ``clone`` copies ``lora_patches`` (shallow) and deep-copies ``model_options``;
* ``add_patches(*, filename, patches, strength_patch, strength_model, online_mode)`` is
  keyword-only; it keeps the keys present in ``model.named_parameters()`` and stores them
  under the identifier ``(filename, strength_patch, strength_model, online_mode)``,
  replacing an earlier entry with the same identifier; returns the set of keys taken;
* ``refresh_loras`` hands ``lora_patches`` to the loader;
* ``set_model_unet_function_wrapper`` / ``set_model_vae_regulation`` store into
  ``model_options``; ``forge_patch_model`` / ``forge_unpatch_model`` only move the model
  (there are no object patches here).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from backend import memory_management
from backend.patcher.lora import LoraLoader


class ModelPatcher:
    def __init__(self, model: torch.nn.Module, load_device: torch.device, offload_device: torch.device,
                 size: int = 0, current_device: torch.device | None = None, **kwargs: Any) -> None:
        self.size = size
        self.model = model
        self.lora_patches: dict[tuple, dict[str, list]] = {}
        self.object_patches: dict[str, Any] = {}
        self.model_options: dict[str, Any] = {"transformer_options": {}}
        self.load_device = load_device
        self.offload_device = offload_device
        self.current_device = offload_device if current_device is None else current_device
        if self.size <= 0:
            self.size = memory_management.module_size(model)
        if not hasattr(model, "lora_loader"):
            model.lora_loader = LoraLoader(model)
        self.lora_loader: LoraLoader = model.lora_loader

    def clone(self) -> "ModelPatcher":
        n = ModelPatcher(self.model, self.load_device, self.offload_device, self.size, self.current_device)
        n.lora_patches = self.lora_patches.copy()
        n.object_patches = self.object_patches.copy()
        n.model_options = copy.deepcopy(self.model_options)
        return n

    def is_clone(self, other: Any) -> bool:
        return hasattr(other, "model") and self.model is other.model

    def add_patches(self, *, filename: str, patches: dict, strength_patch: float = 1.0,
                    strength_model: float = 1.0, online_mode: bool = False) -> set:
        lora_identifier = (filename, strength_patch, strength_model, online_mode)
        this_patches: dict[str, list] = {}
        taken = set()
        model_keys = {k for k, _ in self.model.named_parameters()}
        for k in patches:
            offset = function = None
            if isinstance(k, str):
                key = k
            else:
                key, offset = k[0], k[1]
                if len(k) > 2:
                    function = k[2]
            if key in model_keys:
                taken.add(k)
                this_patches.setdefault(key, []).append([strength_patch, patches[k], strength_model, offset, function])
        self.lora_patches[lora_identifier] = this_patches
        return taken

    def refresh_loras(self) -> None:
        self.lora_loader.refresh(lora_patches=self.lora_patches, offload_device=self.offload_device)

    def set_model_unet_function_wrapper(self, unet_wrapper_function: Callable) -> None:
        self.model_options["model_function_wrapper"] = unet_wrapper_function

    def set_model_vae_regulation(self, vae_regulation: Callable) -> None:
        self.model_options["model_vae_regulation"] = vae_regulation

    def forge_patch_model(self, target_device: torch.device | None = None) -> torch.nn.Module:
        if target_device is not None:
            self.model.to(target_device)
            self.current_device = target_device
        return self.model

    def forge_unpatch_model(self, target_device: torch.device | None = None) -> None:
        if target_device is not None:
            self.model.to(target_device)
            self.current_device = target_device

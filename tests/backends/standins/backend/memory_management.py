"""Stand-in for Forge 2 ``backend/memory_management.py``: loading patchers for sampling.

Mirrors the parts that decide when weights are (re)merged:

* ``LoadedModel.__eq__`` compares the *patcher* objects (``self.model is other.model``);
* ``load_models_gpu`` returns at once when every patcher asked for is already loaded;
  otherwise ``unload_model_clones`` drops loaded patchers of the same model
  (``model_unload(avoid_model_moving=True)`` -> ``forge_unpatch_model``) and
  ``LoadedModel.model_load`` ends with ``self.model.refresh_loras()``, where the merge
  (or the restore) happens.

Everything stays on the CPU; there is no memory estimation or partial loading.
"""

from __future__ import annotations

from typing import Any

import torch

current_loaded_models: list["LoadedModel"] = []


def module_size(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


class LoadedModel:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = model.load_device

    def model_load(self) -> Any:
        self.model.forge_patch_model(self.device)
        self.model.refresh_loras()
        return self.model.model

    def model_unload(self, avoid_model_moving: bool = False) -> None:
        if avoid_model_moving:
            self.model.forge_unpatch_model()
        else:
            self.model.forge_unpatch_model(self.model.offload_device)

    def __eq__(self, other: object) -> bool:
        return self.model is getattr(other, "model", None)


def unload_model_clones(model: Any) -> None:
    for i in reversed(range(len(current_loaded_models))):
        if model.is_clone(current_loaded_models[i].model):
            current_loaded_models.pop(i).model_unload(avoid_model_moving=True)


def load_models_gpu(models: list[Any], memory_required: int = 0, hard_memory_preservation: int = 0) -> None:
    to_load = []
    for model in models:
        loaded = LoadedModel(model)
        if loaded in current_loaded_models:
            index = current_loaded_models.index(loaded)
            current_loaded_models.insert(0, current_loaded_models.pop(index))
        else:
            to_load.append(loaded)
    for loaded in to_load:
        unload_model_clones(loaded.model)
    for loaded in to_load:
        loaded.model_load()
        current_loaded_models.insert(0, loaded)


def load_model_gpu(model: Any) -> None:
    load_models_gpu([model])


def unload_all_models() -> None:
    while current_loaded_models:
        current_loaded_models.pop().model_unload()

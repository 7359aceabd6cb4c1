"""Stand-in for Forge 2 ``backend/patcher/lora.py``: merging queued patches into weights.

``merge_lora_to_weight`` mirrors the real function for the ``diff`` patch type only
(a one-element value): the weight is taken in float32; a diff of another shape with 4
dimensions on both sides zero-pads the weight to the element-wise larger shape and adds
the diff into it ("Merged with ... channel changed to ..."); any other mismatch prints
"WARNING SHAPE MISMATCH ... WEIGHT NOT MERGED". Entries are
``[strength_patch, value, strength_model, offset, function]``.

``LoraLoader.refresh`` mirrors the real method without online LoRAs, quantized weights or
out-of-memory retries: nothing happens while ``str(list(lora_patches.keys()))`` equals the
hash merged last; otherwise every backed-up weight is put back (the backup is
``weight.to(offload_device)``, the very Parameter object when it already lives there),
then each patched key is backed up, merged, and set as a new Parameter.
"""

from __future__ import annotations


import torch

from backend import utils


@torch.inference_mode()
def merge_lora_to_weight(patches: list, weight: torch.Tensor, key: str = "online_lora",
                         computation_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    weight_dtype_backup = None
    if computation_dtype == weight.dtype:
        weight = weight.clone()
    else:
        weight_dtype_backup = weight.dtype
        weight = weight.to(dtype=computation_dtype)

    for p in patches:
        strength, v, strength_model = p[0], p[1], p[2]
        if strength_model != 1.0:
            weight *= strength_model
        if len(v) != 1:
            print(f"patch type not recognized {v[0]} {key}")
            continue
        w1 = v[0]
        if strength == 0.0:
            continue
        if w1.shape != weight.shape:
            if w1.ndim == weight.ndim == 4:
                new_shape = [max(n, m) for n, m in zip(weight.shape, w1.shape)]
                print(f"Merged with {key} channel changed to {new_shape}")
                new_diff = strength * w1.to(weight.device, weight.dtype)
                new_weight = torch.zeros(size=new_shape).to(weight)
                new_weight[: weight.shape[0], : weight.shape[1], : weight.shape[2], : weight.shape[3]] = weight
                new_weight[: new_diff.shape[0], : new_diff.shape[1], : new_diff.shape[2], : new_diff.shape[3]] += new_diff
                weight = new_weight.contiguous().clone()
            else:
                print(f"WARNING SHAPE MISMATCH {key} WEIGHT NOT MERGED {w1.shape} != {weight.shape}")
        else:
            weight += strength * w1.to(weight.device, weight.dtype)

    if weight_dtype_backup is not None:
        weight = weight.to(dtype=weight_dtype_backup)
    return weight


class LoraLoader:
    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.backup: dict[str, torch.Tensor] = {}
        self.loaded_hash = str([])

    @torch.inference_mode()
    def refresh(self, lora_patches: dict, offload_device: torch.device = torch.device("cpu"),
                force_refresh: bool = False) -> None:
        hashes = str(list(lora_patches.keys()))
        if hashes == self.loaded_hash and not force_refresh:
            return

        all_patches: dict[str, list] = {}
        for (_, _, _, online_mode), patches in lora_patches.items():
            for key, current_patches in patches.items():
                all_patches[key] = all_patches.get(key, []) + current_patches

        for k, w in self.backup.items():
            if not isinstance(w, torch.nn.Parameter):
                w = torch.nn.Parameter(w, requires_grad=False)
            utils.set_attr_raw(self.model, k, w)
        self.backup = {}

        for key, current_patches in all_patches.items():
            parent, child, weight = utils.get_attr_with_parent(self.model, key)
            assert isinstance(weight, torch.nn.Parameter)
            if key not in self.backup:
                self.backup[key] = weight.to(device=offload_device)
            weight = merge_lora_to_weight(current_patches, weight, key, computation_dtype=torch.float32)
            utils.set_attr_raw(self.model, key, torch.nn.Parameter(weight, requires_grad=False))

        self.loaded_hash = hashes

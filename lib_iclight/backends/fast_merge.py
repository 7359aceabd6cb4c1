"""A cheaper merge of IC-Light's own offsets, done inside the WebUI's merge function.

The Forge family merges a plain diff patch as ``weight += strength * cast(diff)`` on a copy
of the weight: a copy of the weight, a cast copy of the diff, a scaled copy of that, then
the add. For IC-Light's offsets (fp16 files, 860 M parameters against an fp32 UNet on CPU)
that is four passes over 3.4 GB where one add does the same sum. With strength 1 and no
other patch on the key, ``weight + diff`` with fp16/bf16 promoted to fp32 inside the add is
bit for bit what the WebUI computes (the cast is exact and ``1.0 * x == x``), so a wrapper
around the WebUI's function takes that path for IC-Light's own tensors and hands every
other call, a LoRA on the same key included, to the WebUI's code unchanged.

Only tensors registered here (the offsets of an installed IC-Light model, by identity) are
ever merged this way. No WebUI module is imported: the adapters install the wrappers.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Iterable

import torch

_registered: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()
_lock = threading.Lock()

_EXACT_INTO_FP32 = (torch.float16, torch.bfloat16)
"""Diff dtypes that an fp32 add promotes exactly, so no cast copy is needed."""


def register(tensors: Iterable[torch.Tensor]) -> None:
    """Mark IC-Light offset tensors as ours; held weakly, by identity."""
    with _lock:
        for tensor in tensors:
            _registered[id(tensor)] = tensor


def is_registered(tensor: Any) -> bool:
    return isinstance(tensor, torch.Tensor) and _registered.get(id(tensor)) is tensor


def _is_one(value: Any) -> bool:
    return type(value) in (int, float) and value == 1.0


def own_plain_diff(patches: Any, weight: torch.Tensor) -> torch.Tensor | None:
    """IC-Light's offset if ``patches`` is exactly one of ours, as a plain diff of the
    weight's own shape at strength 1, else None (the WebUI's merge then runs as it is).

    ``patches`` is the WebUI's list of entries ``(strength, value, strength_model[, offset
    [, function]])``; a plain diff's value is ``(tensor,)``.
    """
    if not isinstance(patches, (list, tuple)) or len(patches) != 1:
        return None
    entry = patches[0]
    if not isinstance(entry, (list, tuple)) or len(entry) < 2 or not _is_one(entry[0]):
        return None
    if len(entry) > 2 and not _is_one(entry[2]):
        return None
    if any(extra is not None for extra in entry[3:5]):
        return None
    value = entry[1]
    if not (isinstance(value, tuple) and len(value) == 1 and is_registered(value[0])):
        return None
    diff = value[0]
    if not isinstance(weight, torch.Tensor) or diff.shape != weight.shape:
        return None
    return diff


def _addend(diff: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``diff`` on the weight's device, in a dtype the add takes without changing the sum:
    as it is when fp32 promotes it exactly, else cast to the weight's dtype (what the
    WebUI's own cast does)."""
    diff = diff.to(device=weight.device)
    if diff.dtype == weight.dtype or (weight.dtype == torch.float32 and diff.dtype in _EXACT_INTO_FP32):
        return diff
    return diff.to(dtype=weight.dtype)


def fresh_sum(weight: torch.Tensor, diff: torch.Tensor, computation_dtype: torch.dtype) -> torch.Tensor:
    """Forge 2's ``merge_lora_to_weight`` for one plain diff at strength 1: a new tensor
    ``weight + diff`` computed in ``computation_dtype`` and returned in the weight's dtype;
    ``weight`` is left as it is."""
    work = weight if weight.dtype == computation_dtype else weight.to(dtype=computation_dtype)
    merged = torch.add(work, _addend(diff, work))
    return merged if merged.dtype == weight.dtype else merged.to(dtype=weight.dtype)


def add_in_place(weight: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """ComfyUI's ``calculate_weight`` for one plain diff at strength 1: ``weight`` (the
    WebUI's own working copy) gets ``diff`` added in place, and is returned."""
    return weight.add_(_addend(diff, weight))

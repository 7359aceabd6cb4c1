"""What every WebUI adapter provides to the script.

The script owns the request flow (args, images, caches, errors); an adapter only
translates four things into its WebUI's terms: checking the loaded model, VAE
encoding, installing IC-Light for one sampling call, and cleaning up.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Callable, Generic, Hashable, Protocol, TypeVar

import torch

from ..errors import ICLightError
from ..weights import ICModelInfo
from .status import MergeLedger
from .unet_patch import tensor_version

FAMILY_FLAGS = (("is_sdxl", "SDXL"), ("is_sd3", "SD3"), ("is_sd2", "SD2"))
"""Flags the WebUIs set on a loaded checkpoint of another family than SD1.5."""


def refuse_other_families(sd_model: Any) -> None:
    """Raise ICLightError("model_type") when the loaded checkpoint says it is SDXL, SD3 or SD2."""
    for flag, family in FAMILY_FLAGS:
        if getattr(sd_model, flag, False):
            raise ICLightError("model_type", f"IC-Light needs an SD1.5 checkpoint, but the loaded one is {family}")


def refuse_other_input(channels: int | None, is_inpaint: bool = False) -> None:
    """Raise ICLightError("model_type") unless the UNet takes the 4 channels of a plain SD1.5
    checkpoint (``channels`` None: not known, refused only with ``is_inpaint``)."""
    if is_inpaint or (channels is not None and channels != 4):
        kind = "an inpainting checkpoint" if channels in (None, 9) else f"a checkpoint whose UNet takes {channels} channels"
        raise ICLightError(
            "model_type", f"IC-Light needs a plain SD1.5 checkpoint (4-channel UNet input), but the loaded one is {kind}"
        )


T = TypeVar("T")


class PerGeneration(Generic[T]):
    """An adapter's state for each generation object ``p``, kept off ``p`` and dropped when
    ``p`` goes. Held by ``id`` with a weak reference: the WebUIs' processing classes are
    dataclasses, which are not hashable, so a WeakKeyDictionary cannot hold them."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[weakref.ref, T]] = {}

    def _live(self, p: Any) -> T | None:
        item = self._items.get(id(p))
        return item[1] if item is not None and item[0]() is p else None

    def setdefault(self, p: Any, make: Callable[[], T]) -> T:
        value = self._live(p)
        if value is None:
            key = id(p)
            value = make()
            self._items[key] = (weakref.ref(p, lambda _ref: self._items.pop(key, None)), value)
        return value

    def pop(self, p: Any) -> T | None:
        value = self._live(p)
        if value is not None:
            del self._items[id(p)]
        return value

    def __contains__(self, p: Any) -> bool:
        return self._live(p) is not None


_tokens = itertools.count(1)
_TOKEN = "_iclight_token"


def module_fingerprint(module: torch.nn.Module) -> tuple:
    """Changes whenever ``module``'s weights may have: another module object (Forge 2 reloads
    the whole model), or weights loaded in place (``load_state_dict`` bumps the Parameters'
    version). A token stored on the module stands for its identity: ``id()`` can be reused
    once the old module is freed."""
    token = module.__dict__.get(_TOKEN)
    if token is None:
        token = module.__dict__[_TOKEN] = next(_tokens)
    first = next(module.parameters(), None)
    if first is None:
        return (token, None)
    # Forge 2's inference tensors have no version counter; a reload shows as a new storage.
    return (token, id(first), first.data_ptr(), tensor_version(first))


class Backend(Protocol):
    """One WebUI family's adapter. ``p`` is the WebUI's processing object."""

    name: str
    """The WebUI this adapter runs on: "a1111", "forge", "forge-classic" or "reforge"."""
    family: str
    """The adapter family: "a1111", "forge" (Forge 2) or "forge-classic" (Forge Classic, reForge)."""
    ledger: MergeLedger
    """Merges and restores of IC-Light weights since start (see :mod:`lib_iclight.backends.status`)."""

    def check_model(self, p: Any) -> None:
        """Raise ICLightError("model_type", ...) unless the loaded checkpoint is an SD1.5 UNet
        with a 4-channel conv_in (SDXL, SD2, inpainting with 9 channels are refused)."""

    def encode(self, p: Any, pixels: torch.Tensor) -> torch.Tensor:
        """VAE-encode ``pixels`` [B, 3, H, W] uint8 0..255 into scaled latents [B, 4, H/8, W/8].

        The pixels reach the VAE through :func:`lib_iclight.images.vae_pixels` (the
        reference's ``x / 127 - 1``), whatever the WebUI's own mapping. Deterministic
        (posterior mode, not a sample), already multiplied by the model's latent scale
        factor, on the UNet's device.
        """

    def vae_fingerprint(self, p: Any) -> Hashable:
        """Something that changes whenever the VAE's weights may have changed (checkpoint or
        VAE swap, also in place), so that cached encodings are never reused across VAEs."""

    def unet_module(self, p: Any) -> torch.nn.Module:
        """The ldm ``UNetModel`` module the sampler runs (IC-Light's or not): the delivery
        probe (:mod:`lib_iclight.backends.delivery`) watches its conv_in while ``p.sample`` runs."""

    def load_offsets(self, info: ICModelInfo) -> Any:
        """The model's offsets in the form ``install`` takes (loaded, or a lazy file).

        Raises ICLightError("model_type", ...) for a file that is not an IC-Light model.
        """

    def install(self, p: Any, offsets: Any, concat: torch.Tensor) -> None:
        """Make the next sampling call run the IC-Light UNet.

        ``concat`` is [1, 4 or 8, h, w] scaled latents (fg, or fg then bg) at the size of
        the latent about to be sampled. Called from ``process_before_every_sampling``,
        possibly several times on the same ``p`` (batch count, hires pass): idempotent.
        """

    def cleanup(self, p: Any, keep_merged: bool = True) -> None:
        """Called once the generation is over (also after a failure).

        ``keep_merged`` (the setting, on by default) lets the next IC-Light generation skip
        the merge. AUTOMATIC1111 restores the UNet and keeps the merged weights beside it;
        the Forge family leaves the IC-Light patcher loaded, as it does a LoRA, and the
        WebUI's own unpatch restores the weights before the next plain generation. Off:
        the weights are restored now and nothing is kept.
        """

    def observe(self, p: Any) -> None:
        """Look at the UNet at any generation's hook (IC-Light or not), for the ledger."""

    def unet_status(self, sd_model: Any) -> dict[str, Any]:
        """``{"holds", "merges", "restores", ...}``: what the UNet holds now, for the status route."""

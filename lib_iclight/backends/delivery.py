"""Proof that IC-Light reached the UNet: conv_in's input width, counted while sampling.

Whatever a WebUI or another extension does to the model, its patcher, its wrappers or its
forward, a UNet call that carries IC-Light's conditioning ends in the UNet's first
convolution with 4 + 4 (fc) or 4 + 8 (fbc) input channels, and a call without it with 4.
A :class:`DeliveryProbe` counts both kinds of call on the UNet module for the length of a
``with`` block; :func:`require_delivery` turns the counts into an error when IC-Light was
never applied, or applied to only some of the calls. It is how the script makes sure no
image comes back without IC-Light, whatever else is enabled beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from torch import nn

from ..errors import ICLightConflict
from .unet_patch import CONV_IN

logger = logging.getLogger("iclight.delivery")


@dataclass
class DeliveryCount:
    """UNet calls seen by conv_in: ``wide`` had IC-Light's channels, ``narrow`` did not."""

    wide: int = 0
    narrow: int = 0


class DeliveryProbe:
    """A forward pre-hook on ``unet``'s conv_in counting calls by input channels.

    ``channels`` is what conv_in takes with IC-Light: 8 (fc) or 12 (fbc). The hook only
    reads the input ``[N, C, h, w]``, so it can sit beside any other hook; it is appended
    after them, and IC-Light's own concat hook (A1111) is prepended, so it sees the input
    conv_in really gets. Usable once: ``with DeliveryProbe(unet, 8) as count: ...``.
    """

    def __init__(self, unet: nn.Module, channels: int) -> None:
        self.conv_in = unet.get_submodule(CONV_IN)
        self.channels = channels
        self.count = DeliveryCount()
        self._handle: Any = None

    def _seen(self, module: nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        if x is None or getattr(x, "ndim", 0) != 4:
            return
        if x.shape[1] == self.channels:
            self.count.wide += 1
        else:
            self.count.narrow += 1

    def __enter__(self) -> DeliveryCount:
        self._handle = self.conv_in.register_forward_pre_hook(self._seen)
        return self.count

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def require_delivery(count: DeliveryCount, interrupted: bool = False, beside: Sequence[str] = ()) -> None:
    """Raise :class:`ICLightConflict` unless every UNet call of the sampling carried IC-Light.

    ``interrupted``: the user stopped the generation, so no call at all is no conflict.
    ``beside``: the titles of the other scripts enabled for this generation, named in the
    message as the likely cause.
    """
    if count.narrow == 0 and (count.wide > 0 or interrupted):
        return
    others = f" Enabled beside it: {', '.join(beside)}." if beside else ""
    if count.wide == 0:
        what = f"none of the {count.narrow} UNet calls of this generation received IC-Light's conditioning"
    else:
        what = f"{count.narrow} of the {count.narrow + count.wide} UNet calls of this generation ran without IC-Light's conditioning"
    raise ICLightConflict(
        f"{what}: another extension or WebUI feature replaced the model, its patcher or its forward "
        f"after IC-Light installed itself.{others} No image was returned without IC-Light; turn the "
        "other extension off for IC-Light generations."
    )

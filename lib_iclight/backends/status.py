"""What IC-Light has done to the UNet since the WebUI started: the merge ledger behind
``GET /ic-light/v1/status``.

A *merge* is the WebUI or the extension adding IC-Light's offsets into the UNet's weights
(all of them, or the stale part of a kept merge); a *restore* is the UNet's own weights
being put back. On the Forge family the WebUI's patcher does both, lazily, so the ledger
learns of them by looking at the UNet's first convolution: IC-Light widens it from 4 to
8 / 12 input channels, and every merge makes a new Parameter there. On AUTOMATIC1111 the
extension merges and restores itself and reports each one.

Tests and benchmarks read the counts to prove that a repeated generation merges nothing.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger("iclight.status")


@dataclass(frozen=True)
class LedgerSnapshot:
    """The ledger at one moment. ``holds`` is the IC model merged into the UNet's
    weights now (None: the UNet holds its own weights)."""

    holds: str | None
    merges: int
    restores: int

    def as_dict(self) -> dict[str, Any]:
        return {"holds": self.holds, "merges": self.merges, "restores": self.restores}


class MergeLedger:
    """Counts merges and restores and remembers which IC model the UNet holds. Thread-safe:
    the status route reads it from the server's threads while a generation writes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holds: str | None = None
        self._merges = 0
        self._restores = 0

    def merged(self, model_name: str) -> None:
        with self._lock:
            self._merges += 1
            self._holds = model_name
        logger.debug("IC-Light merge #%d (%s)", self._merges, model_name)

    def restored(self) -> None:
        with self._lock:
            self._restores += 1
            self._holds = None
        logger.debug("IC-Light restore #%d", self._restores)

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            return LedgerSnapshot(self._holds, self._merges, self._restores)


class ConvInWatch:
    """Tells merges and restores apart by looking at a UNet's conv_in weight.

    :meth:`saw_ic` runs on the first UNet call of an IC-Light sampling pass, after the
    WebUI loaded (and so merged) the patcher: a conv_in Parameter other than the one seen
    last means the WebUI merged again. :meth:`saw_unet` runs at any other moment (every
    generation's hooks, the status route): a conv_in with the UNet's own 4 input channels
    after IC-Light was held means the WebUI restored it. The last merged Parameter is held
    weakly, so watching keeps no weights alive.
    """

    def __init__(self, ledger: MergeLedger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self._last: "weakref.ref[torch.Tensor] | None" = None

    def saw_ic(self, conv_in_weight: torch.Tensor | None, model_name: str) -> None:
        if conv_in_weight is None:
            return
        with self._lock:
            if self._last is not None and self._last() is conv_in_weight:
                return
            self._last = weakref.ref(conv_in_weight)
        self.ledger.merged(model_name)

    def saw_unet(self, conv_in_weight: torch.Tensor | None, own_channels: int = 4) -> None:
        if conv_in_weight is None or conv_in_weight.ndim != 4:
            return
        if conv_in_weight.shape[1] != own_channels:
            return  # still merged (or not an SD1.5 UNet: nothing to say)
        with self._lock:
            held = self._last is not None
            self._last = None
        if held:
            self.ledger.restored()


def conv_in_weight(diffusion_model: Any) -> torch.Tensor | None:
    """The ldm UNet's first convolution weight [320, C, 3, 3], or None if there is none."""
    try:
        weight = diffusion_model.input_blocks[0][0].weight
    except (AttributeError, IndexError, TypeError):
        return None
    return weight if isinstance(weight, torch.Tensor) else None


def image_bytes(image: Any) -> int:
    """Approximate memory of a PIL image (width × height × bands), 0 for None."""
    if image is None:
        return 0
    width, height = image.size
    return width * height * len(image.getbands())


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()

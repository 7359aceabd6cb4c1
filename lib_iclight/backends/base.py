"""What every WebUI adapter provides to the script.

The script owns the request flow (args, images, caches, errors); an adapter only
translates four things into its WebUI's terms: checking the loaded model, VAE
encoding, installing IC-Light for one sampling call, and cleaning up.
"""

from __future__ import annotations

from typing import Any, Hashable, Protocol

import torch

from ..status import MergeLedger
from ..weights import ICModelInfo


class Backend(Protocol):
    """One WebUI family's adapter. ``p`` is the WebUI's processing object."""

    name: str
    """The WebUI this adapter runs on: "a1111", "forge", "forge-classic" or "reforge"."""
    family: str
    """The adapter family: "a1111", "forge" (Forge 2) or "forge-classic" (Forge Classic, reForge)."""
    ledger: MergeLedger
    """Merges and restores of IC-Light weights since start (see :mod:`lib_iclight.status`)."""

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
        probe (:mod:`lib_iclight.delivery`) watches its conv_in while ``p.sample`` runs."""

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

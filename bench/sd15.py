"""The full-size SD1.5 UNet and random IC-Light offsets the benchmarks share."""

from __future__ import annotations

import torch

SD15_UNET = dict(image_size=64, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                 num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
                 transformer_depth=1, context_dim=768, legacy=False)
"""The ldm UNetModel config of SD1.5 (859.5 M parameters)."""


def build_sd15_unet(seed: int = 0, checkpoint_like: bool = True) -> torch.nn.Module:
    """A full-size SD1.5 ldm UNetModel, float32 on CPU, with random weights.

    ``checkpoint_like`` re-draws every parameter as a trained checkpoint has them: no
    exact zeros (ldm zero-initialises each block's output layer, and random offsets
    added onto those zeros produce denormal activations that CPUs compute far more
    slowly, a cost a real model never shows), normalisation scales 1 and shifts 0,
    everything else N(0, 0.02). Without it: ldm's own init, zeros included.
    """
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(**SD15_UNET).eval()
    if checkpoint_like:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in unet.modules():
                is_norm = isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm))
                for name, param in module.named_parameters(recurse=False):
                    if is_norm:
                        param.fill_(1.0 if name == "weight" else 0.0)
                    else:
                        param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    return unet


def random_offsets(unet: torch.nn.Module, kind: str = "fc", seed: int = 0, scale: float = 0.01) -> dict[str, torch.Tensor]:
    """float16 offsets for every UNet parameter, ldm keys; conv_in widened to 8 (fc) or 12 (fbc)."""
    gen = torch.Generator().manual_seed(seed)
    offsets = {}
    for key, value in unet.state_dict().items():
        shape = list(value.shape)
        if key == "input_blocks.0.0.weight":
            shape[1] = 8 if kind == "fc" else 12
        offsets[key] = (torch.randn(shape, generator=gen) * scale).half()
    return offsets

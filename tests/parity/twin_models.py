"""One set of random weights in two layouts: diffusers (what lllyasviel/IC-Light runs) and
ldm (what the WebUIs run and the extension patches).

The diffusers ``UNet2DConditionModel`` and ``AutoencoderKL`` get configs that give the
same architecture as the ldm blocks the other tests use (tests/helpers/tiny_unet.py,
tests/script/tiny_sd.py, the ComfyUI ``AutoencoderKL`` of the Forge Classic stand-in).
The UNet weights are carried over with the extension's own key mapping
(:mod:`lib_iclight.keymap`); the VAE encoder, which the extension never renames, with
the small table below. ``sd15_unet`` builds the full-size SD1.5 UNet pair for bench/.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import torch

from lib_iclight import keymap

# ldm num_head_channels=16: 2 heads at 32 channels (level 0), 4 at 64 (the middle block).
# diffusers' ``attention_head_dim`` is a head *count* per level (a historic misnomer), and
# its middle block takes the last level's count.
TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32, attention_head_dim=(2, 4), norm_num_groups=32,
)
TINY_LAYOUT = keymap.UNetLayout(num_levels=2, layers_per_block=1, attention_levels=frozenset({0}))

# The published SD1.5 UNet config (runwayml/stable-diffusion-v1-5, unet/config.json).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn at random, nothing left at an init that would hide a wrong key
    (a norm weight of exactly 1, a bias of 0). Matrices and kernels get std 1/sqrt(fan-in),
    so that activations keep their size through the layers and the latents and noise
    predictions come out about as large as real ones (order 1), not vanishing."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if param.ndim >= 2:
                param.copy_(noise / param[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(0.05 * noise)


def diffusers_unet(config: Mapping[str, Any] = TINY_UNET, seed: int = 0):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**config)
    _randomise(unet, seed)
    return unet.eval()


def ldm_unet_from(unet_d: torch.nn.Module, ldm_config: Mapping[str, Any], layout: keymap.UNetLayout,
                  share: bool = False) -> torch.nn.Module:
    """An ldm ``UNetModel`` holding ``unet_d``'s weights, renamed by :func:`keymap.diffusers_to_ldm`.

    ``share``: the very tensors of ``unet_d`` (no copy; for the full-size bench, where a
    copy is 3.4 GB), so anything written into one model shows in the other.
    """
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    with torch.device("meta"):
        unet = UNetModel(**ldm_config)
    state = {keymap.diffusers_to_ldm(k, layout): v.detach() if share else v.detach().clone()
             for k, v in unet_d.state_dict().items()}
    unet.load_state_dict(state, strict=True, assign=True)
    return unet.eval()


# --------------------------------------------------------------------------------- VAE


def diffusers_vae(ch_mult: Sequence[int], base: int = 32, seed: int = 1, num_res_blocks: int = 1):
    """An ``AutoencoderKL`` shaped like ldm's ``Encoder(ch=base, ch_mult, num_res_blocks,
    attn_resolutions=[])``: ldm's encoder always has attention in its middle block, and so
    has diffusers' (``mid_block_add_attention`` defaults to True). SD1.5's VAE is
    ``ch_mult=(1, 2, 4, 4), base=128, num_res_blocks=2``."""
    from diffusers import AutoencoderKL

    levels = len(ch_mult)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=num_res_blocks, norm_num_groups=32,
        block_out_channels=tuple(base * m for m in ch_mult),
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
    )
    _randomise(vae, seed)
    return vae.eval()


_VAE_RULES = [
    (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.conv_shortcut\.", r"encoder.down.\1.block.\2.nin_shortcut."),
    (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2."),
    (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"encoder.down.\1.downsample.conv."),
    (r"encoder\.mid_block\.resnets\.0\.", "encoder.mid.block_1."),
    (r"encoder\.mid_block\.resnets\.1\.", "encoder.mid.block_2."),
    (r"encoder\.mid_block\.attentions\.0\.group_norm\.", "encoder.mid.attn_1.norm."),
    (r"encoder\.mid_block\.attentions\.0\.to_q\.", "encoder.mid.attn_1.q."),
    (r"encoder\.mid_block\.attentions\.0\.to_k\.", "encoder.mid.attn_1.k."),
    (r"encoder\.mid_block\.attentions\.0\.to_v\.", "encoder.mid.attn_1.v."),
    (r"encoder\.mid_block\.attentions\.0\.to_out\.0\.", "encoder.mid.attn_1.proj_out."),
    (r"encoder\.conv_norm_out\.", "encoder.norm_out."),
]


def ldm_vae_encoder_state(vae_d: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The encoder and ``quant_conv`` of ``vae_d`` under ldm names (``encoder.down.0.block.0...``).

    ldm's attention projections are 1x1 convolutions where diffusers has linear layers:
    their weights gain two trailing unit dimensions.
    """
    state = {}
    for key, value in vae_d.state_dict().items():
        if not key.startswith(("encoder.", "quant_conv.")):
            continue
        name = key
        for pattern, replacement in _VAE_RULES:
            name, hits = re.subn("^" + pattern, replacement, name)
            if hits:
                break
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        state[name] = value.detach().clone()
    return state


def load_encoder(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load an encoder state into an ldm-layout autoencoder: every encoder key must land,
    only decoder keys may stay missing."""
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    leftover = [k for k in result.missing_keys if not k.startswith(("decoder.", "post_quant_conv."))]
    assert not leftover, leftover

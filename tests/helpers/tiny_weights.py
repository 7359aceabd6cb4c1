"""Small IC-Light offset files and UNet key sets for the weight and key-map tests.

Real IC-Light files are 1.7 GB; the tests write files with the right *names* and tiny
tensors instead. Only conv_in's shape carries meaning for listing (its input channels
say fc or fbc), so it keeps four dimensions while every other tensor may be shrunk.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal, Mapping, Sequence

import torch
from safetensors.torch import save_file

from lib_iclight import keymap

DATA = Path(__file__).resolve().parent.parent / "data"

OffsetFormat = Literal["diffusers", "ldm", "ldm-prefixed", "model-prefixed"]
OFFSET_FORMATS: tuple[OffsetFormat, ...] = ("diffusers", "ldm", "ldm-prefixed", "model-prefixed")
_PREFIX = {
    "diffusers": "", "ldm": "", "ldm-prefixed": "diffusion_model.", "model-prefixed": "model.diffusion_model.",
}
CHANNELS = {"fc": 8, "fbc": 12}
CONV_IN = "input_blocks.0.0.weight"

# Builds in about 0.2 s on CPU; 208 parameters in 2 levels, attention on level 0 only.
TINY_UNET_CONFIG = dict(
    image_size=8, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[1],
    num_res_blocks=1, channel_mult=[1, 2], num_head_channels=16, use_spatial_transformer=True,
    transformer_depth=1, context_dim=32, legacy=False,
)
TINY_LAYOUT = keymap.UNetLayout(num_levels=2, layers_per_block=1, attention_levels=frozenset({0}))
TINY_CHANNEL_MULT = (1, 2)

# The real SD1.5 UNet; only ever built on the meta device (no memory, 0.06 s).
SD15_UNET_CONFIG = dict(
    image_size=64, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
    num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
    transformer_depth=1, context_dim=768, legacy=False,
)


def read_key_shapes(filename: str) -> dict[str, tuple[int, ...]]:
    """A ``key TAB [shape]`` reference list from ``tests/data`` as {key: shape}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in (DATA / filename).read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            shapes[key] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    return shapes


def sd15_ldm_shapes() -> dict[str, tuple[int, ...]]:
    return read_key_shapes("sd15_unet_ldm_keys.txt")


def sd15_diffusers_shapes() -> dict[str, tuple[int, ...]]:
    return read_key_shapes("sd15_unet_diffusers_keys.txt")


def small_sd15_shapes() -> dict[str, tuple[int, ...]]:
    """All 686 SD1.5 ldm keys with shape [1], except conv_in: [4, 4, 3, 3]."""
    shapes = {key: (1,) for key in sd15_ldm_shapes()}
    shapes[CONV_IN] = (4, 4, 3, 3)
    return shapes


def build_unet(config: Mapping[str, object], device: str | torch.device = "cpu", seed: int | None = None):
    """An ldm ``UNetModel`` (imported here: only tests that need one pay for ldm)."""
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device):
        return UNetModel(**config)


@functools.lru_cache(maxsize=None)
def _tiny_unet_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    unet = build_unet(TINY_UNET_CONFIG, device="meta")
    return tuple((k, tuple(v.shape)) for k, v in unet.state_dict().items())


def tiny_unet_shapes() -> dict[str, tuple[int, ...]]:
    """{ldm key: shape} of the tiny UNet's parameters."""
    return dict(_tiny_unet_shapes())


def make_offsets(unet_state_dict_shapes: Mapping[str, Sequence[int] | torch.Tensor],
                 kind: Literal["fc", "fbc"] = "fc", dtype: torch.dtype = torch.float16,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """Random offsets keyed by ldm names without prefix, stored as ``dtype``.

    Shapes follow ``unet_state_dict_shapes`` (shapes or tensors), except conv_in, whose
    input channels become 8 (fc) or 12 (fbc). Values are small (std 0.1) like real
    offsets, and nonzero so that a wrong pairing of keys shows.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for key, shape in unet_state_dict_shapes.items():
        key = keymap.normalize_ldm_key(key)
        shape = list(shape.shape if isinstance(shape, torch.Tensor) else shape)
        if key == CONV_IN:
            shape[1] = CHANNELS[kind]
        values = torch.randn(shape, generator=generator) * 0.1
        tensors[key] = values.to(dtype)
    return tensors


def file_keys(ldm_keys: Sequence[str], fmt: OffsetFormat) -> dict[str, str]:
    """{ldm key: key as a file of format ``fmt`` spells it}. For ``"diffusers"`` the layout
    is inferred from the ldm keys, so this works for any UNet built from the same blocks."""
    if fmt == "diffusers":
        layout = keymap.infer_layout(ldm_keys, "ldm")
        return {k: keymap.ldm_to_diffusers(k, layout) for k in ldm_keys}
    return {k: _PREFIX[fmt] + k for k in ldm_keys}


def make_offset_file(path: str | Path, unet_state_dict_shapes: Mapping[str, Sequence[int] | torch.Tensor],
                     kind: Literal["fc", "fbc"] = "fc", fmt: OffsetFormat = "diffusers",
                     dtype: torch.dtype = torch.float16, seed: int = 0,
                     extra: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Write an IC-Light offset file matching a UNet's parameters; see :func:`make_offsets`.

    ``fmt`` picks the key spelling: official diffusers names, bare ldm names, or ldm names
    under ``diffusion_model.`` / ``model.diffusion_model.``. ``extra`` tensors are written
    under their keys as given (for unknown-key tests). Returns the offsets written, keyed
    by ldm name without prefix, in the stored ``dtype``.
    """
    tensors = make_offsets(unet_state_dict_shapes, kind, dtype, seed)
    names = file_keys(list(tensors), fmt)
    payload = {names[k]: v.contiguous() for k, v in tensors.items()}
    payload.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(payload, str(path))
    return tensors

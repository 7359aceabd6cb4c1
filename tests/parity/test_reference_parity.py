"""Our pipeline computes what lllyasviel/IC-Light's own pipeline computes (commit bcf3f29,
gradio_demo.py for fc, gradio_demo_bg.py for fbc), proven on twin models.

Twin models: one set of random weights as a diffusers UNet and VAE (the reference's) and
as the ldm UNet and VAE the WebUIs run (ours), converted with the extension's key
mapping (tests/parity/twin_models.py). The reference side is a transcription of the
demo's code paths (tests/parity/reference_iclight.py); our side is the extension's own
code: ``prepare_subject``, the controller's per-pass conditioning, each backend's
``encode``, and the ``UNetPatch`` that the AUTOMATIC1111 adapter installs (the Forge
adapters are held to that patch by tests/backends).

For fc and fbc, at a square and a non-square size and for a hires pass, the test asserts:
* the uint8 pixels handed to the VAE are byte-identical to the reference's;
* the float tensor entering the VAE encoder is bit-identical to ``numpy2pytorch``'s;
* the conditioning latents are within 1e-5 (max abs) of the reference's, on all three
  adapters (AUTOMATIC1111, Forge 2, Forge Classic);
* one UNet call with a CFG batch of 2 is within 1e-4 of the reference, relative to the
  output's largest magnitude.
Negative controls put back the old normalisation (``x / 255 * 2 - 1``), the old blend
(Pillow's ``alpha_composite``) and the old resize (one LANCZOS pass from the exact centred
box), and show that the same checks fail.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from lib_iclight import conditioning as subject, images
from lib_iclight.backends.a1111 import A1111Backend
from lib_iclight.conditioning import Conditioning
from lib_iclight.webui.context import Request
from lib_iclight.webui.controller import ICLightController
from lib_iclight.rembg_session import Cutout
from lib_iclight.backends.unet_patch import UNetPatch
from lib_iclight.weights import read_model_info
from tests.backends import harness
from tests.backends.conftest import standins  # noqa: F401 - the Forge stand-ins fixture
from tests.helpers.tiny_unet import TINY_CONFIG, comfy_on_path
from tests.parity import reference_iclight as ref
from tests.parity import twin_models as tm

# The VAE shape of the Forge Classic stand-in (ComfyUI's AutoencoderKL): 32 channels, x2 x2 x2.
VAE_CH_MULT = (1, 2, 2, 2)
A1111_STANDINS = str(Path(__file__).resolve().parents[1] / "script" / "standins")
LATENT_TOL = 1e-5
UNET_REL_TOL = 1e-4
SIZES = [(64, 64), (96, 64)]  # (width, height): one square, one not
CHANNELS = {"fc": 8, "fbc": 12}


# ----------------------------------------------------------------------------- inputs


def subject_rgba(width: int = 150, height: int = 110, seed: int = 0) -> np.ndarray:
    """HWC uint8 RGBA: sharp-edged colour blocks over noise, a soft-edged oval alpha."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = rng.normal(127, 45, (height, width, 3)) + 80 * np.sin(xx / 7.0)[..., None] * np.array([1.0, -0.5, 0.3])
    rgb[(xx // 13 + yy // 11) % 3 == 0] = (230, 40, 20)
    dist = np.hypot((xx - width * 0.45) / (width * 0.35), (yy - height * 0.5) / (height * 0.4))
    alpha = np.clip((1.0 - dist) * 6.0, 0.0, 1.0) * 255
    return np.dstack([np.clip(rgb, 0, 255), alpha]).astype(np.uint8)


def background_rgb(width: int = 130, height: int = 170, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = rng.normal(100, 30, (height, width, 3)) + np.dstack([xx, yy, xx + yy]) * 0.6
    return np.clip(rgb, 0, 255).astype(np.uint8)


def alpha01(rgba: np.ndarray) -> np.ndarray:
    """The alpha channel as the reference's HW1 float32 0..1."""
    return rgba[..., 3:].astype(np.float32) / np.float32(255.0)


# ----------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def twins():
    unet_d = tm.diffusers_unet(seed=0)
    vae_d = tm.diffusers_vae(VAE_CH_MULT, seed=1)
    return SimpleNamespace(unet_d=unet_d, vae_d=vae_d, vae_state=tm.ldm_vae_encoder_state(vae_d))


@pytest.fixture(scope="module")
def offset_files(twins, tmp_path_factory) -> dict[str, Path]:
    """fc and fbc offset files as published: diffusers keys, float16, every UNet key."""
    folder = tmp_path_factory.mktemp("ic-light")
    files = {}
    for seed, (kind, channels) in enumerate(CHANNELS.items()):
        gen = torch.Generator().manual_seed(100 + seed)
        tensors = {}
        for key, value in twins.unet_d.state_dict().items():
            shape = list(value.shape)
            if key == "conv_in.weight":
                shape[1] = channels
            tensors[key] = (torch.randn(shape, generator=gen) * 0.02).half()
        files[kind] = folder / f"iclight_sd15_{kind}.safetensors"
        save_file(tensors, str(files[kind]))
    return files


@pytest.fixture
def a1111_modules() -> Iterator[None]:
    """The stand-in A1111 ``modules`` (devices) importable for one test."""
    added = A1111_STANDINS not in sys.path
    if added:
        sys.path.insert(0, A1111_STANDINS)
    before = set(sys.modules)
    try:
        yield
    finally:
        for name in set(sys.modules) - before:
            if name.split(".")[0] == "modules":
                del sys.modules[name]
        if added:
            sys.path.remove(A1111_STANDINS)


def a1111_p(twins) -> Any:
    from tests.script.tiny_sd import TinyAutoencoder, TinyLatentDiffusion

    model = TinyLatentDiffusion(tm.ldm_unet_from(twins.unet_d, TINY_CONFIG, tm.TINY_LAYOUT))
    model.first_stage_model = TinyAutoencoder(ch_mult=VAE_CH_MULT).eval()
    tm.load_encoder(model.first_stage_model, twins.vae_state)
    return _P(sd_model=model)


def forge_p(twins) -> Any:
    """Forge 2 stand-in, its one-convolution encoder swapped for ldm's Encoder with the twin weights."""
    from ldm.modules.diffusionmodules.model import Encoder

    p = harness.forge_p(harness.tiny_unet())
    model = p.sd_model.forge_objects.vae.first_stage_model
    model.encoder = Encoder(double_z=True, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32,
                            ch_mult=VAE_CH_MULT, num_res_blocks=1, attn_resolutions=[], dropout=0.0)
    tm.load_encoder(model, twins.vae_state)
    return p


def classic_p(twins) -> Any:
    comfy_on_path()
    p = harness.classic_p(harness.tiny_unet(), "classic")
    tm.load_encoder(p.sd_model.forge_objects.vae.first_stage_model, twins.vae_state)
    return p


def backend_and_p(name: str, twins) -> tuple[Any, Any]:
    if name == "a1111":
        return A1111Backend(), a1111_p(twins)
    from lib_iclight.backends.forge import ForgeBackend
    from lib_iclight.backends.forge_classic import ForgeClassicBackend

    if name == "forge":
        return ForgeBackend(), forge_p(twins)
    return ForgeClassicBackend(), classic_p(twins)


def vae_module(p: Any) -> torch.nn.Module:
    forge_objects = getattr(p.sd_model, "forge_objects", None)
    return forge_objects.vae.first_stage_model if forge_objects is not None else p.sd_model.first_stage_model


# ------------------------------------------------------------------------ both sides


class _P(SimpleNamespace):
    """A ``p`` the adapters can hold weakly."""


@dataclass
class Case:
    kind: str
    size: tuple[int, int]
    """The pass being encoded, (width, height)."""
    largest: tuple[int, int]
    """The size the subject is prepared at (the hires target when hires fix is on)."""
    cut_out: bool = False
    """True: a background remover's mask at the generation size (rembg's path); else the
    input's own alpha at its own size (the analogue of the demo's run_rmbg before resizing)."""


@dataclass
class Side:
    pixels: torch.Tensor
    """uint8 [B, 3, H, W] handed to the VAE."""
    vae_input: torch.Tensor
    """float32 [B, 3, H, W] as the VAE encoder received it."""
    concat: torch.Tensor


def reference_side(case: Case, twins) -> Side:
    width, height = case.size
    rgba = subject_rgba()
    if case.cut_out:
        # Given the same alpha, at the generation size (the demo cuts out at the input size).
        rgba = np.asarray(Image.fromarray(rgba, "RGBA").resize(case.largest, Image.LANCZOS))
    fg = ref.resize_and_center_crop(ref.composite_with_alpha(rgba[..., :3], alpha01(rgba)), width, height)
    parts = [fg] if case.kind == "fc" else [fg, ref.resize_and_center_crop(background_rgb(), width, height)]
    pixels = torch.from_numpy(np.stack(parts)).movedim(-1, 1).contiguous()
    return Side(pixels, ref.numpy2pytorch(parts), ref.encode_conditioning(twins.vae_d, parts))


def our_side(case: Case, backend: Any, p: Any, monkeypatch: pytest.MonkeyPatch) -> Side:
    rgba = subject_rgba()
    if case.cut_out:
        rgba = np.asarray(Image.fromarray(rgba, "RGBA").resize(case.largest, Image.LANCZOS))
        mask = Image.fromarray(rgba[..., 3], "L")

        def remover(image: Image.Image, *args: Any) -> Cutout:
            assert image.size == mask.size
            return Cutout(Image.new("RGBA", image.size), mask, True)

        monkeypatch.setattr(subject, "cut_out_subject", remover)
    source = Image.fromarray(rgba, "RGBA")
    if case.cut_out:
        source = source.convert("RGB")  # a photo without alpha, the mask comes from the remover
    prepared = subject.prepare_subject(
        source, width=case.largest[0], height=case.largest[1], remove_bg=case.cut_out, rembg_model="u2net",
        foreground_threshold=225, background_threshold=16, erode_size=0, detail_transfer_raw=False,
    )
    background = images.composite_on_grey(Image.fromarray(background_rgb())) if case.kind == "fbc" else None
    request = Request(None, None, None, Conditioning(prepared, backgrounds=(background,) if background else ()))
    controller = ICLightController(backend, model_dirs=list, settings=lambda: None)

    seen: dict[str, torch.Tensor] = {}
    encode = backend.encode

    def spy(p_: Any, pixels: torch.Tensor) -> torch.Tensor:
        seen["pixels"] = pixels.clone()
        return encode(p_, pixels)

    monkeypatch.setattr(backend, "encode", spy)
    hook = vae_module(p).encoder.register_forward_pre_hook(lambda _m, args: seen.setdefault("vae_input", args[0].clone()))
    try:
        concat = controller._encode_conditioning(p, request, *case.size)
    finally:
        hook.remove()
    return Side(seen["pixels"], seen["vae_input"], concat)


def cfg_batch(case: Case, context_dim: int = 32, tokens: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A CFG batch as the samplers make it: the same noisy latent twice, cond then uncond."""
    width, height = case.size
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, height // 8, width // 8, generator=gen)
    context = torch.cat([torch.randn(1, tokens, context_dim, generator=gen), torch.zeros(1, tokens, context_dim)])
    return torch.cat([x, x]), torch.tensor([601.0, 601.0]), context


def our_prediction(unet: torch.nn.Module, offsets: Any, concat: torch.Tensor,
                   batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One call of the ldm UNet under the extension's patch (what the A1111 adapter installs)."""
    sample, timestep, context = batch
    patch = UNetPatch(unet, offsets, concat)
    try:
        with torch.no_grad(), patch:
            return unet(sample, timestep, context=context)
    finally:
        patch.release()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


# ------------------------------------------------------------------------------ tests

CASES = [Case(kind, size, size) for kind in CHANNELS for size in SIZES] + [
    Case(kind, (64, 48), (96, 72)) for kind in CHANNELS  # the first pass of a hires generation
] + [Case(kind, (64, 48), (64, 48), cut_out=True) for kind in CHANNELS]


def case_id(case: Case) -> str:
    hires = "-hires-first-pass" if case.largest != case.size else ""
    return f"{case.kind}-{case.size[0]}x{case.size[1]}{hires}{'-cut-out' if case.cut_out else ''}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conditioning_and_unet_equal_the_reference(case, twins, offset_files, a1111_modules, monkeypatch):
    expected = reference_side(case, twins)
    backend, p = backend_and_p("a1111", twins)
    ours = our_side(case, backend, p, monkeypatch)

    assert ours.pixels.dtype == torch.uint8 and torch.equal(ours.pixels, expected.pixels)
    assert torch.equal(ours.vae_input, expected.vae_input)  # bit for bit: the normalisation
    assert ours.vae_input.stride() == expected.vae_input.stride()  # and the memory layout
    assert ours.concat.shape == expected.concat.shape == (1, CHANNELS[case.kind] - 4, case.size[1] // 8, case.size[0] // 8)
    assert max_diff(ours.concat, expected.concat) <= LATENT_TOL

    batch = cfg_batch(case)
    offset_file = offset_files[case.kind]
    reference_unet = ref.ic_light_unet(tm.diffusers_unet(seed=0), load_file(str(offset_file)))
    want = ref.noise_prediction(reference_unet, *batch, expected.concat)
    offsets = A1111Backend().load_offsets(read_model_info(offset_file))  # our loader: diffusers keys -> ldm
    got = our_prediction(p.sd_model.model.diffusion_model, offsets, ours.concat, batch)
    assert max_diff(got, want) <= UNET_REL_TOL * want.abs().max().item()


@pytest.mark.parametrize("name", ["forge", "forge_classic"])
@pytest.mark.parametrize("kind", list(CHANNELS))
def test_every_forge_adapter_feeds_the_vae_the_reference_pixels(name, kind, twins, standins, monkeypatch):  # noqa: F811
    case = Case(kind, (96, 64), (96, 64))
    expected = reference_side(case, twins)
    backend, p = backend_and_p(name, twins)
    ours = our_side(case, backend, p, monkeypatch)
    assert torch.equal(ours.pixels, expected.pixels)
    assert torch.equal(ours.vae_input, expected.vae_input)  # through the WebUI's own 2 * p - 1
    assert ours.vae_input.stride() == expected.vae_input.stride()
    assert max_diff(ours.concat, expected.concat) <= LATENT_TOL


# -------------------------------------------------------------------- negative controls


def _old_normalisation(pixels: torch.Tensor, *, webui_maps_unit_range: bool = False) -> torch.Tensor:
    unit = pixels.float() / 255.0
    return unit if webui_maps_unit_range else unit * 2.0 - 1.0


def _pillow_blend(img: Image.Image, grey: int = images.GREY, alpha: Image.Image | None = None) -> Image.Image:
    rgba = images.normalise_mode(img).convert("RGBA")
    if alpha is not None:
        rgba.putalpha(alpha)
    if not images.has_alpha(img) and alpha is None:
        return rgba.convert("RGB")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (grey, grey, grey, 255)), rgba).convert("RGB")


def _box_resize(img: Image.Image, width: int, height: int) -> Image.Image:
    scale = min(img.width / width, img.height / height)
    box_w, box_h = width * scale, height * scale
    left, top = (img.width - box_w) / 2.0, (img.height - box_h) / 2.0
    return img.resize((width, height), Image.Resampling.LANCZOS, box=(left, top, left + box_w, top + box_h))


OLD_WAYS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "normalisation x/255*2-1": lambda mp: mp.setattr(images, "vae_pixels", _old_normalisation),
    "Pillow alpha_composite": lambda mp: [mp.setattr(m, "composite_on_grey", _pillow_blend) for m in (images, subject)],
    "one resize from the exact box": lambda mp: [mp.setattr(m, "resize_and_center_crop", _box_resize) for m in (images, subject)],
}


@pytest.mark.parametrize("old", list(OLD_WAYS))
@pytest.mark.parametrize("backend_name", ["a1111", "forge_classic"])
def test_the_old_ways_fail_the_parity_checks(old, backend_name, twins, standins, a1111_modules, monkeypatch):  # noqa: F811
    case = Case("fbc", (96, 64), (96, 64))
    expected = reference_side(case, twins)
    OLD_WAYS[old](monkeypatch)
    backend, p = backend_and_p(backend_name, twins)
    ours = our_side(case, backend, p, monkeypatch)
    assert not torch.equal(ours.vae_input, expected.vae_input)
    assert max_diff(ours.concat, expected.concat) > LATENT_TOL
    if old == "normalisation x/255*2-1":
        assert torch.equal(ours.pixels, expected.pixels)  # the same bytes, normalised differently
        # x/127 - x*2/255 = x/32385: 0.0039 at grey 127, 0.0079 at 255.
        assert max_diff(ours.vae_input, expected.vae_input) == pytest.approx(255 / 32385, abs=1e-6)
    else:
        assert not torch.equal(ours.pixels, expected.pixels)

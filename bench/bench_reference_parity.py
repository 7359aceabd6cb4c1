"""Reference parity at full size: tests/parity's comparison on the SD1.5 UNet and VAE.

The same steps as tests/parity/test_reference_parity.py, with the published SD1.5 UNet
and VAE configs (random weights, 860 M + 34 M encoder parameters) at 512x512 pixels
(a 64x64 latent): our conditioning (prepare_subject, the controller, the A1111 adapter's
encode) against the transcribed reference (diffusers), then one UNet call with a CFG
batch of 2 through our UNetPatch against the reference's widened, merged, hooked UNet.
Prints, for fc and fbc, whether the VAE's input pixels are byte-identical, the max abs
difference of the conditioning latents, and of the noise prediction (absolute and
relative to the prediction's largest magnitude).

Needs diffusers (tests/requirements.txt) and 10 GB of memory (measured peak: 9.9 GB for
fbc): the two UNet layouts share their tensors, offsets are made per key when read, and
each side's merge is freed before the other's is made. About 2.5 minutes per kind on
2 CPU cores.

Run: python bench/bench_reference_parity.py [--kinds fc fbc] [--size 512]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Mapping

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "script" / "standins"))  # A1111's modules.devices, for the adapter

import pytest  # noqa: E402 - MonkeyPatch, to reuse the test's spies

from lib_iclight import keymap  # noqa: E402
from lib_iclight.backends.a1111 import A1111Backend  # noqa: E402
from tests.helpers.tiny_weights import SD15_UNET_CONFIG  # noqa: E402
from tests.parity import reference_iclight as ref  # noqa: E402
from tests.parity import twin_models as tm  # noqa: E402
from tests.parity.test_reference_parity import (  # noqa: E402
    CHANNELS, Case, cfg_batch, max_diff, our_prediction, our_side, reference_side,
)
from tests.script.tiny_sd import TinyAutoencoder, TinyLatentDiffusion  # noqa: E402

SD15_VAE = dict(ch_mult=(1, 2, 4, 4), ch=128, num_res_blocks=2)


class SeededOffsets(Mapping):
    """float16 offsets for every parameter of ``unet_d``, as the published files hold them,
    made on each access from a per-key seed: the same tensor every time, and never all in
    memory at once (1.7 GB at full size). ``rename`` maps the keys (diffusers -> ldm)."""

    def __init__(self, unet_d: torch.nn.Module, kind: str, rename=lambda key: key, seed: int = 3) -> None:
        self._shapes = {}
        self._source = {}
        for index, (key, value) in enumerate(unet_d.state_dict().items()):
            shape = list(value.shape)
            if key == "conv_in.weight":
                shape[1] = CHANNELS[kind]
            self._shapes[rename(key)] = shape
            self._source[rename(key)] = seed * 100_003 + index

    def __getitem__(self, key: str) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self._source[key])
        return (torch.randn(self._shapes[key], generator=gen) * 0.01).half()

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def run(kind: str, size: int) -> None:
    started = time.perf_counter()
    unet_d = tm.diffusers_unet(tm.SD15_UNET, seed=0)
    vae_d = tm.diffusers_vae(SD15_VAE["ch_mult"], base=SD15_VAE["ch"], num_res_blocks=SD15_VAE["num_res_blocks"])
    twins = SimpleNamespace(unet_d=unet_d, vae_d=vae_d, vae_state=tm.ldm_vae_encoder_state(vae_d))
    case = Case(kind, (size, size), (size, size))

    expected = reference_side(case, twins)
    unet = tm.ldm_unet_from(unet_d, SD15_UNET_CONFIG, keymap.SD15_LAYOUT, share=True)
    model = TinyLatentDiffusion(unet)
    model.first_stage_model = TinyAutoencoder(**SD15_VAE).eval()
    tm.load_encoder(model.first_stage_model, twins.vae_state)
    monkeypatch = pytest.MonkeyPatch()
    try:
        ours = our_side(case, A1111Backend(), SimpleNamespace(sd_model=model), monkeypatch)
    finally:
        monkeypatch.undo()
    model.first_stage_model = None
    del twins, vae_d
    built = time.perf_counter()

    offsets = SeededOffsets(unet_d, kind, rename=keymap.diffusers_to_ldm)
    batch = cfg_batch(case, context_dim=768, tokens=77)
    got = our_prediction(unet, offsets, ours.concat, batch)
    del model, unet, offsets
    gc.collect()
    want = ref.noise_prediction(ref.ic_light_unet(unet_d, SeededOffsets(unet_d, kind)), *batch, expected.concat)
    del unet_d
    gc.collect()

    diff = max_diff(got, want)
    scale = want.abs().max().item()
    print(f"{kind} {size}x{size} (latent {size // 8}x{size // 8}, CFG batch 2):")
    print(f"  VAE input pixels byte-identical: {torch.equal(ours.pixels, expected.pixels)}; "
          f"normalised tensor bit-identical: {torch.equal(ours.vae_input, expected.vae_input)}")
    print(f"  conditioning latents {tuple(ours.concat.shape)}: max abs diff {max_diff(ours.concat, expected.concat):.3g} "
          f"(largest value {expected.concat.abs().max().item():.3g})")
    print(f"  UNet noise prediction: max abs diff {diff:.3g}, largest value {scale:.3g}, relative {diff / scale:.3g}")
    print(f"  {built - started:.1f} s to build and encode, {time.perf_counter() - built:.1f} s for the two UNet calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["fc", "fbc"], choices=list(CHANNELS))
    parser.add_argument("--size", type=int, default=512, help="pixels a side (a multiple of 64)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for kind in args.kinds:
        run(kind, args.size)


if __name__ == "__main__":
    main()

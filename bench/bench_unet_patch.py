"""Patch and unpatch cost of the core UNet patch on a full-size SD1.5 ldm UNet (CPU).

Prints the time to apply the patch (first apply: merges every offset; re-apply within the
same generation: swaps cached merges back in) and to remove it, each as a ratio to one
UNet forward at a 64x64 latent (batch 1, i.e. 512x512 pixels), in the same run.

Run: python bench/bench_unet_patch.py [--threads N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from lib_iclight.unet_patch import UNetPatch  # noqa: E402



def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


from sd15 import build_sd15_unet, random_offsets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flush-denormal", action="store_true",
                        help="flush denormals to zero (random weights can produce them; real checkpoints rarely do)")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    torch.set_flush_denormal(opts.flush_denormal)

    unet = build_sd15_unet()
    offsets = random_offsets(unet, "fc")
    x = torch.randn(1, 4, 64, 64)
    t = torch.tensor([500.0])
    context = torch.randn(1, 77, 768)
    concat = torch.randn(1, 4, 64, 64)

    with torch.no_grad():
        unet(x, t, context=context)  # warm-up
        forward = statistics.median(timed(lambda: unet(x, t, context=context)) for _ in range(opts.repeats))

    first, reapply, remove = [], [], []
    for _ in range(opts.repeats):
        patch = UNetPatch(unet, offsets, concat)
        first.append(timed(patch.apply))
        remove.append(timed(patch.remove))
        reapply.append(timed(patch.apply))
        remove.append(timed(patch.remove))
        patch.release()
    first_s, reapply_s, remove_s = (statistics.median(v) for v in (first, reapply, remove))
    patch = UNetPatch(unet, offsets, concat)
    with torch.no_grad(), patch:
        patched_forward = statistics.median(timed(lambda: unet(x, t, context=context)) for _ in range(opts.repeats))
    patch.release()
    print(f"threads={opts.threads}, flush denormals={opts.flush_denormal}; SD1.5 UNet float32, offsets float16 ({len(offsets)} tensors)")
    print(f"one UNet forward, 64x64 latent, batch 1: {forward:.3f} s")
    print(f"the same forward with IC-Light applied: {patched_forward:.3f} s = {patched_forward / forward:.3f}x")
    print(f"patch, first apply (merge all offsets): {first_s:.3f} s = {first_s / forward:.3f} forwards")
    print(f"patch, re-apply (cached merges):        {reapply_s * 1e3:.2f} ms = {reapply_s / forward:.5f} forwards")
    print(f"unpatch:                                {remove_s * 1e3:.2f} ms = {remove_s / forward:.5f} forwards")


if __name__ == "__main__":
    main()

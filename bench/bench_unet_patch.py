"""Patch and unpatch cost of the core UNet patch on a full-size SD1.5 ldm UNet.

Prints the time to apply the patch (first apply: merges every offset; re-apply within the
same generation: swaps cached merges back in) and to remove it, each as a ratio to one
UNet forward at a 64x64 latent (batch 1, i.e. 512x512 pixels), in the same run.

``--device cuda``: the UNet in float16 on the GPU (offsets stay float16 on the CPU, as the
adapters hold them), so "first apply" is what a merge costs there, copies included.

Run: python bench/bench_unet_patch.py [--threads N] [--repeats 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from lib_iclight.backends.unet_patch import UNetPatch  # noqa: E402



_sync = lambda: None  # noqa: E731  (torch.cuda.synchronize on a GPU)


def timed(fn) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


from sd15 import build_sd15_unet, random_offsets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flush-denormal", action="store_true",
                        help="flush denormals to zero (random weights can produce them; real checkpoints rarely do)")
    parser.add_argument("--device", default="cpu", help="cpu (float32) or cuda (float16)")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    global _sync
    on_gpu = opts.device.startswith("cuda")
    dtype = torch.float16 if on_gpu else torch.float32
    if on_gpu:
        _sync = torch.cuda.synchronize
    torch.set_flush_denormal(opts.flush_denormal)

    unet = build_sd15_unet()
    offsets = random_offsets(unet, "fc")
    unet.to(opts.device, dtype)
    x = torch.randn(1, 4, 64, 64, device=opts.device, dtype=dtype)
    t = torch.tensor([500.0], device=opts.device)
    context = torch.randn(1, 77, 768, device=opts.device, dtype=dtype)
    concat = torch.randn(1, 4, 64, 64, device=opts.device, dtype=dtype)

    # As A1111 on a GPU: float16 weights under autocast (ldm embeds timesteps in float32).
    amp = (lambda: torch.autocast("cuda")) if on_gpu else contextlib.nullcontext
    with torch.no_grad(), amp():
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
    with torch.no_grad(), amp(), patch:
        patched_forward = statistics.median(timed(lambda: unet(x, t, context=context)) for _ in range(opts.repeats))
    patch.release()
    where = torch.cuda.get_device_name() if on_gpu else f"threads={opts.threads}, flush denormals={opts.flush_denormal}"
    print(f"{where}; SD1.5 UNet {str(dtype).replace('torch.', '')} on {opts.device}, offsets float16 on the CPU ({len(offsets)} tensors)")
    print(f"one UNet forward, 64x64 latent, batch 1: {forward:.3f} s")
    print(f"the same forward with IC-Light applied: {patched_forward:.3f} s = {patched_forward / forward:.3f}x")
    print(f"patch, first apply (merge all offsets): {first_s:.3f} s = {first_s / forward:.3f} forwards")
    print(f"patch, re-apply (cached merges):        {reapply_s * 1e3:.2f} ms = {reapply_s / forward:.5f} forwards")
    print(f"unpatch:                                {remove_s * 1e3:.2f} ms = {remove_s / forward:.5f} forwards")


if __name__ == "__main__":
    main()

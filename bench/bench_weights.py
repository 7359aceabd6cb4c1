"""How long loading IC-Light offsets takes: from disk, from the page cache, and from our cache.

Writes a full-size SD1.5 offset file with random values, in the official format
(diffusers keys, float16, conv_in [320, 8, 3, 3]: 1.72 GB), into a temporary folder, and
deletes it at the end. Then times :func:`lib_iclight.weights.load_offsets`:

- cold:   offsets cache cleared and the file evicted from the page cache (fsync, then
          posix_fadvise DONTNEED); the share of the file still in the page cache is
          measured with mincore and printed, so "cold" is a checked claim;
- warm:   offsets cache cleared, file in the page cache (a WebUI that reloads it);
- cached: the second call with the cache filled (what every later generation pays).

Peak memory is about 2 x 1.72 GB (the tensors written, then the tensors loaded; the
first set is freed before loading). Usage::

    python bench/bench_weights.py [--dir /tmp] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import mmap
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from lib_iclight import weights  # noqa: E402

REFERENCE = ROOT / "tests" / "data" / "sd15_unet_diffusers_keys.txt"


def sd15_diffusers_shapes() -> dict[str, list[int]]:
    shapes = {}
    for line in REFERENCE.read_text().splitlines():
        key, shape = line.split("\t")
        shapes[key] = [int(s) for s in shape.strip("[]").split(",")]
    shapes["conv_in.weight"][1] = 8  # fc: noise + foreground latents
    return shapes


def write_offsets(path: Path) -> int:
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for key, shape in sd15_diffusers_shapes().items():
        tensors[key] = (torch.randn(shape, generator=generator) * 0.01).half()
    count = sum(t.numel() for t in tensors.values())
    save_file(tensors, str(path))
    del tensors
    gc.collect()
    return count


def resident_fraction(path: Path) -> float | None:
    """Share of the file's pages in the page cache (mincore), or None where unsupported."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            return sum(b & 1 for b in vec) / pages
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def evict_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed_load(info: weights.ICModelInfo) -> tuple[float, weights.ICOffsets]:
    started = time.perf_counter()
    offsets = weights.load_offsets(info, dtype=torch.float16)
    return time.perf_counter() - started, offsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="folder for the temporary 1.7 GB file (default: system temp)")
    parser.add_argument("--repeat", type=int, default=3, help="cold and warm loads to take the median of")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="iclight-bench-", dir=args.dir) as folder:
        path = Path(folder) / "iclight_sd15_fc.safetensors"
        started = time.perf_counter()
        count = write_offsets(path)
        size = path.stat().st_size
        print(f"wrote {path.name}: {count:,} values, {size / 1e9:.2f} GB in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        info = weights.resolve_model("fc", [folder])
        print(f"header read + resolve: {(time.perf_counter() - started) * 1e3:.1f} ms -> {info.kind}, "
              f"{info.in_channels} channels")

        cold, warm = [], []
        residency = []
        for _ in range(args.repeat):
            weights.clear_cache()
            gc.collect()
            evict_from_page_cache(path)
            residency.append(resident_fraction(path))
            seconds, offsets = timed_load(info)
            cold.append(seconds)
            del offsets
            weights.clear_cache()
            gc.collect()
            seconds, offsets = timed_load(info)
            warm.append(seconds)
            del offsets

        weights.clear_cache()
        gc.collect()
        _, first = timed_load(info)
        cached = []
        for _ in range(1000):
            seconds, again = timed_load(info)
            assert again is first
            cached.append(seconds)

        shown = ", ".join("n/a" if r is None else f"{r:.1%}" for r in residency)
        cold_s, warm_s, cached_s = (statistics.median(x) for x in (cold, warm, cached))
        print(f"file in page cache before each cold load: {shown}")
        print(f"cold   (disk -> tensors), median of {len(cold)}: {cold_s:8.3f} s  "
              f"({size / 1e9 / cold_s:.2f} GB/s)  all: {', '.join(f'{s:.3f}' for s in cold)}")
        print(f"warm   (page cache -> tensors), median of {len(warm)}: {warm_s:8.3f} s  "
              f"all: {', '.join(f'{s:.3f}' for s in warm)}")
        print(f"cached (second call), median of {len(cached)}: {cached_s * 1e6:8.1f} us")
        print(f"cached vs cold: {cold_s / cached_s:,.0f}x faster; vs warm: {warm_s / cached_s:,.0f}x "
              f"(target >= 20x)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
        print(f"peak RSS: {peak:.2f} GB; torch threads: {torch.get_num_threads()}")
        del first, again
        weights.clear_cache()
    print(f"deleted {folder}")


if __name__ == "__main__":
    main()

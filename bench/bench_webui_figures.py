"""Issue figures for a live WebUI: back-to-back and alternating IC-Light ÷ plain, merges per
request, and the server's resident memory, through the HTTP API.

Works with any WebUI the extension supports, started with ``--api``, an SD1.5 checkpoint,
an fc and an fbc model installed (and a LoRA for the soak). Needs ``--server-pid`` on the
same machine for memory and CPU time (Linux /proc); peaks are measured per phase by
resetting the kernel's peak-RSS mark (``/proc/<pid>/clear_refs``, needs the right to write
it, e.g. root).

Phases, in this order, on a freshly started server:

1. ``plain``: plain requests only -> the plain time and the plain resident set and peak;
2. ``back-to-back``: IC requests in a row (the first one is the warm-up and merges), then
   plain ones in a row again; warm IC ÷ plain compares the medians of each run after its
   first request;
3. ``alternating``: plain, IC, plain, IC ... -> IC ÷ plain medians;
4. ``soak`` (``--soak N``): N requests cycling IC fc / plain / plain with a LoRA / IC fbc,
   resident set after each; growth = last ÷ the value after the first 4.

``blocks`` (``--blocks N``, for big sizes): N blocks of plain x ``--runs`` then IC x
``--runs``; the first request of each block (the restore or the merge) is left out. Each
warm IC request then sits next to warm plain ones in time, so a slow drift of the machine
shows in both.

Every IC request reads ``GET /ic-light/v1/status`` before and after, so the merges it
caused are printed beside its time. Output is one line per request, then a summary.

Run: python bench/bench_webui_figures.py --url http://127.0.0.1:7862 --server-pid PID
         [--size 64] [--steps 2] [--runs 4] [--soak 20] [--lora randlora_unet]

Start the server the way ``webui.sh`` does on Linux, with tcmalloc preloaded
(``LD_PRELOAD=/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4``, Debian's
``libtcmalloc-minimal4``); the first line printed names the malloc the server runs on. Under
glibc's malloc small CPU figures swing by 20-30 % with the heap's history, plain requests
included (see :func:`allocator`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from typing import Any

from bench_webui_api import post, server_cpu_seconds, subject_png

GIB = 1024**3


def get(url: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}{path}", headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def allocator(pid: int | None) -> str:
    """The malloc the server runs on: tcmalloc or jemalloc when preloaded, else glibc's.

    It matters on CPU: oneDNN reorders each conv weight into a fresh buffer on every UNet
    call, and glibc's malloc hands back large buffers to the kernel, so each request then
    page-faults a few GiB in, by amounts that depend on what the heap went through before.
    ``webui.sh`` preloads tcmalloc on Linux when it is installed."""
    if pid is None:
        return "unknown"
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if f"lib{name}" in maps:
            return name
    return "glibc"


def memory(pid: int | None) -> tuple[float, float]:
    """(resident, peak resident) of ``pid`` in GiB, from /proc/<pid>/status."""
    if pid is None:
        return 0.0, 0.0
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024 / GIB
    return values["VmRSS"], values["VmHWM"]


def reset_peak(pid: int | None) -> bool:
    """Reset the peak-RSS mark, so VmHWM tells the peak of the next phase only."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Runner:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.url = opts.url.rstrip("/")
        self.pid = opts.server_pid
        base = {
            "prompt": "a photo of a person, sunset light", "negative_prompt": "lowres, bad quality",
            "sampler_name": "DPM++ 2M", "scheduler": "Karras", "steps": opts.steps,
            "width": opts.size, "height": opts.size, "cfg_scale": 7, "seed": 12345,
        }
        fg = subject_png(opts.size)
        bg = subject_png(opts.size)

        def ic(model: str, background: str | None) -> dict[str, Any]:
            args = [True, model, fg, background, True, "u2net_human_seg", 225, 16, 16, False, False, 3, False]
            return {**base, "alwayson_scripts": {"IC Light": {"args": args}}}

        self.payloads = {
            "plain": base,
            "plain+lora": {**base, "prompt": f"{base['prompt']} <lora:{opts.lora}:1>"},
            "ic": ic(opts.fc, None),
            "ic-fbc": ic(opts.fbc, bg),
        }

    def merges(self) -> int:
        return int(get(self.url, "/ic-light/v1/status")["unet"]["merges"])

    def run(self, kind: str) -> dict[str, float]:
        merges = self.merges()
        cpu = server_cpu_seconds(self.pid)
        start = time.perf_counter()
        body = post(self.url, self.payloads[kind], 3600)
        wall = time.perf_counter() - start
        cpu = server_cpu_seconds(self.pid) - cpu
        if not body.get("images"):
            raise SystemExit(f"{kind}: no image in the answer: {str(body)[:500]}")
        merged = self.merges() - merges
        rss, peak = memory(self.pid)
        print(f"  {kind:10s} {wall:7.2f} s wall, {cpu:7.2f} s CPU, merges {merged}, RSS {rss:.2f} GiB, "
              f"peak {peak:.2f} GiB", flush=True)
        return {"wall": wall, "cpu": cpu, "merges": merged, "rss": rss, "peak": peak}


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("WEBUI_URL", "http://127.0.0.1:7860"))
    parser.add_argument("--server-pid", type=int, default=None)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--runs", type=int, default=4, help="requests per back-to-back run and alternating pairs")
    parser.add_argument("--soak", type=int, default=0)
    parser.add_argument("--blocks", type=int, default=2, help="plain/IC blocks of the blocks phase")
    parser.add_argument("--fc", default="iclight_sd15_fc")
    parser.add_argument("--fbc", default="iclight_sd15_fbc")
    parser.add_argument("--lora", default="randlora_unet")
    parser.add_argument("--phases", default="plain,back-to-back,alternating,soak")
    parser.add_argument("--no-rembg-warmup", action="store_true",
                        help="measure the plain baseline before rembg is imported")
    opts = parser.parse_args()
    runner = Runner(opts)
    phases = opts.phases.split(",")
    status = get(runner.url, "/ic-light/v1/status")
    print(f"{runner.url}: {status['webui']} ({status['backend']}), keep_merged {status['keep_merged']}, "
          f"{opts.size}x{opts.size}, {opts.steps} steps, DPM++ 2M Karras, malloc {allocator(runner.pid)}")

    summary: list[str] = []
    if not opts.no_rembg_warmup:
        # /models lists rembg's models, which imports rembg (onnxruntime, numba, pymatting:
        # ~0.4 GiB resident): the plain baseline then holds the libraries too, and the IC
        # deltas below are what IC-Light's weights and caches cost.
        get(runner.url, "/ic-light/v1/models")
    print("plain:")
    reset_peak(runner.pid)
    plain = [runner.run("plain") for _ in range(max(opts.runs, 1))]
    plain_rss, plain_peak = memory(runner.pid)
    summary.append(f"plain: median {median(plain[1:] or plain, 'wall'):.2f} s; RSS {plain_rss:.2f} GiB, peak {plain_peak:.2f} GiB")

    if "back-to-back" in phases:
        print("back-to-back:")
        reset_peak(runner.pid)
        ics = [runner.run("ic") for _ in range(opts.runs)]
        ic_rss, ic_peak = memory(runner.pid)
        plains = [runner.run("plain") for _ in range(opts.runs)]
        ics2 = [runner.run("ic") for _ in range(opts.runs)]
        warm_ic = ics[1:] + ics2[1:]
        warm_plain = plains[1:]
        summary.append(
            f"back-to-back: warm IC {median(warm_ic, 'wall'):.2f} s / plain {median(warm_plain, 'wall'):.2f} s = "
            f"{median(warm_ic, 'wall') / median(warm_plain, 'wall'):.3f} wall, "
            f"{median(warm_ic, 'cpu') / median(warm_plain, 'cpu'):.3f} CPU; merges by warm IC requests "
            f"{sum(int(r['merges']) for r in warm_ic)}, by the first of each run {[int(ics[0]['merges']), int(ics2[0]['merges'])]}"
        )
        before = plain[1:] or plain
        summary.append(
            f"back-to-back against the plain phase (before any IC): warm IC {median(warm_ic, 'wall'):.2f} s / "
            f"plain {median(before, 'wall'):.2f} s = {median(warm_ic, 'wall') / median(before, 'wall'):.3f} wall"
        )
        summary.append(
            f"memory after IC: RSS {ic_rss:.2f} GiB (+{ic_rss - plain_rss:.3f} over plain), peak during IC "
            f"{ic_peak:.2f} GiB (+{ic_peak - plain_rss:.3f} over plain RSS, +{ic_peak - plain_peak:.3f} over plain peak)"
        )

    if "large" in phases:
        # For big sizes, where each request takes minutes: IC x3 (the first merges), then
        # plain x2; warm IC = the 2nd and 3rd IC, plain = both plain after them.
        print("large (IC x3, plain x2):")
        ics = [runner.run("ic") for _ in range(3)]
        plains = [runner.run("plain") for _ in range(2)]
        summary.append(
            f"large back-to-back: warm IC {median(ics[1:], 'wall'):.2f} s / plain {median(plains, 'wall'):.2f} s = "
            f"{median(ics[1:], 'wall') / median(plains, 'wall'):.3f} wall, "
            f"{median(ics[1:], 'cpu') / median(plains, 'cpu'):.3f} CPU; merges {[int(r['merges']) for r in ics]}; "
            f"first IC {ics[0]['wall']:.2f} s"
        )

    if "blocks" in phases:
        print(f"blocks ({opts.blocks} x plain x{opts.runs}, IC x{opts.runs}):")
        warm_plain, warm_ic = [], []
        for _ in range(opts.blocks):
            warm_plain += [runner.run("plain") for _ in range(opts.runs)][1:]
            warm_ic += [runner.run("ic") for _ in range(opts.runs)][1:]
        summary.append(
            f"blocks: warm IC {median(warm_ic, 'wall'):.2f} s / plain {median(warm_plain, 'wall'):.2f} s = "
            f"{median(warm_ic, 'wall') / median(warm_plain, 'wall'):.3f} wall, "
            f"{median(warm_ic, 'cpu') / median(warm_plain, 'cpu'):.3f} CPU; merges by warm IC requests "
            f"{sum(int(r['merges']) for r in warm_ic)}"
        )

    if "alternating" in phases:
        print("alternating:")
        pairs = [(runner.run("plain"), runner.run("ic")) for _ in range(opts.runs)]
        alt_plain, alt_ic = [a for a, _ in pairs], [b for _, b in pairs]
        summary.append(
            f"alternating: IC {median(alt_ic, 'wall'):.2f} s / plain {median(alt_plain, 'wall'):.2f} s = "
            f"{median(alt_ic, 'wall') / median(alt_plain, 'wall'):.3f} wall, "
            f"{median(alt_ic, 'cpu') / median(alt_plain, 'cpu'):.3f} CPU; merges per IC request "
            f"{[int(r['merges']) for r in alt_ic]}"
        )

    if "soak" in phases and opts.soak:
        print(f"soak ({opts.soak} requests):")
        reset_peak(runner.pid)
        cycle = ["ic", "plain", "plain+lora", "ic-fbc"]
        rows = [runner.run(cycle[i % len(cycle)]) for i in range(opts.soak)]
        after4, last = rows[3]["rss"], rows[-1]["rss"]
        summary.append(
            f"soak: RSS after 4 {after4:.2f} GiB, after {opts.soak} {last:.2f} GiB ({(last / after4 - 1) * 100:+.1f} %), "
            f"max {max(r['rss'] for r in rows):.2f} GiB, peak {memory(runner.pid)[1]:.2f} GiB"
        )

    print("summary:")
    for line in summary:
        print("  " + line)
    print("status:", json.dumps(get(runner.url, "/ic-light/v1/status")))


if __name__ == "__main__":
    main()

"""Plain against IC-Light generation on a live WebUI, through its HTTP API.

Works with any WebUI the extension supports (A1111, Forge 2, Forge Classic, reForge)
started with ``--api``, an SD1.5 checkpoint loaded and an fc model installed. Plain and
IC requests alternate after one warm-up of each, so drifting machine load hits both
arms alike. Same prompt, seed, size and sampler in both arms; rembg on, as a user would
send it.

Reports wall time per request and, with ``--server-pid``, the CPU time the server
process used for it (from /proc/<pid>/stat, Linux): on a shared machine the CPU time is
far less disturbed by other work than the wall time.

Run: python bench/bench_webui_api.py --url http://127.0.0.1:7860 [--size 512] [--steps 20]
         [--pairs 3] [--server-pid PID] [--forge]  (--forge: send Forge 2's hires field)
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import time
import urllib.request
from typing import Any

from PIL import Image, ImageDraw


def subject_png(size: int) -> str:
    """A head-and-shoulders figure on a plain wall, base64 PNG."""
    image = Image.new("RGB", (size, size), (205, 210, 200))
    draw = ImageDraw.Draw(image)
    s = size / 128
    draw.ellipse([44 * s, 14 * s, 84 * s, 58 * s], fill=(224, 172, 140))
    draw.polygon([(24 * s, 128 * s), (36 * s, 70 * s), (92 * s, 70 * s), (104 * s, 128 * s)], fill=(40, 44, 70))
    with io.BytesIO() as buffer:
        image.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode("ascii")


def server_cpu_seconds(pid: int | None) -> float:
    """utime + stime of ``pid`` and its reaped children, in seconds (0 without a pid)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def post(url: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/sdapi/v1/txt2img", data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Connection": "close"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("WEBUI_URL", "http://127.0.0.1:7860"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--model", default="fc", help="IC-Light model name or alias")
    parser.add_argument("--server-pid", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=3600)
    opts = parser.parse_args()
    url = opts.url.rstrip("/")

    plain = {
        "prompt": "a photo of a person, sunset light", "negative_prompt": "lowres, bad quality",
        "sampler_name": "DPM++ 2M", "scheduler": "Karras", "steps": opts.steps,
        "width": opts.size, "height": opts.size, "cfg_scale": 7, "seed": 12345,
    }
    ic_args = [True, opts.model, subject_png(opts.size), None, True, "u2net_human_seg", 225, 16, 16, False, False, 3, False]
    ic = {**plain, "alwayson_scripts": {"IC Light": {"args": ic_args}}}

    def run(name: str, payload: dict[str, Any]) -> tuple[float, float]:
        cpu = server_cpu_seconds(opts.server_pid)
        start = time.perf_counter()
        body = post(url, payload, opts.timeout)
        wall = time.perf_counter() - start
        cpu = server_cpu_seconds(opts.server_pid) - cpu
        if not body.get("images"):
            raise SystemExit(f"{name}: no image in the answer: {str(body)[:500]}")
        print(f"  {name}: {wall:.2f} s wall" + (f", {cpu:.2f} s server CPU" if opts.server_pid else ""), flush=True)
        return wall, cpu

    print(f"{url}: {opts.size}x{opts.size}, {opts.steps} steps, DPM++ 2M Karras, {opts.pairs} pairs")
    run("plain warm-up", plain)
    first = run("IC first use", ic)
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "IC": []}
    for _ in range(opts.pairs):
        results["plain"].append(run("plain", plain))
        results["IC"].append(run("IC", ic))

    def median(name: str, i: int) -> float:
        return statistics.median(v[i] for v in results[name])

    print(f"plain median {median('plain', 0):.2f} s, IC median {median('IC', 0):.2f} s, IC first use {first[0]:.2f} s")
    print(f"warm IC / plain: {median('IC', 0) / median('plain', 0):.3f} wall", end="")
    if opts.server_pid:
        print(f", {median('IC', 1) / median('plain', 1):.3f} server CPU", end="")
    print("  (targets: <= 1.10 on CPU, <= 1.03 on a GPU)")


if __name__ == "__main__":
    main()

"""Plain against IC-Light generation with a full-size SD1.5 UNet, through the real script.

The WebUI around it is the A1111 stand-in of the script tests (tests/script/standins):
the real script, controller, A1111 backend, ldm UNetModel (full SD1.5 config, random
weights drawn like a trained checkpoint's, float32), k-diffusion DPM++ 2M Karras, rembg
with a 320x320 stand-in ONNX model, and a full-size random offset file (float16, ldm
keys). The VAE is the tests' tiny one: its cost is the same in both arms and small next
to the UNet.

Plain and IC generations alternate (after a warm-up and the first IC one), so drifting
machine load hits both arms alike. Times are wall clock and this process's CPU time.

Prints: the warm IC/plain time ratio, the first-use cost, and the extra resident memory
(after the runs and the peak during an IC generation, split into the merged weights
IC-Light keeps and the rest, mostly rembg's libraries).
Targets (issue 3): warm ratio <= 1.10 on CPU, extra memory <= one copy of the UNet weights.

``--device cuda`` runs it as A1111 runs on an NVIDIA card: UNet and VAE in float16 on
the GPU, sampling under CUDA autocast; GPU memory is reported beside resident memory.
There the script is driven through its controller directly when gradio is not installed
(the GPU machine has none): the same hooks, without the panel.

Run: python bench/bench_a1111_generation.py [--steps 10] [--size 512] [--pairs 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import sys
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "script" / "standins"))



def rss_gb() -> float:
    return psutil.Process().memory_info().rss / 1e9


from sd15 import build_sd15_unet, random_offsets  # noqa: E402


class PeakRss:
    """The highest resident set size seen while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> "PeakRss":
        self.peak = rss_gb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_gb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_gb())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=2, help="warm plain/IC pairs after the first IC generation")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (float16, as A1111 on a GPU)")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    # The devices stand-in reads this when first imported, below.
    os.environ["ICLIGHT_STANDIN_DEVICE"] = opts.device
    on_gpu = opts.device.startswith("cuda")

    from safetensors.torch import save_file

    from modules import paths, processing, scripts, shared
    from tests.helpers.images import disc_image, to_base64
    from tests.helpers.onnx_models import install_standin
    from tests.script.tiny_sd import TinyLatentDiffusion
    import networks  # noqa: F401  (the processing stand-in activates extra networks through it)

    work = Path(tempfile.mkdtemp(prefix="iclight-bench-"))
    install_standin(work / "u2net", "u2net_human_seg", size=320)
    os.environ["U2NET_HOME"] = str(work / "u2net")
    os.environ["MODEL_CHECKSUM_DISABLED"] = "1"

    t = time.perf_counter()
    unet = build_sd15_unet()
    print(f"built the SD1.5 UNet: {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M parameters in {time.perf_counter() - t:.1f} s")
    ic_dir = Path(paths.models_path) / "ic-light"
    ic_dir.mkdir(parents=True, exist_ok=True)
    offsets = random_offsets(unet, "fc")
    save_file(offsets, str(ic_dir / "iclight_sd15_fc.safetensors"))
    del offsets
    gc.collect()

    model = TinyLatentDiffusion(unet)
    model.context_dim = 768
    if on_gpu:
        from modules import devices

        model.to(devices.device, devices.dtype_unet)
    unet_bytes = sum(p.numel() * p.element_size() for p in unet.parameters())
    shared.sd_model = model

    script, kept_bytes_now = load_script(ic_dir)
    from lib_iclight.args import ARG_SPECS

    defaults = [s.default for s in ARG_SPECS]
    ic = dict(zip([s.name for s in ARG_SPECS], defaults))
    ic.update(enable=True, model_type="fc", input_fg=to_base64(disc_image(opts.size)))
    ic_args = [ic[s.name] for s in ARG_SPECS]

    def generate(args, steps: int = opts.steps) -> tuple[float, float]:
        p = processing.StableDiffusionProcessingTxt2Img(prompt="a photo", steps=steps, width=opts.size, height=opts.size)
        p.scripts = scripts.ScriptRunner([script])
        p.script_args = tuple(args)
        if on_gpu:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        processing.process_images(p)
        if on_gpu:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"  {'IC' if args[0] else 'plain'} generation: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
        return wall, cpu

    generate(defaults, steps=1)  # warm-up: allocator, kernels
    gc.collect()
    rss_plain = rss_gb()
    gpu_plain = torch.cuda.memory_allocated() / 1e9 if on_gpu else 0.0
    with PeakRss() as plain_peak:  # sampling's own activations: the baseline for the IC peaks
        plain = [generate(defaults)]
    with PeakRss() as first_peak:
        first_ic = generate(ic_args)
    warm_ic = []
    for _ in range(opts.pairs):
        plain.append(generate(defaults))
        with PeakRss() as warm_peak:
            warm_ic.append(generate(ic_args))
    gc.collect()
    rss_ic = rss_gb()
    kept_bytes = kept_bytes_now()

    def median(values: list[tuple[float, float]], i: int) -> float:
        return statistics.median(v[i] for v in values)

    plain_wall, plain_cpu = median(plain, 0), median(plain, 1)
    warm_wall, warm_cpu = median(warm_ic, 0), median(warm_ic, 1)
    copies = lambda gb: gb * 1e9 / unet_bytes  # noqa: E731
    where = f"{torch.cuda.get_device_name()} float16" if on_gpu else f"CPU float32, threads={opts.threads}"
    print(f"steps={opts.steps} size={opts.size} {where}, DPM++ 2M Karras, CFG batched (batch 2)")
    print(f"plain generation: {', '.join(f'{w:.2f}' for w, _ in plain)} s wall (median {plain_wall:.2f}); CPU median {plain_cpu:.2f} s")
    print(f"IC first use:     {first_ic[0]:.2f} s wall (+{first_ic[0] - plain_wall:.2f} s over the plain median: "
          "offset file read, merge, rembg session and matting, VAE encode)")
    print(f"IC warm:          {', '.join(f'{w:.2f}' for w, _ in warm_ic)} s wall (median {warm_wall:.2f}); CPU median {warm_cpu:.2f} s")
    print(f"warm IC / plain ratio: {warm_wall / plain_wall:.3f} wall, {warm_cpu / plain_cpu:.3f} CPU  "
          f"(target <= {'1.03 on a GPU' if on_gpu else '1.10 on CPU'})")
    print(f"UNet weights: {unet_bytes / 1e9:.3f} GB. Resident after plain {rss_plain:.2f} GB, after the IC runs {rss_ic:.2f} GB: "
          f"extra {rss_ic - rss_plain:.2f} GB = {copies(rss_ic - rss_plain):.2f} UNet copies (target <= 1)")
    print(f"  of which merged IC-Light weights kept between generations: {kept_bytes / 1e9:.3f} GB = "
          f"{kept_bytes / unet_bytes:.5f} copies; the rest (rembg, onnxruntime, caches): {rss_ic - rss_plain - kept_bytes / 1e9:.2f} GB")
    print(f"peak resident during a plain generation {plain_peak.peak:.2f} GB; during the first IC generation "
          f"{first_peak.peak:.2f} GB (extra {copies(first_peak.peak - plain_peak.peak):.2f} copies), "
          f"during a warm one {warm_peak.peak:.2f} GB (extra {copies(warm_peak.peak - plain_peak.peak):.2f} copies)")
    if on_gpu:
        gpu_ic = torch.cuda.memory_allocated() / 1e9
        print(f"GPU memory allocated after plain {gpu_plain:.2f} GB, after the IC runs {gpu_ic:.2f} GB "
              f"(extra {copies(gpu_ic - gpu_plain):.2f} UNet copies); peak {torch.cuda.max_memory_allocated() / 1e9:.2f} GB")


def load_script(ic_dir: Path):
    """The "IC Light" script object, and a function giving the bytes of merged weights it keeps.

    The real script file needs gradio (its panel); without gradio, an AlwaysOn script with
    the same hooks drives the same controller.
    """
    try:
        import gradio  # noqa: F401
    except ImportError:
        gradio = None
    if gradio is not None:
        spec = importlib.util.spec_from_file_location("iclight_script", ROOT / "scripts" / "ic_light.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        get_controller = module.controller
        script = module.ICLightScript()
    else:
        from modules import scripts

        from lib_iclight.webui.controller import ICLightController
        from lib_iclight.backends.detect import make_backend
        from lib_iclight.webui.settings import ICLightSettings

        print("gradio is not installed: driving the controller through a panel-less script")
        controller = ICLightController(make_backend(), lambda: [ic_dir], ICLightSettings)
        get_controller = lambda: controller  # noqa: E731

        class PanellessScript(scripts.Script):
            def title(self) -> str:
                return "IC Light"

            def show(self, is_img2img: bool):
                return scripts.AlwaysVisible

            def process(self, p, *args):
                controller.process(p, *args)

            def process_before_every_sampling(self, p, *args, **kwargs):
                controller.process_before_every_sampling(p, *args, **kwargs)

            def postprocess_image(self, p, pp, *args):
                controller.postprocess_image(p, pp, *args)

            def postprocess(self, p, processed, *args):
                controller.postprocess(p, processed, *args)

        script = PanellessScript()

    def kept_bytes() -> int:
        kept = get_controller().backend._kept
        return kept.merged_bytes if kept is not None else 0

    return script, kept_bytes


if __name__ == "__main__":
    main()

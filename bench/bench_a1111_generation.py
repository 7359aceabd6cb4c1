"""Plain against IC-Light generation with a full-size SD1.5 UNet on CPU, through the real script.

The WebUI around it is the A1111 stand-in of the script tests (tests/script/standins):
the real script, controller, A1111 backend, ldm UNetModel (full SD1.5 config, random
weights, float32), k-diffusion DPM++ 2M Karras, rembg with a 320x320 stand-in ONNX model,
and a full-size random offset file (float16, ldm keys). The VAE is the tests' tiny one:
its cost is the same in both arms and small next to the UNet.

Prints: the warm IC/plain time ratio, the first-use cost, and the extra resident memory.
Targets (issue 3): warm ratio <= 1.10 on CPU, extra memory <= one copy of the UNet weights.

Run: python bench/bench_a1111_generation.py [--steps 8] [--size 512]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)

    import importlib.util

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
    unet_bytes = sum(p.numel() * p.element_size() for p in unet.parameters())
    model = TinyLatentDiffusion(unet)
    model.context_dim = 768
    shared.sd_model = model

    ic_dir = Path(paths.models_path) / "ic-light"
    ic_dir.mkdir(parents=True, exist_ok=True)
    offsets = random_offsets(unet, "fc")
    save_file(offsets, str(ic_dir / "iclight_sd15_fc.safetensors"))
    del offsets
    gc.collect()

    spec = importlib.util.spec_from_file_location("iclight_script", ROOT / "scripts" / "ic_light.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    script = module.ICLightScript()
    from lib_iclight.args import ARG_SPECS

    defaults = [s.default for s in ARG_SPECS]
    ic = dict(zip([s.name for s in ARG_SPECS], defaults))
    ic.update(enable=True, model_type="fc", input_fg=to_base64(disc_image(opts.size)))
    ic_args = [ic[s.name] for s in ARG_SPECS]

    def generate(args) -> float:
        p = processing.StableDiffusionProcessingTxt2Img(prompt="a photo", steps=opts.steps, width=opts.size, height=opts.size)
        p.scripts = scripts.ScriptRunner([script])
        p.script_args = tuple(args)
        start = time.perf_counter()
        processing.process_images(p)
        elapsed = time.perf_counter() - start
        print(f"  {'IC' if args[0] else 'plain'} generation: {elapsed:.2f} s", flush=True)
        return elapsed

    generate(defaults)  # warm-up: allocator, kernels
    rss_plain = rss_gb()
    plain_1 = generate(defaults)
    first_ic = generate(ic_args)
    warm_ic = [generate(ic_args) for _ in range(2)]
    gc.collect()
    rss_ic = rss_gb()
    plain_2 = generate(defaults)
    plain = (plain_1 + plain_2) / 2
    warm = min(warm_ic)
    print(f"steps={opts.steps} size={opts.size} threads={opts.threads}")
    print(f"plain generation: {plain_1:.2f} s and {plain_2:.2f} s (mean {plain:.2f} s)")
    print(f"IC first use:     {first_ic:.2f} s (+{first_ic - plain:.2f} s over plain: offset load, rembg session, merge)")
    print(f"IC warm:          {', '.join(f'{w:.2f}' for w in warm_ic)} s")
    print(f"warm IC / plain ratio: {warm / plain:.3f}  (target <= 1.10 on CPU)")
    print(f"UNet weights: {unet_bytes / 1e9:.2f} GB; resident after plain {rss_plain:.2f} GB, after IC {rss_ic:.2f} GB: "
          f"extra {rss_ic - rss_plain:.2f} GB = {(rss_ic - rss_plain) * 1e9 / unet_bytes:.2f} UNet copies (target <= 1)")


if __name__ == "__main__":
    main()

"""One merge of IC-Light's offsets through Forge Classic's real ``ModelPatcher.patch_model``.

An IC-Light request after a plain one pays one merge on the Forge family (the plain request
put the original weights back). This times that merge on Forge Classic's own code, in one
process, three ways interleaved round by round:

* ``webui``: the WebUI's loop and ``calculate_weight`` as they are;
* ``shim``: the loop with the extension's ``calculate_weight`` shim (one in-place add into
  the loop's fp32 copy of each weight);
* ``load``: the extension's ``patch_model`` wrapper as well (one fresh add per weight, the
  loop's copy skipped), which is what the adapter installs on Forge Classic.

The UNet is a full-size SD1.5 ``ldm_patched`` UNet in fp32 on the CPU (``--always-cpu``);
with ``--checkpoint`` and ``--ic-model`` it holds a real checkpoint's weights and gets a real
IC-Light file's offsets, else random ones of the same shapes. conv_in is left out (its
wider diff goes through the WebUI's code in every variant). Each round patches, times it,
then unpatches.

Run it with Forge Classic's Python, from its folder, tcmalloc preloaded as ``webui.sh``
does on Linux::

    cd <forge-classic> && LD_PRELOAD=/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
      PYTHONPATH=$PWD venv/bin/python <extension>/bench/bench_classic_merge.py --rounds 5 \\
      [--checkpoint sd15.safetensors --ic-model iclight_sd15_fc.safetensors]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SD15_UNET = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
    channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True, transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
    transformer_depth_middle=1, transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=768,
    use_linear_in_transformer=False, legacy=False, dtype=torch.float32,
)
CONV_IN = "diffusion_model.input_blocks.0.0.weight"


def build_patcher(checkpoint: str | None):
    """A Forge Classic ModelPatcher around a CPU fp32 SD1.5 UNet (keys ``diffusion_model.*``)."""
    import ldm_patched.modules.args_parser as args_parser

    args_parser.args.always_cpu = True  # before model_management is imported
    import ldm_patched.modules.model_patcher as model_patcher
    import ldm_patched.modules.ops as ops
    from ldm_patched.ldm.modules.diffusionmodules.openaimodel import UNetModel

    holder = torch.nn.Module()
    with torch.no_grad():
        holder.diffusion_model = UNetModel(**SD15_UNET, operations=ops.disable_weight_init)
        for weight in holder.parameters():
            torch.nn.init.normal_(weight, std=0.02)
    if checkpoint:
        from safetensors.torch import load_file

        state = {k[len("model."):]: v.float() for k, v in load_file(checkpoint).items()
                 if k.startswith("model.diffusion_model.")}
        holder.load_state_dict(state, strict=True)
    holder.requires_grad_(False)
    cpu = torch.device("cpu")
    return model_patcher.ModelPatcher(holder, load_device=cpu, offload_device=cpu)


def offsets_for(patcher, ic_model: str | None) -> dict[str, torch.Tensor]:
    """fp16 offsets per UNet key but conv_in: a real file's, or random ones."""
    if ic_model:
        from lib_iclight.weights import load_offsets, read_model_info

        tensors = load_offsets(read_model_info(ic_model)).tensors
        return {f"diffusion_model.{k}": v for k, v in tensors.items() if f"diffusion_model.{k}" != CONV_IN}
    return {k: (torch.randn_like(v) * 0.01).half() for k, v in patcher.model.state_dict().items() if k != CONV_IN}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--checkpoint", default=None, help="an SD1.5 .safetensors checkpoint")
    parser.add_argument("--ic-model", default=None, help="an IC-Light fc/fbc .safetensors file")
    opts = parser.parse_args()

    from lib_iclight.backends import fast_load, fast_merge, forge_classic, merge_hooks

    patcher = build_patcher(opts.checkpoint)
    offsets = offsets_for(patcher, opts.ic_model)
    fast_merge.register(offsets.values())
    patcher.add_patches({k: (v,) for k, v in offsets.items()}, 1.0, 1.0)
    merge_site = forge_classic.merge_site(patcher)
    load_site = fast_load.patch_model_site(patcher, merge_site)
    if load_site is None:
        raise SystemExit("this WebUI's patch_model is not Forge Classic's loop")
    parameters = sum(v.numel() for v in patcher.model.parameters()) / 1e6
    print(f"Forge Classic patch_model, {parameters:.1f} M parameters fp32 on CPU, {len(offsets)} fp16 offsets, "
          f"{torch.get_num_threads()} threads")

    def use(variant: str) -> None:
        merge_hooks.remove(load_site)
        merge_hooks.remove(merge_site)
        if variant != "webui":
            forge_classic.install_shim(merge_site)
        if variant == "load":
            merge_hooks.install(load_site, fast_load.make_patch_model)

    variants = ["webui", "shim", "load"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu = torch.device("cpu")
    try:
        for round_ in range(opts.rounds + 1):  # round 0 warms the allocator up and is not counted
            for variant in variants:
                use(variant)
                start = time.perf_counter()
                with torch.no_grad():
                    patcher.patch_model(device_to=cpu)
                elapsed = time.perf_counter() - start
                patcher.unpatch_model(cpu)
                if round_:
                    times[variant].append(elapsed)
    finally:
        use("webui")
    for variant in variants:
        values = times[variant]
        print(f"  {variant:6s} median {statistics.median(values):.3f} s  (min {min(values):.3f}, "
              f"max {max(values):.3f}, {len(values)} rounds)")


if __name__ == "__main__":
    main()

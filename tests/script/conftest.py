"""A stand-in A1111 (tests/script/standins) with the real script, ldm UNet, VAE blocks,
k-diffusion sampler, rembg (tiny ONNX model), safetensors files and gradio."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
from safetensors.torch import save_file

from tests.helpers.onnx_models import install_standin
from tests.helpers.tiny_unet import make_offsets, make_tiny_unet

ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
_STANDIN_MODULES = ("modules", "networks")


def _drop_standins() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in _STANDIN_MODULES or name == "iclight_script" or name.startswith("lib_iclight.webui.glue"):
            del sys.modules[name]


@pytest.fixture(scope="package")
def webui(tmp_path_factory):
    """Start the stand-in WebUI: model loaded, IC models and rembg weights in place, script loaded."""
    saved_env = {k: os.environ.get(k) for k in ("U2NET_HOME", "MODEL_CHECKSUM_DISABLED")}
    _drop_standins()
    sys.path.insert(0, str(STANDINS))
    try:
        from modules import paths, sd_models, shared  # noqa: F401
        import networks

        from tests.script.tiny_sd import TinyLatentDiffusion

        home = tmp_path_factory.mktemp("u2net")
        install_standin(home, "u2net_human_seg")
        os.environ["U2NET_HOME"] = str(home)
        os.environ["MODEL_CHECKSUM_DISABLED"] = "1"

        model = TinyLatentDiffusion(make_tiny_unet(seed=0))
        unet = model.model.diffusion_model
        shared.sd_model = model
        sd_models.checkpoints["base"] = {k: v.clone() for k, v in unet.state_dict().items()}
        sd_models.checkpoints["other"] = {k: v.clone() for k, v in make_tiny_unet(seed=5).state_dict().items()}
        networks.install(unet)

        ic_dir = Path(paths.models_path) / "ic-light"
        ic_dir.mkdir(parents=True, exist_ok=True)
        # ldm-key files as community repacks ship them; the names are what the API uses
        save_file({k: v.half() for k, v in make_offsets(unet, "fc", seed=11, scale=0.05).items()}, str(ic_dir / "IC-Light-SD15-FC-fp8.safetensors"))
        save_file({k: v.half() for k, v in make_offsets(unet, "fbc", seed=12, scale=0.05).items()}, str(ic_dir / "iclight_sd15_fbc.safetensors"))

        spec = importlib.util.spec_from_file_location("iclight_script", ROOT / "scripts" / "ic_light.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["iclight_script"] = module
        spec.loader.exec_module(module)
        yield types.SimpleNamespace(script_module=module, script=module.ICLightScript(), shared=shared,
                                    networks=networks, sd_models=sd_models, model=model, ic_dir=ic_dir, u2net_home=home)
    finally:
        try:
            import networks

            networks.uninstall()
        except ImportError:
            pass
        sys.path.remove(str(STANDINS))
        _drop_standins()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

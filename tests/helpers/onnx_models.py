"""Tiny ONNX stand-ins for rembg's models, so tests run rembg for real with no download.

The stand-in computes ``Sigmoid(gain * ReduceMean(x, axis=1))`` on rembg's normalised
input: a pixel brighter than the ImageNet mean becomes subject (1), a darker one
background (0). On :func:`tests.helpers.images.disc_image` (a bright disc on a dark
background) that is a clean disc mask with a soft one-pixel edge, so the alpha-matting
trimap has sure foreground, sure background and an unknown band between them.

Files are a few hundred bytes, opset 13 and IR version 8 (what onnxruntime 1.16+ and
rembg's sessions all accept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8


def build_standin_model(size: int | None = None, gain: float = 20.0) -> onnx.ModelProto:
    """The stand-in model. ``size`` fixes the input to ``[1, 3, size, size]`` (as u2net's
    320 or isnet's 1024); ``None`` leaves batch, height and width dynamic.

    Input ``input`` float [N, 3, H, W]; output ``mask`` float [N, 1, H, W] in 0..1,
    which rembg's u2net/isnet sessions read as output 0, channel 0.
    """
    dims = [1, 3, size, size] if size else ["N", 3, "H", "W"]
    out_dims = [1, 1, size, size] if size else ["N", 1, "H", "W"]
    graph = helper.make_graph(
        nodes=[
            # In opset 13 ReduceMean takes its axes as an attribute (an input from 18 on).
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Mul", ["mean", "gain"], ["scaled"]),
            helper.make_node("Sigmoid", ["scaled"], ["mask"]),
        ],
        name="rembg_standin",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        outputs=[helper.make_tensor_value_info("mask", TensorProto.FLOAT, out_dims)],
        initializer=[numpy_helper.from_array(np.array(gain, dtype=np.float32), "gain")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="iclight-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def install_standin(home: Path, name: str = "u2net_human_seg", size: int | None = None) -> Path:
    """Write the stand-in as ``home/<name>.onnx`` (rembg's file name for model ``name``)."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"{name}.onnx"
    onnx.save(build_standin_model(size), str(path))
    return path


def block_downloads(monkeypatch) -> None:
    """Make every HTTP request pooch (rembg's downloader) makes fail at once, as offline."""
    import requests

    def refuse(*args, **kwargs):
        raise requests.exceptions.ConnectionError("network disabled in tests")

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests, "head", refuse)


def use_model_home(monkeypatch, folder: Path, names: tuple[str, ...] = ()) -> Path:
    """Point rembg at ``folder`` (U2NET_HOME, checksum check off), install stand-ins for
    ``names`` there, and empty the extension's session cache. Downloads are blocked."""
    from lib_iclight.rembg_session import clear_session_cache

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("U2NET_HOME", str(folder))
    monkeypatch.setenv("MODEL_CHECKSUM_DISABLED", "1")
    block_downloads(monkeypatch)
    for name in names:
        install_standin(folder, name)
    clear_session_cache()
    return folder

"""Mirrors modules/devices.py: the device and dtypes A1111 picked.

CPU and float32 by default (the tests). ``ICLIGHT_STANDIN_DEVICE=cuda`` (the GPU
benchmark) picks what A1111 picks on an NVIDIA card without ``--no-half``: float16 for
the UNet and the VAE, and ``torch.autocast("cuda")`` around sampling.
"""
import contextlib
import os

import torch

device = torch.device(os.environ.get("ICLIGHT_STANDIN_DEVICE", "cpu"))
cpu = torch.device("cpu")
dtype = torch.float16 if device.type == "cuda" else torch.float32
dtype_vae = dtype
dtype_unet = dtype
unet_needs_upcast = False


def autocast(disable=False):
    # As A1111: no autocast at full precision, CUDA autocast otherwise.
    if disable or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cuda")


def without_autocast(disable=False):
    return torch.autocast("cuda", enabled=False) if device.type == "cuda" and not disable else contextlib.nullcontext()


def torch_gc():
    pass

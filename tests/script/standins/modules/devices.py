"""Mirrors modules/devices.py: the device and dtypes A1111 picked (CPU, float32 here)."""
import contextlib

import torch

device = torch.device("cpu")
cpu = torch.device("cpu")
dtype = torch.float32
dtype_vae = torch.float32
dtype_unet = torch.float32
unet_needs_upcast = False


def autocast(disable=False):
    return contextlib.nullcontext()


def without_autocast(disable=False):
    return contextlib.nullcontext()


def torch_gc():
    pass

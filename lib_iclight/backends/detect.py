"""Which WebUI family is running, told by what can be imported (never by a version string).

* Forge 2 has the ``backend`` package with ``backend.patcher`` (its model patchers).
* Forge Classic and reForge have ``ldm_patched.modules.model_patcher`` (ComfyUI lineage).
* Anything else of the A1111 lineage is treated as AUTOMATIC1111.

Forge 2 is tested first: it has no ``ldm_patched``, but a future one might ship both.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Literal

from .base import Backend

logger = logging.getLogger("iclight.backends.detect")

BackendName = Literal["forge", "forge-classic", "a1111"]

_MARKERS: tuple[tuple[BackendName, tuple[str, ...]], ...] = (
    ("forge", ("backend.patcher", "backend.patcher.unet")),
    ("forge-classic", ("ldm_patched.modules.model_patcher",)),
)


def _importable(name: str) -> bool:
    """Whether ``name`` can be found. ``find_spec`` imports the parent packages, which may
    raise anything (a broken or unrelated ``backend`` package): that counts as absent."""
    try:
        return importlib.util.find_spec(name) is not None
    except Exception as exc:  # noqa: BLE001 - ImportError, ValueError, errors of foreign packages
        logger.debug("cannot look up %s: %r", name, exc)
        return False


def detect_backend_name() -> BackendName:
    """"forge", "forge-classic" (Forge Classic and reForge) or "a1111"."""
    for name, modules in _MARKERS:
        if all(_importable(module) for module in modules):
            return name
    return "a1111"


def make_backend(name: BackendName | None = None) -> Backend:
    """The adapter for ``name`` (detected when None); imported only when chosen."""
    name = name or detect_backend_name()
    if name == "forge":
        from .forge import ForgeBackend

        return ForgeBackend()
    if name == "forge-classic":
        from .forge_classic import ForgeClassicBackend

        return ForgeClassicBackend()
    if name == "a1111":
        module = importlib.import_module(f"{__package__}.a1111")
        return module.A1111Backend()
    raise ValueError(f"unknown WebUI backend {name!r}")

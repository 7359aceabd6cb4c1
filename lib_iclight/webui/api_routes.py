"""The extension's own read-only API routes, under ``/ic-light/v1``.

Pure FastAPI: the WebUI glue hands in the FastAPI app and two listing functions, so the
routes can be tested with a bare app. Nothing here reveals a file path: callers only ever
need model names, which is what the ``model_type`` argument takes.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol, Sequence

from ..args import ARG_NAMES, json_schema

logger = logging.getLogger("iclight.api_routes")

PREFIX = "/ic-light/v1"
VERSION = "1.0.0"
"""The extension's version as ``/version`` reports it; bump it with each release."""


class ModelInfoLike(Protocol):
    """What the routes read from :class:`lib_iclight.weights.ICModelInfo`."""

    name: str
    kind: str
    in_channels: int


def models_payload(models: Sequence[ModelInfoLike], rembg_models: Sequence[str],
                   unreadable: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The body of ``GET /models``: names, kinds and channel counts, never paths; and the
    files left out, each with the reason (which names the file, never its folder)."""
    return {
        "models": [{"name": m.name, "kind": m.kind, "in_channels": int(m.in_channels)} for m in models],
        "rembg_models": list(rembg_models),
        "unreadable": [{"name": name, "reason": reason} for name, reason in unreadable],
    }


def version_payload() -> dict[str, Any]:
    """The body of ``GET /version``."""
    return {"version": VERSION, "api": "v1", "args": list(ARG_NAMES)}


def register_routes(
    app: Any,
    list_ic_models: Callable[[], Sequence[ModelInfoLike]],
    list_rembg_models: Callable[[], Sequence[str]],
    list_unreadable: Callable[[], Sequence[tuple[str, str]]] = tuple,
    status: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Add ``GET /ic-light/v1/{models,schema,version,status}`` to ``app`` (a FastAPI app).

    The listing functions run per request, so files added while the WebUI runs show up
    without a restart. Listing rembg models imports rembg, which is slow the first time
    (about a minute on a fresh install); it happens on the first ``/models`` call, never at
    start-up. ``list_unreadable`` gives (name, reason) of model files that were left out.
    """

    @app.get(f"{PREFIX}/models", tags=["IC Light"])
    def ic_light_models() -> dict[str, Any]:
        """The IC-Light models found on disk, the rembg models available, and the model
        files left out because they cannot be read or are not IC-Light files, with why."""
        return models_payload(list_ic_models(), list_rembg_models(), list_unreadable())

    @app.get(f"{PREFIX}/schema", tags=["IC Light"])
    def ic_light_schema() -> dict[str, Any]:
        """The JSON schema of the named (dict) form of the script args (the 13 of the
        contract, then the lighting options), with the light-map and background names."""
        return json_schema()

    @app.get(f"{PREFIX}/version", tags=["IC Light"])
    def ic_light_version() -> dict[str, Any]:
        """The extension's version and the positional order of its args."""
        return version_payload()

    if status is not None:

        @app.get(f"{PREFIX}/status", tags=["IC Light"])
        def ic_light_status() -> dict[str, Any]:
            """The WebUI family and adapter, the IC model the UNet holds now, merges and
            restores since start, and what the offset, latent and subject caches hold."""
            return status()

    logger.debug("registered %s/{models,schema,version%s}", PREFIX, ",status" if status is not None else "")

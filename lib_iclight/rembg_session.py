"""Background removal with rembg: one cached ONNX session per model, and the cut-out.

rembg is imported inside the functions only: its first import compiles pymatting's
numba code (about a minute on a fresh install), which must not slow down the WebUI's
start or any code path that never removes a background.

Model files live in :func:`model_home` (``$U2NET_HOME``, else ``$XDG_DATA_HOME/.u2net``,
else ``~/.u2net``), named ``<model>.onnx``; rembg downloads a missing one on first use.
"""

from __future__ import annotations

import logging
import operator
import os
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from .errors import ICLightError, describe_value, without_path
from .images import composite_on_grey

logger = logging.getLogger("iclight.rembg_session")

# Sessions rembg registers that cannot run from a model name alone: the *_custom ones
# need a model_path, "sam" needs point/box prompts. The API has no field for either.
_NEEDS_EXTRA_ARGS = ("sam",)

_sessions: dict[str, Any] = {}
_lock = threading.Lock()


class Cutout(NamedTuple):
    """The subject cut out of an image."""

    image: Image.Image
    """``"RGBA"``: the subject's colours (decontaminated when matted) with ``mask`` as alpha."""
    mask: Image.Image
    """``"L"`` 0..255: how much each pixel belongs to the subject."""
    matted: bool
    """True when pymatting refined the edges; False when the model's mask was used as is."""


def model_home() -> Path:
    """The folder rembg reads model files from: ``$U2NET_HOME``, else ``$XDG_DATA_HOME/.u2net``,
    else ``~/.u2net`` (the same rule rembg applies)."""
    default = os.path.join(os.getenv("XDG_DATA_HOME", "~"), ".u2net")
    return Path(os.path.expanduser(os.getenv("U2NET_HOME", default)))


def _import_rembg(module: str = "rembg") -> Any:
    """Import rembg (or one of its modules) lazily, keeping torch's thread count.

    Importing rembg initialises numba/OpenMP through pymatting, which resets torch's
    intra-op thread count (measured: 1 -> 2 on this machine). On a CPU WebUI that
    changes the reduction order of every later generation, so a plain generation after
    an IC one would no longer be bit-identical to one before.
    """
    import importlib

    import torch

    threads = torch.get_num_threads()
    try:
        return importlib.import_module(module)
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _session_classes() -> dict[str, type]:
    """rembg's registry, name -> session class.

    ``rembg.sessions.sessions_class`` is there from 2.0.35 (at least) through 2.0.77 and
    the main branch; the ``sessions`` dict only since 2.0.65. Read whichever is there
    rather than pin one layout.
    """
    registry = _import_rembg("rembg.sessions")

    classes = getattr(registry, "sessions_class", None)
    if classes is None:
        classes = list(getattr(registry, "sessions", {}).values())
    return {cls.name(): cls for cls in classes}


def _usable(name: str) -> bool:
    return not name.endswith("_custom") and name not in _NEEDS_EXTRA_ARGS


def list_rembg_models() -> list[str]:
    """The model names the installed rembg can run from a name alone, sorted.

    Leaves out the sessions that need more than a name (``*_custom``, ``sam``).
    """
    return sorted(name for name in _session_classes() if _usable(name))


def get_session(name: str) -> Any:
    """The rembg session for model ``name``, created once and then reused.

    Thread-safe: concurrent first calls create a single session. Raises
    ICLightError("rembg_model", ...) for an unknown name, and for a model file that is
    missing and cannot be downloaded (saying which file to put where) or cannot be loaded.
    """
    if not isinstance(name, str) or not name.strip():
        raise ICLightError.expected("rembg_model", "a rembg model name", name)
    session = _sessions.get(name)
    if session is not None:
        return session
    with _lock:
        # Another thread may have finished creating it while this one waited.
        session = _sessions.get(name)
        if session is None:
            session = _create_session(name)
            _sessions[name] = session
        return session


def clear_session_cache() -> None:
    """Drop every cached session (frees their memory; the next use loads the file again)."""
    with _lock:
        _sessions.clear()


def _create_session(name: str) -> Any:
    classes = _session_classes()
    if name not in classes:
        raise ICLightError(
            "rembg_model", f"unknown model {describe_value(name)}, available: {', '.join(list_rembg_models())}"
        )
    if not _usable(name):
        raise ICLightError(
            "rembg_model",
            f"{name} needs a model path or prompts that IC-Light cannot pass; "
            f"use one of: {', '.join(list_rembg_models())}",
        )

    # rembg <= 2.0.69 hands every model file to pooch with its md5. A file the user put
    # in place themselves (a mirror, a re-export, an offline copy) then fails the hash
    # and pooch tries to re-download it, which fails offline. With this variable set
    # rembg passes no hash and pooch uses the existing file. setdefault: a user's own
    # choice wins. It is process-wide, which is what any other rembg user here wants too.
    os.environ.setdefault("MODEL_CHECKSUM_DISABLED", "1")

    rembg = _import_rembg()

    path = model_home() / f"{name}.onnx"
    start = time.perf_counter()
    try:
        session = rembg.new_session(name)
    except Exception as exc:  # noqa: BLE001 - requests/pooch/onnxruntime each raise their own
        # Messages reach API clients: the file by name, the folder as U2NET_HOME; the full
        # path and the whole exception go to the server log.
        logger.warning("rembg model %s (%s) failed to load: %r", name, path, exc)
        reason = without_path(_short(exc), path)
        if not path.is_file():
            raise ICLightError(
                "rembg_model",
                f"the model file {path.name} is missing and could not be downloaded ({reason}); "
                f"put {path.name} in the rembg model folder (U2NET_HOME, default ~/.u2net; "
                "the server log gives its full path)",
            ) from exc
        raise ICLightError(
            "rembg_model",
            f"could not load {path.name} ({reason}); replace the file, or delete it to download it again",
        ) from exc
    logger.info("rembg session %s ready in %.2f s (%s)", name, time.perf_counter() - start, path)
    return session


def _short(exc: Exception, limit: int = 240) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."


# -------------------------------------------------------------------------- cut-out


def _check_level(arg: str, value: Any, high: int | None) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ICLightError.expected(arg, "an int", value) from None
    if number < 0 or (high is not None and number > high):
        raise ICLightError.expected(arg, f"an int in 0..{high}" if high is not None else "an int >= 0", value)
    return number


def predict_mask(img: Image.Image, model: str) -> Image.Image:
    """The model's subject mask for ``img`` (any mode; alpha is flattened on grey first):
    ``"L"`` 0..255 at the image's size.

    Models that return several masks (``u2net_cloth_seg``: upper, lower, full body) are
    merged by taking the per-pixel maximum, i.e. the union of everything they found.
    """
    rgb = composite_on_grey(img)
    masks = get_session(model).predict(rgb)
    if not masks:
        raise ICLightError("rembg_model", f"{model} returned no mask")
    merged = None
    for mask in masks:
        if mask.size != rgb.size:
            mask = mask.resize(rgb.size, Image.Resampling.LANCZOS)
        layer = np.asarray(mask.convert("L"))
        merged = layer if merged is None else np.maximum(merged, layer)
    return Image.fromarray(np.ascontiguousarray(merged), "L")


def cut_out_subject(
    img: Image.Image,
    model: str,
    foreground_threshold: int,
    background_threshold: int,
    erode_size: int,
    alpha_matting: bool = True,
) -> Cutout:
    """Cut the subject out of ``img`` (any mode) with rembg model ``model``.

    With ``alpha_matting`` the model's mask (0..255) becomes a trimap: above
    ``foreground_threshold`` is sure subject, below ``background_threshold`` sure
    background, both eroded by an ``erode_size`` square; pymatting then solves the band
    in between, giving soft edges and colours freed of the old background. This is
    rembg's own ``alpha_matting_cutout``, called directly rather than through
    ``rembg.remove``, because ``remove`` silently falls back to the plain mask when the
    trimap has no sure subject or background left: here that fallback is logged and
    reported in ``Cutout.matted``.
    """
    foreground_threshold = _check_level("foreground_threshold", foreground_threshold, 255)
    background_threshold = _check_level("background_threshold", background_threshold, 255)
    erode_size = _check_level("erode_size", erode_size, None)

    rgb = composite_on_grey(img)
    mask = predict_mask(rgb, model)

    if alpha_matting:
        rembg_bg = _import_rembg("rembg.bg")

        try:
            matted = rembg_bg.alpha_matting_cutout(
                rgb, mask, foreground_threshold, background_threshold, erode_size
            )
        except ValueError as exc:
            # pymatting refuses a trimap without sure foreground or background pixels:
            # thresholds too strict, erosion too large, or a subject filling the frame.
            logger.warning(
                "alpha matting skipped, using the plain %s mask: %s (foreground_threshold=%d, "
                "background_threshold=%d, erode_size=%d)",
                model, exc, foreground_threshold, background_threshold, erode_size,
            )
        else:
            matted = matted.convert("RGBA")
            return Cutout(matted, matted.getchannel("A"), True)

    cutout = rgb.copy()
    cutout.putalpha(mask)
    return Cutout(cutout, mask, False)


def remove_background(
    img: Image.Image,
    model: str,
    foreground_threshold: int,
    background_threshold: int,
    erode_size: int,
    alpha_matting: bool = True,
) -> Image.Image:
    """``img`` (any mode) with its background made transparent: ``"RGBA"``, same size.

    See :func:`cut_out_subject` for the arguments.
    """
    return cut_out_subject(
        img, model, foreground_threshold, background_threshold, erode_size, alpha_matting
    ).image

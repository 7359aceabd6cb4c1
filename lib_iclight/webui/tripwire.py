"""Stop a generation from inside a script hook, on WebUIs that swallow hook exceptions.

A1111's ``ScriptRunner`` (and Forge's copy of it) wraps every AlwaysOn hook in
``try/except Exception: errors.report(...)`` and carries on, so raising from a hook
would log the error and still return an image made without IC-Light. The tripwire
instead makes the *next sampling call* raise: ``p.sample`` is called by
``process_images_inner`` and the sampler's ``sample`` / ``sample_img2img`` by
``p.sample``, none of them inside the runner's ``try``. The error then reaches the API
caller as an HTTP error body and the UI's error box, and no image is produced.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from . import context

logger = logging.getLogger("iclight.tripwire")

_SAMPLER_METHODS = ("sample", "sample_img2img")


def _raiser(error: BaseException) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise error

    return refuse


def arm(p: Any, error: BaseException) -> None:
    """Make this generation fail with ``error`` at its next sampling call.

    Safe to call from any hook, before or inside ``p.sample`` (e.g. from
    ``process_before_every_sampling``, where ``p.sampler`` is the sampler about to run).
    """
    logger.error("IC Light refused the generation: %s", error)
    context.ensure(p).error = error
    p.sample = _raiser(error)
    sampler = getattr(p, "sampler", None)
    if sampler is not None:
        for name in _SAMPLER_METHODS:
            if callable(getattr(sampler, name, None)):
                setattr(sampler, name, _raiser(error))


def armed_error(p: Any) -> BaseException | None:
    """The error this generation was stopped with, if any."""
    found = context.context_of(p)
    return None if found is None else found.error

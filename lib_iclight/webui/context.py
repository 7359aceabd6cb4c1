"""Everything IC Light holds for one generation, on ``p`` under one name.

A generation's ``p`` carries one :class:`RequestContext` (attribute :data:`ATTR`): the
X/Y/Z plot's values for this cell, the settings read once at ``process``, the validated
request with its prepared images and encodings, and the error that stopped it. The model
adapters keep their own per-generation state off ``p`` (``backends.base.PerGeneration``).

The X/Y/Z plot makes each cell with a shallow ``copy(p)``, so a context is never changed
in place where a copy could share it: :func:`with_axis_value` puts a new one on the cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..args import ICLightArgs
from ..conditioning import Conditioning
from ..weights import ICModelInfo
from .settings import ICLightSettings

ATTR = "_ic_light"


@dataclass
class Request:
    """One enabled generation: validated args, the model, and the prepared images."""

    args: ICLightArgs
    info: ICModelInfo
    offsets: Any
    """What the backend's ``load_offsets`` gave for ``info``; only the backend looks inside."""
    conditioning: Conditioning
    concat_by_size: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    """[1, 4 or 8, h, w] scaled latents by latent size (h, w): one VAE encode per pass size."""
    color_target: Any = None
    """The WebUI's colour correction target made from the subject photo, once per request."""
    local_images: int | None = None
    """How many images this WebUI makes (batch size x count); images other extensions add to
    the output (another machine's share, ControlNet's maps) get no extras."""


@dataclass
class RequestContext:
    """IC Light's state for one generation (see the module docstring)."""

    axis_values: dict[str, Any] = field(default_factory=dict)
    """{target: value} set by IC Light's X/Y/Z axes for this cell."""
    settings: ICLightSettings | None = None
    request: Request | None = None
    """Set by ``process`` when IC Light is enabled; None otherwise."""
    error: BaseException | None = None
    """The error the generation was stopped with (:mod:`.tripwire`)."""
    owner: int | None = None
    """``id`` of the ``p`` whose ``process`` made :attr:`request` (see :func:`borrowed`)."""


def context_of(p: Any) -> RequestContext | None:
    context = getattr(p, ATTR, None)
    return context if isinstance(context, RequestContext) else None


def borrowed(p: Any) -> bool:
    """Whether ``p`` is a copy of a generation IC Light is serving, made mid-generation by
    another extension that then calls the script hooks on it.

    A shallow ``copy(p)`` shares this context. ADetailer (Bing-su/adetailer ``36189cb``,
    ``postprocess_image``) calls every script's ``postprocess`` on ``copy(p)`` before its
    passes, and ``before_process`` and ``process`` on another copy after them, while the
    generation still has images to make: on the copy the hooks must neither end the request
    (the rest of the batch, the extras and detail transfer need it) nor start another.
    """
    context = context_of(p)
    return context is not None and context.request is not None and context.owner not in (None, id(p))


def start(p: Any, settings: ICLightSettings | None) -> RequestContext:
    """A fresh context for the generation about to run on ``p``, keeping its axis values."""
    previous = context_of(p)
    context = RequestContext(axis_values=dict(previous.axis_values) if previous else {}, settings=settings)
    setattr(p, ATTR, context)
    return context


def ensure(p: Any) -> RequestContext:
    """``p``'s context, made if it has none yet (an error before ``process``)."""
    return context_of(p) or start(p, None)


def with_axis_value(p: Any, target: str, value: Any) -> None:
    """Record an X/Y/Z axis value on this cell's ``p``, copy-on-write (see the module doc)."""
    previous = context_of(p) or RequestContext()
    setattr(p, ATTR, replace(previous, axis_values={**previous.axis_values, target: value}))


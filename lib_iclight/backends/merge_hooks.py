"""Wrapping a WebUI's weight-merge function while IC-Light is in use, and unwrapping it.

The Forge family merges patches through one function: Forge 2's module function
``backend.patcher.lora.merge_lora_to_weight``, reForge's ``ldm_patched.modules.lora.
calculate_weight``, Forge Classic's ``ModelPatcher.calculate_weight`` method. The adapters
wrap it (a cheaper add for IC-Light's own offsets, see :mod:`fast_merge`, and padding for
builds that cannot widen conv_in) from the first IC-Light generation until the IC-Light
clone is gone. A wrapper hands every call that is not IC-Light's to the function it wraps,
and is marked so that it is never stacked and can be taken off again.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

logger = logging.getLogger("iclight.backends.merge_hooks")

HOOK_FLAG = "__iclight_shim__"
"""Attribute set on IC-Light's wrappers; ``__wrapped__`` is the function they wrap."""

_lock = threading.Lock()


@dataclass(frozen=True)
class MergeSite:
    """Where a WebUI's merge function lives: ``owner.<name>``.

    ``owner`` is a module, or the class in the patcher's MRO that defines the method;
    ``is_method`` says which, i.e. whether the function takes ``self`` first.
    """

    owner: Any
    is_method: bool
    name: str = "calculate_weight"

    @property
    def current(self) -> Callable:
        return self.owner.__dict__[self.name] if self.is_method else getattr(self.owner, self.name)

    @property
    def original(self) -> Callable:
        fn = self.current
        return fn.__wrapped__ if getattr(fn, HOOK_FLAG, False) else fn


def method_site(obj: Any, name: str) -> MergeSite | None:
    """``name`` as a method of the class in ``type(obj)``'s MRO that defines it (where a
    wrapper for every instance goes), or None if no class there defines it."""
    for cls in type(obj).__mro__:
        if name in vars(cls):
            return MergeSite(cls, True, name)
    return None


def install(site: MergeSite, make_wrapper: Callable[[Callable, bool], Callable]) -> bool:
    """Wrap ``site``'s function with ``make_wrapper(current, is_method)``, unless IC-Light's
    wrapper is already the one installed. Returns whether it was installed now."""
    with _lock:
        current = site.current
        if getattr(current, HOOK_FLAG, False):
            return False
        wrapper = make_wrapper(current, site.is_method)
        functools.update_wrapper(wrapper, current)  # sets __wrapped__ = current
        setattr(wrapper, HOOK_FLAG, True)
        setattr(site.owner, site.name, wrapper)
        return True


def remove(site: MergeSite) -> None:
    """Put the wrapped function back, if IC-Light's wrapper is still the one installed."""
    with _lock:
        current = site.current
        if getattr(current, HOOK_FLAG, False):
            setattr(site.owner, site.name, current.__wrapped__)
        elif any(getattr(f, HOOK_FLAG, False) for f in wrapped_chain(current)):
            logger.warning("IC Light: %s was wrapped again by someone else; leaving the chain as it is", site.name)


def wrapped_chain(fn: Callable) -> list[Callable]:
    """The functions ``fn`` wraps, outermost first (at most 16)."""
    chain = []
    while hasattr(fn, "__wrapped__") and len(chain) < 16:
        fn = fn.__wrapped__
        chain.append(fn)
    return chain

"""Stand-in for Forge 2 ``backend/utils.py``: the attribute helpers the patchers use.

Mirrors ``get_attr``, ``get_attr_with_parent``, ``set_attr_raw`` (setattr without wrapping
the value) and ``tensor2parameter`` (a Parameter is returned as it is).
"""

from __future__ import annotations

from typing import Any

import torch


def get_attr(obj: Any, attr: str) -> Any:
    for name in attr.split("."):
        obj = getattr(obj, name)
    return obj


def get_attr_with_parent(obj: Any, attr: str) -> tuple[Any, str, Any]:
    parent, name = obj, ""
    for name in attr.split("."):
        parent = obj
        obj = getattr(obj, name)
    return parent, name, obj


def set_attr_raw(obj: Any, attr: str, value: Any) -> None:
    names = attr.split(".")
    for name in names[:-1]:
        obj = getattr(obj, name)
    setattr(obj, names[-1], value)


def tensor2parameter(x: torch.Tensor) -> torch.nn.Parameter:
    return x if isinstance(x, torch.nn.Parameter) else torch.nn.Parameter(x, requires_grad=False)

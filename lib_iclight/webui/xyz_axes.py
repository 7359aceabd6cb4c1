"""Registers IC Light's axes (:mod:`lib_iclight.axes`) with the WebUI's built-in X/Y/Z plot.

The X/Y/Z plot is a script like any other, loaded by ``modules.scripts.load_scripts`` as
a module named after its file (``xyz_grid.py``), so it cannot be imported by name; its
module is found in ``modules.scripts.scripts_data``. Its ``ui()`` copies the module's
``axis_options`` list for each tab, so the axes must be in that list before the UI (or,
with ``--nowebui``, the API) is built: the WebUIs call ``before_ui`` callbacks after
loading every script and before building either, hence :func:`register`.

Same API on A1111 1.10, Forge 2 and reForge (``scripts/xyz_grid.py``) and Forge Classic
(``extensions-builtin/xyz/scripts/xyz_grid.py``, whose per-tab classes live in
``lib_xyz.classes``, next to ``AxisOption``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Mapping, Sequence

from .. import axes
from ..axes import AxisSpec
from . import context

logger = logging.getLogger("iclight.xyz_axes")

XYZ_FILE = "xyz_grid.py"
SCRIPT_TITLE = "IC Light"


def find_xyz_module(scripts_data: Sequence[Any]) -> Any | None:
    """The loaded X/Y/Z plot module among ``modules.scripts.scripts_data``, or None."""
    for data in scripts_data:
        module = getattr(data, "module", None)
        path = getattr(data, "path", "") or ""
        if os.path.basename(path) == XYZ_FILE and hasattr(module, "axis_options") and hasattr(module, "AxisOption"):
            return module
    return None


def _tab_classes(module: Any) -> tuple[type, type] | None:
    """(txt2img class, img2img class): from the script module, or from the module that
    defines its ``AxisOption`` (Forge Classic keeps them in ``lib_xyz.classes``)."""
    home = sys.modules.get(getattr(module.AxisOption, "__module__", ""), None)
    found = []
    for name in ("AxisOptionTxt2Img", "AxisOptionImg2Img"):
        cls = getattr(module, name, None) or getattr(home, name, None)
        if cls is None:
            return None
        found.append(cls)
    return found[0], found[1]


def script_args_of(p: Any) -> Sequence[Any] | None:
    """The IC Light script's slice of ``p.script_args`` (``args_from``..``args_to``), or None."""
    runner = getattr(p, "scripts", None)
    script_args = getattr(p, "script_args", None)
    if runner is None or script_args is None:
        return None
    for script in getattr(runner, "alwayson_scripts", []):
        title = getattr(script, "title", None)
        if callable(title) and title() == SCRIPT_TITLE and script.args_from is not None:
            return list(script_args[script.args_from:script.args_to])
    return None


def make_options(
    module: Any,
    model_kinds: Callable[[], Mapping[str, str]],
    rembg_models: Callable[[], Sequence[str]],
    resolve_model: Callable[[str], Any],
) -> list[Any]:
    """One option per axis and tab, of the X/Y/Z plot's own classes.

    ``model_kinds`` ({name: "fc" | "fbc"}) and ``rembg_models`` are called when the user
    opens an axis's dropdown, so models added later show up; ``resolve_model(name)``
    raises ICLightError for a name the script would refuse.
    """
    classes = _tab_classes(module)
    if classes is None:
        logger.warning("IC Light: this X/Y/Z plot has no per-tab axis classes; its axes are not added")
        return []
    options = []
    for is_img2img, cls in ((False, classes[0]), (True, classes[1])):
        for axis in axes.axes_for(is_img2img):
            options.append(cls(
                axis.label,
                axis.value_type,
                _apply(axis),
                confirm=_confirm(axis, is_img2img, resolve_model),
                cost=axis.cost,
                choices=_choices(axis, is_img2img, model_kinds, rembg_models),
            ))
    return options


def _apply(axis: AxisSpec) -> Callable[[Any, Any, Any], None]:
    def apply(p: Any, value: Any, _values: Any) -> None:
        context.with_axis_value(p, axis.target, axes.parse_value(axis, value))

    return apply


def _confirm(axis: AxisSpec, is_img2img: bool, resolve_model: Callable[[str], Any]) -> Callable[[Any, Any], None]:
    def confirm(p: Any, values: Sequence[Any]) -> None:
        raw = script_args_of(p)
        if raw is not None and not axes.is_enabled(raw):
            raise axes.not_enabled([axis.label])
        axes.confirm(axis, values, is_img2img, resolve_model)

    return confirm


def _choices(axis: AxisSpec, is_img2img: bool, model_kinds: Callable[[], Mapping[str, str]],
             rembg_models: Callable[[], Sequence[str]]) -> Callable[[], list[str]] | None:
    if axis.choices is None:
        return None

    def choices() -> list[str]:
        kinds = model_kinds() if axis.choices == "models" else {}
        rembg = rembg_models() if axis.choices == "rembg_models" else ()
        return axes.choices(axis, is_img2img, kinds, rembg) or []

    return choices


def add_axes(module: Any, options: list[Any]) -> None:
    """Put ``options`` into the module's ``axis_options``, replacing IC Light axes added
    before (the WebUI's "Reload UI" runs the callbacks again on the same list)."""
    ours = {axis.label for axis in axes.AXES}
    module.axis_options[:] = [opt for opt in module.axis_options if getattr(opt, "label", None) not in ours]
    module.axis_options.extend(options)
    logger.debug("added %d IC Light axes to the X/Y/Z plot", len(options))


def register(
    scripts_data: Sequence[Any],
    model_kinds: Callable[[], Mapping[str, str]],
    rembg_models: Callable[[], Sequence[str]],
    resolve_model: Callable[[str], Any],
) -> bool:
    """Add the axes to the X/Y/Z plot found in ``scripts_data``; False when there is none."""
    module = find_xyz_module(scripts_data)
    if module is None:
        logger.info("IC Light: no X/Y/Z plot script found; its axes are not added")
        return False
    add_axes(module, make_options(module, model_kinds, rembg_models, resolve_model))
    return True

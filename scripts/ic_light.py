"""The "IC Light" AlwaysOn script: a thin entry point for A1111, Forge 2, Forge Classic and reForge.

All logic lives in ``lib_iclight``; this file only connects the WebUI's script hooks to
the controller and builds the panel. Before it imports ``lib_iclight`` it makes sure the
package of that name is this extension's: other IC-Light extensions ship one too.
"""

from __future__ import annotations

import logging
import os
import sys

_EXTENSION_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGE = "lib_iclight"
_logger = logging.getLogger("iclight.script")


def _same_dir(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def other_extensions_with_our_package() -> list[str]:
    """Enabled extensions other than this one that ship a top-level ``lib_iclight`` too,
    as "name (path)". Other IC-Light extensions do; Python keeps whichever was imported
    first for the whole process, so only one of them can load."""
    try:
        from modules import extensions

        active = list(extensions.active())
    except Exception:  # noqa: BLE001 - a WebUI without the list: nothing to warn about
        return []
    found = []
    for ext in active:
        path = getattr(ext, "path", None)
        if path and not _same_dir(path, _EXTENSION_ROOT) and os.path.isdir(os.path.join(path, _PACKAGE)):
            found.append(f"{getattr(ext, 'name', os.path.basename(path))} ({path})")
    return found


def check_our_package() -> None:
    """Raise ImportError, saying what to do, when another extension's ``lib_iclight`` was
    imported first: importing ours would then run its code or fail on a missing submodule."""
    loaded = sys.modules.get(_PACKAGE)
    if loaded is None:
        return
    where = [str(path) for path in getattr(loaded, "__path__", [])]
    if any(_same_dir(path, os.path.join(_EXTENSION_ROOT, _PACKAGE)) for path in where):
        return
    raise ImportError(
        f"IC Light: another extension's '{_PACKAGE}' package is already loaded (from {', '.join(where) or 'unknown'}). "
        "Two IC-Light extensions cannot be enabled together: disable the other one in the Extensions tab "
        "and restart the WebUI."
    )


for _other in other_extensions_with_our_package():
    _logger.warning("IC Light: the extension %s is another IC-Light extension; only one of them can load. "
                    "Disable one in the Extensions tab and restart the WebUI.", _other)
check_our_package()
if _EXTENSION_ROOT not in sys.path:
    sys.path.insert(0, _EXTENSION_ROOT)

from modules import scripts  # noqa: E402
from modules.ui_components import InputAccordion  # noqa: E402

from lib_iclight.webui import glue as webui_glue  # noqa: E402
from lib_iclight.webui.controller import ICLightController  # noqa: E402
from lib_iclight.backends.detect import make_backend  # noqa: E402

_controller: ICLightController | None = None


def controller() -> ICLightController:
    """One controller per process, created on first use so that ``ui()`` stays side-effect free."""
    global _controller
    if _controller is None:
        _controller = ICLightController(make_backend(), webui_glue.model_dirs, webui_glue.settings,
                                        interrupted=webui_glue.interrupted, color_target=webui_glue.color_target)
    return _controller


class ICLightScript(scripts.Script):
    def title(self) -> str:
        return "IC Light"

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    def after_component(self, component, **kwargs):
        webui_glue.remember_field(self.__dict__.setdefault("_iclight_fields", {}), component,
                                   kwargs.get("elem_id") or getattr(component, "elem_id", None))

    def ui(self, is_img2img: bool):
        panel = webui_glue.build_panel(is_img2img, InputAccordion, self.__dict__.get("_iclight_fields"))
        self.infotext_fields = panel.infotext_fields
        self.paste_field_names = [key for _, key in panel.infotext_fields]
        return panel.components

    def before_process(self, p, *args):
        controller().before_process(p, self.args_from, self.args_to)

    def process(self, p, *args):
        controller().process(p, *args)

    def process_before_every_sampling(self, p, *args, **kwargs):
        controller().process_before_every_sampling(p, *args, **kwargs)

    def postprocess_image(self, p, pp, *args):
        controller().postprocess_image(p, pp, *args)

    def postprocess(self, p, processed, *args):
        controller().postprocess(p, processed, *args)


def _status() -> dict:
    return controller().status(webui_glue.loaded_sd_model())


webui_glue.register_settings()
webui_glue.register_api_routes(_status)
webui_glue.register_xyz_axes()

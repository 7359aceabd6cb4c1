"""The "IC Light" AlwaysOn script: a thin entry point for A1111, Forge 2, Forge Classic and reForge.

All logic lives in ``lib_iclight``; this file only connects the WebUI's script hooks to
the controller and builds the panel.
"""

from __future__ import annotations

import os
import sys

_EXTENSION_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _EXTENSION_ROOT not in sys.path:
    sys.path.insert(0, _EXTENSION_ROOT)

from modules import scripts  # noqa: E402
from modules.ui_components import InputAccordion  # noqa: E402

from lib_iclight.backends import webui_glue  # noqa: E402
from lib_iclight.backends.controller import ICLightController  # noqa: E402
from lib_iclight.backends.detect import make_backend  # noqa: E402

_controller: ICLightController | None = None


def controller() -> ICLightController:
    """One controller per process, created on first use so that ``ui()`` stays side-effect free."""
    global _controller
    if _controller is None:
        _controller = ICLightController(make_backend(), webui_glue.model_dirs, webui_glue.settings)
    return _controller


class ICLightScript(scripts.Script):
    def title(self) -> str:
        return "IC Light"

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool):
        panel = webui_glue.build_panel(is_img2img, InputAccordion)
        self.infotext_fields = panel.infotext_fields
        self.paste_field_names = [key for _, key in panel.infotext_fields]
        return panel.components

    def process(self, p, *args):
        controller().process(p, *args)

    def process_before_every_sampling(self, p, *args, **kwargs):
        controller().process_before_every_sampling(p, *args, **kwargs)

    def postprocess_image(self, p, pp, *args):
        controller().postprocess_image(p, pp, *args)

    def postprocess(self, p, processed, *args):
        controller().postprocess(p, processed, *args)


webui_glue.register_settings()
webui_glue.register_api_routes()

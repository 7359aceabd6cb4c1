"""The real IC Light panel served by a bare Gradio app, as the WebUI would serve it.

Both tabs' panels are built by :func:`lib_iclight.webui.ui.build_panel` inside one ``gr.Blocks``,
with the stand-in ``InputAccordion`` (tests/script/standins/modules/ui_components.py) and
the same callbacks the WebUI glue hands in: model listing from a folder of safetensors
files (lib_iclight.weights) and the background-removal preview through rembg
(lib_iclight.rembg_session) with a tiny stand-in ONNX model.

    python -m tests.browser.panel_app /tmp/models   # serves it until Ctrl-C, for a look
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import gradio as gr
from PIL import Image

from lib_iclight.webui import ui
from lib_iclight.rembg_session import cut_out_subject
from lib_iclight.weights import list_models

logger = logging.getLogger("iclight.tests.panel_app")

STANDIN_UI_COMPONENTS = Path(__file__).resolve().parents[1] / "script" / "standins" / "modules" / "ui_components.py"
REMBG_CHOICES = ("u2net_human_seg", "u2net")
"""The rembg dropdown: the first has a stand-in model file, the second has none (and
downloads are blocked), which is how the tests make a preview fail."""

WIRINGS = {
    "background_visibility": "_wire_background_visibility",
    "refresh": "_wire_refresh",
    "light_map_presets": "_wire_light_map_presets",
    "preview": "_wire_preview",
}
"""The panel's event wirings by short name (methods of ``ui._Builder``), for the negative
control that serves a panel with one of them left out."""


TOOL_BUTTON_CSS = """
.tool { flex: 0 0 auto !important; min-width: 2.6em !important; max-width: 2.6em; height: 2.6em; align-self: end; padding: 0; }
"""
"""The WebUIs' own stylesheet makes ``elem_classes=["tool"]`` buttons (the refresh button)
small squares beside their dropdown; this bare app has no such stylesheet, so it says the
same in a line, for screenshots that look like the WebUI."""


@functools.cache
def input_accordion() -> type:
    """The stand-in InputAccordion, loaded from its file under a private module name so
    that no ``modules`` package appears in ``sys.modules``."""
    spec = importlib.util.spec_from_file_location("iclight_standin_ui_components", STANDIN_UI_COMPONENTS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Gradio 4 looks a component's module up by name
    spec.loader.exec_module(module)
    return module.InputAccordion


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def model_kinds(folder: Path) -> Callable[[], dict[str, str]]:
    def listing() -> dict[str, str]:
        return {info.name: info.kind for info in list_models([folder])}

    return listing


def preview(image: Image.Image, model: str, fg: int, bg: int, erode: int) -> Image.Image:
    return cut_out_subject(image, model, fg, bg, erode).image


@contextlib.contextmanager
def _without(wiring: str | None) -> Iterator[None]:
    if wiring is None:
        yield
        return
    with mock.patch.object(ui._Builder, WIRINGS[wiring], lambda *args, **kwargs: None):
        yield


def build_app(model_dir: Path, without_wiring: str | None = None) -> tuple[gr.Blocks, dict[str, ui.Panel]]:
    """Blocks holding the txt2img panel above the img2img one; ``without_wiring`` leaves
    one event wiring out (a key of :data:`WIRINGS`)."""
    accordion = input_accordion()
    refresh = model_kinds(model_dir)
    panels: dict[str, ui.Panel] = {}
    with _without(without_wiring), gr.Blocks(title="IC Light panel", css=TOOL_BUTTON_CSS) as demo:
        for is_img2img in (False, True):
            kinds = refresh()
            with gr.Column(elem_id=f"{ui.tab_name(is_img2img)}_column"):
                panels[ui.tab_name(is_img2img)] = ui.build_panel(
                    is_img2img, accordion, ic_model_names=list(kinds), rembg_model_names=list(REMBG_CHOICES),
                    default_rembg=REMBG_CHOICES[0], ic_model_kinds=kinds, refresh_models=refresh,
                    preview_fn=preview,
                )
    return demo, panels


@dataclass
class Served:
    url: str
    demo: gr.Blocks
    panels: dict[str, ui.Panel]

    def close(self) -> None:
        # uvicorn's graceful shutdown waits for open connections, and a page's queue
        # socket can outlive its browser context: without force_exit, close() may hang.
        server = getattr(self.demo, "server", None)
        if server is not None:
            server.force_exit = True
        self.demo.close()


def serve(model_dir: Path, without_wiring: str | None = None) -> Served:
    """Launch the app on 127.0.0.1 and a free port, in this process (its callbacks run in
    the server's threads, so the test's environment is theirs)."""
    demo, panels = build_app(model_dir, without_wiring)
    demo.queue()  # the WebUIs queue their events; Gradio 4 always does
    port = free_port()
    launch: dict[str, Any] = dict(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.launch(**launch)
    return Served(f"http://127.0.0.1:{port}/", demo, panels)


if __name__ == "__main__":  # pragma: no cover - a manual look at the panel
    logging.basicConfig(level=logging.INFO)
    served = serve(Path(sys.argv[1] if len(sys.argv) > 1 else "models"))
    print(served.url)
    served.demo.block_thread()

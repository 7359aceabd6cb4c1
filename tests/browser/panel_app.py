"""The real IC Light panel served by a bare Gradio app, as the WebUI would serve it.

Both tabs' panels are built by :func:`lib_iclight.webui.ui.build_panel` inside one ``gr.Blocks``,
with the stand-in ``InputAccordion`` (tests/script/standins/modules/ui_components.py) and
the same callbacks the WebUI glue hands in: model listing from a folder of safetensors
files (lib_iclight.weights) and the background-removal preview through rembg
(lib_iclight.rembg_session) with a tiny stand-in ONNX model.

Around each panel stand the WebUI widgets it works with: the width and height sliders
(``<tab>_width``/``<tab>_height``) and, in img2img, the input image (``img2img_image``),
handed to ``build_panel`` for the Sync resolution button; and a Generate button
(``<tab>_generate``) that sends the panel's components, as the WebUI's sends the script
args, into :attr:`Served.sent`.

    python -m tests.browser.panel_app /tmp/models   # serves it until Ctrl-C, for a look
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import gradio as gr
from PIL import Image

from lib_iclight.args import ARG_NAMES
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


SIZE_SLIDER = dict(minimum=64, maximum=2048, step=8, value=512)
"""The WebUI's width and height sliders (A1111's range and step)."""


class SentArgs:
    """What each tab's Generate button sent: one ``{name: raw value}`` per click, in
    ARG_SPECS order, as the script's ``process`` would receive them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[str, list[dict[str, Any]]] = {}

    def record(self, tab: str, values: tuple[Any, ...]) -> None:
        assert len(values) == len(ARG_NAMES), values
        with self._lock:
            self._sent.setdefault(tab, []).append(dict(zip(ARG_NAMES, values)))

    def count(self, tab: str) -> int:
        with self._lock:
            return len(self._sent.get(tab, []))

    def last(self, tab: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._sent[tab][-1])


def build_app(
    model_dir: Path, without_wiring: str | None = None
) -> tuple[gr.Blocks, dict[str, ui.Panel], SentArgs]:
    """Blocks holding the txt2img panel above the img2img one; ``without_wiring`` leaves
    one event wiring out (a key of :data:`WIRINGS`)."""
    accordion = input_accordion()
    refresh = model_kinds(model_dir)
    panels: dict[str, ui.Panel] = {}
    sent = SentArgs()
    with _without(without_wiring), gr.Blocks(title="IC Light panel", css=TOOL_BUTTON_CSS) as demo:
        for is_img2img in (False, True):
            kinds = refresh()
            tab = ui.tab_name(is_img2img)
            with gr.Column(elem_id=f"{tab}_column"):
                subject = gr.Image(type="pil", label="Image", elem_id="img2img_image") if is_img2img else None
                with gr.Row():
                    width = gr.Slider(label="Width", elem_id=f"{tab}_width", **SIZE_SLIDER)
                    height = gr.Slider(label="Height", elem_id=f"{tab}_height", **SIZE_SLIDER)
                panels[tab] = panel = ui.build_panel(
                    is_img2img, accordion, ic_model_names=list(kinds), rembg_model_names=list(REMBG_CHOICES),
                    default_rembg=REMBG_CHOICES[0], ic_model_kinds=kinds, refresh_models=refresh,
                    preview_fn=preview, size_fields=(width, height), subject_field=subject,
                )
                generate = gr.Button("Generate", elem_id=f"{tab}_generate")
                generate.click(fn=_sender(sent, tab), inputs=panel.components, outputs=[])
    return demo, panels, sent


def _sender(sent: SentArgs, tab: str) -> Callable[..., None]:
    def generate(*values: Any) -> None:
        sent.record(tab, values)

    return generate


@dataclass
class Served:
    url: str
    demo: gr.Blocks
    panels: dict[str, ui.Panel]
    sent: SentArgs

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
    demo, panels, sent = build_app(model_dir, without_wiring)
    demo.queue()  # the WebUIs queue their events; Gradio 4 always does
    port = free_port()
    launch: dict[str, Any] = dict(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.launch(**launch)
    return Served(f"http://127.0.0.1:{port}/", demo, panels, sent)


if __name__ == "__main__":  # pragma: no cover - a manual look at the panel
    logging.basicConfig(level=logging.INFO)
    served = serve(Path(sys.argv[1] if len(sys.argv) > 1 else "models"))
    print(served.url)
    served.demo.block_thread()

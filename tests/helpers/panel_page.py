"""Driving the IC Light panel in a real browser (Playwright, sync API).

Shared by the CI browser tests (tests/browser: the panel served by a bare Gradio app) and
the live WebUI tests (tests/e2e): the panel's elem_ids (``iclight_<tab>_<name>``) are the
same in both, and so is everything here. Only selectors that Gradio 3.41 and 4.40 share
are used; where the two differ (how an image reaches the page) both ways are handled.

Every check raises AssertionError (or Playwright's TimeoutError) with what it saw, so a
test, or the negative control that expects a check to fail, can call them directly.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 20_000
"""How long one check waits for the page (server round trips on a loaded 2-core box)."""

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """``$ICLIGHT_CHROMIUM``, else the first Chromium on PATH (Debian's ``chromium``)."""
    explicit = os.environ.get("ICLIGHT_CHROMIUM", "").strip()
    if explicit:
        return explicit
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_args() -> list[str]:
    """Chromium refuses to run as root with its sandbox on; CI and containers run as root."""
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


def artefacts_dir(suite: str) -> Path:
    """Where screenshots go: ``$ICLIGHT_ARTEFACTS/<suite>``, else ``tests/artefacts/<suite>``
    (git-ignored)."""
    base = os.environ.get("ICLIGHT_ARTEFACTS", "").strip()
    folder = (Path(base) if base else ROOT / "tests" / "artefacts") / suite
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class ConsoleWatch:
    """Uncaught page errors and console errors of the app itself (requests to other hosts
    are blocked on purpose, so their failures are not the panel's)."""

    origin: str
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("pageerror", self._on_page_error)
        page.on("console", self._on_console)

    def _on_page_error(self, exc: Any) -> None:
        stack = (getattr(exc, "stack", "") or "").splitlines()[1:4]
        self.errors.append(" | ".join([f"pageerror: {exc}", *(line.strip() for line in stack)]))

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if url and not url.startswith(self.origin):
            return
        self.errors.append(f"console.error: {message.text} ({url})")


def keep_local(page: Any, origin: str) -> None:
    """No request leaves ``origin``: no network in CI, and no waiting on DNS that cannot
    answer. Gradio's themes load Google fonts: those get an empty stylesheet (the page
    falls back to local fonts, as it does offline); anything else from elsewhere fails."""
    host = urlparse(origin).netloc

    def route(route: Any) -> None:
        request = route.request
        if urlparse(request.url).netloc == host or request.url.startswith("data:"):
            route.continue_()
        elif request.resource_type in ("stylesheet", "font"):
            route.fulfill(status=200, body="", content_type="text/css")
        else:
            route.abort()

    page.route("**/*", route)


class PanelPage:
    """One tab's IC Light panel on a loaded page."""

    def __init__(self, page: Any, tab: str, timeout_ms: int = TIMEOUT_MS) -> None:
        self.page = page
        self.tab = tab
        self.timeout_ms = timeout_ms

    def css(self, name: str) -> str:
        """``#iclight_<tab>_<name>`` for a panel widget; a name that starts with ``#`` is a
        selector already (see :meth:`webui_css`), so every helper here takes either."""
        return name if name.startswith("#") else f"#iclight_{self.tab}_{name}"

    def webui_css(self, name: str) -> str:
        """The WebUI's own widget of this tab beside the panel: ``#<tab>_<name>``
        (``#txt2img_width``, ``#img2img_image``)."""
        return f"#{self.tab}_{name}"

    def loc(self, name: str) -> Any:
        return self.page.locator(self.css(name))

    # ------------------------------------------------------------ opening

    def open(self) -> None:
        """Open the accordion (a click on its header) unless it is open already."""
        accordion = self.loc("enable")
        accordion.wait_for(state="attached", timeout=self.timeout_ms)
        model = self.loc("model_type")
        if not model.is_visible():
            accordion.locator(".label-wrap").first.click()
        model.wait_for(state="visible", timeout=self.timeout_ms)

    # ------------------------------------------------------------ dropdowns

    def dropdown_value(self, name: str) -> str:
        return self.loc(name).locator("input").first.input_value()

    def dropdown_options(self, name: str) -> list[str]:
        """The choices listed when the dropdown is opened (then closed again)."""
        field_ = self.loc(name).locator("input").first
        field_.click()
        options = self.loc(name).locator("ul.options li")
        options.first.wait_for(state="visible", timeout=self.timeout_ms)
        texts = [t.strip() for t in options.all_inner_texts()]
        field_.press("Escape")
        self.page.locator("body").click(position={"x": 2, "y": 2})
        return [re.sub(r"^✓\s*", "", t) for t in texts]

    def choose(self, name: str, value: str) -> None:
        """Pick ``value`` from a dropdown's list, as a user clicks it."""
        field_ = self.loc(name).locator("input").first
        field_.click()
        options = self.loc(name).locator("ul.options li")
        options.first.wait_for(state="visible", timeout=self.timeout_ms)
        exact = re.compile(rf"^\W*{re.escape(value)}\s*$")
        options.filter(has_text=exact).first.click()
        self.expect_value(name, value)

    def type_custom(self, name: str, value: str) -> None:
        """Type a value that is not among the choices (``allow_custom_value``) and leave the field."""
        field_ = self.loc(name).locator("input").first
        field_.click()
        field_.fill(value)
        field_.press("Enter")
        field_.blur()
        self.expect_value(name, value)

    def expect_value(self, name: str, value: str) -> None:
        field_ = self.loc(name).locator("input").first
        self.page.wait_for_function(
            "([sel, v]) => { const e = document.querySelector(sel); return e && e.value === v; }",
            arg=[f"{self.css(name)} input", value], timeout=self.timeout_ms,
        )
        assert field_.input_value() == value

    # ------------------------------------------------------------ visibility

    def expect_visible(self, name: str, visible: bool) -> None:
        """Gradio 3 hides a component with CSS, Gradio 4 may not render it at all:
        "hidden" here means not visible, whichever way."""
        state = "visible" if visible else "hidden"
        try:
            self.loc(name).first.wait_for(state=state, timeout=self.timeout_ms)
        except Exception as exc:  # noqa: BLE001 - Playwright's TimeoutError, reworded
            raise AssertionError(f"{self.css(name)} did not become {state}: {exc}") from exc

    # ------------------------------------------------------------ radios, sliders, buttons

    def pick_radio(self, name: str, value: str) -> None:
        exact = re.compile(rf"^\s*{re.escape(value)}\s*$")
        self.loc(name).locator("label").filter(has_text=exact).first.click()

    def set_slider(self, name: str, value: int) -> None:
        """Drag-free: put the number in the slider's box and press Enter, then leave it."""
        box = self.loc(name).locator("input[type=number]").first
        box.fill(str(value))
        box.press("Enter")
        box.blur()

    def slider_value(self, name: str) -> float:
        return float(self.loc(name).locator("input[type=number]").first.input_value())

    def expect_slider(self, name: str, value: float) -> None:
        """Wait until the slider's number box shows ``value``."""
        try:
            self.page.wait_for_function(
                "([sel, v]) => { const e = document.querySelector(sel); return e && Number(e.value) === v; }",
                arg=[f"{self.css(name)} input[type=number]", value], timeout=self.timeout_ms,
            )
        except Exception as exc:  # noqa: BLE001 - Playwright's TimeoutError, reworded
            raise AssertionError(f"{self.css(name)} shows {self.slider_value(name)}, not {value}: {exc}") from exc

    def set_checkbox(self, name: str, checked: bool) -> None:
        self.loc(name).locator("input[type=checkbox]").first.set_checked(checked)

    def click(self, name: str) -> None:
        self.loc(name).first.click()

    # ------------------------------------------------------------ images

    def upload(self, name: str, path: str | Path) -> None:
        self.loc(name).locator("input[type=file]").first.set_input_files(str(path))
        self.loc(name).locator("img").first.wait_for(state="visible", timeout=self.timeout_ms)

    def image_src(self, name: str) -> str | None:
        images = self.loc(name).locator("img")
        if images.count() == 0:
            return None
        return images.first.get_attribute("src")

    def wait_for_new_image(self, name: str, previous: str | None) -> str:
        """Wait until the slot shows an image other than ``previous``; its src."""
        try:
            self.page.wait_for_function(
                "([sel, old]) => { const i = document.querySelector(sel);"
                " return i && i.getAttribute('src') && i.getAttribute('src') !== old && i.complete; }",
                arg=[f"{self.css(name)} img", previous], timeout=self.timeout_ms,
            )
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"{self.css(name)} shows no new image: {exc}") from exc
        src = self.image_src(name)
        assert src
        return src

    def read_image(self, src: str) -> Image.Image:
        """The picture behind an <img> src: a data URL (Gradio 3) or a file URL on the
        server (Gradio 4), fetched with the page's own cookies."""
        if src.startswith("data:"):
            data = base64.b64decode(src.split(",", 1)[1])
        else:
            url = src if re.match(r"^https?://", src) else self.page.url.split("?")[0].rstrip("/") + "/" + src.lstrip("/")
            response = self.page.request.get(url)
            assert response.ok, f"{url}: HTTP {response.status}"
            data = response.body()
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    # ------------------------------------------------------------ errors

    def expect_error(self, text: str) -> str:
        """An error toast (``gr.Error``) whose text contains ``text``; its full text."""
        toast = self.page.locator(".toast-body").filter(has_text=text)
        try:
            toast.first.wait_for(state="visible", timeout=self.timeout_ms)
        except Exception as exc:  # noqa: BLE001
            shown = self.page.locator(".toast-body").all_inner_texts()
            raise AssertionError(f"no error toast with {text!r}; toasts shown: {shown}") from exc
        return toast.first.inner_text()

    def close_toasts(self) -> None:
        for button in self.page.locator(".toast-close").all():
            if button.is_visible():
                button.click()


def max_difference(a: Image.Image, b: Image.Image, mode: str = "RGB") -> int:
    """The largest per-channel difference of two images of the same size (0 = identical)."""
    assert a.size == b.size, f"sizes differ: {a.size} vs {b.size}"
    left = np.asarray(a.convert(mode), dtype=np.int16)
    right = np.asarray(b.convert(mode), dtype=np.int16)
    return int(np.abs(left - right).max())

"""Headless Chromium (Debian's ``chromium``, driven by Playwright) on the panel served by
tests/browser/panel_app.py: IC-Light model files in a temporary folder, rembg with a tiny
stand-in ONNX model and downloads blocked.

Without playwright or a Chromium these tests skip, unless ``ICLIGHT_REQUIRE_BROWSER=1``
(set by .ci/run, which installs both), where they fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio")

from tests.helpers.onnx_models import install_standin  # noqa: E402
from tests.helpers.panel_page import (  # noqa: E402
    ConsoleWatch,
    PanelPage,
    artefacts_dir,
    find_chromium,
    keep_local,
    launch_args,
)
from tests.helpers.tiny_weights import make_offset_file, tiny_unet_shapes  # noqa: E402

from .panel_app import REMBG_CHOICES, Served, serve  # noqa: E402

VIEWPORT = {"width": 1280, "height": 1000}
FC_MODEL = "iclight_sd15_fc"
PAGE_LOAD_MS = 30_000


def _missing(reason: str) -> None:
    if os.environ.get("ICLIGHT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (ICLIGHT_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    executable = find_chromium()
    if executable is None:
        _missing("no Chromium found (apt-get install chromium, or set ICLIGHT_CHROMIUM)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=launch_args())
        yield chromium
        chromium.close()


def _block_remote_requests(patch: pytest.MonkeyPatch) -> None:
    """rembg's downloader (pooch, through requests) fails at once, as offline; Gradio 3's
    own requests to the app it serves still go through."""
    import requests

    for name in ("get", "head"):
        real = getattr(requests, name)

        def local_only(url: str, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if str(url).startswith(("http://127.0.0.1:", "http://localhost:")):
                return _real(url, *args, **kwargs)
            raise requests.exceptions.ConnectionError(f"network disabled in tests: {url}")

        patch.setattr(requests, name, local_only)


@pytest.fixture(scope="session")
def panel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder of IC-Light files (one fc model to start with); rembg pointed at a
    stand-in ``u2net_human_seg``, with no file for ``u2net`` and downloads blocked."""
    from lib_iclight.rembg_session import clear_session_cache

    models = tmp_path_factory.mktemp("ic-light")
    make_offset_file(models / f"{FC_MODEL}.safetensors", tiny_unet_shapes(), kind="fc")
    home = tmp_path_factory.mktemp("u2net")
    install_standin(home, REMBG_CHOICES[0])
    patch = pytest.MonkeyPatch()
    patch.setenv("U2NET_HOME", str(home))
    patch.setenv("MODEL_CHECKSUM_DISABLED", "1")
    _block_remote_requests(patch)
    clear_session_cache()
    yield models
    clear_session_cache()
    patch.undo()


@pytest.fixture(scope="session")
def served(panel_env: Path) -> Iterator[Served]:
    app = serve(panel_env)
    yield app
    app.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """``open_page(served)`` -> (page, ConsoleWatch): a fresh page on that app, loaded,
    that can reach nothing but the app."""
    contexts: list[Any] = []

    def opener(app: Served) -> tuple[Any, ConsoleWatch]:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        origin = app.url.rstrip("/")
        watch = ConsoleWatch(origin)
        watch.attach(page)
        keep_local(page, origin)
        page.goto(app.url, wait_until="domcontentloaded")
        try:
            page.locator("#iclight_txt2img_enable").wait_for(state="attached", timeout=PAGE_LOAD_MS)
        except Exception:  # noqa: BLE001 - any failure: keep a screenshot, then fail with the page errors
            page.screenshot(path=str(artefacts_dir("browser") / "page-load-failure.png"))
            raise AssertionError(f"the panel did not load from {app.url}: {watch.errors}") from None
        return page, watch

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture
def panel_page(open_page: Any, served: Served) -> Iterator[tuple[Any, ConsoleWatch]]:
    page, watch = open_page(served)
    yield page, watch


@pytest.fixture(scope="session")
def screenshots() -> Path:
    return artefacts_dir("browser")


def txt2img(page: Any, **kwargs: Any) -> PanelPage:
    return PanelPage(page, "txt2img", **kwargs)


def img2img(page: Any, **kwargs: Any) -> PanelPage:
    return PanelPage(page, "img2img", **kwargs)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    folder = Path(os.environ.get("ICLIGHT_ARTEFACTS", "") or Path(__file__).resolve().parents[1] / "artefacts")
    if (folder / "browser").is_dir():
        terminalreporter.write_line(f"browser test screenshots: {folder / 'browser'}")

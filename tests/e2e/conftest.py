"""Web API tests against a live WebUI, in the manner of sd-webui-controlnet's web_api tests.

Start a WebUI with ``--api`` (CPU is fine: ``--use-cpu all --skip-torch-cuda-test
--no-half``), an SD1.5 checkpoint loaded and an IC-Light fc model installed, then:

    WEBUI_URL=http://127.0.0.1:7860 python -m pytest tests/e2e

Without ``WEBUI_URL`` every test here is skipped. ``WEBUI_IC_MODEL`` names the fc model
to use (default ``fc``: the first fc model the server finds). Requests are 64x64 with a
few steps, so a CPU server answers in seconds once rembg is warm (its first use imports
numba code and may download a model: the first request can take minutes).
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image, ImageDraw

try:
    import requests
except ImportError:  # only the e2e tests need it; they skip without it
    requests = None

WEBUI_URL = os.environ.get("WEBUI_URL", "").strip().rstrip("/")
IC_MODEL = os.environ.get("WEBUI_IC_MODEL", "").strip() or "fc"
TIMEOUT = float(os.environ.get("WEBUI_TIMEOUT", "900"))
SIZE = 64
STEPS = 4
SEED = 20240607


def encode(image: Image.Image, fmt: str = "PNG", **save_args: Any) -> str:
    with io.BytesIO() as buffer:
        image.save(buffer, format=fmt, **save_args)
        return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode(data: str) -> Image.Image:
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def make_subject(size: int = 128) -> Image.Image:
    """A person-like figure (head and shoulders) on a plain wall: easy for any rembg model."""
    image = Image.new("RGB", (size, size), (205, 210, 200))
    draw = ImageDraw.Draw(image)
    s = size / 128
    draw.ellipse([44 * s, 14 * s, 84 * s, 58 * s], fill=(224, 172, 140))
    draw.rectangle([58 * s, 56 * s, 70 * s, 66 * s], fill=(210, 160, 130))
    draw.polygon([(24 * s, 128 * s), (36 * s, 70 * s), (92 * s, 70 * s), (104 * s, 128 * s)], fill=(40, 44, 70))
    return image


def make_background(size: int = 128) -> Image.Image:
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        draw.line([(0, y), (size, y)], fill=(30 + y, 60 + y // 2, 120))
    return image


def make_light_map(size: int = 128) -> Image.Image:
    """Bright on the left, dark on the right."""
    ramp = Image.linear_gradient("L").rotate(90).resize((size, size))
    return ramp.convert("RGB")


@dataclass
class WebUI:
    """A live WebUI and the payloads the tests send it."""

    url: str
    session: Any = field(default_factory=lambda: requests.Session())  # type: ignore[union-attr]
    _options: dict[str, Any] | None = None

    def get(self, path: str) -> Any:
        return self.session.get(f"{self.url}{path}", timeout=TIMEOUT)

    def post(self, endpoint: str, payload: dict[str, Any]) -> Any:
        # Connection: close, because after an error answer Forge re-raises into uvicorn,
        # which drops the kept-alive socket and the next request on it would be reset.
        return self.session.post(f"{self.url}/sdapi/v1/{endpoint}", json=payload, timeout=TIMEOUT,
                                 headers={"Connection": "close"})

    @property
    def options(self) -> dict[str, Any]:
        if self._options is None:
            response = self.get("/sdapi/v1/options")
            self._options = response.json() if response.status_code == 200 else {}
        return self._options

    @property
    def is_forge2(self) -> bool:
        """Forge 2 alone has this option; its hires pass via the API needs
        ``hr_additional_modules``, which A1111's API would reject."""
        return "forge_additional_modules" in self.options

    def option(self, key: str, default: Any) -> Any:
        return self.options.get(key, default)

    def models(self) -> list[dict[str, Any]]:
        response = self.get("/ic-light/v1/models")
        assert response.status_code == 200, response.text
        return response.json()["models"]

    def model_of_kind(self, kind: str) -> str | None:
        return next((m["name"] for m in self.models() if m["kind"] == kind), None)

    @staticmethod
    def plain_payload(**overrides: Any) -> dict[str, Any]:
        payload = {
            "prompt": "a photo of a person, soft light",
            "negative_prompt": "worst quality, bad quality, low quality",
            "sampler_name": "Euler",
            "steps": STEPS,
            "width": SIZE,
            "height": SIZE,
            "cfg_scale": 7,
            "seed": SEED,
        }
        payload.update(overrides)
        return payload

    @staticmethod
    def ic_args(**values: Any) -> dict[str, Any]:
        """All 13 args by name: enabled, fc, the test subject, rembg on."""
        args = {
            "enable": True,
            "model_type": IC_MODEL,
            "input_fg": encode(make_subject()),
            "uploaded_bg": None,
            "remove_bg": True,
            "rembg_model": "u2net_human_seg",
            "foreground_threshold": 225,
            "background_threshold": 16,
            "erode_size": 16,
            "detail_transfer": False,
            "detail_transfer_raw": False,
            "detail_transfer_blur_radius": 5,
            "reinforce_fg": False,
        }
        args.update(values)
        return args

    def ic_payload(self, script_args: list[Any] | dict[str, Any], **overrides: Any) -> dict[str, Any]:
        if isinstance(script_args, dict):
            script_args = list(script_args.values())  # ic_args() keeps the contract order
        return self.plain_payload(alwayson_scripts={"IC Light": {"args": script_args}}, **overrides)

    def expected_extras(self, remove_bg: bool = True) -> int:
        """How many images IC-Light appends: the cut-out, when the setting says so."""
        return 1 if remove_bg and self.option("iclight_append_removed_bg", True) else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``server_state`` change the live server for the rest of its life (so the
    session's plain baseline no longer holds): they run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("server_state") is not None)


@pytest.fixture(scope="session")
def webui() -> WebUI:
    if not WEBUI_URL:
        pytest.skip("WEBUI_URL is not set: these tests need a running WebUI with --api")
    if requests is None:
        pytest.skip("the e2e tests need the requests package")
    server = WebUI(WEBUI_URL)
    try:
        response = server.get("/ic-light/v1/version")
    except requests.RequestException as exc:
        pytest.fail(f"WEBUI_URL={WEBUI_URL} does not answer: {exc}")
    assert response.status_code == 200, f"the IC Light extension's routes are missing: {response.status_code}"
    return server


@pytest.fixture(scope="session", autouse=True)
def plain_baseline(webui: WebUI) -> Image.Image:
    """A plain txt2img made before any IC-Light request of the session: later plain
    requests must give the same pixels, proving IC-Light left the model as it found it."""
    response = webui.post("txt2img", webui.plain_payload())
    assert response.status_code == 200, response.text
    return decode(response.json()["images"][0])


@pytest.fixture
def assert_model_untouched(webui: WebUI, plain_baseline: Image.Image):
    def check() -> None:
        response = webui.post("txt2img", webui.plain_payload())
        assert response.status_code == 200, f"a plain request after IC-Light failed: {response.text}"
        image = decode(response.json()["images"][0])
        assert image.size == plain_baseline.size
        assert image.convert("RGB").tobytes() == plain_baseline.convert("RGB").tobytes(), (
            "a plain request after IC-Light differs from the one made before it: the UNet was not restored"
        )

    return check

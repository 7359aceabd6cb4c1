"""IC-Light kept merged between generations, seen through a live WebUI's API and its
``GET /ic-light/v1/status`` route (skipped unless WEBUI_URL is set).

With the setting "Keep IC-Light merged between generations" on (the default), a second
IC-Light request in a row merges nothing and gives the same image; whatever came before,
the next plain request gives the pixels of the plain request made before any IC-Light.
``WEBUI_LORA`` names a LoRA on the server (default ``randlora_unet``, the harness's).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from .conftest import WebUI, decode, encode, make_background

LORA = os.environ.get("WEBUI_LORA", "randlora_unet")


def status(webui: WebUI) -> dict[str, Any]:
    response = webui.get("/ic-light/v1/status")
    assert response.status_code == 200, response.text
    return response.json()


def first_image(response: Any) -> bytes:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    return decode(response.json()["images"][0]).convert("RGB").tobytes()


def ic(webui: WebUI, **values: Any) -> Any:
    return webui.post("txt2img", webui.ic_payload(webui.ic_args(**values)))


def has_lora(webui: WebUI) -> bool:
    response = webui.get("/sdapi/v1/loras")
    return response.status_code == 200 and any(item.get("name") == LORA for item in response.json())


def test_the_status_route(webui: WebUI) -> None:
    body = status(webui)
    assert body["webui"] in {"a1111", "forge", "forge-classic"}
    assert body["backend"] in {"a1111", "forge", "forge-classic", "reforge"}
    assert {"holds", "merges", "restores"} <= set(body["unet"])
    assert set(body["caches"]) == {"offsets", "latents", "subjects"}
    for cache in body["caches"].values():
        assert cache["bytes"] >= 0
    assert "/" not in str(body["caches"]["offsets"]) + str(body["unet"])  # names, never paths


def test_two_ic_generations_in_a_row_merge_once_and_match(webui: WebUI, assert_model_untouched) -> None:
    first = first_image(ic(webui))
    merges = status(webui)["unet"]["merges"]
    second = first_image(ic(webui))
    after = status(webui)
    assert second == first
    if after["keep_merged"]:
        assert after["unet"]["merges"] == merges, "the second IC-Light request merged again"
        if after["webui"] != "a1111":
            assert after["unet"]["holds"] is not None  # left merged, as the WebUI leaves a LoRA
    assert_model_untouched()
    assert status(webui)["unet"]["holds"] is None


def test_plain_is_untouched_after_ic_with_a_lora_and_after_the_lora_alone(webui: WebUI, assert_model_untouched) -> None:
    if not has_lora(webui):
        pytest.skip(f"no LoRA named {LORA} on the server (WEBUI_LORA)")
    tagged = webui.ic_payload(webui.ic_args())
    tagged["prompt"] += f" <lora:{LORA}:1>"
    with_lora = first_image(webui.post("txt2img", tagged))
    assert first_image(webui.post("txt2img", tagged)) == with_lora
    assert_model_untouched()
    lora_only = webui.plain_payload(prompt=webui.plain_payload()["prompt"] + f" <lora:{LORA}:1>")
    assert webui.post("txt2img", lora_only).status_code == 200
    assert_model_untouched()


def test_plain_is_untouched_after_switching_fc_to_fbc(webui: WebUI, assert_model_untouched) -> None:
    fbc = webui.model_of_kind("fbc")
    if fbc is None:
        pytest.skip("no fbc model on the server")
    first_image(ic(webui))
    merges = status(webui)["unet"]["merges"]
    first_image(ic(webui, model_type=fbc, uploaded_bg=encode(make_background())))
    assert status(webui)["unet"]["merges"] == merges + 1  # another model goes the WebUI's normal way
    assert_model_untouched()


def test_plain_is_untouched_after_an_interrupted_ic_generation(webui: WebUI, assert_model_untouched) -> None:
    result: dict[str, Any] = {}

    def long_request() -> None:
        payload = webui.ic_payload(webui.ic_args(), steps=40)
        result["response"] = webui.post("txt2img", payload)

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(float(os.environ.get("WEBUI_INTERRUPT_AFTER", "4")))
    webui.session.post(f"{webui.url}/sdapi/v1/interrupt", timeout=60)
    thread.join(timeout=900)
    assert result["response"].status_code == 200
    assert_model_untouched()


def test_plain_is_untouched_after_a_refused_request_that_followed_ic(webui: WebUI, assert_model_untouched) -> None:
    first_image(ic(webui))
    refused = ic(webui, model_type="no-such-model")
    assert refused.status_code == 422 and "model_type" in refused.text
    assert_model_untouched()

"""The /ic-light/v1 routes on a bare FastAPI app, with plain listing functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # TestClient needs it

from fastapi.testclient import TestClient  # noqa: E402

from lib_iclight.webui import api_request_args, api_routes  # noqa: E402
from lib_iclight.args import ARG_NAMES, json_schema  # noqa: E402


@dataclass(frozen=True)
class FakeInfo:
    """Shaped like weights.ICModelInfo, path included, so a leak would show."""

    name: str
    path: Path
    kind: str
    in_channels: int


MODELS = [
    FakeInfo("IC-Light-SD15-FC-fp8", Path("/secret/models/ic-light/IC-Light-SD15-FC-fp8.safetensors"), "fc", 8),
    FakeInfo("iclight_sd15_fbc", Path("/secret/models/ic-light/iclight_sd15_fbc.safetensors"), "fbc", 12),
]


@pytest.fixture
def calls() -> dict[str, int]:
    return {"ic": 0, "rembg": 0}


@pytest.fixture
def client(calls: dict[str, int]) -> TestClient:
    def list_ic() -> list[FakeInfo]:
        calls["ic"] += 1
        return MODELS

    def list_rembg() -> list[str]:
        calls["rembg"] += 1
        return ["u2net", "u2net_human_seg"]

    app = fastapi.FastAPI()
    api_routes.register_routes(app, list_ic, list_rembg)
    assert calls == {"ic": 0, "rembg": 0}  # registering lists nothing
    return TestClient(app)


def test_models_lists_names_kinds_channels_and_never_paths(client: TestClient, calls: dict[str, int]) -> None:
    response = client.get("/ic-light/v1/models")
    assert response.status_code == 200
    assert response.json() == {
        "models": [
            {"name": "IC-Light-SD15-FC-fp8", "kind": "fc", "in_channels": 8},
            {"name": "iclight_sd15_fbc", "kind": "fbc", "in_channels": 12},
        ],
        "rembg_models": ["u2net", "u2net_human_seg"],
        "unreadable": [],
    }
    assert "secret" not in response.text and "safetensors" not in response.text
    client.get("/ic-light/v1/models")
    assert calls == {"ic": 2, "rembg": 2}  # listed per request: new files show up


def test_models_when_nothing_is_installed() -> None:
    app = fastapi.FastAPI()
    api_routes.register_routes(app, lambda: [], lambda: [])
    assert TestClient(app).get("/ic-light/v1/models").json() == {"models": [], "rembg_models": [], "unreadable": []}


def test_models_lists_unreadable_files_by_name_with_the_reason(tmp_path: Path) -> None:
    """Real files through the real listing: the broken ones are named, with why, and no
    server path shows."""
    import torch
    from safetensors.torch import save_file

    from lib_iclight import weights
    from tests.helpers.tiny_weights import make_offset_file, tiny_unet_shapes

    weights.clear_cache()
    make_offset_file(tmp_path / "good_fc.safetensors", tiny_unet_shapes(), fmt="ldm")
    (tmp_path / "broken_fc.safetensors").write_bytes(b"\x00" * 64)
    save_file({"first_stage_model.decoder.conv_in.weight": torch.zeros(4, 4)}, str(tmp_path / "not_ic.safetensors"))
    dirs = [tmp_path]
    app = fastapi.FastAPI()
    api_routes.register_routes(app, lambda: weights.list_models(dirs), lambda: [], lambda: weights.list_unreadable(dirs))
    response = TestClient(app).get("/ic-light/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert [m["name"] for m in body["models"]] == ["good_fc"]
    reasons = {entry["name"]: entry["reason"] for entry in body["unreadable"]}
    assert set(reasons) == {"broken_fc", "not_ic"}
    assert reasons["broken_fc"].startswith("cannot read broken_fc.safetensors: ")
    assert reasons["not_ic"].startswith("not_ic.safetensors is not an IC-Light SD1.5 offset file")
    assert str(tmp_path) not in response.text and tmp_path.name not in response.text


def test_schema_is_the_args_schema(client: TestClient) -> None:
    response = client.get("/ic-light/v1/schema")
    assert response.status_code == 200
    body = response.json()
    assert body == json_schema()
    assert list(body["properties"]) == list(ARG_NAMES)
    assert body["x-positional-order"] == list(ARG_NAMES)


def test_version(client: TestClient) -> None:
    response = client.get("/ic-light/v1/version")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == api_routes.VERSION
    assert body["api"] == "v1"
    assert body["args"] == list(ARG_NAMES)


def test_routes_are_get_only(client: TestClient) -> None:
    assert client.post("/ic-light/v1/models").status_code == 405
    assert client.get("/ic-light/v1/nope").status_code == 404


def test_the_status_route_answers_what_the_callable_gives_each_time():
    app = fastapi.FastAPI()
    answers = iter([{"unet": {"merges": 1}}, {"unet": {"merges": 2}}])
    api_routes.register_routes(app, lambda: MODELS, lambda: [], status=lambda: next(answers))
    client = TestClient(app)
    assert client.get("/ic-light/v1/status").json() == {"unet": {"merges": 1}}
    assert client.get("/ic-light/v1/status").json() == {"unet": {"merges": 2}}


def test_without_a_status_callable_there_is_no_status_route():
    app = fastapi.FastAPI()
    api_routes.register_routes(app, lambda: MODELS, lambda: [])
    assert TestClient(app).get("/ic-light/v1/status").status_code == 404


# -- IC Light's args in generation requests (lib_iclight.webui.api_request_args) -----------------


def _generation_app() -> fastapi.FastAPI:
    """An app with the WebUI's generation routes, each echoing the body it was given, and
    already serving when the middleware is added, as at the WebUIs' ``on_app_started``."""
    app = fastapi.FastAPI()
    for path in api_request_args.GENERATION_PATHS + ("/sdapi/v1/options",):

        def echo(body: dict = fastapi.Body(...)) -> dict:  # noqa: B008 - FastAPI's own idiom
            return body

        app.post(path)(echo)
    TestClient(app).post("/sdapi/v1/options", json={})  # builds the middleware stack
    assert api_request_args.install(app)
    assert not api_request_args.install(app)  # once only
    return app


ARGS = {"enable": True, "model_type": "iclight_sd15_fc"}


@pytest.mark.parametrize("path", api_request_args.GENERATION_PATHS)
def test_a_bare_dict_of_args_becomes_the_named_list_form(path):
    body = {"prompt": "a", "alwayson_scripts": {"ic light": {"args": ARGS}, "Other": {"args": {"x": 1}}}}
    response = TestClient(_generation_app()).post(path, json=body)
    assert response.status_code == 200
    assert response.json()["alwayson_scripts"] == {"ic light": {"args": [ARGS]}, "Other": {"args": {"x": 1}}}


@pytest.mark.parametrize("args", [None, 3, "enable", True])
def test_args_neither_list_nor_dict_answer_422_naming_args(args):
    body = {"alwayson_scripts": {"IC Light": {"args": args}}}
    response = TestClient(_generation_app()).post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ICLightError" and body["detail"] == body["errors"]
    assert body["errors"].startswith("alwayson_scripts.IC Light.args: expected a list of the 13 values or an object")


def test_an_entry_that_is_not_an_object_answers_422():
    response = TestClient(_generation_app()).post("/sdapi/v1/img2img", json={"alwayson_scripts": {"IC Light": [True]}})
    assert response.status_code == 422
    assert response.json()["detail"].startswith('alwayson_scripts.IC Light: expected an object with "args", got [True]')


@pytest.mark.parametrize("body", [
    {"prompt": "a", "alwayson_scripts": {"IC Light": {"args": [True, "iclight_sd15_fc"]}}},
    {"prompt": "a", "alwayson_scripts": {"IC Light": {}}},
    {"prompt": "a"},
])
def test_list_args_and_other_requests_pass_unchanged(body):
    app = _generation_app()
    assert TestClient(app).post("/sdapi/v1/txt2img", json=body).json() == body
    assert TestClient(app).post("/sdapi/v1/options", json={"alwayson_scripts": {"IC Light": {"args": 3}}}).status_code == 200


def test_a_body_that_is_not_json_is_left_to_the_webui():
    response = TestClient(_generation_app()).post("/sdapi/v1/txt2img", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422  # FastAPI's own validation answer, not ours
    assert "IC Light" not in response.text


def test_a_webui_under_a_sub_path_is_matched():
    app = fastapi.FastAPI()

    @app.post("/sd/sdapi/v1/txt2img")
    def echo(body: dict = fastapi.Body(...)) -> dict:  # noqa: B008
        return body

    api_request_args.install(app)
    response = TestClient(app).post("/sd/sdapi/v1/txt2img", json={"alwayson_scripts": {"IC Light": {"args": ARGS}}})
    assert response.json()["alwayson_scripts"]["IC Light"]["args"] == [ARGS]

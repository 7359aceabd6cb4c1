"""examples/iclight_api_client.py builds the payloads the README shows, the lighting options included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lib_iclight.args import ARG_NAMES, CONTRACT_ARGS, parse_args
from tests.helpers.images import disc_image

CLIENT = Path(__file__).resolve().parents[2] / "examples" / "iclight_api_client.py"


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("requests")
    spec = importlib.util.spec_from_file_location("iclight_api_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def subject(tmp_path) -> str:
    path = tmp_path / "subject.png"
    disc_image(64).save(path)
    return str(path)


def payload(client, *argv):
    return client.build_payload(client.parse_cli(list(argv)))


def test_the_13_positional_values_without_options(client, subject):
    endpoint, body = payload(client, "--subject", subject)
    args = body["alwayson_scripts"]["IC Light"]["args"]
    assert endpoint == "txt2img" and len(args) == CONTRACT_ARGS
    assert tuple(client.ARG_ORDER) == ARG_NAMES[:CONTRACT_ARGS]
    assert parse_args(args).enable


def test_the_options_go_by_name(client, subject):
    _, body = payload(client, "--mode", "txt2img-fbc", "--subject", subject, "--bg-source", "left", "--relight-in-place")
    [named] = body["alwayson_scripts"]["IC Light"]["args"]
    assert named["bg_source"] == "left" and named["relight_in_place"] is True and named["uploaded_bg"] is None
    parsed = parse_args([named])
    assert (parsed.bg_source, parsed.relight_in_place, parsed.normal_map) == ("left", True, False)
    _, body = payload(client, "--mode", "txt2img-fbc", "--subject", subject, "--normal-map")
    assert body["alwayson_scripts"]["IC Light"]["args"][0]["normal_map"] is True


def test_a_light_map_by_name_or_file(client, subject):
    _, body = payload(client, "--mode", "img2img", "--subject", subject, "--light-map", "Angle:135")
    assert body["alwayson_scripts"]["IC Light"]["args"][2] == "angle:135"
    _, body = payload(client, "--mode", "img2img", "--subject", subject, "--light-map", subject)
    assert len(body["alwayson_scripts"]["IC Light"]["args"][2]) > 100  # the file, in base64


def test_fbc_needs_a_background_unless_one_is_drawn(client, subject):
    with pytest.raises(SystemExit):
        payload(client, "--mode", "txt2img-fbc", "--subject", subject)

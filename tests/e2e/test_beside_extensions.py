"""IC-Light beside other extensions and WebUI features, through a live WebUI's API.

Skipped unless WEBUI_URL is set (see conftest.py); each test also skips when the
extension it needs is not installed on that server. Third-party extensions go in with
``tests/e2e/extensions/install.sh``. "Works" means: IC-Light is applied (the image differs
from the other extension alone), the other extension's effect is kept (the image differs
from IC-Light alone), and the next plain image is bit-identical to one made before.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from PIL import Image, ImageChops

from .conftest import SIZE, WebUI, decode, encode, make_light_map, make_subject


def first_image(response: Any) -> Image.Image:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    return decode(response.json()["images"][0])


def first_ok(response: Any) -> Any:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    return response


def all_images(response: Any) -> list[Image.Image]:
    """Every image of a 200 answer, in its order (generated images, then extras)."""
    return [decode(data) for data in first_ok(response).json()["images"]]


def with_scripts(payload: dict[str, Any], scripts: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with more AlwaysOn scripts beside the ones it already enables."""
    return {**payload, "alwayson_scripts": {**payload["alwayson_scripts"], **scripts}}


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def script_info(webui: WebUI, title: str, is_img2img: bool = False) -> dict[str, Any] | None:
    response = webui.get("/sdapi/v1/script-info")
    if response.status_code != 200:
        return None
    return next((s for s in response.json() if s["name"] == title.lower() and s["is_alwayson"]
                 and s["is_img2img"] == is_img2img), None)


def ic_img2img_payload(webui: WebUI, **overrides: Any) -> dict[str, Any]:
    args = webui.ic_args(input_fg=encode(make_light_map()))
    return webui.ic_payload(args, init_images=[encode(make_subject())], denoising_strength=0.9, **overrides)


# -- IC Light's args in other forms -------------------------------------------------------


def test_a_bare_dict_of_args_gives_the_same_image_as_the_list_form(webui: WebUI) -> None:
    args = webui.ic_args()
    listed = first_image(webui.post("txt2img", webui.plain_payload(alwayson_scripts={"IC Light": {"args": [args]}})))
    bare = first_image(webui.post("txt2img", webui.plain_payload(alwayson_scripts={"IC Light": {"args": args}})))
    assert same(listed, bare)


@pytest.mark.parametrize("args", [None, 3, "on"])
def test_args_neither_list_nor_dict_are_refused_naming_args(webui: WebUI, args: Any) -> None:
    response = webui.post("txt2img", webui.plain_payload(alwayson_scripts={"IC Light": {"args": args}}))
    assert response.status_code == 422, response.text[:500]
    assert response.json()["errors"].startswith("alwayson_scripts.IC Light.args: expected a list of the 13 values")


# -- ControlNet ---------------------------------------------------------------------------


def controlnet_model(webui: WebUI) -> str:
    if script_info(webui, "ControlNet") is None:
        pytest.skip("no ControlNet on this server")
    response = webui.get("/controlnet/model_list")
    models = [m for m in (response.json().get("model_list") or []) if m and m != "None"] if response.status_code == 200 else []
    if not models:
        pytest.skip("no ControlNet model on this server")
    return models[0]


def no_preprocessor(webui: WebUI) -> str:
    """The "none" preprocessor as this ControlNet spells it (sd-webui-controlnet: "none",
    the Forge family's built-in: "None"); an unknown name makes the built-in skip the unit."""
    response = webui.get("/controlnet/module_list")
    modules = response.json().get("module_list", []) if response.status_code == 200 else []
    return next((m for m in modules if str(m).lower() == "none"), "None")


def controlnet_units(webui: WebUI, model: str, count: int) -> list[dict[str, Any]]:
    hint = encode(make_light_map(SIZE).transpose(Image.Transpose.ROTATE_90))
    return [{"enabled": True, "module": no_preprocessor(webui), "model": model, "image": hint, "weight": 1.0,
             "resize_mode": "Crop and Resize", "processor_res": SIZE} for _ in range(count)]


@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
@pytest.mark.parametrize("units", [1, 2])
def test_controlnet_and_ic_light_are_both_applied(webui: WebUI, assert_model_untouched, mode: str, units: int) -> None:
    model = controlnet_model(webui)
    control = {"ControlNet": {"args": controlnet_units(webui, model, units)}}
    if mode == "txt2img":
        ic = webui.ic_payload(webui.ic_args())
        plain = webui.plain_payload()
    else:
        ic = ic_img2img_payload(webui)
        plain = {k: v for k, v in ic.items() if k != "alwayson_scripts"}
    both = first_image(webui.post(mode, with_scripts(ic, control)))
    control_alone = first_image(webui.post(mode, {**plain, "alwayson_scripts": control}))
    ic_alone = first_image(webui.post(mode, ic))
    assert not same(both, control_alone), "IC-Light was dropped beside ControlNet"
    assert not same(both, ic_alone), "ControlNet was dropped beside IC-Light"
    assert_model_untouched()


# -- colour correction (img2img) ----------------------------------------------------------


def mean_saturation(image: Image.Image) -> float:
    data = list(image.convert("HSV").getdata())
    return sum(pixel[1] for pixel in data) / len(data)


def test_img2img_colour_correction_is_matched_to_the_subject_not_the_grey_light_map(webui: WebUI, assert_model_untouched) -> None:
    args = webui.ic_args(input_fg=encode(Image.new("RGB", (SIZE, SIZE), (127, 127, 127))))
    payload = webui.ic_payload(args, init_images=[encode(make_subject())], denoising_strength=0.9,
                               override_settings={"img2img_color_correction": True})
    corrected = first_image(webui.post("img2img", payload))
    assert mean_saturation(corrected) > 5.0, "the result was matched to the grey light map"
    assert_model_untouched()


# -- Tiled Diffusion (multidiffusion-upscaler-for-automatic1111) ----------------------------


def args_by_label(info: dict[str, Any], values: dict[str, Any]) -> list[Any]:
    """The script's defaults, with the args whose label starts with a key of ``values`` set."""
    args = [arg.get("value") for arg in info["args"]]
    for label, value in values.items():
        index = next((i for i, arg in enumerate(info["args"]) if str(arg.get("label") or "").startswith(label)), None)
        if index is None:
            pytest.skip(f"no arg labelled {label!r} in {info['name']}")
        args[index] = value
    return args


def test_tiled_diffusion_is_refused_naming_tiles(webui: WebUI, assert_model_untouched) -> None:
    info = script_info(webui, "Tiled Diffusion")
    if info is None:
        pytest.skip("no Tiled Diffusion on this server")
    tiled = {"Tiled Diffusion": {"args": args_by_label(info, {
        "Enable Tiled Diffusion": True, "Latent tile width": 8, "Latent tile height": 8, "Latent tile overlap": 4,
    })}}
    alone = webui.post("txt2img", webui.plain_payload(width=128, height=128, alwayson_scripts=tiled))
    assert alone.status_code == 200, alone.text[:500]
    ic = webui.ic_payload(webui.ic_args(), width=128, height=128)
    response = webui.post("txt2img", with_scripts(ic, tiled))
    assert response.status_code == 422, response.text[:500]
    assert "samples the image in tiles (Tiled Diffusion, MultiDiffusion)" in response.text, response.text[:2000]
    assert_model_untouched()


# -- agent-scheduler ------------------------------------------------------------------------


def queued_image(webui: WebUI, payload: dict[str, Any]) -> Image.Image:
    response = webui.session.post(f"{webui.url}/agent-scheduler/v1/queue/txt2img", json=payload, timeout=60)
    assert response.status_code == 200, response.text[:500]
    task_id = response.json()["task_id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        task = webui.get(f"/agent-scheduler/v1/task/{task_id}").json()["data"]
        if task["status"] in ("done", "failed", "interrupted"):
            break
        time.sleep(2)
    assert task["status"] == "done", task
    results = webui.get(f"/agent-scheduler/v1/task/{task_id}/results").json()
    assert results["success"], results
    return decode(results["data"][0]["image"])


def test_agent_scheduler_queues_the_bare_dict_form_with_ic_light(webui: WebUI) -> None:
    if webui.get("/agent-scheduler/v1/queue").status_code != 200:
        pytest.skip("no agent-scheduler on this server")
    args = webui.ic_args()
    direct = first_image(webui.post("txt2img", webui.plain_payload(alwayson_scripts={"IC Light": {"args": [args]}})))
    plain = first_image(webui.post("txt2img", webui.plain_payload()))
    queued = queued_image(webui, webui.plain_payload(alwayson_scripts={"IC Light": {"args": args}}))
    assert not same(queued, plain), "the queued task ran without IC-Light"
    assert same(queued, direct)


def test_tiled_vae_encodes_ic_lights_conditioning_too(webui: WebUI, assert_model_untouched) -> None:
    info = script_info(webui, "Tiled VAE")
    if info is None:
        pytest.skip("no Tiled VAE on this server")
    tiled = {"Tiled VAE": {"args": args_by_label(info, {"Enable Tiled VAE": True, "Encoder Tile Size": 256, "Decoder Tile Size": 32})}}
    alone = first_image(webui.post("txt2img", webui.plain_payload(width=128, height=128, alwayson_scripts=tiled)))
    ic = webui.ic_payload(webui.ic_args(), width=128, height=128)
    ic_alone = first_image(webui.post("txt2img", ic))
    both = first_image(webui.post("txt2img", with_scripts(ic, tiled)))
    assert not same(both, alone), "IC-Light was dropped beside Tiled VAE"
    assert both.size == ic_alone.size == (128, 128)
    assert_model_untouched()


def test_hypertile_setting_beside_ic_light(webui: WebUI, assert_model_untouched) -> None:
    """AUTOMATIC1111's HyperTile is a setting, not a script: with it on for the U-Net, IC-Light
    is applied and HyperTile's effect is kept. Its tiles are at least 128 px
    (``max(128, tile_size)`` in ``extensions-builtin/hypertile/hypertile.py``), so a 256x256
    image is the smallest it splits (at 128x128 it changed nothing, measured)."""
    if webui.get("/ic-light/v1/status").json().get("backend") != "a1111":
        pytest.skip("HyperTile as a setting is AUTOMATIC1111's (reForge has a built-in script)")
    hypertile = {"override_settings": {"hypertile_enable_unet": True, "hypertile_max_tile_unet": 128,
                                       "hypertile_max_depth_unet": 3, "hypertile_swap_size_unet": 3},
                 "override_settings_restore_afterwards": True}
    size = {"width": 256, "height": 256}
    plain = first_image(webui.post("txt2img", webui.plain_payload(**size)))
    alone = first_image(webui.post("txt2img", webui.plain_payload(**size, **hypertile)))
    ic = webui.ic_payload(webui.ic_args(), **size)
    ic_alone = first_image(webui.post("txt2img", ic))
    both_response = first_ok(webui.post("txt2img", {**ic, **hypertile}))
    both = decode(both_response.json()["images"][0])
    assert "Hypertile U-Net" in json.loads(both_response.json()["info"])["infotexts"][0], "HyperTile was not on"
    assert not same(both, alone), "IC-Light was dropped beside HyperTile"
    changes_plain = not same(alone, plain)
    print(f"HyperTile changes a plain image: {changes_plain}")  # for the compatibility table
    if changes_plain:
        assert not same(both, ic_alone), "HyperTile was dropped beside IC-Light"
    assert_model_untouched()


# -- the Forge family's built-ins -----------------------------------------------------------

BUILTINS: dict[str, dict[str, Any]] = {
    # script-info name (lower case) prefix -> args to set by label prefix (besides the first,
    # the enable checkbox). 128x128: at 64x64 SD1.5's deepest blocks are 1x1 and FreeU's
    # normalisation divides 0 by 0 (a black image with or without IC-Light).
    "freeu integrated": {},
    "selfattentionguidance integrated": {},
    "perturbedattentionguidance integrated": {},
    "kohya hrfix integrated": {},
    "multidiffusion integrated": {"Tile Width": 64, "Tile Height": 64, "Tile Overlap": 16},
    "stylealign integrated": {},
    "dynamicthresholding (cfg-fix) integrated": {},
    "latentmodifier integrated": {},
    "never oom integrated": {},
    "hypertile integrated": {},
    # Forge Classic's RescaleCFG is one slider (its first arg); reForge's has an enable checkbox
    "rescalecfg": {"Rescale CFG": 0.7, "RescaleCFG Multiplier": 0.7},
    "mahiro cfg for reforge": {},
    "\"apg's now your cfg\"": {},
}
REFUSED = {("reforge", "multidiffusion integrated"): "reForge's MultiDiffusion Integrated samples the UNet in tiles"}


def builtin_args(info: dict[str, Any], values: dict[str, Any]) -> list[Any]:
    args = [arg.get("value") for arg in info["args"]]
    args[0] = True
    for label, value in values.items():
        index = next((i for i, arg in enumerate(info["args"]) if str(arg.get("label") or "").startswith(label)), None)
        if index is not None:
            args[index] = value
    return args


@pytest.mark.parametrize("name", list(BUILTINS))
def test_forge_builtins_beside_ic_light(webui: WebUI, assert_model_untouched, name: str) -> None:
    response = webui.get("/sdapi/v1/script-info")
    info = next((s for s in response.json() if s["name"].startswith(name) and s["is_alwayson"] and not s["is_img2img"]), None)
    if info is None:
        pytest.skip(f"no built-in {name!r} on this server")
    backend = webui.get("/ic-light/v1/status").json().get("backend")
    size = {"width": 128, "height": 128, "batch_size": 2}
    builtin = {info["name"]: {"args": builtin_args(info, BUILTINS[name])}}
    plain = first_image(webui.post("txt2img", webui.plain_payload(**size)))
    alone = first_image(webui.post("txt2img", webui.plain_payload(alwayson_scripts=builtin, **size)))
    ic = webui.ic_payload(webui.ic_args(), **size)
    response = webui.post("txt2img", with_scripts(ic, builtin))
    refusal = REFUSED.get((backend, name))
    if refusal is not None:
        assert response.status_code == 422, response.text[:500]
        assert refusal in response.text, response.text[:2000]
    else:
        both = first_image(response)
        ic_alone = first_image(webui.post("txt2img", ic))
        assert not same(both, alone), f"IC-Light was dropped beside {info['name']}"
        changes_plain = not same(alone, plain)
        print(f"{info['name']} on {backend}: changes a plain image: {changes_plain}")  # for the compatibility table
        if changes_plain:  # the built-in changes a plain image: its effect must stay
            assert not same(both, ic_alone), f"{info['name']} was dropped beside IC-Light"
    assert_model_untouched()


# -- sd-webui-distributed (stable-diffusion-webui-distributed) -------------------------------

WEBUI_WORKER_URL = os.environ.get("WEBUI_WORKER_URL", "").strip().rstrip("/")


def max_pixel_difference(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size, (a.size, b.size)
    return max(high for _, high in ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getextrema())


def test_distributed_worker_share_is_relit_and_keeps_extras(webui: WebUI) -> None:
    """A batch of 2 split by sd-webui-distributed between the master (WEBUI_URL) and one worker
    (WEBUI_WORKER_URL; see tests/e2e/extensions/distributed_pair.sh): the worker's image is relit
    as the same seed made on the worker alone, and both shares' cut-outs come back. The worker
    runs the same seed on another process, so pixels may differ by rounding (<= 2), not more."""
    if script_info(webui, "distribute") is None:
        pytest.skip("no sd-webui-distributed on this server")
    if not WEBUI_WORKER_URL:
        pytest.skip("WEBUI_WORKER_URL is not set: the test needs the worker WebUI that the master's config names")
    worker = WebUI(WEBUI_WORKER_URL)
    # sd-webui-distributed's before_process sends the master's opts.data["sd_model_checkpoint"]
    # to its workers. The Forge family leaves it None until a checkpoint is picked (a server
    # that never saved its settings): then every request fails in before_process (logged) and
    # the batch stays on the master. Pick the loaded one, as a user of the UI has.
    if not webui.options.get("sd_model_checkpoint"):
        title = webui.get("/sdapi/v1/sd-models").json()[0]["title"]
        response = webui.session.post(f"{webui.url}/sdapi/v1/options", json={"sd_model_checkpoint": title}, timeout=600)
        assert response.status_code == 200, response.text[:500]
        print(f"set sd_model_checkpoint to {title!r} on the master (it was {webui.options.get('sd_model_checkpoint')!r})")
    seed = 1234
    payload = webui.ic_payload(webui.ic_args(), batch_size=2, seed=seed)
    response = webui.post("txt2img", payload)
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    images = all_images(response)
    # without a reachable worker the master makes the whole batch itself (and the checks below pass)
    infotexts = json.loads(response.json()["info"])["infotexts"]
    assert any("Worker Label: " in text for text in infotexts), "no share of the batch came from a worker: is it online?"
    extras = webui.expected_extras()
    generated = [image for image in images if image.mode == "RGB"]
    cutouts = [image for image in images if image.mode == "RGBA"]
    # the master's and the worker's: each share appends its own cut-out
    assert len(generated) >= 2 and len(cutouts) == 2 * extras, [image.mode for image in images]
    assert images[:2] == generated[:2], "the generated images do not come first"
    worker_share = images[1]
    # the worker's share is seed + 1 in a batch of 1 there (its own request to the worker)
    alone = first_image(worker.post("txt2img", {**payload, "seed": seed + 1, "batch_size": 1}))
    plain = first_image(worker.post("txt2img", webui.plain_payload(seed=seed + 1)))
    to_alone, to_plain = max_pixel_difference(worker_share, alone), max_pixel_difference(worker_share, plain)
    assert to_alone <= 2, f"the worker's share differs from seed {seed + 1} relit on the worker alone by {to_alone}"
    assert to_plain > 40, f"the worker's share is close to a plain image of seed {seed + 1} ({to_plain}): not relit"


# -- ADetailer (Bing-su/adetailer) ------------------------------------------------------------

# mediapipe's face model ships in the mediapipe wheel: nothing to download. ADetailer runs its
# hooks whether or not it finds a face (on the harness's random-weight images it found one only in
# a plain image, and none in the relit ones, even at confidence 0.05).
ADETAILER_UNIT = {"ad_model": "mediapipe_face_full", "ad_confidence": 0.3, "ad_denoising_strength": 0.4}


def adetailer() -> dict[str, Any]:
    """ADetailer's API args, enabled: [enable, skip img2img, one unit's dict]."""
    return {"ADetailer": {"args": [True, False, dict(ADETAILER_UNIT)]}}


def has_entry(infotext: str, key: str, value: str) -> bool:
    return f"{key}: {value}" in infotext or f'{key}: "{value}"' in infotext


@pytest.mark.parametrize("n_iter", [1, 2])
def test_adetailer_leaves_ic_light_its_whole_request(webui: WebUI, assert_model_untouched, n_iter: int) -> None:
    """ADetailer calls every AlwaysOn script's ``postprocess`` on a copy of ``p`` at each
    batch's first image (and ``before_process``/``process`` on another copy at its last),
    whether or not it detects anything. IC-Light must carry on: every batch is relit (the
    second one too, no delivery-check 422), the cut-out is appended once, the infotexts keep
    IC-Light's entries next to ADetailer's, and the model is as it was."""
    if script_info(webui, "ADetailer") is None:
        pytest.skip("no ADetailer on this server")
    size = {"batch_size": 2, "n_iter": n_iter}
    count = 2 * n_iter
    plain = webui.post("txt2img", webui.plain_payload(**size))
    assert plain.status_code == 200, plain.text[:500]
    plain_images = all_images(plain)
    assert len(plain_images) == count
    ic = webui.ic_payload(webui.ic_args(), **size)
    response = webui.post("txt2img", with_scripts(ic, adetailer()))
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    images = all_images(response)
    generated = [image for image in images if image.mode == "RGB"]
    cutouts = [image for image in images if image.mode == "RGBA"]
    assert len(generated) == count and len(cutouts) == webui.expected_extras(), [image.mode for image in images]
    assert images[:count] == generated, "the generated images do not come first"
    for index, (image, plain_image) in enumerate(zip(generated, plain_images)):
        assert not same(image, plain_image), f"image {index + 1} of {count} was not relit beside ADetailer"
    infotexts = json.loads(response.json()["info"])["infotexts"]
    for index, text in enumerate(infotexts[:count]):
        assert has_entry(text, "IC Light", "True") and "IC Light model: " in text, f"image {index + 1}: {text}"
        assert has_entry(text, "ADetailer model", ADETAILER_UNIT["ad_model"]), f"image {index + 1}: {text}"
    # ADetailer changes an image only where it detects a face; on noise it may find none
    ic_alone = all_images(webui.post("txt2img", ic))[:count]
    print(f"ADetailer beside IC-Light, n_iter {n_iter}: inpainted by ADetailer (differs from IC-Light alone) "
          f"per image: {[not same(a, b) for a, b in zip(generated, ic_alone)]}")
    assert_model_untouched()


RANDOM_YOLO = "random_yolov8n.pt"  # tests/e2e/extensions/make_random_yolo.py; detects a box in any image


@pytest.mark.server_state
def test_adetailer_inpaints_beside_ic_light_without_it(webui: WebUI) -> None:
    """With a detector that always finds something, ADetailer's inpainting passes run live
    after IC-Light's images: they must not crash, must not carry IC-Light (a pass on a crop
    with IC-Light's full-size conditioning would be a shape error or a 422), and must keep
    their own effect, while IC-Light's images stay relit with their cut-out.

    On a CPU server a YOLO pass changes the server for good: ultralytics' ``select_device``
    calls ``torch.set_num_threads(os.cpu_count() - 1)``, and every later image differs from
    one made before by rounding (one level here, 2 cores; none when the server starts with
    ``OMP_NUM_THREADS=1``, measured). So this test runs after every other e2e test
    (``server_state``), and checks the model against a plain image made after the
    detector's first pass instead of the session's baseline."""
    if script_info(webui, "ADetailer") is None:
        pytest.skip("no ADetailer on this server")
    models = webui.get("/adetailer/v1/ad_model")
    if models.status_code != 200 or RANDOM_YOLO not in models.json().get("ad_model", []):
        pytest.skip(f"no {RANDOM_YOLO} in ADetailer's models (tests/e2e/extensions/make_random_yolo.py)")
    unit = {"ad_model": RANDOM_YOLO, "ad_confidence": 0.3, "ad_mask_k": 1, "ad_denoising_strength": 0.6}
    detailer = {"ADetailer": {"args": [True, False, unit]}}
    size = {"batch_size": 2}

    plain = all_images(webui.post("txt2img", webui.plain_payload(**size)))
    alone = all_images(webui.post("txt2img", webui.plain_payload(alwayson_scripts=detailer, **size)))
    assert any(not same(a, b) for a, b in zip(alone, plain)), "ADetailer alone changed nothing: did it detect?"
    plain_after_detector = first_image(webui.post("txt2img", webui.plain_payload()))
    ic = webui.ic_payload(webui.ic_args(), **size)
    ic_alone = all_images(webui.post("txt2img", ic))
    response = first_ok(webui.post("txt2img", with_scripts(ic, detailer)))
    images = all_images(response)
    generated = [image for image in images if image.mode == "RGB"]
    cutouts = [image for image in images if image.mode == "RGBA"]
    assert len(generated) == 2 and len(cutouts) == webui.expected_extras(), [image.mode for image in images]
    infotexts = json.loads(response.json()["info"])["infotexts"]
    for index, (image, text) in enumerate(zip(generated, infotexts)):
        assert not same(image, plain[index]), f"image {index + 1} was not relit beside ADetailer"
        assert not same(image, ic_alone[index]), f"ADetailer did not inpaint image {index + 1} beside IC-Light"
        assert image.size == ic_alone[index].size
        assert has_entry(text, "IC Light", "True") and has_entry(text, "ADetailer model", RANDOM_YOLO), text
    box = ImageChops.difference(generated[0], ic_alone[0].convert("RGB")).getbbox()
    print(f"ADetailer's inpainted box beside IC-Light: {box} of {generated[0].size}")
    assert same(first_image(webui.post("txt2img", webui.plain_payload())), plain_after_detector), "the model was not restored"


def test_adetailer_alone_works_with_ic_light_installed(webui: WebUI, assert_model_untouched) -> None:
    """ADetailer enabled and IC-Light off: the batches come back unrelit, with ADetailer's
    infotext and none of IC-Light's, and the model is as it was."""
    if script_info(webui, "ADetailer") is None:
        pytest.skip("no ADetailer on this server")
    size = {"batch_size": 2, "n_iter": 2}
    off = webui.ic_payload(webui.ic_args(enable=False), **size)
    response = first_ok(webui.post("txt2img", with_scripts(off, adetailer())))
    images = all_images(response)
    assert len(images) == 4 and all(image.mode == "RGB" for image in images), [image.mode for image in images]
    infotexts = json.loads(response.json()["info"])["infotexts"]
    assert len(infotexts) == 4
    for index, text in enumerate(infotexts):
        assert has_entry(text, "ADetailer model", ADETAILER_UNIT["ad_model"]), f"image {index + 1}: {text}"
        assert "IC Light" not in text, f"image {index + 1}: {text}"
    # without IC-Light's args at all, the same request gives the same pixels
    bare = first_ok(webui.post("txt2img", webui.plain_payload(alwayson_scripts=adetailer(), **size)))
    assert all(same(a, decode(b)) for a, b in zip(images, bare.json()["images"])), "IC-Light off changed ADetailer's images"
    assert_model_untouched()

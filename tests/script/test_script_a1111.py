"""The real "IC Light" script over the stand-in A1111: every mode, failure and restore."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from lib_iclight.args import ARG_SPECS
from lib_iclight.errors import ICLightError
from tests.helpers.images import disc_image, to_base64
from tests.helpers.tiny_unet import assert_same, snapshot

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = disc_image(64)


def ic_args(**overrides):
    values = {spec.name: spec.default for spec in ARG_SPECS}
    values.update(enable=True, model_type="IC-Light-SD15-FC-fp8", input_fg=to_base64(SUBJECT), rembg_model="u2net_human_seg")
    values.update(overrides)
    return [values[spec.name] for spec in ARG_SPECS]


def default_args():
    return [spec.default for spec in ARG_SPECS]


def run(webui, args=None, img2img=False, **kwargs):
    from modules import processing, scripts

    if img2img:
        p = processing.StableDiffusionProcessingImg2Img(prompt="a photo", init_images=[kwargs.pop("init_image", SUBJECT)], **kwargs)
    else:
        p = processing.StableDiffusionProcessingTxt2Img(prompt="a photo", **kwargs)
    p.scripts = scripts.ScriptRunner([webui.script])
    p.script_args = tuple(args if args is not None else default_args())
    return p, processing.process_images(p)


def pixels(processed, count=None):
    images = processed.images if count is None else processed.images[:count]
    return [torch.tensor(list(img.convert("RGB").getdata())) for img in images]


def same_images(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture
def unet(webui):
    return webui.model.model.diffusion_model


@pytest.fixture
def plain(webui):
    return pixels(run(webui)[1])


def test_txt2img_fc_relights_and_restores(webui, unet, plain):
    before = snapshot(unet)
    p, processed = run(webui, ic_args())
    assert len(processed.images) == 2  # the result, then the removed-background image
    assert all(isinstance(img, Image.Image) for img in processed.images)
    assert processed.images[1].mode == "RGBA"
    assert not same_images(pixels(processed, 1), plain)
    assert p.extra_generation_params["IC Light model"] == "IC-Light-SD15-FC-fp8"
    assert not any("base64" in str(v) or len(str(v)) > 200 for v in p.extra_generation_params.values())
    assert_same(unet, before)
    assert same_images(pixels(run(webui)[1]), plain)


def test_disabled_script_changes_nothing(webui, unet, plain):
    before = snapshot(unet)
    p, processed = run(webui, default_args())
    assert same_images(pixels(processed), plain)
    assert not any(key.startswith("IC Light") for key in p.extra_generation_params)
    assert_same(unet, before)


def test_named_dict_args_as_the_api_passes_them(webui, plain):
    named = dict(zip([s.name for s in ARG_SPECS], ic_args()))
    named.pop("foreground_threshold")  # a missing key takes its default
    _, processed = run(webui, [named] + default_args()[1:])
    positional = run(webui, ic_args())[1]
    assert same_images(pixels(processed), pixels(positional))


def test_fbc_with_background(webui, unet, plain):
    before = snapshot(unet)
    bg = Image.new("RGB", (80, 64), (200, 120, 40))
    _, processed = run(webui, ic_args(model_type="fbc", uploaded_bg=to_base64(bg)))
    assert not same_images(pixels(processed, 1), plain)
    assert_same(unet, before)


def test_batches_and_batch_count_do_not_stack_the_concat(webui, unet):
    before = snapshot(unet)
    _, processed = run(webui, ic_args(remove_bg=False), batch_size=2, n_iter=2)
    assert len(processed.images) == 4
    plain = pixels(run(webui, batch_size=2, n_iter=2)[1])
    assert not same_images(pixels(processed), plain)
    assert_same(unet, before)


def test_hires_fix_recomputes_the_concat_at_the_hires_size(webui, unet, monkeypatch):
    from lib_iclight.backends import a1111

    sizes = []
    original_install = a1111.A1111Backend.install

    def spy(self, p, offsets, concat):
        sizes.append(tuple(concat.shape[-2:]))
        return original_install(self, p, offsets, concat)

    monkeypatch.setattr(a1111.A1111Backend, "install", spy)
    before = snapshot(unet)
    _, processed = run(webui, ic_args(), enable_hr=True)
    assert sizes == [(8, 8), (16, 16)]
    assert processed.images[0].size == (128, 128)
    assert_same(unet, before)


def test_hires_checkpoint_swap_happens_unpatched(webui, unet):
    before = snapshot(unet)
    _, processed = run(webui, ic_args(), enable_hr=True, hr_checkpoint_name="other")
    assert processed.images[0].size == (128, 128)
    assert_same(unet, before)


def test_img2img_light_map_becomes_the_init_image(webui, unet):
    before = snapshot(unet)
    from lib_iclight.lightmaps import make_lightmap

    light = make_lightmap("left", 64, 64)
    p, processed = run(webui, ic_args(input_fg=to_base64(light)), img2img=True)
    assert len(p.init_images) == 1 and p.init_images[0].size == (64, 64)
    assert list(p.init_images[0].getdata()) == list(light.getdata())
    plain = pixels(run(webui, img2img=True, init_image=light)[1])
    assert not same_images(pixels(processed, 1), plain)
    reinforced, _ = run(webui, ic_args(input_fg=to_base64(light), reinforce_fg=True), img2img=True)
    assert list(reinforced.init_images[0].getdata()) != list(light.getdata())
    assert_same(unet, before)


def test_detail_transfer_appends_or_replaces(webui):
    _, appended = run(webui, ic_args(detail_transfer=True))
    assert len(appended.images) == 3  # result, detail-transferred result, removed background
    webui.shared.opts.data["iclight_detail_transfer_mode"] = "replace"
    try:
        _, replaced = run(webui, ic_args(detail_transfer=True))
    finally:
        webui.shared.opts.data["iclight_detail_transfer_mode"] = "append"
    assert len(replaced.images) == 2
    assert same_images(pixels(replaced, 1), pixels(appended)[1:2])


BAD_REQUESTS = [
    (dict(input_fg=None), "^input_fg: no image"),
    (dict(model_type="fbc"), "^uploaded_bg: no image"),
    (dict(model_type="IC-Light-SD15-XL"), "^model_type: unknown model"),
    (dict(rembg_model="not-a-model"), "^rembg_model: "),
    (dict(input_fg="data:image/png;base64,@@not base64@@"), "^input_fg: "),
    (dict(foreground_threshold="abc"), '^foreground_threshold: expected an int in 0..255, got "abc"'),
    (dict(model_type="../../etc/passwd"), "^model_type: "),
]


@pytest.mark.parametrize("overrides,message", BAD_REQUESTS)
def test_bad_requests_stop_the_generation(webui, unet, plain, overrides, message):
    before = snapshot(unet)
    with pytest.raises(ICLightError, match=message):
        run(webui, ic_args(**overrides))
    assert_same(unet, before)
    assert same_images(pixels(run(webui)[1]), plain)
    assert len(run(webui, ic_args())[1].images) == 2  # the next valid request works


def test_missing_rembg_weights_say_which_file(webui, unet):
    with pytest.raises(ICLightError, match=r"^rembg_model: .*silueta\.onnx"):
        run(webui, ic_args(rembg_model="silueta"))


@pytest.mark.parametrize("kind", ["sdxl", "inpainting"])
def test_non_sd15_checkpoints_are_refused(webui, kind):
    from tests.script.tiny_sd import TinyLatentDiffusion, inpainting_model

    original = webui.shared.sd_model
    if kind == "sdxl":
        model = TinyLatentDiffusion()
        model.is_sdxl = True
    else:
        model = inpainting_model()
    webui.shared.sd_model = model
    try:
        with pytest.raises(ICLightError, match="^model_type: .*SD1.5"):
            run(webui, ic_args())
    finally:
        webui.shared.sd_model = original


def _sampler_callback(monkeypatch, action):
    from modules import sd_samplers

    original = sd_samplers.KDiffusionSampler.callback_state

    def callback(self, d):
        if self.steps_done == 1:
            action()
        return original(self, d)

    monkeypatch.setattr(sd_samplers.KDiffusionSampler, "callback_state", callback)


def test_exception_mid_sampling_restores_the_unet(webui, unet, plain, monkeypatch):
    before = snapshot(unet)

    def boom():
        raise RuntimeError("CUDA out of memory (simulated)")

    _sampler_callback(monkeypatch, boom)
    with pytest.raises(RuntimeError, match="simulated"):
        run(webui, ic_args())
    monkeypatch.undo()
    assert_same(unet, before)
    assert same_images(pixels(run(webui)[1]), plain)


def test_interrupt_restores_the_unet(webui, unet, plain, monkeypatch):
    before = snapshot(unet)
    _sampler_callback(monkeypatch, webui.shared.state.interrupt)
    try:
        _, processed = run(webui, ic_args(), n_iter=2)
    finally:
        webui.shared.state.interrupted = False
    monkeypatch.undo()
    assert len(processed.images) >= 1
    assert_same(unet, before)
    assert same_images(pixels(run(webui)[1]), plain)


# -- Refiner ------------------------------------------------------------------------


def test_a_refiner_switch_is_refused_before_anything_is_patched(webui, unet, plain):
    reference = pixels(run(webui, ic_args())[1])
    before = snapshot(unet)
    with pytest.raises(ICLightError, match=r"^refiner_checkpoint: IC-Light cannot run with the Refiner: "
                                           r"switching to other at 0\.5 of the steps"):
        run(webui, ic_args(), refiner_checkpoint="other", refiner_switch_at=0.5)
    with pytest.raises(ICLightError, match="^refiner_checkpoint: .*from the first step"):
        run(webui, ic_args(), refiner_checkpoint="other", refiner_switch_at=None)
    assert_same(unet, before)
    assert webui.shared.sd_model.sd_checkpoint_info == "base"
    assert same_images(pixels(run(webui)[1]), plain)
    assert same_images(pixels(run(webui, ic_args())[1]), reference)


@pytest.mark.parametrize("refiner,switch_at", [("other", 1.0), ("base", 0.5)])
def test_a_refiner_that_never_switches_is_no_obstacle(webui, unet, refiner, switch_at):
    reference = pixels(run(webui, ic_args())[1])
    before = snapshot(unet)
    _, processed = run(webui, ic_args(), refiner_checkpoint=refiner, refiner_switch_at=switch_at)
    assert same_images(pixels(processed), reference)
    assert_same(unet, before)


def test_the_refiner_is_named_as_the_webui_shows_it():
    from types import SimpleNamespace

    from lib_iclight.webui.controller import refuse_refiner_switch

    base = SimpleNamespace(short_title="base.safetensors [0a1b2c3d]")
    refiner = SimpleNamespace(short_title="detail.safetensors [4e5f6a7b]", title="detail.safetensors [4e5f6a7b...]")
    p = SimpleNamespace(sd_model=SimpleNamespace(sd_checkpoint_info=base), refiner_checkpoint_info=refiner,
                        refiner_switch_at=0.8)
    with pytest.raises(ICLightError, match=r"switching to detail\.safetensors \[4e5f6a7b\] at 0\.8 of the steps"):
        refuse_refiner_switch(p)
    p.refiner_checkpoint_info = base
    refuse_refiner_switch(p)  # the checkpoint already loaded: no switch
    refuse_refiner_switch(SimpleNamespace(sd_model=SimpleNamespace()))  # a WebUI without the refiner


def test_without_the_refusal_the_refiner_writes_into_the_patched_unet(webui, unet, plain, monkeypatch):
    """Negative control: A1111 loads the refiner's weights into the UNet mid-sampling,
    i.e. into IC-Light's merges; conv_in's size stops the load with torch's own error.
    The UNet is restored all the same, and the kept merges are not reused after the write."""
    from lib_iclight.webui import controller

    reference = pixels(run(webui, ic_args())[1])
    before = snapshot(unet)
    monkeypatch.setattr(controller, "refuse_refiner_switch", lambda p: None)
    with pytest.raises(RuntimeError, match="size mismatch for input_blocks.0.0.weight"):
        run(webui, ic_args(), refiner_checkpoint="other", refiner_switch_at=0.5)
    monkeypatch.undo()
    assert_same(unet, before)
    assert webui.shared.sd_model.sd_checkpoint_info == "base"
    assert same_images(pixels(run(webui)[1]), plain)
    assert same_images(pixels(run(webui, ic_args())[1]), reference)


# -- LoRA ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_model(webui):
    """A model no Lora has touched yet (no backups), swapped in for one test."""
    from tests.helpers.tiny_unet import make_tiny_unet
    from tests.script.tiny_sd import TinyLatentDiffusion

    original = webui.shared.sd_model
    model = TinyLatentDiffusion(make_tiny_unet(seed=0))
    webui.networks.assign_names(model.model.diffusion_model)
    webui.shared.sd_model = model
    try:
        yield model
    finally:
        webui.shared.sd_model = original


def lora(webui, name, seed):
    from tests.script.tiny_sd import TinyLatentDiffusion  # noqa: F401

    unet = webui.shared.sd_model.model.diffusion_model
    gen = torch.Generator().manual_seed(seed)
    deltas = {}
    for layer in ("input_blocks.0.0", "input_blocks.1.1.transformer_blocks.0.attn2.to_k", "out.2"):
        weight = unet.get_submodule(layer).weight
        deltas[layer] = torch.randn(weight.shape, generator=gen) * 0.05
    return webui.networks.Network(name, deltas)


def test_lora_backup_taken_during_an_ic_generation_cannot_corrupt_the_model(webui):
    with fresh_model(webui) as model:
        unet = model.model.diffusion_model
        base = snapshot(unet)
        plain = pixels(run(webui)[1])
        lora_a = lora(webui, "a", 1)
        lora_only = pixels(run(webui, loras=[lora_a])[1])
    with fresh_model(webui) as model:  # Lora's first touch happens inside the IC generation
        unet = model.model.diffusion_model
        ic_lora = pixels(run(webui, ic_args(), loras=[lora(webui, "a", 1)])[1], 1)
        assert same_images(pixels(run(webui)[1]), plain)
        assert_same_values(unet, base)
        assert same_images(pixels(run(webui, loras=[lora(webui, "a", 1)])[1]), lora_only)
        assert not same_images(ic_lora, lora_only)
        # switching LoRA between neighbouring IC generations
        run(webui, ic_args(), loras=[lora(webui, "b", 2)])
        assert same_images(pixels(run(webui, loras=[lora(webui, "a", 1)])[1]), lora_only)
        assert same_images(pixels(run(webui)[1]), plain)
        assert_same_values(unet, base)


def test_ic_with_lora_equals_ic_on_merged_weights(webui):
    """IC + LoRA must really include the LoRA (Lora settled before the merge, not skipped)."""
    with fresh_model(webui) as model:
        lora_a = lora(webui, "a", 1)
        with_lora = pixels(run(webui, ic_args(remove_bg=False), loras=[lora_a])[1])
    with fresh_model(webui) as model:
        unet = model.model.diffusion_model
        with torch.no_grad():
            for layer, delta in lora_a.deltas.items():
                unet.get_submodule(layer).weight += delta
        merged_by_hand = pixels(run(webui, ic_args(remove_bg=False))[1])
    assert same_images(with_lora, merged_by_hand)


def assert_same_values(module, snap):
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        assert torch.equal(tensor, snap[name][1]), name


def test_the_lora_guard_is_what_prevents_the_a1111_failure(webui, monkeypatch):
    """Negative control: without settling Lora first, the stand-in reproduces what was seen
    on A1111 with other IC-Light extensions (Lora's restore crashing into the wide conv_in)."""
    from lib_iclight.backends import a1111

    monkeypatch.setattr(a1111, "_lora_guard", lambda modules: contextlib.nullcontext())
    with fresh_model(webui):
        with pytest.raises(RuntimeError, match=r"size of tensor a \(8\) must match"):
            run(webui, ic_args(), loras=[lora(webui, "a", 1)])


@pytest.mark.parametrize("is_img2img", [False, True])
def test_ui_returns_the_components_in_an_input_accordion(webui, is_img2img):
    import gradio as gr
    from modules.ui_components import InputAccordion

    script = webui.script_module.ICLightScript()
    assert script.title() == "IC Light"
    with gr.Blocks():
        components = script.ui(is_img2img)
    assert len(components) == len(ARG_SPECS) == 16  # the 13 of the contract, then the lighting options
    assert isinstance(components[0], InputAccordion)
    assert components[0].value is False
    keys = [key for _, key in script.infotext_fields]
    assert "IC Light" in keys and "IC Light model" in keys
    assert all(spec.infotext_key in keys for spec in ARG_SPECS if spec.kind != "image")


def test_settings_and_routes_are_registered(webui):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from modules import script_callbacks

    for callback in script_callbacks.callbacks_ui_settings:
        callback()
    assert "iclight_detail_transfer_mode" in webui.shared.opts.data_labels
    app = FastAPI()
    for callback in script_callbacks.callbacks_app_started:
        callback(None, app)
    models = TestClient(app).get("/ic-light/v1/models").json()
    assert {m["name"]: m["kind"] for m in models["models"]} == {"IC-Light-SD15-FC-fp8": "fc", "iclight_sd15_fbc": "fbc"}
    assert "u2net_human_seg" in models["rembg_models"]
    from lib_iclight.webui.api_request_args import ScriptArgsMiddleware

    assert [m.cls for m in app.user_middleware].count(ScriptArgsMiddleware) == 1


def test_the_status_route_reports_merges_restores_and_caches(webui):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from modules import script_callbacks

    app = FastAPI()
    for callback in script_callbacks.callbacks_app_started:
        callback(None, app)
    client = TestClient(app)
    with fresh_model(webui):
        start = client.get("/ic-light/v1/status").json()
        run(webui, ic_args(remove_bg=False))
        first = client.get("/ic-light/v1/status").json()
        run(webui, ic_args(remove_bg=False))
        run(webui)
        second = client.get("/ic-light/v1/status").json()

    assert start["webui"] == "a1111" and start["backend"] == "a1111" and start["checkpoint_loaded"] is True
    assert first["unet"]["merges"] == start["unet"]["merges"] + 1
    # The repeated generation merged nothing; A1111 restores the UNet after every sampler call.
    assert second["unet"]["merges"] == first["unet"]["merges"]
    assert second["unet"]["restores"] == first["unet"]["restores"] + 1
    assert second["unet"]["holds"] is None and second["unet"]["kept_merges"] == "IC-Light-SD15-FC-fp8"
    assert second["unet"]["kept_merges_bytes"] > 0
    caches = second["caches"]
    assert caches["offsets"] == {"entries": [], "bytes": 0}  # A1111 reads the file, holds no offsets
    assert caches["latents"]["entries"] >= 1 and caches["latents"]["bytes"] > 0
    assert caches["subjects"]["entries"] >= 1 and caches["subjects"]["bytes"] > 0
    assert "/" not in str(second["unet"]) and str(webui.ic_dir) not in str(second)


def _foreign_package(monkeypatch, where):
    import types

    foreign = types.ModuleType("lib_iclight")
    foreign.__path__ = [str(where / "lib_iclight")]
    monkeypatch.setitem(sys.modules, "lib_iclight", foreign)


def test_another_extensions_lib_iclight_stops_the_script_with_advice(webui, tmp_path, monkeypatch):
    _foreign_package(monkeypatch, tmp_path / "sd-webui-old-ic-light")
    with pytest.raises(ImportError, match=r"another extension's 'lib_iclight' package is already loaded "
                                          r"\(from .*sd-webui-old-ic-light.*disable the other one"):
        webui.script_module.check_our_package()


def test_the_script_file_refuses_to_load_over_another_lib_iclight(webui, tmp_path, monkeypatch):
    _foreign_package(monkeypatch, tmp_path / "sd-webui-old-ic-light")
    spec = importlib.util.spec_from_file_location("iclight_script_clash", ROOT / "scripts" / "ic_light.py")
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match="Two IC-Light extensions cannot be enabled together"):
        spec.loader.exec_module(module)


def test_our_own_lib_iclight_passes_the_check(webui):
    webui.script_module.check_our_package()


def test_other_extensions_shipping_lib_iclight_are_named(webui, tmp_path, monkeypatch):
    from modules import extensions

    old, disabled, unrelated = tmp_path / "old-ic-light", tmp_path / "disabled", tmp_path / "unrelated"
    for folder in (old / "lib_iclight", disabled / "lib_iclight", unrelated / "scripts"):
        folder.mkdir(parents=True)
    monkeypatch.setattr(extensions, "extensions", [
        extensions.Extension("this-one", str(ROOT)),
        extensions.Extension("old-ic-light", str(old)),
        extensions.Extension("disabled", str(disabled), enabled=False),
        extensions.Extension("unrelated", str(unrelated)),
    ])
    assert webui.script_module.other_extensions_with_our_package() == [f"old-ic-light ({old})"]


def test_encoded_conditioning_is_cached_until_the_vae_changes(webui, monkeypatch):
    model = webui.model
    calls = []
    original = type(model).encode_first_stage

    def counting(self, x):
        calls.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(type(model), "encode_first_stage", counting)
    args = ic_args(input_fg=to_base64(disc_image(64, radius=17)))
    first = pixels(run(webui, args)[1])
    assert len(calls) == 1
    assert same_images(pixels(run(webui, args)[1]), first) and len(calls) == 1  # cached
    vae = model.first_stage_model
    state = {k: v.clone() for k, v in vae.state_dict().items()}
    vae.load_state_dict(state)  # same values, loaded in place: the cache must not trust it
    run(webui, args)
    assert len(calls) == 2


def test_the_prepared_subject_is_reused_for_the_same_input(webui, monkeypatch):
    from lib_iclight import conditioning as subject

    calls = []
    original = subject.prepare_subject

    def counting(*args, **kwargs):
        calls.append(kwargs.get("erode_size"))
        return original(*args, **kwargs)

    monkeypatch.setattr(subject, "prepare_subject", counting)
    image = to_base64(disc_image(64, radius=13))
    first = pixels(run(webui, ic_args(input_fg=image))[1])
    second = pixels(run(webui, ic_args(input_fg=image))[1])
    assert len(calls) == 1 and same_images(first, second)
    run(webui, ic_args(input_fg=image, erode_size=4))  # other rembg settings: prepared again
    assert calls == [16, 4]


# -- merged weights kept between generations -------------------------------------------


@pytest.fixture
def offset_reads(monkeypatch):
    """The ldm keys read from IC-Light files, per call of OffsetFile.load."""
    from lib_iclight import weights

    reads: list[list[str]] = []
    original = weights.OffsetFile.load

    def counting(self, keys):
        reads.append(list(keys))
        return original(self, keys)

    monkeypatch.setattr(weights.OffsetFile, "load", counting)
    return reads


def kept_patch(webui):
    return webui.script_module.controller().backend._kept


def test_repeated_ic_generations_merge_once_and_hold_no_offsets(webui, offset_reads):
    from lib_iclight import weights

    with fresh_model(webui) as model:
        unet = model.model.diffusion_model
        base = snapshot(unet)
        plain = pixels(run(webui)[1])
        first = pixels(run(webui, ic_args(remove_bg=False))[1])
        assert len(offset_reads) == 1 and len(offset_reads[0]) == len(unet.state_dict())
        assert_same(unet, base)
        assert same_images(pixels(run(webui)[1]), plain)
        second = pixels(run(webui, ic_args(remove_bg=False))[1])
        assert same_images(first, second) and len(offset_reads) == 1  # nothing read, nothing merged
        assert_same(unet, base)
        # Memory: one merged copy of the UNet and no offsets, neither cached nor held.
        kept = kept_patch(webui)
        unet_bytes = sum(t.numel() * t.element_size() for t in unet.parameters())
        conv_in = unet.input_blocks[0][0].weight
        assert kept.merged_bytes == unet_bytes + conv_in.numel() * conv_in.element_size()
        assert kept.offsets is None and weights.cache_info() == []


def test_kept_merges_follow_a_lora_in_and_out(webui, offset_reads):
    """A LoRA changes weights in place between IC generations: what it touched is merged
    again (A1111's Lora copies its backup into every module it hooks whenever the set of
    LoRAs changes), the same LoRA again merges nothing, and every result equals a cold
    start on the same weights."""
    with fresh_model(webui):
        ic = pixels(run(webui, ic_args(remove_bg=False))[1])
        lora_a = lora(webui, "a", 1)
        with_lora = pixels(run(webui, ic_args(remove_bg=False), loras=[lora_a])[1])
        assert len(offset_reads) == 2 and {f"{layer}.weight" for layer in lora_a.deltas} <= set(offset_reads[1])
        assert same_images(pixels(run(webui, ic_args(remove_bg=False), loras=[lora_a])[1]), with_lora)
        assert len(offset_reads) == 2  # same LoRA: Lora leaves the weights alone, nothing to merge
        assert same_images(pixels(run(webui, ic_args(remove_bg=False))[1]), ic)
        assert len(offset_reads) == 3
    with fresh_model(webui) as model:
        webui.script_module.controller().backend.release_kept()
        with torch.no_grad():
            for layer, delta in lora_a.deltas.items():
                model.model.diffusion_model.get_submodule(layer).weight += delta
        assert same_images(pixels(run(webui, ic_args(remove_bg=False))[1]), with_lora)


def test_kept_merges_follow_a_checkpoint_loaded_in_place(webui, offset_reads):
    with fresh_model(webui) as model:
        unet = model.model.diffusion_model
        first = pixels(run(webui, ic_args(remove_bg=False))[1])
        other = webui.sd_models.checkpoints["other"]
        saved = {k: v.clone() for k, v in unet.state_dict().items()}
        unet.load_state_dict(other)
        on_other = pixels(run(webui, ic_args(remove_bg=False))[1])
        assert len(offset_reads) == 2 and len(offset_reads[1]) == len(saved)
        unet.load_state_dict(saved)
        assert same_images(pixels(run(webui, ic_args(remove_bg=False))[1]), first)
        assert not same_images(on_other, first)


def test_switching_models_never_holds_two_merged_copies(webui, monkeypatch):
    from lib_iclight.backends import unet_patch

    with fresh_model(webui) as model:
        unet = model.model.diffusion_model
        run(webui, ic_args(remove_bg=False))
        fc_patch = kept_patch(webui)
        assert fc_patch.merged_bytes > 0
        held_at_merge = []
        original = unet_patch.UNetPatch._merge_stale

        def spy(self, targets):
            held_at_merge.append(fc_patch.merged_bytes)
            return original(self, targets)

        monkeypatch.setattr(unet_patch.UNetPatch, "_merge_stale", spy)
        bg = to_base64(Image.new("RGB", (64, 64), (200, 120, 40)))
        run(webui, ic_args(model_type="fbc", uploaded_bg=bg, remove_bg=False))
        assert held_at_merge == [0]  # the fc merges were dropped before the fbc merge
        assert kept_patch(webui) is not fc_patch and kept_patch(webui).unet is unet


@pytest.mark.parametrize("reason", ["setting", "lowvram"])
def test_merges_are_dropped_when_not_to_be_kept(webui, offset_reads, reason):
    with fresh_model(webui) as model:
        unet = model.model.diffusion_model
        base = snapshot(unet)
        first = pixels(run(webui, ic_args(remove_bg=False))[1])
        if reason == "setting":
            webui.shared.opts.data["iclight_keep_merged"] = False
        else:
            model.lowvram = True
        try:
            assert same_images(pixels(run(webui, ic_args(remove_bg=False))[1]), first)
            assert kept_patch(webui) is None and len(offset_reads) == 1  # used once more, then dropped
            assert same_images(pixels(run(webui, ic_args(remove_bg=False))[1]), first)
            assert kept_patch(webui) is None and len(offset_reads) == 2  # merged anew
        finally:
            webui.shared.opts.data.pop("iclight_keep_merged", None)
            model.lowvram = False
        assert_same(unet, base)


def test_kept_merges_do_not_keep_an_unloaded_model_alive(webui):
    import gc
    import weakref

    with fresh_model(webui) as model:
        run(webui, ic_args(remove_bg=False))
        unet_ref = weakref.ref(model.model.diffusion_model)
        assert kept_patch(webui).unet is unet_ref()
        del model
    gc.collect()
    assert unet_ref() is None and kept_patch(webui).unet is None
    run(webui, ic_args(remove_bg=False))  # the next generation merges for the current model
    assert kept_patch(webui).unet is webui.shared.sd_model.model.diffusion_model

"""The real "IC Light" script beside stand-ins of other extensions on the stand-in A1111.

Each stand-in does to the model what a real extension does (named in its docstring):
IC-Light is applied beside it, or the generation stops with an error that names the
conflict; never an image without IC-Light, and the UNet is restored either way.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lib_iclight.errors import ICLightConflict
from lib_iclight.images import composite_on_grey
from lib_iclight.lightmaps import make_lightmap
from tests.helpers.images import disc_image, to_base64
from tests.helpers.tiny_unet import assert_same, snapshot
from tests.script.test_script_a1111 import SUBJECT, default_args, ic_args, pixels, same_images


class StandInScript:
    """An AlwaysOn script of another extension: one arg, its "enabled" checkbox."""

    args_count = 1
    filename = "standin.py"

    def title(self) -> str:
        return type(self).__name__

    def __getattr__(self, hook):  # every other hook does nothing
        if hook.startswith("__"):
            raise AttributeError(hook)
        return lambda *args, **kwargs: None


class ModelSwapper(StandInScript):
    """Samples with its own copy of the UNet, made before IC-Light patched it: what an
    extension that replaces the model or its forward for sampling amounts to."""

    def process_before_every_sampling(self, p, enabled, **kwargs):
        if not enabled:
            return
        model = p.sd_model.model
        own = copy.deepcopy(model.diffusion_model)
        sample = p.sampler.sample

        def swapped(*args, **kw):
            real, model.diffusion_model = model.diffusion_model, own
            try:
                return sample(*args, **kw)
            finally:
                model.diffusion_model = real

        p.sampler.sample = swapped


class ControlNetLike(StandInScript):
    """sd-webui-controlnet (``scripts/hook.py``): the UNet's ``forward`` is replaced by one
    that first runs a 4-channel control model on ``x`` and adds its output; the UNet's own
    blocks run after it."""

    def __init__(self):
        torch.manual_seed(7)
        self.control = torch.nn.Conv2d(4, 4, 3, padding=1)

    def process_before_every_sampling(self, p, enabled, **kwargs):
        if not enabled:
            return
        unet = p.sd_model.model.diffusion_model
        forward = type(unet).forward.__get__(unet)
        control = self.control

        def forward_with_control(x, timesteps=None, context=None, **kw):
            hint = control(x.to(control.weight.dtype))  # a 4-channel model: 8 channels fail here
            return forward(x, timesteps, context, **kw) + 0.5 * hint.to(x.dtype)

        unet.forward = forward_with_control

    def postprocess(self, p, processed, enabled):
        p.sd_model.model.diffusion_model.__dict__.pop("forward", None)


class TiledLike(StandInScript):
    """Tiled Diffusion (multidiffusion-upscaler-for-automatic1111): the UNet is called on
    tiles of the latent, two halves here."""

    def process_before_every_sampling(self, p, enabled, **kwargs):
        if not enabled:
            return
        unet = p.sd_model.model.diffusion_model
        forward = type(unet).forward.__get__(unet)

        def tiled(x, timesteps=None, context=None, **kw):
            half = x.shape[-1] // 2
            left = forward(x[..., :half], timesteps, context, **kw)
            right = forward(x[..., half:], timesteps, context, **kw)
            return torch.cat([left, right], dim=-1)

        unet.forward = tiled

    def postprocess(self, p, processed, enabled):
        p.sd_model.model.diffusion_model.__dict__.pop("forward", None)


def run_beside(webui, other, ic, enabled=True, img2img=False, **kwargs):
    """One generation with IC Light (args ``ic``, or its defaults) and ``other`` after it."""
    from modules import processing, scripts

    if img2img:
        p = processing.StableDiffusionProcessingImg2Img(prompt="a photo", init_images=[kwargs.pop("init_image", SUBJECT)], **kwargs)
    else:
        p = processing.StableDiffusionProcessingTxt2Img(prompt="a photo", **kwargs)
    runner = [webui.script] + ([other] if other is not None else [])
    p.scripts = scripts.ScriptRunner(runner)
    p.script_args = tuple((ic if ic is not None else default_args()) + ([enabled] if other is not None else []))
    try:
        return p, processing.process_images(p)
    finally:
        if other is not None and getattr(p.sd_model.model.diffusion_model, "forward", None) is not None:
            p.sd_model.model.diffusion_model.__dict__.pop("forward", None)


@pytest.fixture
def unet(webui):
    return webui.model.model.diffusion_model


def test_a_model_replaced_for_sampling_stops_the_generation_and_names_the_extension(webui, unet):
    before = snapshot(unet)
    plain = pixels(run_beside(webui, None, None)[1])
    with pytest.raises(ICLightConflict, match=r"^IC Light: none of the \d+ UNet calls of this generation received "
                       r"IC-Light's conditioning: .* Enabled beside it: ModelSwapper\. No image was returned"):
        run_beside(webui, ModelSwapper(), ic_args())
    assert_same(unet, before)
    assert same_images(pixels(run_beside(webui, None, None)[1]), plain)


def test_the_safety_net_is_what_stops_it(webui, unet, monkeypatch):
    """Negative control: without the delivery check, the swapped model returns an image
    without IC-Light, bit-identical to the other extension alone."""
    from lib_iclight.webui import controller

    monkeypatch.setattr(controller, "require_delivery", lambda *args, **kwargs: None)
    _, with_ic = run_beside(webui, ModelSwapper(), ic_args())
    _, alone = run_beside(webui, ModelSwapper(), None)
    assert same_images(pixels(with_ic, 1), pixels(alone))


def test_a_disabled_extension_beside_it_is_not_named(webui):
    _, processed = run_beside(webui, ModelSwapper(), ic_args(), enabled=False)
    assert len(processed.images) == 2


@pytest.mark.parametrize("img2img", [False, True])
def test_a_replaced_unet_forward_with_a_4_channel_control_model_works(webui, unet, img2img):
    before = snapshot(unet)
    kwargs = {"img2img": img2img}
    ic = ic_args(input_fg=to_base64(make_lightmap("left", 64, 64))) if img2img else ic_args()
    plain = pixels(run_beside(webui, None, None, **kwargs)[1])
    control_alone = pixels(run_beside(webui, ControlNetLike(), None, **kwargs)[1])
    ic_alone = pixels(run_beside(webui, None, ic, **kwargs)[1], 1)
    _, both = run_beside(webui, ControlNetLike(), ic, **kwargs)
    both = pixels(both, 1)
    assert not same_images(control_alone, plain)  # the control model changes the image
    assert not same_images(both, control_alone)  # IC-Light is applied
    assert not same_images(both, ic_alone)  # and so is the control model
    assert_same(unet, before)
    assert same_images(pixels(run_beside(webui, None, None, **kwargs)[1]), plain)


def test_tiled_sampling_is_refused_naming_tiles(webui, unet):
    before = snapshot(unet)
    plain = pixels(run_beside(webui, None, None)[1])
    assert len(run_beside(webui, TiledLike(), None)[1].images) == 1  # works alone
    with pytest.raises(ICLightConflict, match=r"^IC Light: the UNet was called on a latent of \(8, 4\) while the "
                       r"image's latent, and IC-Light's conditioning, is \(8, 8\): an extension that samples the image in tiles"):
        run_beside(webui, TiledLike(), ic_args())
    assert_same(unet, before)
    assert same_images(pixels(run_beside(webui, None, None)[1]), plain)


def _saturation(image) -> float:
    hsv = torch.tensor(list(image.convert("HSV").getdata()), dtype=torch.float32)
    return float(hsv[:, 1].mean())


def test_img2img_color_correction_matches_the_subject_not_the_light_map(webui, unet):
    from modules import processing

    before = snapshot(unet)
    ic = ic_args(input_fg=to_base64(make_lightmap("ambient", 64, 64)))
    _, uncorrected = run_beside(webui, None, ic, img2img=True)
    webui.shared.opts.data["img2img_color_correction"] = True
    try:
        p, corrected = run_beside(webui, None, ic, img2img=True)
    finally:
        webui.shared.opts.data["img2img_color_correction"] = False
    expected = processing.apply_color_correction(processing.setup_color_correction(composite_on_grey(SUBJECT)), uncorrected.images[0])
    assert list(corrected.images[0].getdata()) == list(expected.getdata())
    grey_target = processing.apply_color_correction(processing.setup_color_correction(p.init_images[0]), uncorrected.images[0])
    assert _saturation(grey_target) < 1.0 < _saturation(corrected.images[0])  # what the light map's target gave
    assert_same(unet, before)


def test_the_img2img_batch_tab_reusing_one_p_gives_each_image_as_made_alone(webui, unet):
    """A1111's ``img2img.process_batch`` (1.10, l. 52-133) runs ``process_images`` on one
    ``p`` per file of the folder, setting ``p.init_images = [img] * p.batch_size`` each time."""
    from modules import processing, scripts

    before = snapshot(unet)
    subjects = [SUBJECT, disc_image(64, radius=14.0, fg=(40, 160, 90)), SUBJECT.transpose(0)]
    ic = ic_args(input_fg=to_base64(make_lightmap("right", 64, 64)))
    alone = [pixels(run_beside(webui, None, ic, img2img=True, init_image=image, batch_size=2)[1], 2) for image in subjects]
    p = processing.StableDiffusionProcessingImg2Img(prompt="a photo", init_images=[SUBJECT], batch_size=2)
    p.scripts = scripts.ScriptRunner([webui.script])
    p.script_args = tuple(ic)
    for image, expected in zip(subjects, alone):
        p.init_images = [image] * p.batch_size
        assert same_images(pixels(processing.process_images(p), 2), expected)
    assert not same_images(alone[0], alone[1])
    assert_same(unet, before)


class Distribute(StandInScript):
    """sd-webui-distributed (8fd65eb, ``scripts/distributed.py`` l. 200-236): its
    ``before_process`` packs every AlwaysOn script's raw args into a JSON worker payload."""

    def __init__(self, ic_script):
        self.ic_script = ic_script
        self.payloads = []

    def title(self) -> str:
        return "Distribute"

    def before_process(self, p, enabled):
        args = list(p.script_args[self.ic_script.args_from:self.ic_script.args_to])
        self.payloads.append(json.dumps({"IC Light": {"args": args}}))


class InjectsImages(StandInScript):
    """Adds images to the output after sampling, as sd-webui-distributed does with a
    worker's share (``postprocess_batch_list``) and ControlNet with its maps."""

    def postprocess_batch_list(self, p, pp, enabled, **kwargs):
        pp.images.extend(torch.zeros_like(pp.images[0]) for _ in range(2))


def test_panel_images_reach_distributed_as_json_and_give_the_same_image(webui):
    from lib_iclight.args import ARG_NAMES

    panel_args = ic_args(input_fg=SUBJECT)  # the panel gives a PIL image
    _, alone = run_beside(webui, None, panel_args)
    distribute = Distribute(webui.script)
    p, beside = run_beside(webui, distribute, panel_args)
    sent = json.loads(distribute.payloads[0])["IC Light"]["args"]
    assert sent[ARG_NAMES.index("input_fg")].startswith("data:image/png;base64,")
    assert same_images(pixels(beside), pixels(alone))


def test_with_ic_light_off_an_image_left_in_the_panel_still_reaches_distributed_as_json(webui):
    """distributed packs every AlwaysOn script's args, enabled or not: an image left in the
    panel would fail the worker's share of a generation without IC-Light too."""
    distribute = Distribute(webui.script)
    _, processed = run_beside(webui, distribute, ic_args(enable=False, input_fg=SUBJECT))
    assert len(distribute.payloads) == 1 and len(processed.images) == 1


def test_without_distributed_the_panel_images_stay_as_they_are(webui):
    from lib_iclight.args import ARG_NAMES

    p, _ = run_beside(webui, ModelSwapper(), ic_args(input_fg=SUBJECT), enabled=False)
    assert p.script_args[ARG_NAMES.index("input_fg")] is SUBJECT


def test_extras_are_made_for_this_webuis_images_only(webui):
    _, alone = run_beside(webui, None, ic_args(detail_transfer=True), batch_size=2)
    assert len(alone.images) == 2 + 2 + 1  # results, their detail transfers, the cut-out
    _, injected = run_beside(webui, InjectsImages(), ic_args(detail_transfer=True), batch_size=2)
    assert len(injected.images) == 2 + 2 + 2 + 1  # the two added images get no detail transfer
    assert same_images(pixels(injected)[4:6], pixels(alone)[2:4])


class ADetailerLike(StandInScript):
    """ADetailer (Bing-su/adetailer ``36189cb``: ``scripts/!adetailer.py``
    ``postprocess_image`` and ``_postprocess_image_inner``, ``aaaaaa/p_method.py``), with
    one detection on every image. For each image: at ``batch_index`` 0, every script's
    ``postprocess`` on ``copy(p)`` with an empty ``Processed``; then an inpainting img2img
    pass, a new processing object on ``p.sd_model`` at ``p``'s size whose script runner
    keeps only the scripts ADetailer allows (IC Light is not one); at the batch's last
    index, ``before_process`` and ``process`` on another ``copy(p)``. Its folder sorts
    before IC Light's, so its ``postprocess_image`` runs first."""

    filename = "!adetailer.py"

    def __init__(self):
        self.inner_channels: list[int] = []
        self.passes = 0

    def postprocess_image(self, p, pp, enabled):
        from modules import processing

        if not enabled or getattr(p, "_ad_disabled", False):
            return
        if p.batch_index == 0:
            p.scripts.postprocess(copy.copy(p), processing.Processed(p, [], []))
        inner = processing.StableDiffusionProcessingImg2Img(prompt=p.prompt, init_images=[pp.image], width=p.width,
                                                            height=p.height, seed=p.seed, steps=2)
        runner = copy.copy(p.scripts)
        runner.alwayson_scripts = [s for s in p.scripts.alwayson_scripts if (getattr(s, "filename", None) or "").startswith("dynamic_")]
        inner.scripts, inner.script_args = runner, p.script_args
        inner._ad_disabled = True
        unet = p.sd_model.model.diffusion_model
        handle = unet.input_blocks[0][0].register_forward_pre_hook(
            lambda _m, args: self.inner_channels.append(int(args[0].shape[1])))
        try:
            processed = processing.process_images(inner)
        finally:
            handle.remove()
        self.passes += 1
        pp.image = processed.images[0]
        if p.batch_index == p.batch_size - 1:
            again = copy.copy(p)
            p.scripts.before_process(again)
            p.scripts.process(again)


def run_after_adetailer(webui, adetailer, ic, **kwargs):
    from modules import processing, scripts

    p = processing.StableDiffusionProcessingTxt2Img(prompt="a photo", **kwargs)
    p.scripts = scripts.ScriptRunner([adetailer, webui.script])  # "!adetailer" sorts first
    p.script_args = (True, *ic)
    return p, processing.process_images(p)


def test_adetailers_passes_run_without_ic_light_and_leave_the_batch_its_ic_light(webui, unet):
    """ADetailer's hooks on copies of ``p`` neither end IC-Light's request (the second batch
    is relit, the extras and detail transfer come) nor start another; its own inpainting
    passes run on the plain UNet (4 input channels), at their own size; the UNet is restored."""
    before = snapshot(unet)
    plain_batch = pixels(run_beside(webui, None, None, batch_size=2, n_iter=2)[1])
    adetailer = ADetailerLike()
    p, processed = run_after_adetailer(webui, adetailer, ic_args(detail_transfer=True), batch_size=2, n_iter=2)
    assert adetailer.passes == 4
    assert adetailer.inner_channels and set(adetailer.inner_channels) == {4}
    # 4 images, their 4 detail-transferred copies, the cut-out
    assert len(processed.images) == 4 + 4 + 1 and processed.images[-1].mode == "RGBA"
    assert p.extra_generation_params["IC Light"] == "True"
    assert_same(unet, before)
    assert same_images(pixels(run_beside(webui, None, None, batch_size=2, n_iter=2)[1]), plain_batch)


def test_without_the_borrowed_copy_check_adetailer_ends_ic_light_mid_generation(webui, unet, monkeypatch):
    """Negative control: if the hooks acted on ADetailer's copies, its ``postprocess`` call
    would end the request after the first image, and the second batch would sample
    without IC-Light (stopped by the delivery check)."""
    from lib_iclight.webui import context

    monkeypatch.setattr(context, "borrowed", lambda p: False)
    before = snapshot(unet)
    with pytest.raises(ICLightConflict, match="UNet calls"):
        run_after_adetailer(webui, ADetailerLike(), ic_args(), batch_size=2, n_iter=2)
    assert_same(unet, before)

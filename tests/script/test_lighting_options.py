"""The lighting options after the 13 (issue 21) through the real script on the stand-in A1111:
fbc background sources, light maps by name, the normal map, relighting in place, their
refusals, and that leaving them at their defaults changes no image."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from lib_iclight.args import ARG_SPECS, CONTRACT_ARGS
from lib_iclight.lightmaps import make_lightmap
from lib_iclight.normal_map import NORMAL_LIGHTS
from tests.helpers.images import disc_image, disc_rgba, to_base64
from tests.helpers.tiny_unet import assert_same, snapshot
from tests.script.test_script_a1111 import ic_args, pixels, run, same_images

SUBJECT = disc_image(64)
BACKGROUND = Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 80, 3), dtype=np.uint8), "RGB")
LIGHT = Image.fromarray(np.tile(np.linspace(250, 5, 64).astype(np.uint8), (64, 1)), "L").convert("RGB")
FBC = "iclight_sd15_fbc"
ROOT = Path(__file__).resolve().parents[2]


def contract_args(**overrides) -> list:
    """The 13 positional values of the API wiki: no option after them."""
    return ic_args(**overrides)[:CONTRACT_ARGS]


def digest(processed) -> str:
    sha = hashlib.sha256()
    for image in processed.images:
        sha.update(f"{image.mode}{image.size}".encode())
        sha.update(image.tobytes())
    return sha.hexdigest()[:16]


@pytest.fixture
def unet(webui):
    return webui.model.model.diffusion_model


# -- defaults change nothing ---------------------------------------------------------

# Digests of every output image (relit and extras) of three 13-argument requests, made
# with this same test code at b33465b, the commit before the options existed.
BEFORE_THE_OPTIONS = {
    "txt2img fc": "01c5871fda2df8c2",
    "txt2img fbc": "345d6d391c667821",
    "img2img fc": "5f491053664a6c82",
}


def _contract_requests() -> dict[str, dict]:
    return {
        "txt2img fc": dict(args=contract_args()),
        "txt2img fbc": dict(args=contract_args(model_type="fbc", uploaded_bg=to_base64(BACKGROUND))),
        "img2img fc": dict(args=contract_args(input_fg=to_base64(LIGHT)), img2img=True),
    }


@pytest.mark.parametrize("name", list(BEFORE_THE_OPTIONS))
def test_a_13_argument_request_makes_the_images_of_before(webui, name):
    request = _contract_requests()[name]
    assert digest(run(webui, request["args"], img2img=request.get("img2img", False))[1]) == BEFORE_THE_OPTIONS[name]


@pytest.mark.parametrize("name", list(BEFORE_THE_OPTIONS))
def test_the_options_at_their_defaults_change_nothing(webui, name):
    request = _contract_requests()[name]
    img2img = request.get("img2img", False)
    p13, short = run(webui, request["args"], img2img=img2img)
    defaults = {spec.name: spec.default for spec in ARG_SPECS[CONTRACT_ARGS:]}
    named = dict(zip([spec.name for spec in ARG_SPECS], request["args"]))
    p_all, full = run(webui, request["args"] + list(defaults.values()), img2img=img2img)
    _, as_dict = run(webui, [{**named, **defaults}], img2img=img2img)
    assert digest(short) == digest(full) == digest(as_dict)
    assert p13.extra_generation_params == p_all.extra_generation_params
    assert not any(spec.infotext_key in p13.extra_generation_params for spec in ARG_SPECS[CONTRACT_ARGS:])


# -- fbc background sources ----------------------------------------------------------


def fbc(**overrides) -> list:
    return ic_args(model_type=FBC, **overrides)


def test_a_named_background_needs_no_upload_and_is_written_to_infotext(webui, unet):
    before = snapshot(unet)
    images = {}
    for source in ("left", "right", "top", "bottom", "ambient", "angle:45"):
        p, processed = run(webui, fbc(bg_source=source))
        images[source] = pixels(processed, 1)
        assert p.extra_generation_params["IC Light background source"] == source
    assert len({tuple(img[0].flatten().tolist()) for img in images.values()}) == len(images)
    assert_same(unet, before)


def test_a_named_background_is_the_drawn_one(webui):
    # "left" is the reference's 224..32 gradient: the same image as uploading it.
    from lib_iclight.lightmaps import make_background

    named = run(webui, fbc(bg_source="left"))[1]
    uploaded = run(webui, fbc(uploaded_bg=to_base64(make_background("left", 64, 64))))[1]
    assert same_images(pixels(named, 1), pixels(uploaded, 1))


def test_upload_flip_is_the_mirrored_upload(webui):
    flipped = run(webui, fbc(bg_source="upload_flip", uploaded_bg=to_base64(BACKGROUND)))[1]
    mirrored = run(webui, fbc(uploaded_bg=to_base64(ImageOps.mirror(BACKGROUND))))[1]
    plain = run(webui, fbc(uploaded_bg=to_base64(BACKGROUND)))[1]
    assert same_images(pixels(flipped, 1), pixels(mirrored, 1))
    assert not same_images(pixels(flipped, 1), pixels(plain, 1))


@pytest.mark.parametrize("overrides, img2img, message", [
    (dict(bg_source="left"), False, "bg_source: only fbc models take a background"),
    (dict(bg_source="left", input_fg="ambient"), True, "bg_source: only fbc models take a background"),
    (dict(model_type=FBC, bg_source="upload_flip"), False, "uploaded_bg: no image given"),
    (dict(model_type=FBC, bg_source="diagonal"), False, "bg_source"),
    (dict(normal_map=True), False, "normal_map: the normal map is the fbc model's"),
    (dict(input_fg="left"), False, r"input_fg: a light-map name \(left\) is only taken in img2img"),
    (dict(input_fg="lefty"), True, "input_fg: unknown light map"),
    (dict(remove_bg=False, relight_in_place=True), False, "relight_in_place: the subject has no mask"),
])
def test_refusals_name_the_option(webui, unet, overrides, img2img, message):
    before = snapshot(unet)
    with pytest.raises(Exception, match=message):
        run(webui, ic_args(**overrides), img2img=img2img)
    assert_same(unet, before)


def test_unknown_names_list_the_accepted_ones(webui):
    with pytest.raises(Exception) as raised:
        run(webui, fbc(bg_source="sideways"))
    for name in ("upload", "upload_flip", "left", "right", "top", "bottom", "ambient", "angle:<degrees>"):
        assert name in str(raised.value)


# -- light maps by name (img2img) ------------------------------------------------------


@pytest.mark.parametrize("name, angle", [("left", "angle:180"), ("top", "angle:90"), ("ambient", None)])
def test_a_light_map_by_name_is_the_drawn_map(webui, name, angle):
    p, by_name = run(webui, ic_args(input_fg=name), img2img=True)
    drawn = run(webui, ic_args(input_fg=to_base64(make_lightmap(name, 64, 64))), img2img=True)[1]
    assert same_images(pixels(by_name, 1), pixels(drawn, 1))
    assert p.extra_generation_params["IC Light light map"] == name
    if angle is not None:
        assert same_images(pixels(run(webui, ic_args(input_fg=angle), img2img=True)[1], 1), pixels(by_name, 1))


def test_a_light_map_by_angle_is_drawn_at_the_generation_size(webui):
    p, processed = run(webui, ic_args(input_fg="angle:30"), img2img=True, width=64, height=48)
    assert processed.images[0].size == (64, 48)
    assert p.init_images[0].size == (64, 48)
    assert np.array_equal(np.asarray(p.init_images[0]), np.asarray(make_lightmap(30, 64, 48)))


# -- the normal map ------------------------------------------------------------------


def test_the_normal_map_is_one_batch_of_four_lights_with_one_seed(webui, unet):
    before = snapshot(unet)
    p, processed = run(webui, fbc(normal_map=True), seed=7)
    assert p.batch_size == len(NORMAL_LIGHTS) == 4
    assert p.all_seeds == [7, 7, 7, 7]
    relights, normal, cutout = processed.images[:4], processed.images[4], processed.images[5]
    assert len(processed.images) == 6 and cutout.mode == "RGBA"
    assert normal.mode == "RGB" and normal.size == relights[0].size
    assert len({img.tobytes() for img in relights}) == 4  # each batch item its own light
    # Each relight is the one its light makes alone, with the same seed and the lifted subject.
    for light, relit in zip(NORMAL_LIGHTS, relights):
        alone = run(webui, fbc(bg_source=light), seed=7)[1].images[0]
        assert relit.size == alone.size
    # Outside the subject the normal faces the viewer: (0, 0, 1) -> (127, 127, 255).
    corner = np.asarray(normal)[0, 0]
    assert corner.tolist() == [127, 127, 255]
    assert_same(unet, before)


def test_each_normal_map_relight_is_conditioned_on_its_own_light(webui, monkeypatch):
    from lib_iclight.backends import unet_patch

    seen = []
    original = unet_patch.concat_to_batch

    def spy(concat, x):
        seen.append(concat.shape[0])
        return original(concat, x)

    monkeypatch.setattr(unet_patch, "concat_to_batch", spy)
    run(webui, fbc(normal_map=True))
    assert seen and set(seen) == {4}


def test_the_normal_map_batch_count_makes_one_map_per_batch(webui):
    p, processed = run(webui, fbc(normal_map=True), seed=3, n_iter=2)
    assert p.all_seeds == [3, 3, 3, 3, 7, 7, 7, 7]
    assert len(processed.images) == 8 + 2 + 1


def test_the_normal_map_with_hires_fix_conditions_both_passes_per_light(webui, unet, monkeypatch):
    from lib_iclight.backends import a1111

    shapes = []
    original_install = a1111.A1111Backend.install

    def spy(self, p, offsets, concat):
        shapes.append(tuple(concat.shape))
        return original_install(self, p, offsets, concat)

    monkeypatch.setattr(a1111.A1111Backend, "install", spy)
    before = snapshot(unet)
    _, processed = run(webui, fbc(normal_map=True), enable_hr=True)
    assert shapes == [(4, 8, 8, 8), (4, 8, 16, 16)]  # one row per light, at each pass's size
    relights, normal = processed.images[:4], processed.images[4]
    assert {img.size for img in relights} == {(128, 128)} and normal.size == (128, 128)
    assert_same(unet, before)


def test_the_normal_map_refuses_a_composable_prompt(webui):
    from modules import processing, scripts

    p = processing.StableDiffusionProcessingTxt2Img(prompt="a cat AND a dog")
    p.scripts = scripts.ScriptRunner([webui.script])
    p.script_args = tuple(fbc(normal_map=True))
    with pytest.raises(Exception, match="normal_map: cannot be made from a composable prompt"):
        processing.process_images(p)


# -- relight in place ----------------------------------------------------------------


def test_relight_in_place_puts_the_subject_back_on_its_own_background(webui):
    photo = disc_image(64, bg=(10, 200, 30))
    p, processed = run(webui, ic_args(input_fg=to_base64(photo), relight_in_place=True, erode_size=0))
    relit, in_place = processed.images[0], processed.images[1]
    assert p.extra_generation_params["IC Light relight in place"] == "True"
    assert in_place.mode == "RGB" and in_place.size == relit.size
    out, src, new = (np.asarray(img.convert("RGB")).astype(int) for img in (in_place, photo, relit))
    # The corner is background in the mask: the photo's own pixels, exactly.
    assert (out[:4, :4] == src[:4, :4]).all()
    # The disc's centre is subject: the relit pixels, exactly.
    assert (out[30:34, 30:34] == new[30:34, 30:34]).all()


def test_relight_in_place_takes_the_inputs_own_alpha(webui):
    _, processed = run(webui, ic_args(input_fg=to_base64(disc_rgba(64)), remove_bg=False, relight_in_place=True))
    assert len(processed.images) == 2


def test_relight_in_place_in_img2img(webui):
    _, processed = run(webui, ic_args(input_fg="right", relight_in_place=True), img2img=True)
    assert len(processed.images) == 3  # relit, in place, removed background


# -- the README's normal-map example -------------------------------------------------

EXAMPLE = ROOT / "examples" / "normal-map" / "normal-map-test-models.png"


def example_strip(processed, subject: Image.Image) -> Image.Image:
    """subject | left | right | bottom | top | normal map, each 64x64, shown at 2x."""
    tiles = [subject.convert("RGB"), *processed.images[:5]]
    strip = Image.new("RGB", (64 * len(tiles), 64))
    for index, tile in enumerate(tiles):
        strip.paste(tile.convert("RGB"), (64 * index, 0))
    return strip.resize((strip.width * 2, strip.height * 2), Image.NEAREST)


def test_the_readmes_normal_map_example_is_what_the_test_models_make(webui):
    """The README's example (examples/normal-map/) is this request on the test models;
    ``ICLIGHT_WRITE_EXAMPLES=1`` writes it again after a change that moves it."""
    import os

    subject = disc_image(64)
    strip = example_strip(run(webui, fbc(normal_map=True, input_fg=to_base64(subject)), seed=11)[1], subject)
    if os.environ.get("ICLIGHT_WRITE_EXAMPLES") == "1":
        EXAMPLE.parent.mkdir(parents=True, exist_ok=True)
        strip.save(EXAMPLE)
    with Image.open(EXAMPLE) as saved:
        assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(strip))

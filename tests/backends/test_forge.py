"""The Forge 2 adapter on stand-ins of Forge 2's patchers, sampling a tiny real ldm UNet."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lib_iclight.backends import forge_common
from lib_iclight.backends.forge import ForgeBackend
from lib_iclight.backends.delivery import DeliveryProbe, require_delivery
from lib_iclight.errors import ICLightConflict, ICLightError
from tests.backends import harness as h
from tests.helpers.tiny_unet import assert_same, snapshot


@pytest.fixture
def merges(standins, monkeypatch):
    """Counts the weights Forge's LoraLoader merges (not the adapter's probe calls)."""
    return h.count_forge_merges(monkeypatch)


@pytest.mark.parametrize("kind, batch, keep", [("fc", 1, True), ("fbc", 3, True), ("fc", 3, False), ("fbc", 1, False)])
def test_sampling_matches_the_core_patch_and_the_model_is_restored(standins, kind, batch, keep):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    offsets, concat = h.ic_offsets(unet, kind), h.ic_concat(kind)
    expected = h.reference_sample(h.forge_p, unet, offsets, concat, h.load_forge, batch=batch)
    before = snapshot(unet)
    plain = h.sample(p.sd_model.forge_objects.unet, h.load_forge, batch=batch)

    backend = ForgeBackend()
    h.reset(p)
    backend.install(p, offsets, concat)
    seen = h.ConvInInputs(unet)
    ic = h.sample(p.sd_model.forge_objects.unet, h.load_forge, batch=batch)
    seen.close()

    assert not torch.allclose(ic, plain)
    assert torch.equal(ic, expected)
    # cond and uncond rows in one batch, each with 4 noisy + 4/8 conditioning channels
    assert set(seen.shapes) == {(2 * batch, 4 + concat.shape[1], 8, 8)}

    backend.cleanup(p, keep_merged=keep)
    assert p.sd_model.forge_objects.unet is p.sd_model.forge_objects_after_applying_lora.unet
    if keep:  # left merged, as Forge leaves a LoRA; the next plain load restores it
        assert unet.input_blocks[0][0].weight.shape[1] == 4 + concat.shape[1]
    else:
        assert_same(unet, before)  # restored at cleanup: the very same Parameter objects
    h.reset(p)
    assert torch.equal(h.sample(p.sd_model.forge_objects.unet, h.load_forge, batch=batch), plain)
    assert_same(unet, before)


def test_batch_count_reuses_one_clone_and_merges_once(standins, merges):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    backend = ForgeBackend()
    seen = h.ConvInInputs(unet)
    clones, results = [], []
    for _ in range(3):  # processing.py resets forge_objects before every sampling call
        h.reset(p)
        backend.install(p, offsets, concat)
        clones.append(p.sd_model.forge_objects.unet)
        results.append(h.sample(p.sd_model.forge_objects.unet, h.load_forge, batch=2))
    seen.close()
    backend.cleanup(p)

    assert clones[0] is clones[1] is clones[2]
    assert len(merges) == len(offsets.tensors)  # one merge per key, not per sampling call
    assert set(seen.shapes) == {(4, 8, 8, 8)}  # the concat never stacks
    assert torch.equal(results[0], results[1]) and torch.equal(results[1], results[2])


def test_hires_pass_installs_again_at_the_bigger_size(standins, merges):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    offsets = h.ic_offsets(unet, "fbc")
    small, big = h.ic_concat("fbc", size=8), h.ic_concat("fbc", size=16, seed=4)
    expected = h.reference_sample(h.forge_p, unet, offsets, big, h.load_forge, size=16, seed=5)
    backend = ForgeBackend()

    h.reset(p)
    backend.install(p, offsets, small)
    h.sample(p.sd_model.forge_objects.unet, h.load_forge)
    # Forge 2's sample_hr_pass: the hook once before the reset, once after it.
    backend.install(p, offsets, big)
    h.reset(p)
    backend.install(p, offsets, big)
    clone = p.sd_model.forge_objects.unet
    seen = h.ConvInInputs(unet)
    hires = h.sample(clone, h.load_forge, size=16, seed=5)
    seen.close()
    backend.cleanup(p)

    assert set(seen.shapes) == {(2, 12, 16, 16)}
    assert torch.equal(hires, expected)
    wrapper = clone.model_options["model_function_wrapper"]
    assert isinstance(wrapper, forge_common.ConcatWrapper) and wrapper.previous is None
    assert len(merges) == len(offsets.tensors)


def test_a_plain_copy_of_the_base_each_pass_reuses_the_clone(standins, merges):
    # An extension that sets a fresh clone() before every sampling pass changes nothing that samples.
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    offsets = h.ic_offsets(unet, "fc")
    backend = ForgeBackend()
    clones = []
    for concat, size in ((h.ic_concat("fc", size=8), 8), (h.ic_concat("fc", size=16, seed=4), 16)):
        h.reset(p)
        p.sd_model.forge_objects.unet = p.sd_model.forge_objects.unet.clone()
        backend.install(p, offsets, concat)
        clones.append(p.sd_model.forge_objects.unet)
        h.sample(clones[-1], h.load_forge, size=size)
    backend.cleanup(p)

    assert clones[0] is clones[1]
    assert len(merges) == len(offsets.tensors)


def test_a_wrapper_set_before_is_chained_and_kept(standins):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    expected = h.reference_sample(h.forge_p, unet, offsets, concat, h.load_forge, batch=2)
    seen = []

    def other_extension(apply_model, args):
        seen.append(tuple(args["c"]["c_concat"].shape))
        return apply_model(args["input"], args["timestep"], **args["c"])

    base = p.sd_model.forge_objects_after_applying_lora.unet
    base.set_model_unet_function_wrapper(other_extension)
    backend = ForgeBackend()
    h.reset(p)
    backend.install(p, offsets, concat)
    result = h.sample(p.sd_model.forge_objects.unet, h.load_forge, batch=2)
    backend.cleanup(p)

    assert seen and set(seen) == {(4, 4, 8, 8)}
    assert torch.equal(result, expected)
    assert base.model_options["model_function_wrapper"] is other_extension


@pytest.mark.parametrize("clean_between", [True, False])
def test_switching_fc_to_fbc_never_reuses_stale_merged_weights(standins, clean_between):
    unet = h.tiny_unet()
    p1 = h.forge_p(unet)
    fc, fbc = h.ic_offsets(unet, "fc", seed=1), h.ic_offsets(unet, "fbc", seed=2)
    fbc_concat = h.ic_concat("fbc")
    expected = h.reference_sample(h.forge_p, unet, fbc, fbc_concat, h.load_forge)
    backend = ForgeBackend()

    h.reset(p1)
    backend.install(p1, fc, h.ic_concat("fc"))
    h.sample(p1.sd_model.forge_objects.unet, h.load_forge)
    if clean_between:
        backend.cleanup(p1)  # else: a failed generation left the fc merge in place

    p2 = h.P(sd_model=p1.sd_model)
    h.reset(p2)
    backend.install(p2, fbc, fbc_concat)
    assert torch.equal(h.sample(p2.sd_model.forge_objects.unet, h.load_forge), expected)
    backend.cleanup(p2)
    identifiers = [forge_common.patch_set(o, "diff").identifier for o in (fc, fbc)]
    assert identifiers[0] != identifiers[1]


def test_patch_sets_are_built_once_per_offsets_object(standins):
    unet = h.tiny_unet()
    first, again = h.ic_offsets(unet, "fc"), h.ic_offsets(unet, "fc")  # same name, re-read
    a, b = forge_common.patch_set(first, "diff"), forge_common.patch_set(first, "diff")
    assert a is b
    assert a.patches["diffusion_model.out.2.bias"][0] is first.tensors["out.2.bias"]  # no copies
    assert forge_common.patch_set(again, "diff").identifier != a.identifier


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda unet: h.forge_p(unet, is_sd1=False, is_sdxl=True), "SDXL"),
        # Flux / Chroma engines set no SD flag at all: named by their class
        (lambda unet: h.forge_p(unet, is_sd1=False), "ForgeDiffusionEngine"),
    ],
)
def test_other_model_families_are_refused(standins, make, words):
    unet = h.tiny_unet()
    p = make(unet)
    for call in (lambda: ForgeBackend().check_model(p),
                 lambda: ForgeBackend().install(p, h.ic_offsets(unet), h.ic_concat())):
        with pytest.raises(ICLightError) as info:
            call()
        assert info.value.arg == "model_type" and words in str(info.value)
        assert str(info.value).startswith("model_type:")


def test_inpainting_and_unloaded_models_are_refused(standins):
    p = h.forge_p(h.inpainting_unet(), is_inpaint=True)
    with pytest.raises(ICLightError, match=r"^model_type: .*inpainting"):
        ForgeBackend().check_model(p)
    fake_initial_model = SimpleNamespace(sd_model=SimpleNamespace(cond_stage_model=None, chunk_length=75))
    with pytest.raises(ICLightError, match=r"^model_type: no checkpoint is loaded"):
        ForgeBackend().check_model(fake_initial_model)


def test_a_merged_conv_in_left_from_a_failed_run_is_not_mistaken_for_inpainting(standins):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    h.reset(p)
    ForgeBackend().install(p, h.ic_offsets(unet, "fbc"), h.ic_concat("fbc"))
    h.sample(p.sd_model.forge_objects.unet, h.load_forge)
    assert unet.input_blocks[0][0].weight.shape[1] == 12  # no cleanup: still merged
    ForgeBackend().check_model(h.P(sd_model=p.sd_model))


def test_encode_returns_the_scaled_posterior_mode(standins):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    vae = p.sd_model.forge_objects.vae
    pixels = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    latents = ForgeBackend().encode(p, pixels)
    # The reference's values and memory layout (numpy2pytorch stacks HWC arrays).
    reference = (pixels.float() / 127.0 - 1.0).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        moments = vae.first_stage_model.quant_conv(vae.first_stage_model.encoder(reference))
    assert latents.shape == (2, 4, 4, 4) and latents.dtype == torch.float32
    assert torch.equal(latents, moments[:, :4] * 0.18215)
    assert torch.equal(ForgeBackend().encode(p, pixels), latents)
    assert "model_vae_regulation" not in vae.patcher.model_options  # the WebUI's VAE is untouched


def test_a_conditioning_of_the_wrong_size_fails_clearly(standins):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    h.reset(p)
    ForgeBackend().install(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc", size=16))
    with pytest.raises(ICLightConflict, match=r"latent of \(8, 8\) while the image.s latent, and IC-Light.s conditioning, is \(16, 16\): an extension that samples the image in tiles"):
        h.sample(p.sd_model.forge_objects.unet, h.load_forge)


def test_the_wrapper_refuses_a_foreign_c_concat_and_never_doubles_its_own(standins):
    concat = h.ic_concat("fc")
    inner = forge_common.ConcatWrapper(concat, 4)
    outer = forge_common.ConcatWrapper(concat, 4, previous=inner)
    got = []

    def apply_model(x, t, **c):
        got.append(c["c_concat"].shape)
        return x

    x = torch.zeros(6, 4, 8, 8)
    outer(apply_model, {"input": x, "timestep": torch.ones(6), "c": {}, "cond_or_uncond": [0, 1]})
    assert got == [(6, 4, 8, 8)]
    with pytest.raises(RuntimeError, match="also feeds c_concat"):
        inner(apply_model, {"input": x, "timestep": torch.ones(6), "c": {"c_concat": torch.zeros(6, 5, 8, 8)}})
    with pytest.raises(RuntimeError, match=r"expects \[1, 8, h, w\]"):
        forge_common.ConcatWrapper(concat, 8)


def test_cleanup_without_install_does_nothing(standins):
    p = h.forge_p(h.tiny_unet())
    ForgeBackend().cleanup(p)
    ForgeBackend().cleanup(p)


def test_the_vae_fingerprint_follows_the_vae(standins):
    p = h.forge_p(h.tiny_unet())
    backend = ForgeBackend()
    first = backend.vae_fingerprint(p)
    assert backend.vae_fingerprint(p) == first
    hash(first)
    vae_model = p.sd_model.forge_objects.vae.first_stage_model
    vae_model.load_state_dict(vae_model.state_dict())  # weights loaded in place
    assert backend.vae_fingerprint(p) != first
    other = h.forge_p(h.tiny_unet())  # a reloaded model: new VAE objects
    assert backend.vae_fingerprint(other) not in (first, backend.vae_fingerprint(p))


def test_models_built_under_inference_mode_as_forge_2_loads_them(standins):
    """Forge 2 builds models inside torch.inference_mode(): their parameters are inference
    tensors with no version counter (reading it raised on a live Forge 2)."""
    with torch.inference_mode():
        unet = h.tiny_unet()
        p = h.forge_p(unet)
    assert next(unet.parameters()).is_inference()
    backend = ForgeBackend()
    first = backend.vae_fingerprint(p)
    assert backend.vae_fingerprint(p) == first
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    before = snapshot(unet)
    with torch.inference_mode():
        plain = h.sample(p.sd_model.forge_objects.unet, h.load_forge)
        h.reset(p)
        backend.install(p, offsets, concat)
        ic = h.sample(p.sd_model.forge_objects.unet, h.load_forge)
        backend.cleanup(p)
        h.reset(p)
        again = h.sample(p.sd_model.forge_objects.unet, h.load_forge)
    assert not torch.allclose(ic, plain)
    assert torch.equal(again, plain)
    assert_same(unet, before)


def test_the_delivery_probe_sees_the_conditioning_reach_the_unet(standins):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    backend = ForgeBackend()
    h.reset(p)
    backend.install(p, h.ic_offsets(unet, "fbc"), h.ic_concat("fbc"))
    with DeliveryProbe(backend.unet_module(p), 12) as count:
        h.sample(p.sd_model.forge_objects.unet, h.load_forge, steps=3)
    assert count.wide > 0 and count.narrow == 0
    require_delivery(count)
    backend.cleanup(p, keep_merged=False)


def test_a_clone_dropped_after_install_is_caught_by_the_delivery_probe(standins):
    """What Forge 2 and reForge showed beside FreeU Integrated: the patcher sampled is not
    IC-Light's clone, and the images equal FreeU's alone. The probe on the shared UNet
    module sees only 4-channel calls, and the check names what was enabled beside it."""
    unet = h.tiny_unet()
    before = snapshot(unet)
    p = h.forge_p(unet)
    backend = ForgeBackend()
    h.reset(p)
    base = p.sd_model.forge_objects.unet
    backend.install(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    p.sd_model.forge_objects.unet = base.clone()  # another extension's clone of the base
    with DeliveryProbe(backend.unet_module(p), 8) as count:
        h.sample(p.sd_model.forge_objects.unet, h.load_forge, steps=3)
    assert count.wide == 0 and count.narrow > 0
    with pytest.raises(ICLightConflict, match=r"^IC Light: none of the \d+ UNet calls .* Enabled beside it: FreeU Integrated\."):
        require_delivery(count, beside=["FreeU Integrated"])
    backend.cleanup(p, keep_merged=False)
    assert_same(unet, before)


def test_a_normal_maps_per_item_conditioning_reaches_each_items_rows(standins):
    """A normal map conditions each of its 4 batch items on its own light: conv_in sees
    item ``r % 4``'s conditioning on row ``r`` of Forge's cond + uncond batch."""
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    offsets = h.ic_offsets(unet, "fbc")
    concat = torch.cat([h.ic_concat("fbc", seed=seed) for seed in range(4)])
    inputs: list[torch.Tensor] = []
    handle = unet.input_blocks[0][0].register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach().clone()))
    backend = ForgeBackend()
    h.reset(p)
    backend.install(p, offsets, concat)
    try:
        h.sample(p.sd_model.forge_objects.unet, h.load_forge, batch=4)
    finally:
        handle.remove()
        backend.cleanup(p, keep_merged=False)
    assert inputs
    for x in inputs:
        assert x.shape[0] % 4 == 0
        for row in range(x.shape[0]):
            assert torch.equal(x[row, 4:], concat[row % 4].to(x.dtype))

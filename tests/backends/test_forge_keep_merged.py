"""Forge family, setting "keep merged" (the default): the IC-Light clone stays loaded after a
generation, as the WebUI keeps a LoRA, and the WebUI's own unpatch restores the UNet before
the next plain generation.

Run on the Forge 2 stand-in and on the real ComfyUI-lineage ModelPatcher in its three
padding flavours (see test_forge_classic.py). Each WebUI is the same few operations:

* ``ic(p)``: an IC-Light generation (reset, install, sample, cleanup);
* ``plain(p)``: a plain generation (reset, sample the base patcher);

and "bit-identical" is about the next plain *image* and the UNet's values after it.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch

from lib_iclight.backends import forge_classic, forge_common
from lib_iclight.backends.forge import ForgeBackend
from lib_iclight.backends.forge_classic import ForgeClassicBackend
from lib_iclight.errors import ICLightError
from lib_iclight.weights import ICOffsets
from tests.backends import harness as h
from tests.helpers.tiny_unet import comfy_on_path

FAMILIES = ["forge", "comfy", "classic", "reforge"]


@dataclass
class Family:
    """One WebUI of the Forge family, as the tests drive it."""

    name: str
    make_p: Callable[[torch.nn.Module], Any]
    load: Callable[[Any], None]
    backend: Any
    merged_keys: list[str]
    """Every weight the WebUI's own merge function merged (counted independently of the ledger)."""

    def ic(self, p: Any, offsets: Any, concat: torch.Tensor, *, keep: bool = True, seed: int = 0) -> torch.Tensor:
        h.reset(p)
        self.backend.install(p, offsets, concat)
        result = h.sample(p.sd_model.forge_objects.unet, self.load, seed=seed)
        self.backend.cleanup(p, keep_merged=keep)
        self.backend.observe(p)
        return result

    def plain(self, p: Any, seed: int = 0) -> torch.Tensor:
        h.reset(p)
        result = h.sample(p.sd_model.forge_objects.unet, self.load, seed=seed)
        self.backend.observe(p)  # the script's postprocess runs for plain generations too
        return result

    def with_lora(self, p: Any, unet: torch.nn.Module, seed: int = 5) -> Any:
        """Set a LoRA-like diff patch on the base patcher, as the WebUI's Lora does."""
        g = torch.Generator().manual_seed(seed)
        key = "diffusion_model.middle_block.1.proj_in.weight"
        diff = torch.randn(unet.middle_block[1].proj_in.weight.shape, generator=g) * 0.05
        base = p.sd_model.forge_objects_original.unet.clone()
        if self.name == "forge":
            base.add_patches(filename="lora.safetensors", patches={key: (diff,)}, strength_patch=1.0, strength_model=1.0)
        else:
            base.add_patches({key: (diff,)}, 1.0, 1.0)
        p.sd_model.forge_objects_after_applying_lora.unet = base
        return base

    def without_lora(self, p: Any) -> None:
        p.sd_model.forge_objects_after_applying_lora.unet = p.sd_model.forge_objects_original.unet


@pytest.fixture
def family(request, standins, monkeypatch) -> Any:
    name = request.param
    if name == "forge":
        yield Family(name, h.forge_p, h.load_forge, ForgeBackend(), h.count_forge_merges(monkeypatch))
        return
    comfy_on_path()
    import comfy.model_patcher

    if name == "reforge":
        import ldm_patched.modules.lora as lora

        monkeypatch.setattr(lora, "calculate_weight", lora.reforge_calculate_weight, raising=False)
    patcher_class = comfy.model_patcher.ModelPatcher
    originals = {attr: patcher_class.__dict__[attr] for attr in ("calculate_weight", "patch_model")}
    merged = h.count_classic_merges(monkeypatch)
    backend = ForgeClassicBackend()
    fam = Family(name, lambda unet: h.classic_p(unet, name), h.load_comfy, backend, merged)
    yield fam
    backend.release_kept()
    # No wrapper outlives the backend that installed it.
    assert {attr: patcher_class.__dict__[attr] for attr in originals} == originals


def assert_values(unet: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    now = dict(unet.named_parameters())
    assert set(now) == set(before)
    for key, value in before.items():
        assert now[key].shape == value.shape and torch.equal(now[key], value), key


def conv_in_channels(unet: torch.nn.Module) -> int:
    return unet.input_blocks[0][0].weight.shape[1]


# --------------------------------------------------------------------------------------
# Back to back.


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_the_second_of_two_ic_generations_merges_nothing_and_equals_the_first(family):
    unet = h.tiny_unet()
    p = family.make_p(unet)
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    expected = h.reference_sample(family.make_p, unet, offsets, concat, family.load)

    first = family.ic(p, offsets, concat)
    clone = family.backend.keeper.current().clone
    merged_once = len(family.merged_keys)
    second = family.ic(p, offsets, concat)

    assert merged_once == len(offsets.tensors)
    assert len(family.merged_keys) == merged_once  # the WebUI found the clone loaded: no merge
    assert family.backend.keeper.current().clone is clone
    assert torch.equal(first, expected) and torch.equal(second, first)
    ledger = family.backend.ledger.snapshot()
    assert (ledger.merges, ledger.restores, ledger.holds) == (1, 0, offsets.info.name)
    assert conv_in_channels(unet) == 8  # still merged, like a LoRA


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_off_restores_after_every_generation(family):
    unet = h.tiny_unet()
    p = family.make_p(unet)
    before = h.parameter_values(unet)
    offsets, concat = h.ic_offsets(unet, "fbc"), h.ic_concat("fbc")
    first = family.ic(p, offsets, concat, keep=False)
    assert_values(unet, before)
    second = family.ic(p, offsets, concat, keep=False)
    assert_values(unet, before)
    assert torch.equal(first, second)
    assert family.backend.keeper.current() is None
    ledger = family.backend.ledger.snapshot()
    assert (ledger.merges, ledger.restores, ledger.holds) == (2, 2, None)
    assert len(family.merged_keys) == 2 * len(offsets.tensors)


# --------------------------------------------------------------------------------------
# The next plain image.


def _after_ic(family, p, unet):
    family.ic(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))


def _after_ic_with_lora(family, p, unet):
    family.with_lora(p, unet)
    family.ic(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    family.without_lora(p)


def _after_lora_alone(family, p, unet):
    family.ic(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    family.with_lora(p, unet)
    family.plain(p)
    family.without_lora(p)


def _after_fc_then_fbc(family, p, unet):
    family.ic(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    family.ic(p, h.ic_offsets(unet, "fbc", seed=2), h.ic_concat("fbc"))


def _after_an_interrupted_ic(family, p, unet):
    # Interrupting returns the partial result normally: postprocess (cleanup) still runs.
    offsets = h.ic_offsets(unet, "fc")
    h.reset(p)
    family.backend.install(p, offsets, h.ic_concat("fc"))
    h.sample(p.sd_model.forge_objects.unet, family.load, steps=1)
    family.backend.cleanup(p)


def _after_a_crashed_ic(family, p, unet):
    # An exception inside sampling: process_images raises, no postprocess, no cleanup.
    h.reset(p)
    family.backend.install(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    clone = p.sd_model.forge_objects.unet
    wrapper = clone.model_options["model_function_wrapper"]

    def crash(apply_model, args):
        wrapper(apply_model, args)
        raise RuntimeError("interrupted by an exception")

    clone.model_options["model_function_wrapper"] = crash
    with pytest.raises(RuntimeError, match="interrupted"):
        h.sample(clone, family.load)
    clone.model_options["model_function_wrapper"] = wrapper


def _after_a_refused_request(family, p, unet):
    family.ic(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    h.reset(p)
    good = h.ic_offsets(unet, "fc", seed=4)
    # offsets for another UNet: refused before anything is queued
    wrong = ICOffsets(good.info, {**good.tensors, "out.2.bias": torch.zeros(5)})
    with pytest.raises(ICLightError):
        family.backend.install(p, wrong, h.ic_concat("fc"))
    family.backend.cleanup(p)


SCENARIOS = {
    "ic": _after_ic, "ic_with_lora": _after_ic_with_lora, "lora_alone": _after_lora_alone,
    "fc_then_fbc": _after_fc_then_fbc, "interrupted": _after_an_interrupted_ic, "crashed": _after_a_crashed_ic,
    "refused": _after_a_refused_request,
}
CASES = [(f, s) for s in SCENARIOS for f in (["forge", "comfy"] if s not in ("ic", "fc_then_fbc") else FAMILIES)]


@pytest.mark.parametrize("family, scenario", CASES, indirect=["family"])
def test_the_next_plain_image_is_bit_identical(family, scenario):
    unet = h.tiny_unet()
    p = family.make_p(unet)
    before = h.parameter_values(unet)
    plain_before = family.plain(p)

    SCENARIOS[scenario](family, p, unet)
    plain_after = family.plain(p)

    assert torch.equal(plain_after, plain_before)
    assert_values(unet, before)
    assert family.backend.ledger.snapshot().holds is None


@pytest.mark.parametrize("family", ["forge", "comfy"], indirect=True)
def test_a_checkpoint_switch_drops_the_kept_clone_and_frees_the_old_model(family):
    unet_a, unet_b = h.tiny_unet(), h.make_other_unet()
    p_a, p_b = family.make_p(unet_a), family.make_p(unet_b)
    plain_b = family.plain(p_b)

    family.ic(p_a, h.ic_offsets(unet_a, "fc"), h.ic_concat("fc"))
    assert family.backend.keeper.current() is not None
    model_a = weakref.ref(p_a.sd_model.forge_objects.unet.model)

    assert torch.equal(family.plain(p_b), plain_b)  # the WebUI switched to checkpoint B
    assert family.backend.keeper.current() is None  # observing B dropped A's clone
    del p_a, unet_a
    _unload_all(family)
    gc.collect()
    assert model_a() is None  # nothing of ours keeps checkpoint A alive


def _unload_all(family) -> None:
    if family.name == "forge":
        from backend import memory_management

        memory_management.unload_all_models()
    else:
        import comfy.model_management

        comfy.model_management.unload_all_models()


# --------------------------------------------------------------------------------------
# What is reused and what is not.


@pytest.mark.parametrize("family", ["forge", "reforge"], indirect=True)
def test_a_changed_lora_or_another_model_goes_through_the_webui_path(family):
    unet = h.tiny_unet()
    p = family.make_p(unet)
    fc, fbc = h.ic_offsets(unet, "fc"), h.ic_offsets(unet, "fbc", seed=2)
    expected = h.reference_sample(family.make_p, unet, fbc, h.ic_concat("fbc"), family.load)
    family.ic(p, fc, h.ic_concat("fc"))
    kept = family.backend.keeper.current().clone

    family.ic(p, fbc, h.ic_concat("fbc"))
    assert family.backend.keeper.current().clone is not kept
    kept = family.backend.keeper.current().clone
    assert torch.equal(family.ic(p, fbc, h.ic_concat("fbc")), expected)
    assert family.backend.keeper.current().clone is kept

    family.with_lora(p, unet)
    family.ic(p, fbc, h.ic_concat("fbc"))
    assert family.backend.keeper.current().clone is not kept
    assert family.backend.ledger.snapshot().merges == 3


@pytest.mark.parametrize("family", ["comfy"], indirect=True)
def test_the_shim_stays_for_a_later_merge_of_the_kept_clone_and_pads_only_ours(family):
    import comfy.model_patcher

    unet = h.tiny_unet()
    p = family.make_p(unet)
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    first = family.ic(p, offsets, concat)
    shim = comfy.model_patcher.ModelPatcher.__dict__["calculate_weight"]
    assert getattr(shim, "__iclight_shim__", False)  # kept: a later merge of the clone needs it

    family.plain(p)  # the WebUI unpatches the kept clone
    assert family.backend.ledger.snapshot().restores == 1
    # Another patcher's merge while the shim is in place: unchanged.
    lora_base = family.with_lora(p, unet)
    weight = unet.middle_block[1].proj_in.weight.detach().clone()
    patches = lora_base.patches["diffusion_model.middle_block.1.proj_in.weight"]
    assert torch.equal(lora_base.calculate_weight(patches, weight.clone(), "k"),
                       shim.__wrapped__(lora_base, patches, weight.clone(), "k"))
    family.without_lora(p)

    again = family.ic(p, offsets, concat)  # the kept clone, merged again through the shim
    assert torch.equal(again, first)
    assert family.backend.ledger.snapshot().merges == 2


def test_models_built_under_inference_mode_keep_the_clone_too(standins):
    """Forge 2's inference tensors have no version counter; nothing here reads one."""
    backend = ForgeBackend()
    with torch.inference_mode():
        unet = h.tiny_unet()
        p = h.forge_p(unet)
    fam = Family("forge", h.forge_p, h.load_forge, backend, [])
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    with torch.inference_mode():
        before = h.parameter_values(unet)
        plain = fam.plain(p)
        first, second = fam.ic(p, offsets, concat), fam.ic(p, offsets, concat)
        again = fam.plain(p)
    assert torch.equal(first, second) and not torch.equal(first, plain)
    assert torch.equal(again, plain)
    assert_values(unet, before)
    assert backend.ledger.snapshot() == type(backend.ledger.snapshot())(None, 1, 1)


@pytest.mark.parametrize("family", ["forge"], indirect=True)
def test_the_status_of_the_unet(family):
    unet = h.tiny_unet()
    p = family.make_p(unet)
    assert family.backend.unet_status(p.sd_model) == {"holds": None, "merges": 0, "restores": 0, "kept_clone": None}
    offsets = h.ic_offsets(unet, "fc")
    family.ic(p, offsets, h.ic_concat("fc"))
    status = family.backend.unet_status(p.sd_model)
    assert status == {"holds": offsets.info.name, "merges": 1, "restores": 0, "kept_clone": offsets.info.name}
    family.plain(p)
    assert family.backend.unet_status(p.sd_model)["restores"] == 1


def test_the_keeper_holds_the_clone_through_its_model_only(standins):
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    keeper = forge_common.CloneKeeper()
    entry = SimpleNamespace(clone=SimpleNamespace(model=p.sd_model.forge_objects.unet.model))
    keeper.keep(entry)  # type: ignore[arg-type]
    assert keeper.current() is entry
    model = weakref.ref(entry.clone.model)
    del entry, p
    gc.collect()
    assert model() is None and keeper.current() is None


def test_classic_backend_release_removes_the_shim(standins):
    comfy_on_path()
    import comfy.model_patcher

    original = comfy.model_patcher.ModelPatcher.__dict__["calculate_weight"]
    unet = h.tiny_unet()
    p = h.classic_p(unet, "comfy")
    backend = ForgeClassicBackend()
    fam = Family("comfy", lambda u: h.classic_p(u, "comfy"), h.load_comfy, backend, [])
    fam.ic(p, h.ic_offsets(unet, "fc"), h.ic_concat("fc"))
    assert comfy.model_patcher.ModelPatcher.__dict__["calculate_weight"] is not original
    backend.release_kept()
    assert comfy.model_patcher.ModelPatcher.__dict__["calculate_weight"] is original
    assert isinstance(forge_classic.merge_site(p.sd_model.forge_objects.unet), forge_classic.MergeSite)

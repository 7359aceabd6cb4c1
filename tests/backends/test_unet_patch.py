"""The UNet patch on the real ldm UNetModel, driven by a real k-diffusion sampler."""

from __future__ import annotations

import pytest
import torch

from lib_iclight.errors import ICLightConflict, ICLightError
from lib_iclight.backends.unet_patch import UNetPatch, concat_to_batch, merge_offset
from tests.helpers.tiny_unet import assert_same, make_offsets, make_tiny_unet, sample, snapshot


def _concat(kind: str, size: int = 8, seed: int = 3) -> torch.Tensor:
    channels = 4 if kind == "fc" else 8
    return torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def unet():
    return make_tiny_unet()


@pytest.mark.parametrize("kind", ["fc", "fbc"])
@pytest.mark.parametrize("batch", [1, 3])
def test_patched_sampling_differs_and_restores_bit_identically(unet, kind, batch):
    before = snapshot(unet)
    plain = sample(unet, batch=batch)
    with UNetPatch(unet, make_offsets(unet, kind), _concat(kind)):
        assert unet.input_blocks[0][0].weight.shape[1] == (8 if kind == "fc" else 12)
        assert unet.input_blocks[0][0].in_channels == (8 if kind == "fc" else 12)
        ic = sample(unet, batch=batch)
    assert ic.shape == plain.shape
    assert not torch.allclose(ic, plain)
    assert_same(unet, before)
    assert unet.input_blocks[0][0].in_channels == 4
    assert torch.equal(sample(unet, batch=batch), plain)


def test_cond_and_uncond_batched_see_the_same_concat(unet):
    seen = []
    patch = UNetPatch(unet, make_offsets(unet, "fc"))
    handle = unet.input_blocks[0][0].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    try:
        patch.apply(_concat("fc"))
        sample(unet, batch=3, steps=2)
    finally:
        patch.remove()
        handle.remove()
    x = seen[0]
    assert x.shape == (6, 8, 8, 8)  # 3 cond + 3 uncond, 4 noisy + 4 concat channels
    for i in range(1, 6):
        assert torch.equal(x[i, 4:], x[0, 4:])
    assert torch.equal(x[0, 4:], _concat("fc")[0])


def test_repeated_runs_do_not_accumulate(unet):
    offsets = make_offsets(unet, "fc")
    before = snapshot(unet)
    results = []
    for _ in range(3):
        patch = UNetPatch(unet, offsets, _concat("fc"))
        with patch:
            results.append(sample(unet))
        patch.release()
    assert torch.equal(results[0], results[1]) and torch.equal(results[1], results[2])
    assert_same(unet, before)


def test_reapply_reuses_merges_and_rebuilds_after_weight_change(unet):
    offsets = make_offsets(unet, "fc")
    patch = UNetPatch(unet, offsets)
    patch.apply(_concat("fc"))
    patch.remove()
    first = patch.merges
    assert first == len(offsets)
    patch.apply(_concat("fc", size=16))  # a hires pass: new size, same weights
    patch.remove()
    assert patch.merges == first
    weight = unet.out[2].weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)  # e.g. a LoRA applied in place between two windows
    try:
        patch.apply(_concat("fc"))
        patch.remove()
        assert patch.merges == first + 1
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    patch.release()


def test_exception_mid_sampling_restores(unet):
    before = snapshot(unet)
    plain = sample(unet)
    patch = UNetPatch(unet, make_offsets(unet, "fbc"), _concat("fbc"))

    def boom(info):
        if info["i"] == 2:
            raise KeyboardInterrupt("interrupted mid-sampling")

    with pytest.raises(KeyboardInterrupt):
        with patch:
            sample(unet, callback=boom)
    assert not patch.active
    assert_same(unet, before)
    assert torch.equal(sample(unet), plain)


def test_bad_offsets_leave_the_unet_untouched(unet):
    before = snapshot(unet)
    offsets = make_offsets(unet, "fc")
    offsets["output_blocks.0.0.in_layers.0.weight"] = torch.zeros(7)
    with pytest.raises(ICLightError, match="^model_type: .*SD1.5"):
        UNetPatch(unet, offsets).apply(_concat("fc"))
    assert_same(unet, before)
    offsets = make_offsets(unet, "fc")
    offsets["label_emb.0.weight"] = torch.zeros(3)
    with pytest.raises(ICLightError, match="no counterpart"):
        UNetPatch(unet, offsets).apply(_concat("fc"))
    assert_same(unet, before)


def test_non_sd15_conv_in_is_refused():
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    from tests.helpers.tiny_unet import TINY_CONFIG

    inpaint = UNetModel(**{**TINY_CONFIG, "in_channels": 9})
    offsets = make_offsets(make_tiny_unet(), "fc")
    with pytest.raises(ICLightError, match="4-channel conv_in"):
        UNetPatch(inpaint, offsets).apply(_concat("fc"))


def test_concat_to_batch_checks_sizes():
    x = torch.zeros(4, 4, 8, 8, dtype=torch.float16)
    out = concat_to_batch(torch.ones(1, 4, 8, 8), x)
    assert out.shape == (4, 4, 8, 8) and out.dtype == torch.float16
    with pytest.raises(ICLightConflict, match=r"^IC Light: the UNet was called on a latent of \(8, 8\) while .* is \(16, 16\): .*in tiles"):
        concat_to_batch(torch.ones(1, 4, 16, 16), x)
    with pytest.raises(RuntimeError, match="does not divide"):
        concat_to_batch(torch.ones(3, 4, 8, 8), x)


def test_wrong_concat_channels_refused(unet):
    patch = UNetPatch(unet, make_offsets(unet, "fc"))
    with pytest.raises(RuntimeError, match="channels"):
        patch.set_concat(torch.zeros(1, 8, 8, 8))


def test_merge_offset_half_precision_and_padding():
    original = torch.randn(2, 4, 3, 3).half()
    offset = torch.randn(2, 8, 3, 3)
    merged = merge_offset(original, offset)
    assert merged.dtype == torch.float16 and merged.shape == (2, 8, 3, 3)
    assert torch.equal(merged[:, 4:], offset[:, 4:].half())
    assert torch.equal(merged[:, :4], (original.float() + offset[:, :4]).half())


def test_unet_built_under_inference_mode():
    """Inference tensors keep no version counter: the patch must still work and restore,
    and must not trust its merge cache for them."""
    with torch.inference_mode():
        unet = make_tiny_unet()
    assert next(unet.parameters()).is_inference()
    before = snapshot(unet)
    plain = sample(unet)
    patch = UNetPatch(unet, make_offsets(unet, "fc"), _concat("fc"))
    with patch:
        ic = sample(unet)
    with patch:
        again = sample(unet)
    assert torch.equal(ic, again) and not torch.allclose(ic, plain)
    assert patch.merges == 2 * len(patch.offsets)  # re-merged: versions cannot be read
    assert_same(unet, before)


class CountingSource:
    """An OffsetSource that records which keys were read."""

    def __init__(self, tensors):
        self.tensors = tensors
        self.shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        self.reads = []

    def load(self, keys):
        self.reads.append(list(keys))
        return {k: self.tensors[k] for k in keys}


def test_a_lazy_source_is_read_only_for_stale_merges(unet):
    offsets = make_offsets(unet, "fc")
    source = CountingSource(offsets)
    patch = UNetPatch(unet, source)
    assert patch.offsets is None
    with patch.__class__(unet, offsets, _concat("fc")):
        reference = sample(unet)
    patch.check()  # shapes only
    assert source.reads == []
    with torch.no_grad():
        patch.apply(_concat("fc"))
        assert torch.equal(sample(unet), reference)
        patch.remove()
    assert len(source.reads) == 1 and len(source.reads[0]) == len(offsets)
    patch.apply(_concat("fc"))
    patch.remove()
    assert len(source.reads) == 1
    patch.release()


def test_a_storage_swap_without_a_version_bump_is_noticed(unet):
    """``param.data = t`` (Module.to, half(), lowvram moves) keeps the version counter."""
    offsets = make_offsets(unet, "fc")
    patch = UNetPatch(unet, offsets, _concat("fc"))
    with patch:
        reference = sample(unet)
    weight = unet.out[2].weight
    saved = weight.data
    version = weight._version
    weight.data = saved.clone()
    assert weight._version == version
    try:
        with patch:
            assert torch.equal(sample(unet), reference)
        assert patch.merges == len(offsets) + 1
    finally:
        weight.data = saved
    patch.release()


@pytest.mark.parametrize("write", ["in_place", "data_swap"])
def test_a_write_into_a_merge_during_the_window_is_noticed(unet, write):
    """Whatever writes into the UNet while the patch is applied writes into the merge
    (A1111's refiner loads a checkpoint with load_state_dict mid-sampling): the next
    apply must merge that parameter again, not reuse the overwritten merge."""
    offsets = make_offsets(unet, "fc")
    before = snapshot(unet)
    patch = UNetPatch(unet, offsets, _concat("fc"))
    with patch:
        reference = sample(unet)
    with patch:
        merged = unet.out[2].weight
        with torch.no_grad():
            if write == "in_place":
                merged.copy_(before["out.2.weight"][1])
            else:
                merged.data = before["out.2.weight"][1].clone()
    assert_same(unet, before)
    with patch:
        assert torch.equal(sample(unet), reference)
    assert patch.merges == len(offsets) + 1
    patch.release()


def test_the_patch_holds_the_unet_weakly_outside_the_window():
    import gc
    import weakref

    model = make_tiny_unet()
    patch = UNetPatch(model, make_offsets(model, "fc"), _concat("fc"))
    with patch:
        sample(model)
    assert patch.merged_bytes > 0
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None and patch.unet is None
    with pytest.raises(RuntimeError, match="unloaded"):
        patch.apply()
    patch.release()
    assert patch.merged_bytes == 0


def test_a_lazy_source_is_read_in_bounded_chunks(unet, monkeypatch):
    from lib_iclight.backends import unet_patch

    offsets = make_offsets(unet, "fc")
    biggest = max(2 * v.numel() for v in offsets.values())
    monkeypatch.setattr(unet_patch, "MERGE_CHUNK_BYTES", biggest)
    source = CountingSource(offsets)
    patch = UNetPatch(unet, source, _concat("fc"))
    with patch:
        pass
    assert len(source.reads) > 1
    assert sorted(k for read in source.reads for k in read) == sorted(offsets)
    for read in source.reads:
        assert len(read) == 1 or sum(2 * offsets[k].numel() for k in read) <= biggest
    patch.release()


def test_per_item_conditioning_follows_the_rows_of_each_cond_block():
    """A normal map's conditioning has one row per batch item. Samplers stack cond and
    uncond as blocks of the whole batch (A1111: [cond x B, uncond x B], or B rows at a
    time with batch_cond_uncond off; Forge: whole-batch blocks per cond), so row ``r`` of
    the UNet batch is item ``r % B``."""
    concat = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 8, 2, 2)
    for rows in (4, 8, 12):
        out = concat_to_batch(concat, torch.zeros(rows, 4, 2, 2))
        assert out[:, 0, 0, 0].tolist() == [float(r % 4) for r in range(rows)]
    with pytest.raises(RuntimeError, match="does not divide"):
        concat_to_batch(concat, torch.zeros(6, 4, 2, 2))

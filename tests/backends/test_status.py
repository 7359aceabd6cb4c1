"""The merge ledger and the conv_in watch behind GET /ic-light/v1/status."""

from __future__ import annotations

import gc
import threading

import torch

from lib_iclight.backends.status import ConvInWatch, LedgerSnapshot, MergeLedger, conv_in_weight, image_bytes
from tests.helpers.tiny_unet import make_tiny_unet


def merged_conv_in(channels: int = 8) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.zeros(32, channels, 3, 3), requires_grad=False)


def test_a_new_merged_parameter_is_a_merge_and_the_same_one_is_not():
    watch = ConvInWatch(MergeLedger())
    first = merged_conv_in()
    watch.saw_ic(first, "fc")
    watch.saw_ic(first, "fc")  # the WebUI found the patcher loaded: nothing merged
    assert watch.ledger.snapshot() == LedgerSnapshot("fc", 1, 0)
    watch.saw_ic(merged_conv_in(12), "fbc")
    assert watch.ledger.snapshot() == LedgerSnapshot("fbc", 2, 0)


def test_the_own_four_channels_after_a_merge_are_one_restore():
    watch = ConvInWatch(MergeLedger())
    unet = make_tiny_unet()
    watch.saw_unet(conv_in_weight(unet))  # never merged: no restore to count
    merged = merged_conv_in()
    watch.saw_ic(merged, "fc")
    watch.saw_unet(merged)  # still merged
    watch.saw_unet(conv_in_weight(unet))
    watch.saw_unet(conv_in_weight(unet))
    assert watch.ledger.snapshot() == LedgerSnapshot(None, 1, 1)
    watch.saw_ic(merged, "fc")  # the same clone merged again later: a new merge
    assert watch.ledger.snapshot() == LedgerSnapshot("fc", 2, 1)


def test_the_watch_holds_no_weights():
    watch = ConvInWatch(MergeLedger())
    merged = merged_conv_in()
    watch.saw_ic(merged, "fc")
    import weakref

    ref = weakref.ref(merged)
    del merged
    gc.collect()
    assert ref() is None


def test_the_ledger_counts_from_several_threads():
    ledger = MergeLedger()
    threads = [threading.Thread(target=lambda: [ledger.merged("m") for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.snapshot().merges == 2000


def test_helpers():
    from PIL import Image

    assert conv_in_weight(object()) is None
    assert conv_in_weight(make_tiny_unet()).shape == (32, 4, 3, 3)
    assert image_bytes(Image.new("RGBA", (4, 3))) == 48 and image_bytes(None) == 0

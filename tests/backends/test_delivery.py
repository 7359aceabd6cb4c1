"""The delivery probe: conv_in's input width counted while sampling a tiny real ldm UNet."""

from __future__ import annotations

import pytest
import torch

from lib_iclight.backends.delivery import DeliveryCount, DeliveryProbe, require_delivery
from lib_iclight.errors import ICLightConflict
from lib_iclight.backends.unet_patch import UNetPatch
from tests.helpers.tiny_unet import make_offsets, make_tiny_unet, sample


@pytest.fixture(scope="module")
def unet():
    return make_tiny_unet()


@pytest.mark.parametrize("kind, channels", [("fc", 8), ("fbc", 12)])
def test_every_call_of_a_patched_unet_counts_as_delivered(unet, kind, channels):
    concat = torch.randn(1, channels - 4, 8, 8)
    with UNetPatch(unet, make_offsets(unet, kind), concat), DeliveryProbe(unet, channels) as count:
        sample(unet, steps=3)
    assert count.wide > 0 and count.narrow == 0
    require_delivery(count)


def test_a_plain_unet_counts_as_not_delivered_and_the_hook_goes_away(unet):
    probe = DeliveryProbe(unet, 8)
    with probe as count:
        sample(unet, steps=3)
    assert count.wide == 0 and count.narrow > 0
    assert not probe.conv_in._forward_pre_hooks
    with pytest.raises(ICLightConflict, match=r"^IC Light: none of the \d+ UNet calls of this generation received"):
        require_delivery(count)


def test_the_probe_sees_the_input_after_the_concat_hook_registered_after_it(unet):
    """The probe is entered before the sampler window opens (A1111): IC-Light's concat
    hook, prepended, still runs first."""
    with DeliveryProbe(unet, 8) as count:
        with UNetPatch(unet, make_offsets(unet, "fc"), torch.randn(1, 4, 8, 8)):
            sample(unet, steps=2)
    assert count.narrow == 0 and count.wide > 0


@pytest.mark.parametrize("count, interrupted, message", [
    (DeliveryCount(0, 0), False, r"none of the 0 UNet calls"),
    (DeliveryCount(3, 1), False, r"^IC Light: 1 of the 4 UNet calls of this generation ran without IC-Light's conditioning"),
    (DeliveryCount(3, 1), True, r"1 of the 4"),
])
def test_missing_or_partial_delivery_is_refused(count, interrupted, message):
    with pytest.raises(ICLightConflict, match=message):
        require_delivery(count, interrupted=interrupted)


def test_an_interrupt_before_any_call_is_no_conflict():
    require_delivery(DeliveryCount(0, 0), interrupted=True)


def test_the_message_names_what_was_enabled_beside_it():
    with pytest.raises(ICLightConflict) as error:
        require_delivery(DeliveryCount(0, 5), beside=["FreeU Integrated", "ControlNet"])
    assert "Enabled beside it: FreeU Integrated, ControlNet." in str(error.value)
    assert error.value.status_code == 422

"""The diffusers <-> ldm key mapping, against reference key lists and real ldm UNets."""

from __future__ import annotations

import pytest

from lib_iclight import keymap
from lib_iclight.keymap import (
    SD15_DIFFUSERS_TO_LDM,
    SD15_LAYOUT,
    diffusers_to_ldm,
    ldm_to_diffusers,
    normalize_ldm_key,
)
from tests.helpers.tiny_weights import (
    SD15_UNET_CONFIG,
    TINY_CHANNEL_MULT,
    TINY_LAYOUT,
    build_unet,
    sd15_diffusers_shapes,
    sd15_ldm_shapes,
    tiny_unet_shapes,
)


def test_sd15_mapping_is_a_bijection_onto_the_reference_ldm_keys_with_matching_shapes():
    diffusers, ldm = sd15_diffusers_shapes(), sd15_ldm_shapes()
    assert len(diffusers) == len(ldm) == 686
    assert set(SD15_DIFFUSERS_TO_LDM) == set(diffusers)
    assert sorted(SD15_DIFFUSERS_TO_LDM.values()) == sorted(ldm)  # onto, and no duplicates
    mismatched = {d: key for d, key in SD15_DIFFUSERS_TO_LDM.items() if diffusers[d] != ldm[key]}
    assert mismatched == {}


def test_sd15_mapping_matches_a_full_size_ldm_unet_on_the_meta_device():
    unet = build_unet(SD15_UNET_CONFIG, device="meta")
    state = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    assert sum(v.numel() for v in unet.parameters()) == 859_520_964
    diffusers = sd15_diffusers_shapes()
    assert sorted(SD15_DIFFUSERS_TO_LDM.values()) == sorted(state)
    assert all(state[key] == diffusers[d] for d, key in SD15_DIFFUSERS_TO_LDM.items())


def test_ldm_to_diffusers_inverts_the_sd15_mapping():
    for d, key in SD15_DIFFUSERS_TO_LDM.items():
        assert ldm_to_diffusers(key) == d


@pytest.mark.parametrize(
    "diffusers, ldm",
    [
        ("conv_in.weight", "input_blocks.0.0.weight"),
        ("time_embedding.linear_1.weight", "time_embed.0.weight"),
        ("time_embedding.linear_2.bias", "time_embed.2.bias"),
        ("conv_norm_out.weight", "out.0.weight"),
        ("conv_out.bias", "out.2.bias"),
        ("down_blocks.0.resnets.1.conv1.weight", "input_blocks.2.0.in_layers.2.weight"),
        ("down_blocks.1.resnets.0.conv_shortcut.weight", "input_blocks.4.0.skip_connection.weight"),
        ("down_blocks.1.attentions.1.proj_out.bias", "input_blocks.5.1.proj_out.bias"),
        ("down_blocks.2.downsamplers.0.conv.weight", "input_blocks.9.0.op.weight"),
        ("down_blocks.3.resnets.1.time_emb_proj.bias", "input_blocks.11.0.emb_layers.1.bias"),
        ("mid_block.resnets.1.norm2.weight", "middle_block.2.out_layers.0.weight"),
        ("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
         "middle_block.1.transformer_blocks.0.attn2.to_k.weight"),
        ("up_blocks.0.resnets.2.conv2.weight", "output_blocks.2.0.out_layers.3.weight"),
        ("up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.1.conv.weight"),
        ("up_blocks.1.upsamplers.0.conv.bias", "output_blocks.5.2.conv.bias"),
        ("up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight",
         "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight"),
    ],
)
def test_known_sd15_pairs(diffusers: str, ldm: str):
    assert diffusers_to_ldm(diffusers) == ldm
    assert ldm_to_diffusers(ldm) == diffusers


@pytest.mark.parametrize(
    "key",
    [
        "",
        "conv_in",
        "conv_in.weight.extra",
        "foo.weight",
        "down_blocks.4.resnets.0.conv1.weight",  # only 4 levels
        "down_blocks.0.resnets.2.conv1.weight",  # 2 resnets per down level
        "down_blocks.3.attentions.0.norm.weight",  # the lowest level has no attention
        "down_blocks.3.downsamplers.0.conv.weight",  # ... and does not downsample
        "up_blocks.0.attentions.0.norm.weight",
        "up_blocks.3.upsamplers.0.conv.weight",
        "up_blocks.0.resnets.3.conv1.weight",
        "mid_block.resnets.2.conv1.weight",
        "down_blocks.0.resnets.0.conv3.weight",
        "down_blocks.0.resnets.0.conv1.scale",
        "down_blocks.0.attentions.0.transformer_blocks.1.norm1.weight",  # depth 1
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias",
        "input_blocks.0.0.weight",  # already ldm
        "model.diffusion_model.conv_in.weight",
    ],
)
def test_unknown_diffusers_keys_raise_key_error(key: str):
    with pytest.raises(KeyError):
        diffusers_to_ldm(key)


@pytest.mark.parametrize(
    "key",
    [
        "output_blocks.2.2.conv.weight",  # level 3 has no attention: its upsampler is slot 1
        "output_blocks.5.1.conv.weight",  # level 2 has: slot 2
        "input_blocks.3.0.in_layers.0.weight",  # input_blocks.3 is a downsampler
        "input_blocks.12.0.in_layers.0.weight",
        "middle_block.3.in_layers.0.weight",
        "out.1.weight",
    ],
)
def test_unknown_ldm_keys_raise_key_error(key: str):
    with pytest.raises(KeyError):
        ldm_to_diffusers(key)


@pytest.mark.parametrize(
    "key, bare",
    [
        ("model.diffusion_model.input_blocks.0.0.weight", "input_blocks.0.0.weight"),
        ("diffusion_model.time_embed.0.bias", "time_embed.0.bias"),
        ("input_blocks.0.0.weight", "input_blocks.0.0.weight"),
        ("model.input_blocks.0.0.weight", "model.input_blocks.0.0.weight"),
        ("conv_in.weight", "conv_in.weight"),
    ],
)
def test_normalize_ldm_key(key: str, bare: str):
    assert normalize_ldm_key(key) == bare


def test_rules_also_describe_the_tiny_unet():
    state = tiny_unet_shapes()
    diffusers = keymap.enumerate_diffusers_keys(TINY_LAYOUT, TINY_CHANNEL_MULT)
    mapped = [diffusers_to_ldm(k, TINY_LAYOUT) for k in diffusers]
    assert sorted(mapped) == sorted(state)
    assert all(ldm_to_diffusers(diffusers_to_ldm(k, TINY_LAYOUT), TINY_LAYOUT) == k for k in diffusers)
    # Level 1 has no attention, so its upsampler sits in slot 1 of its last output block.
    assert diffusers_to_ldm("up_blocks.0.upsamplers.0.conv.weight", TINY_LAYOUT) == "output_blocks.1.1.conv.weight"


def test_infer_layout_from_either_format_and_any_prefix():
    tiny = list(tiny_unet_shapes())
    assert keymap.infer_layout(tiny) == TINY_LAYOUT
    assert keymap.infer_layout(["model.diffusion_model." + k for k in tiny]) == TINY_LAYOUT
    assert keymap.infer_layout(keymap.enumerate_diffusers_keys(TINY_LAYOUT, TINY_CHANNEL_MULT)) == TINY_LAYOUT
    assert keymap.infer_layout(sd15_ldm_shapes()) == SD15_LAYOUT
    assert keymap.infer_layout(sd15_diffusers_shapes()) == SD15_LAYOUT
    assert keymap.infer_layout(["conv_in.weight"]) == SD15_LAYOUT  # nothing to infer from


def test_enumeration_of_sd15_keys_matches_the_reference_count():
    keys = keymap.enumerate_diffusers_keys(SD15_LAYOUT, keymap.SD15_CHANNEL_MULT)
    assert len(keys) == len(set(keys)) == 686


@pytest.mark.parametrize("prefix", ["", "diffusion_model.", "model.diffusion_model."])
def test_to_ldm_keys_on_ldm_names(prefix: str):
    ldm = list(sd15_ldm_shapes())
    result = keymap.to_ldm_keys(prefix + k for k in ldm)
    assert result.key_format == "ldm" and result.unknown == [] and result.layout == SD15_LAYOUT
    assert result.mapping == {prefix + k: k for k in ldm}


def test_to_ldm_keys_on_diffusers_names_reports_strays_and_collisions():
    strays = ["first_stage_model.encoder.conv_in.weight", "down_blocks.0.resnets.0.conv9.weight"]
    keys = list(SD15_DIFFUSERS_TO_LDM) + strays
    result = keymap.to_ldm_keys(keys)
    assert result.key_format == "diffusers"
    assert result.mapping == SD15_DIFFUSERS_TO_LDM
    assert result.unknown == keys[-2:]

    collide = keymap.to_ldm_keys(["input_blocks.0.0.weight", "diffusion_model.input_blocks.0.0.weight"])
    assert collide.unknown == ["diffusion_model.input_blocks.0.0.weight"]

    assert keymap.to_ldm_keys(["cond_stage_model.x.weight"]).key_format == "unknown"

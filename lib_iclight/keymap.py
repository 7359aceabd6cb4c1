"""Parameter names of the SD1.5-family UNet in the two formats IC-Light files come in.

The official IC-Light offsets use diffusers names (``down_blocks.0.resnets.0.conv1.weight``);
the WebUIs hold the UNet under ldm names (``input_blocks.1.0.in_layers.2.weight``). The two
name sets are a bijection, derived here from the UNet's structure rather than from a table,
so the same rules serve the full SD1.5 UNet and the tiny UNets the tests build.

Why a layout parameter and not fixed SD1.5 numbers: ldm numbers its blocks flat
(``input_blocks.<n>``), where ``n`` depends on how many resnets each level has
(``layers_per_block``) and on how many levels there are; and the position of an upsampler
inside an ldm output block (``output_blocks.<n>.1.conv`` or ``.2.conv``) depends on whether
that level has attention. :class:`UNetLayout` holds exactly those facts. It can be given, or
derived from a set of keys with :func:`infer_layout`.

Only names are handled here; tensors and files live in :mod:`lib_iclight.weights`.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Iterable, Literal

logger = logging.getLogger("iclight.keymap")

KeyFormat = Literal["diffusers", "ldm", "unknown"]

# Longest first, so that "model.diffusion_model.x" loses both words and not just "model.".
LDM_PREFIXES: tuple[str, ...] = ("model.diffusion_model.", "diffusion_model.")

DIFFUSERS_ROOTS = frozenset(
    {"conv_in", "time_embedding", "down_blocks", "mid_block", "up_blocks", "conv_norm_out", "conv_out"}
)
LDM_ROOTS = frozenset({"input_blocks", "middle_block", "output_blocks", "time_embed", "out"})

# diffusers ResnetBlock2D name -> ldm ResBlock name. ldm keeps its layers in nn.Sequential,
# so the numbers are positions: in_layers = [GroupNorm, SiLU, Conv], out_layers =
# [GroupNorm, SiLU, Dropout, Conv], emb_layers = [SiLU, Linear].
RESNET_RENAMES: dict[str, str] = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_RESNET_RENAMES_BACK = {v: k for k, v in RESNET_RENAMES.items()}

# Parameters inside a SpatialTransformer / Transformer2DModel; both formats use these names.
# q/k/v carry no bias in SD1.5, so a bias there is not an SD1.5 key.
_TRANSFORMER_TAIL = re.compile(
    r"(?:norm|proj_in|proj_out)\.(?:weight|bias)"
    r"|transformer_blocks\.(?P<depth>\d+)\.(?:"
    r"norm[123]\.(?:weight|bias)"
    r"|attn[12]\.to_[qkv]\.weight"
    r"|attn[12]\.to_out\.0\.(?:weight|bias)"
    r"|ff\.net\.0\.proj\.(?:weight|bias)"
    r"|ff\.net\.2\.(?:weight|bias)"
    r")"
)
_TRANSFORMER_TAILS_DEPTH0 = (
    "norm.weight", "norm.bias", "proj_in.weight", "proj_in.bias",
)
_TRANSFORMER_BLOCK_TAILS = (
    "norm1.weight", "norm1.bias",
    "attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight",
    "attn1.to_out.0.weight", "attn1.to_out.0.bias",
    "norm2.weight", "norm2.bias",
    "attn2.to_q.weight", "attn2.to_k.weight", "attn2.to_v.weight",
    "attn2.to_out.0.weight", "attn2.to_out.0.bias",
    "norm3.weight", "norm3.bias",
    "ff.net.0.proj.weight", "ff.net.0.proj.bias",
    "ff.net.2.weight", "ff.net.2.bias",
)

_PARAM = "param"  # a bare module: only ``weight`` / ``bias`` below it
_RESNET = "resnet"
_ATTENTION = "attention"
_BlockKind = Literal["param", "resnet", "attention"]


@dataclass(frozen=True)
class UNetLayout:
    """The structural facts that decide how ldm numbers a UNet's blocks.

    ``num_levels`` is ``len(channel_mult)``; ``layers_per_block`` is ldm's
    ``num_res_blocks`` (diffusers' ``layers_per_block``): resnets per down level, the up
    levels having one more; ``attention_levels`` are the down-level indices (0 = full
    resolution) that carry transformers, mirrored on the way up; the middle block always
    has one. ``transformer_depth`` is the number of transformer blocks per attention.
    """

    num_levels: int
    layers_per_block: int
    attention_levels: frozenset[int]
    transformer_depth: int = 1

    def has_attention(self, level: int) -> bool:
        return level in self.attention_levels

    def up_level(self, up_block: int) -> int:
        """The resolution level of diffusers ``up_blocks.<up_block>`` (they run low to high)."""
        return self.num_levels - 1 - up_block


SD15_LAYOUT = UNetLayout(num_levels=4, layers_per_block=2, attention_levels=frozenset({0, 1, 2}))
SD15_CHANNEL_MULT: tuple[int, ...] = (1, 2, 4, 4)


def normalize_ldm_key(key: str) -> str:
    """Strip the ``model.diffusion_model.`` or ``diffusion_model.`` prefix of a checkpoint key.

    ``"model.diffusion_model.input_blocks.0.0.weight"`` -> ``"input_blocks.0.0.weight"``;
    a key without a prefix is returned unchanged.
    """
    for prefix in LDM_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


# --------------------------------------------------------------------------------------
# The block table: one row per module that has parameters, in both spellings.


def _block_rows(layout: UNetLayout) -> list[tuple[str, str, _BlockKind]]:
    """(diffusers prefix, ldm prefix, kind) for every parameterised block of ``layout``."""
    per_level = layout.layers_per_block + 1  # ldm: the resnets, then one down/upsampler slot
    rows: list[tuple[str, str, _BlockKind]] = [
        ("conv_in", "input_blocks.0.0", _PARAM),
        ("time_embedding.linear_1", "time_embed.0", _PARAM),
        ("time_embedding.linear_2", "time_embed.2", _PARAM),
        ("conv_norm_out", "out.0", _PARAM),
        ("conv_out", "out.2", _PARAM),
        ("mid_block.resnets.0", "middle_block.0", _RESNET),
        ("mid_block.attentions.0", "middle_block.1", _ATTENTION),
        ("mid_block.resnets.1", "middle_block.2", _RESNET),
    ]
    for level in range(layout.num_levels):
        for j in range(layout.layers_per_block):
            n = 1 + level * per_level + j  # input_blocks.0 is conv_in
            rows.append((f"down_blocks.{level}.resnets.{j}", f"input_blocks.{n}.0", _RESNET))
            if layout.has_attention(level):
                rows.append((f"down_blocks.{level}.attentions.{j}", f"input_blocks.{n}.1", _ATTENTION))
        if level < layout.num_levels - 1:  # the lowest level does not downsample
            n = (level + 1) * per_level
            rows.append((f"down_blocks.{level}.downsamplers.0.conv", f"input_blocks.{n}.0.op", _PARAM))
    for up in range(layout.num_levels):
        attention = layout.has_attention(layout.up_level(up))
        for j in range(per_level):
            n = up * per_level + j
            rows.append((f"up_blocks.{up}.resnets.{j}", f"output_blocks.{n}.0", _RESNET))
            if attention:
                rows.append((f"up_blocks.{up}.attentions.{j}", f"output_blocks.{n}.1", _ATTENTION))
        if up < layout.num_levels - 1:  # the full-resolution level does not upsample
            # ldm appends the upsampler to the level's last output block, after the
            # transformer when there is one.
            n = up * per_level + layout.layers_per_block
            slot = 2 if attention else 1
            rows.append((f"up_blocks.{up}.upsamplers.0.conv", f"output_blocks.{n}.{slot}.conv", _PARAM))
    return rows


class _KeyMapper:
    """Both directions of the mapping for one layout; built once per layout (see ``_mapper``)."""

    def __init__(self, layout: UNetLayout) -> None:
        self.layout = layout
        rows = _block_rows(layout)
        self._to_ldm = {d: (ldm, kind) for d, ldm, kind in rows}
        self._to_diffusers = {ldm: (d, kind) for d, ldm, kind in rows}

    def _convert_tail(self, tail: str, kind: _BlockKind, to_ldm: bool) -> str | None:
        if kind == _PARAM:
            return tail if tail in ("weight", "bias") else None
        if kind == _RESNET:
            module, _, param = tail.rpartition(".")
            if param not in ("weight", "bias"):
                return None
            renames = RESNET_RENAMES if to_ldm else _RESNET_RENAMES_BACK
            return f"{renames[module]}.{param}" if module in renames else None
        match = _TRANSFORMER_TAIL.fullmatch(tail)
        if match is None:
            return None
        depth = match.group("depth")
        if depth is not None and int(depth) >= self.layout.transformer_depth:
            return None
        return tail

    def _map(self, key: str, table: dict[str, tuple[str, _BlockKind]], to_ldm: bool) -> str:
        # Block prefixes have 1 to 5 dotted parts; try each split of the key.
        parts = key.split(".")
        for cut in range(1, len(parts)):
            row = table.get(".".join(parts[:cut]))
            if row is None:
                continue
            tail = self._convert_tail(".".join(parts[cut:]), row[1], to_ldm)
            if tail is not None:
                return f"{row[0]}.{tail}"
        raise KeyError(key)

    def to_ldm(self, key: str) -> str:
        return self._map(key, self._to_ldm, to_ldm=True)

    def to_diffusers(self, key: str) -> str:
        return self._map(key, self._to_diffusers, to_ldm=False)


@functools.lru_cache(maxsize=16)
def _mapper(layout: UNetLayout) -> _KeyMapper:
    return _KeyMapper(layout)


def diffusers_to_ldm(key: str, layout: UNetLayout = SD15_LAYOUT) -> str:
    """The ldm name of a diffusers UNet parameter name, e.g.
    ``"down_blocks.1.attentions.0.proj_in.weight"`` -> ``"input_blocks.4.1.proj_in.weight"``.

    Raises ``KeyError(key)`` for a name that is not a parameter of a UNet with ``layout``
    (a block index out of range, a module name neither format uses, ...). ``conv_shortcut``
    is accepted on any resnet: whether a resnet has one depends on channel counts, which
    the layout does not hold.
    """
    return _mapper(layout).to_ldm(key)


def ldm_to_diffusers(key: str, layout: UNetLayout = SD15_LAYOUT) -> str:
    """The diffusers name of an ldm UNet parameter name (without prefix); the inverse of
    :func:`diffusers_to_ldm`. Raises ``KeyError(key)`` for an unknown name."""
    return _mapper(layout).to_diffusers(key)


# --------------------------------------------------------------------------------------
# Enumerating and recognising key sets.


def enumerate_diffusers_keys(layout: UNetLayout, channel_mult: Iterable[int]) -> list[str]:
    """Every parameter name of a diffusers UNet with ``layout``, in module order.

    ``channel_mult`` is needed only to know which resnets change their channel count and
    so have a ``conv_shortcut``: the first resnet of a down level whose multiplier differs
    from the previous level's (the level before level 0 counts as 1), and every up resnet
    (its input is the concatenation with a skip connection, always wider than its output).
    """
    mult = list(channel_mult)
    if len(mult) != layout.num_levels:
        raise ValueError(f"channel_mult has {len(mult)} levels, layout has {layout.num_levels}")
    resnet_tails = [f"{m}.{p}" for m in RESNET_RENAMES if m != "conv_shortcut" for p in ("weight", "bias")]
    shortcut_tails = ["conv_shortcut.weight", "conv_shortcut.bias"]
    attention_tails = list(_TRANSFORMER_TAILS_DEPTH0)
    for d in range(layout.transformer_depth):
        attention_tails += [f"transformer_blocks.{d}.{t}" for t in _TRANSFORMER_BLOCK_TAILS]
    attention_tails += ["proj_out.weight", "proj_out.bias"]

    keys: list[str] = []
    for prefix, _ldm, kind in _block_rows(layout):
        if kind == _PARAM:
            tails = ["weight", "bias"]
        elif kind == _ATTENTION:
            tails = attention_tails
        else:
            tails = resnet_tails + (shortcut_tails if _has_shortcut(prefix, mult) else [])
        keys += [f"{prefix}.{t}" for t in tails]
    return keys


def _has_shortcut(resnet_prefix: str, mult: list[int]) -> bool:
    parts = resnet_prefix.split(".")
    if parts[0] == "up_blocks":
        return True
    if parts[0] == "down_blocks":
        level, j = int(parts[1]), int(parts[3])
        previous = mult[level - 1] if level > 0 else 1
        return j == 0 and mult[level] != previous
    return False  # mid block resnets keep their width


def detect_format(keys: Iterable[str]) -> KeyFormat:
    """Which naming the keys use, judged by their first dotted part after any ldm prefix.

    The majority decides, so one stray key does not flip a file's format; the stray key is
    then reported as unknown by :func:`to_ldm_keys`.
    """
    diffusers = ldm = 0
    for key in keys:
        root = normalize_ldm_key(key).split(".", 1)[0]
        diffusers += root in DIFFUSERS_ROOTS
        ldm += root in LDM_ROOTS
    if diffusers == ldm == 0:
        return "unknown"
    return "diffusers" if diffusers > ldm else "ldm"


_DIFFUSERS_DOWN = re.compile(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.")
_DIFFUSERS_UP = re.compile(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.")
_LDM_INPUT = re.compile(r"input_blocks\.(\d+)\.([01])\.(.*)")
_LDM_OUTPUT = re.compile(r"output_blocks\.(\d+)\.([012])\.(.*)")
_DEPTH = re.compile(r"\.transformer_blocks\.(\d+)\.")


def infer_layout(keys: Iterable[str], key_format: KeyFormat | None = None,
                 default: UNetLayout = SD15_LAYOUT) -> UNetLayout:
    """Derive the :class:`UNetLayout` of a UNet from its parameter names (either format,
    ldm names with or without prefix). ``default`` is returned when the keys hold no block
    at all (e.g. a file with only ``conv_in``), since nothing can be inferred then.

    The result is only a hypothesis: callers check it by mapping every key under it
    (:func:`to_ldm_keys` does), which fails for keys that do not fit.
    """
    keys = [normalize_ldm_key(k) for k in keys]
    key_format = key_format or detect_format(keys)
    depth = max((int(m.group(1)) + 1 for k in keys if (m := _DEPTH.search(k))), default=1)
    if key_format == "diffusers":
        layout = _infer_from_diffusers(keys, depth)
    elif key_format == "ldm":
        layout = _infer_from_ldm(keys, depth)
    else:
        layout = None
    return layout or default


def _infer_from_diffusers(keys: list[str], depth: int) -> UNetLayout | None:
    down = [(int(m[1]), m[2], int(m[3])) for k in keys if (m := _DIFFUSERS_DOWN.match(k))]
    up = [(int(m[1]), m[2], int(m[3])) for k in keys if (m := _DIFFUSERS_UP.match(k))]
    if not down and not up:
        return None
    num_levels = max(b for b, _, _ in down + up) + 1
    # Down levels hold layers_per_block resnets, up levels one more.
    per_block = max([j + 1 for _, kind, j in down if kind == "resnets"]
                    + [j for _, kind, j in up if kind == "resnets"], default=1)
    attention = {b for b, kind, _ in down if kind == "attentions"}
    attention |= {num_levels - 1 - b for b, kind, _ in up if kind == "attentions"}
    return UNetLayout(num_levels, max(per_block, 1), frozenset(attention), depth)


def _infer_from_ldm(keys: list[str], depth: int) -> UNetLayout | None:
    inputs = [(int(m[1]), int(m[2]), m[3]) for k in keys if (m := _LDM_INPUT.match(k))]
    outputs = [(int(m[1]), int(m[2]), m[3]) for k in keys if (m := _LDM_OUTPUT.match(k))]
    if not any(n > 0 for n, _, _ in inputs) and not outputs:
        return None
    downsamplers = sorted({n for n, slot, tail in inputs if slot == 0 and tail.startswith("op.")})
    if downsamplers:
        # Downsamplers sit at input_blocks.(level + 1) * (layers_per_block + 1).
        per_level = downsamplers[0]
        num_levels = len(downsamplers) + 1
    elif outputs:
        # A single level: its output blocks are output_blocks.0 .. layers_per_block.
        per_level = max(n for n, _, _ in outputs) + 1
        num_levels = 1
    else:
        per_level = max(n for n, _, _ in inputs) + 1
        num_levels = 1
    attention = {(n - 1) // per_level for n, slot, _ in inputs if slot == 1 and n > 0}
    attention |= {num_levels - 1 - n // per_level for n, slot, tail in outputs
                  if slot == 1 and not tail.startswith("conv.")}
    return UNetLayout(num_levels, max(per_level - 1, 1), frozenset(attention), depth)


@dataclass(frozen=True)
class KeyConversion:
    """The outcome of :func:`to_ldm_keys`.

    ``mapping`` maps each recognised key *as spelled in the file* to its ldm name without
    prefix; ``unknown`` lists the file keys that are not UNet parameters under ``layout``
    (or that collide with another key after prefixes are stripped), in file order.
    """

    key_format: KeyFormat
    layout: UNetLayout
    mapping: dict[str, str]
    unknown: list[str]


def to_ldm_keys(keys: Iterable[str]) -> KeyConversion:
    """Recognise a key set's format (diffusers, or ldm with or without prefix), infer its
    layout, and map every key to its ldm name without prefix."""
    keys = list(keys)
    key_format = detect_format(keys)
    layout = infer_layout(keys, key_format)
    mapper = _mapper(layout)
    mapping: dict[str, str] = {}
    unknown: list[str] = []
    taken: set[str] = set()
    for key in keys:
        bare = normalize_ldm_key(key)
        try:
            if key_format == "diffusers":
                target = mapper.to_ldm(bare)
            elif key_format == "ldm":
                mapper.to_diffusers(bare)  # validates the name against the layout
                target = bare
            else:
                raise KeyError(key)
        except KeyError:
            unknown.append(key)
            continue
        if target in taken:  # e.g. both "x" and "diffusion_model.x" in one file
            unknown.append(key)
            continue
        taken.add(target)
        mapping[key] = target
    return KeyConversion(key_format, layout, mapping, unknown)


# The full SD1.5 UNet: 686 parameters, checked against reference key lists in the tests.
SD15_DIFFUSERS_TO_LDM: dict[str, str] = {
    key: diffusers_to_ldm(key) for key in enumerate_diffusers_keys(SD15_LAYOUT, SD15_CHANNEL_MULT)
}

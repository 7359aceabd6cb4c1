"""What the Forge 2 and the Forge Classic / reForge adapters share.

Both families load the UNet through a *patcher* (Forge 2 ``backend.patcher.unet.UnetPatcher``,
Classic / reForge ``modules_forge.unet_patcher.UnetPatcher`` on ComfyUI's ``ModelPatcher``)
that keeps the weights untouched until sampling starts and merges queued weight patches
into them then. IC-Light is installed the way those WebUIs expect an extension to do it:

* clone ``p.sd_model.forge_objects.unet`` and queue the offsets on the clone as plain diff
  patches under ``diffusion_model.<ldm key>``. The WebUI merges them when it loads the
  clone, restores the originals when it loads another patcher, and pads conv_in from 4 to
  8 / 12 input channels (natively or through a shim, see the adapters);
* set a ``model_function_wrapper`` on the clone that puts the conditioning latent into
  ``c["c_concat"]``; the model's ``apply_model`` then concatenates it after the noisy latent.

After the generation the clone stays loaded (setting "keep merged", the default), as these
WebUIs leave a LoRA merged: the next IC-Light generation reuses it and the WebUI merges
nothing, while a plain generation loads the base patcher and the WebUI's unpatch restores
the original weights (:class:`CloneKeeper`).

Kept here: the patch dicts (built once per :class:`~lib_iclight.weights.ICOffsets`), the
concat wrapper, the checks that the loaded model is an SD1.5 UNet with 4 input channels, a
probe for how a WebUI's merge function treats a wider diff, the per-generation record of
the clones made, so repeated installs (batch count, hires pass) reuse one clone, the clone
kept between generations, and what the UNet holds for the status route.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal

import torch

from ..errors import ICLightError
from ..status import ConvInWatch, MergeLedger, conv_in_weight
from ..unet_patch import concat_to_batch, tensor_version
from ..weights import ICOffsets
from . import fast_merge, merge_hooks

logger = logging.getLogger("iclight.backends.forge_common")

PREFIX = "diffusion_model."
"""Where the ldm UNet sits inside the patched model (Forge 2 ``KModel``, ComfyUI ``BaseModel``)."""

CONV_IN_KEY = "input_blocks.0.0.weight"
"""The ldm key of the weight IC-Light widens from 4 to 8 (fc) or 12 (fbc) input channels."""

PatchStyle = Literal["diff", "pad_weight"]
"""How the widened conv_in diff is written.

``"diff"``: ``(tensor,)``, the plain diff patch. Forge 2 (``merge_lora_to_weight``) and
Forge Classic (``ModelPatcher.calculate_weight``) zero-pad the weight when a 4-D diff is
larger. ``"pad_weight"``: ``("diff", (tensor, {"pad_weight": True}))``, the flag newer
ComfyUI-lineage merges (reForge since 2024-10) need before they pad.
"""

_MARK = "_iclight_concat"
"""Attribute set on the c_concat tensor IC-Light put into ``c``, so a second IC-Light
wrapper further down a wrapper chain recognises it and does not concatenate twice."""

FAMILY_FLAGS = (("is_sdxl", "SDXL"), ("is_sd3", "SD3"), ("is_sd2", "SD2"))


# --------------------------------------------------------------------------------------
# Patch dicts.


@dataclass(frozen=True, eq=False)
class PatchSet:
    """The offsets of one :class:`ICOffsets` as a WebUI patch dict.

    ``patches`` maps ``"diffusion_model.<ldm key>"`` to a patch value (see
    :data:`PatchStyle`) holding the offset tensor itself, not a copy. ``identifier`` is
    unique per ICOffsets object: Forge 2 caches merged weights by the identifiers of the
    queued patches, not by their contents, so another file (fc after fbc) or a re-read
    file must never reuse one. ``conv_in_value`` is the very object queued for conv_in;
    its identity tells whether a patcher already holds these patches.
    """

    identifier: str
    style: PatchStyle
    patches: dict[str, tuple]
    conv_in_value: tuple

    @property
    def conv_in_key(self) -> str:
        return PREFIX + CONV_IN_KEY


_sets_lock = threading.Lock()
_serials = itertools.count(1)
_identifiers: "weakref.WeakKeyDictionary[ICOffsets, str]" = weakref.WeakKeyDictionary()
_patch_sets: "weakref.WeakKeyDictionary[ICOffsets, dict[str, PatchSet]]" = weakref.WeakKeyDictionary()


def patch_value(tensor: torch.Tensor, style: PatchStyle) -> tuple:
    """One diff patch in the given style (see :data:`PatchStyle`)."""
    if style == "pad_weight":
        return ("diff", (tensor, {"pad_weight": True}))
    return (tensor,)


def patch_set(offsets: ICOffsets, style: PatchStyle) -> PatchSet:
    """The patch dict of ``offsets``, built once per (offsets object, style) and cached
    while the offsets object lives, so nothing is rebuilt per sampling call."""
    with _sets_lock:
        by_style = _patch_sets.setdefault(offsets, {})
        built = by_style.get(style)
        if built is not None:
            return built
        identifier = _identifiers.get(offsets)
        if identifier is None:
            identifier = f"IC-Light/{offsets.info.name}#{next(_serials)}"
            _identifiers[offsets] = identifier
        patches: dict[str, tuple] = {}
        for key, tensor in offsets.tensors.items():
            # Only conv_in is wider than the model's weight; every other diff is plain.
            patches[PREFIX + key] = patch_value(tensor, style) if key == CONV_IN_KEY else (tensor,)
        if PREFIX + CONV_IN_KEY not in patches:
            raise ICLightError("model_type", f"{offsets.info.name} has no conv_in offset")
        built = PatchSet(identifier, style, patches, patches[PREFIX + CONV_IN_KEY])
        fast_merge.register(offsets.tensors.values())
        by_style[style] = built
        return built


# --------------------------------------------------------------------------------------
# How a WebUI's merge function treats a diff wider than the weight.

_styles: "weakref.WeakKeyDictionary[Callable, PatchStyle | None]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the merge's shape-mismatch warning (``print`` or ``logging``) while probing."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def pads_wider_diff(merge: Callable[[list, torch.Tensor, str], torch.Tensor], style: PatchStyle) -> bool:
    """Whether ``merge(patches, weight, key)`` zero-pads a weight of [1, 1, 1, 1] to a diff
    of [1, 2, 1, 1] given in ``style``; exercises the WebUI's own code on tiny tensors.

    The probe entry has the five fields of the newest layout (strength, value,
    strength_model, offset, function); older merges read only the first three.
    """
    weight = torch.zeros(1, 1, 1, 1)
    diff = torch.ones(1, 2, 1, 1)
    entry = (1.0, patch_value(diff, style), 1.0, None, None)
    try:
        with _quiet():
            merged = merge([entry], weight, "iclight-probe")
    except Exception as exc:  # noqa: BLE001 - any failure means "not this style"
        logger.debug("merge probe (%s) raised %r", style, exc)
        return False
    return isinstance(merged, torch.Tensor) and tuple(merged.shape) == (1, 2, 1, 1) and bool(
        torch.equal(merged.detach().float().cpu(), diff)
    )


def padding_style(merge: Callable[[list, torch.Tensor, str], torch.Tensor], cache_key: Callable) -> PatchStyle | None:
    """The first style in which ``merge`` pads a wider conv_in diff, or None if it pads in
    neither (then the adapter needs a shim). Cached per ``cache_key`` (the function object)."""
    with _sets_lock:
        if cache_key in _styles:
            return _styles[cache_key]
    style: PatchStyle | None = None
    for candidate in ("diff", "pad_weight"):
        if pads_wider_diff(merge, candidate):  # type: ignore[arg-type]
            style = candidate  # type: ignore[assignment]
            break
    with _sets_lock:
        _styles[cache_key] = style
    logger.debug("merge %r pads a wider diff with style %s", cache_key, style)
    return style


# --------------------------------------------------------------------------------------
# The concat wrapper.


class ConcatWrapper:
    """``model_function_wrapper`` that feeds the IC-Light latent as ``c["c_concat"]``.

    Called by the WebUI as ``wrapper(apply_model, {"input", "timestep", "c",
    "cond_or_uncond"})`` for every UNet batch. ``input`` is [N, 4, h, w] (cond and uncond
    rows batched, N any multiple of the image batch); ``concat`` [1, 4 or 8, h, w] scaled
    latents is repeated to N rows and cast to the input's dtype and device. Chains to the
    wrapper that was set before (``previous``), or calls ``apply_model`` itself.
    """

    def __init__(self, concat: torch.Tensor, channels: int, previous: Callable | None = None,
                 on_pass_start: Callable[[], None] | None = None) -> None:
        self.channels = channels
        self.previous = previous
        self.concat = self._checked(concat)
        self.calls = 0
        self.on_pass_start = on_pass_start
        """Called on the first UNet call after each :meth:`set_concat`: the WebUI has loaded
        (merged) the patcher by then, which is when the merge ledger looks at the weights."""
        self._pass_started = False

    def _checked(self, concat: torch.Tensor) -> torch.Tensor:
        if concat.ndim != 4 or concat.shape[1] != self.channels:
            raise RuntimeError(
                f"IC-Light conditioning has shape {tuple(concat.shape)}, the model expects "
                f"[1, {self.channels}, h, w]"
            )
        return concat.detach()

    def set_concat(self, concat: torch.Tensor) -> None:
        """Use a new conditioning latent (e.g. at the hires size) from the next call on."""
        self.concat = self._checked(concat)
        self._pass_started = False

    def __call__(self, apply_model: Callable[..., torch.Tensor], args: dict[str, Any]) -> torch.Tensor:
        self.calls += 1
        if not self._pass_started:
            self._pass_started = True
            if self.on_pass_start is not None:
                self.on_pass_start()
        c = args["c"]
        existing = c.get("c_concat")
        if existing is None:
            concat = concat_to_batch(self.concat, args["input"])
            setattr(concat, _MARK, True)
            c = {**c, "c_concat": concat}
            args = {**args, "c": c}
        elif not getattr(existing, _MARK, False):
            raise RuntimeError(
                "IC-Light cannot run together with another extension or model input that also "
                f"feeds c_concat (got a tensor of shape {tuple(existing.shape)})"
            )
        # else: an IC-Light wrapper higher up the chain already set it.
        if self.previous is not None:
            return self.previous(apply_model, args)
        return apply_model(args["input"], args["timestep"], **c)


def without_concat_wrappers(wrapper: Callable | None) -> Callable | None:
    """``wrapper`` with IC-Light's own wrappers peeled off its top, so that cloning a clone
    (Forge 2's hires hook runs once before the WebUI resets the patcher) does not stack them."""
    while isinstance(wrapper, ConcatWrapper):
        wrapper = wrapper.previous
    return wrapper


# --------------------------------------------------------------------------------------
# Model checks.


def unet_in_channels(unet: Any) -> int | None:
    """Input channels the loaded UNet was *built* with (4 for SD1.5, 9 for inpainting).

    Read from the model's configuration, not from conv_in's weight: between generations
    the weight may still hold a merged IC-Light conv_in (8 or 12 channels) until the
    WebUI restores it lazily.
    """
    model = getattr(unet, "model", None)
    diffusion_model = getattr(model, "diffusion_model", None)
    channels = getattr(diffusion_model, "in_channels", None)
    if isinstance(channels, int):
        return channels
    for config in (getattr(getattr(model, "model_config", None), "unet_config", None),
                   getattr(getattr(model, "config", None), "unet_config", None)):
        if isinstance(config, dict) and isinstance(config.get("in_channels"), int):
            return config["in_channels"]
    return None


def check_sd15(sd_model: Any) -> Any:
    """Raise ICLightError("model_type") unless ``sd_model`` is a loaded SD1.5 checkpoint
    whose UNet takes 4 channels. Returns its ``forge_objects.unet`` patcher."""
    objects = getattr(sd_model, "forge_objects", None)
    unet = getattr(objects, "unet", None)
    if unet is None:
        # Forge 2 holds a placeholder until the first generation loads a checkpoint.
        raise ICLightError("model_type", "no checkpoint is loaded yet; load an SD1.5 checkpoint first")
    for flag, family in FAMILY_FLAGS:
        if getattr(sd_model, flag, False):
            raise ICLightError("model_type", f"IC-Light needs an SD1.5 checkpoint, but the loaded one is {family}")
    if not getattr(sd_model, "is_sd1", True):
        # Forge 2's Flux / Chroma engines set none of the SD flags.
        raise ICLightError(
            "model_type", f"IC-Light needs an SD1.5 checkpoint, but the loaded one is {type(sd_model).__name__}"
        )
    channels = unet_in_channels(unet)
    if getattr(sd_model, "is_inpaint", False) or (channels is not None and channels != 4):
        kind = "an inpainting checkpoint" if channels in (None, 9) else f"a checkpoint whose UNet takes {channels} channels"
        raise ICLightError(
            "model_type", f"IC-Light needs a plain SD1.5 checkpoint (4-channel UNet input), but the loaded one is {kind}"
        )
    return unet


def check_offset_shapes(model: torch.nn.Module, offsets: ICOffsets) -> None:
    """Raise ICLightError("model_type") unless every offset has a parameter of its shape
    under ``diffusion_model.`` (conv_in: same except the input channels)."""
    shapes = {name: tuple(param.shape) for name, param in model.named_parameters()}
    for key, tensor in offsets.tensors.items():
        have = shapes.get(PREFIX + key)
        want = tuple(tensor.shape)
        if have is None:
            raise ICLightError(
                "model_type",
                f"the loaded UNet has no parameter {key} (needed by {offsets.info.name}): IC-Light needs an SD1.5 checkpoint",
            )
        fits = have == want or (
            key == CONV_IN_KEY and len(have) == len(want) == 4 and have[0] == want[0] and have[2:] == want[2:]
        )
        if not fits:
            raise ICLightError(
                "model_type",
                f"the IC-Light offset {key} has shape {list(want)} but the loaded UNet has {list(have)}: "
                "IC-Light needs an unquantized SD1.5 checkpoint",
            )


# --------------------------------------------------------------------------------------
# VAE identity.

_vae_tokens = itertools.count(1)
_TOKEN = "_iclight_vae_token"


def vae_fingerprint(first_stage_model: torch.nn.Module) -> tuple:
    """Changes whenever the VAE's weights may have: another model object (Forge 2 reloads
    the whole model for a VAE or checkpoint change), or weights loaded in place (Forge
    Classic's ``sd_vae`` calls ``load_state_dict``, which bumps the Parameters' version).

    A token stored on the model object stands for its identity: ``id()`` can be reused
    by a new model once the old one is freed.
    """
    token = first_stage_model.__dict__.get(_TOKEN)
    if token is None:
        token = next(_vae_tokens)
        first_stage_model.__dict__[_TOKEN] = token
    first = next(first_stage_model.parameters(), None)
    if first is None:
        return (token, None)
    # Forge 2's parameters are inference tensors without a version counter; a reload
    # then shows as a new storage (data_ptr) or, failing that, a new model (token).
    return (token, id(first), first.data_ptr(), tensor_version(first))


# --------------------------------------------------------------------------------------
# Per-generation record.


@dataclass
class InstalledClone:
    """One patched clone: made from ``base`` (the patcher the WebUI had set) for ``offsets``."""

    base: Any
    clone: Any
    offsets: ICOffsets
    patches: PatchSet
    wrapper: ConcatWrapper


def require_all_patches(added: Any, patches: PatchSet) -> None:
    """Refuse a UNet that did not take every offset (``add_patches`` returns the keys it took)."""
    if len(added) != len(patches.patches):
        raise ICLightError(
            "model_type",
            f"the loaded UNet took {len(added)} of {len(patches.patches)} IC-Light offsets: "
            "IC-Light needs an SD1.5 checkpoint",
        )


def attach_concat(base: Any, clone: Any, offsets: ICOffsets, patches: PatchSet, concat: torch.Tensor,
                  watch: ConvInWatch | None = None) -> InstalledClone:
    """Give ``clone`` the concat wrapper, chained to any wrapper another extension set.

    With a ``watch``, the wrapper reports on each pass's first UNet call what the WebUI's
    load did to the weights (a new merge, or the one already there)."""
    previous = without_concat_wrappers(clone.model_options.get("model_function_wrapper"))
    on_pass_start = None
    if watch is not None:
        model, name = clone.model, offsets.info.name
        on_pass_start = lambda: watch.saw_ic(conv_in_weight(getattr(model, "diffusion_model", None)), name)  # noqa: E731
    wrapper = ConcatWrapper(concat, offsets.in_channels - 4, previous, on_pass_start)
    clone.set_model_unet_function_wrapper(wrapper)
    return InstalledClone(base, clone, offsets, patches, wrapper)


@dataclass
class GenerationState:
    """What one generation (one ``p``) holds between hooks."""

    installed: list[InstalledClone] = field(default_factory=list)

    def by_clone(self, patcher: Any) -> InstalledClone | None:
        return next((e for e in self.installed if e.clone is patcher), None)

    def by_base(self, base: Any, offsets: ICOffsets) -> InstalledClone | None:
        """The clone made from ``base``, or from a patcher ``base`` is a plain copy of."""
        mine = [e for e in self.installed if e.offsets is offsets]
        return (next((e for e in mine if e.base is base), None)
                or next((e for e in mine if same_patcher_state(e.base, base)), None))


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. tensors of several elements: not provably the same
        return False


def same_patcher_state(a: Any, b: Any) -> bool:
    """True when patchers ``a`` and ``b`` would sample alike: the same class and model, and
    equal attributes (patches, object patches, model options, devices...).

    reForge's built-in scripts (Mahiro CFG, RescaleCFG and others) replace the UNet patcher
    with a fresh ``clone()`` on every sampling pass even while disabled. A clone holds equal
    patches and options in new containers, so comparing by identity alone would make a new
    IC-Light clone for every hires pass and batch, and the WebUI would merge again for each
    (3-4 s on a CPU, measured live). Anything that cannot be compared counts as different.
    """
    if a is b:
        return True
    if type(a) is not type(b) or getattr(a, "model", None) is not getattr(b, "model", None):
        return False
    state_a, state_b = vars(a), vars(b)
    if state_a.keys() != state_b.keys():
        return False
    return all(_same_value(state_a[k], state_b[k]) for k in state_a if k not in _BOOKKEEPING)


_BOOKKEEPING = frozenset({"parent"})
"""Patcher attributes that do not change how it samples: ComfyUI-lineage ``clone()`` (reForge,
newer ComfyUI) records the patcher it was cloned from, only so that memory management can
fall back to it once the clone is gone."""


_STATE = "_iclight_forge"


def state_of(p: Any, create: bool = True) -> GenerationState | None:
    state = getattr(p, _STATE, None)
    if state is None and create:
        state = GenerationState()
        setattr(p, _STATE, state)
    return state


def drop_state(p: Any) -> None:
    if getattr(p, _STATE, None) is not None:
        delattr(p, _STATE)


def install_clone(
    p: Any,
    offsets: ICOffsets,
    concat: torch.Tensor,
    make_clone: Callable[[Any, ICOffsets, torch.Tensor], InstalledClone],
    keeper: "CloneKeeper | None" = None,
) -> InstalledClone:
    """Point ``p.sd_model.forge_objects.unet`` at a clone patched for ``offsets``.

    The clone made from the current patcher is remembered and reused while the WebUI
    resets ``forge_objects`` to the same base patcher, or to a plain copy of it (batch
    count, hires pass; see :func:`same_patcher_state`): only its conditioning latent
    changes, so the WebUI sees an already loaded patcher and merges nothing again. If the
    current patcher is one of our clones (Forge 2 calls the hook once more before
    resetting), its base is used instead, so clones never stack. Across generations the
    ``keeper`` offers the clone an earlier generation left loaded, on the same terms.
    """
    objects = p.sd_model.forge_objects
    current = objects.unet
    state = state_of(p)
    assert state is not None
    known = state.by_clone(current)
    base = known.base if known is not None else current
    entry = state.by_base(base, offsets)
    if entry is None:
        entry = keeper.reuse(base, offsets) if keeper is not None else None
        if entry is None:
            entry = make_clone(base, offsets, concat)
            logger.debug("IC-Light: new patched clone for %s (%s)", offsets.info.name, entry.patches.identifier)
        else:
            logger.debug("IC-Light: reusing the clone kept from the last generation (%s)", entry.patches.identifier)
        state.installed.append(entry)
    entry.wrapper.set_concat(concat)
    if keeper is not None:
        keeper.keep(entry)
    objects.unet = entry.clone
    return entry


# --------------------------------------------------------------------------------------
# The clone kept loaded between generations.

_KEPT = "_iclight_kept_clone"
"""Attribute of the patched *model* that holds the kept clone: the clone then lives exactly
as long as the model (a checkpoint switch frees both), and the WebUI, which unloads a patcher
nobody else refers to, sees a live one."""


class CloneKeeper:
    """The IC-Light clone left loaded after a generation ("keep merged", the default).

    Forge 2, Forge Classic and reForge keep a LoRA merged after a generation and restore
    the originals only when they load another patcher of the model. Keeping our clone the
    same way makes the next IC-Light generation find it already loaded, so the WebUI
    merges nothing; a plain generation loads the base patcher and the WebUI's own unpatch
    restores the weights. The next generation reuses the clone only for the same offsets
    and a base patcher that would sample alike (same checkpoint, LoRA patches, strengths
    and model options, see :func:`same_patcher_state`).

    The clone is held through its model (see :data:`_KEPT`); the keeper itself refers to
    the model weakly.
    """

    def __init__(self) -> None:
        self._model: "weakref.ref[Any] | None" = None

    def current(self) -> InstalledClone | None:
        model = self._model() if self._model is not None else None
        return None if model is None else model.__dict__.get(_KEPT)

    def reuse(self, base: Any, offsets: ICOffsets) -> InstalledClone | None:
        """The kept clone as a record for this generation's ``base``, if it fits."""
        kept = self.current()
        if kept is None or kept.offsets is not offsets:
            return None
        if kept.base is not base and not same_patcher_state(kept.base, base):
            return None
        return InstalledClone(base, kept.clone, kept.offsets, kept.patches, kept.wrapper)

    def keep(self, entry: InstalledClone) -> None:
        """Keep ``entry``'s clone (dropping any other) until :meth:`drop` or its model goes."""
        model = entry.clone.model
        previous = self.current()
        if previous is not None and previous.clone.model is not model:
            self.drop()
        model.__dict__[_KEPT] = entry
        self._model = weakref.ref(model)

    def drop(self) -> InstalledClone | None:
        """Forget the kept clone; the WebUI restores the weights when it loads another patcher."""
        model = self._model() if self._model is not None else None
        self._model = None
        if model is None:
            return None
        return model.__dict__.pop(_KEPT, None)

    def drop_unless_model(self, model: Any) -> None:
        """Drop the kept clone if it patches another model than ``model`` (a checkpoint switch)."""
        kept = self.current()
        if kept is not None and kept.clone.model is not model:
            self.drop()


def release_clones(p: Any) -> list[InstalledClone]:
    """Forget the clones of this generation and put the base patcher back where one of our
    clones is still set, so nothing after the generation samples through a clone."""
    state = state_of(p, create=False)
    if state is None:
        return []
    objects = getattr(getattr(p, "sd_model", None), "forge_objects", None)
    current = getattr(objects, "unet", None)
    known = state.by_clone(current) if current is not None else None
    if known is not None:
        objects.unet = known.base
    installed = list(state.installed)
    state.installed.clear()
    drop_state(p)
    return installed


# --------------------------------------------------------------------------------------
# What the UNet holds (the status route and the merge ledger).


def _loaded_unet_model(sd_model: Any) -> Any:
    """The model every UNet patcher of ``sd_model`` wraps (KModel / BaseModel), or None."""
    unet = getattr(getattr(sd_model, "forge_objects", None), "unet", None)
    return getattr(unet, "model", None)


class KeptMergeBackend:
    """What the Forge 2 and the Forge Classic / reForge adapters share after sampling: the
    merge ledger, the watch on conv_in that feeds it, and the clone kept between generations."""

    def __init__(self) -> None:
        self.ledger = MergeLedger()
        self.watch = ConvInWatch(self.ledger)
        self.keeper = CloneKeeper()
        self._hooked: list[merge_hooks.MergeSite] = []

    def hooked(self, site: merge_hooks.MergeSite) -> None:
        """Remember a merge function wrapped for IC-Light, to unwrap it when no IC-Light
        clone is left whose merges need it."""
        if site not in self._hooked:
            self._hooked.append(site)

    def unhook_merges(self) -> None:
        for site in self._hooked:
            merge_hooks.remove(site)
        self._hooked.clear()

    def unet_module(self, p: Any) -> torch.nn.Module:
        """The ldm UNet every patcher of the loaded checkpoint wraps: clones share it."""
        return check_sd15(p.sd_model).model.diffusion_model

    def clones_to_restore(self, p: Any, keep_merged: bool) -> list[InstalledClone]:
        """Put the base patcher back (see :func:`release_clones`). With ``keep_merged`` the
        clones stay as they are and nothing is to be restored; without it, this generation's
        clones and the kept one are, and the keeper forgets it."""
        entries = release_clones(p)
        if keep_merged:
            return []
        kept = self.keeper.drop()
        return [*entries, *([kept] if kept is not None else [])]

    def observe(self, p: Any) -> None:
        """Run at every generation's hooks (IC-Light or not): drop a kept clone whose model is
        no longer the loaded one (a checkpoint switch), and let the ledger see a restore.
        With no IC-Light clone left, the wrapped merge function is put back."""
        self._observe(p.sd_model)
        if self.keeper.current() is None and self._hooked and state_of(p, create=False) is None:
            self.unhook_merges()

    def _observe(self, sd_model: Any) -> None:
        model = _loaded_unet_model(sd_model)
        if model is None:
            return
        self.keeper.drop_unless_model(model)
        self.watch.saw_unet(conv_in_weight(getattr(model, "diffusion_model", None)))

    def unet_status(self, sd_model: Any) -> dict[str, Any]:
        """``holds``/``merges``/``restores`` from the ledger and the kept clone's model name."""
        self._observe(sd_model)
        kept = self.keeper.current()
        return {**self.ledger.snapshot().as_dict(), "kept_clone": None if kept is None else kept.offsets.info.name}

    def release_kept(self) -> None:
        """Forget the kept clone (the WebUI restores the weights at its next load) and put
        back the merge function, which only that clone's merges needed wrapped."""
        self.keeper.drop()
        self.unhook_merges()

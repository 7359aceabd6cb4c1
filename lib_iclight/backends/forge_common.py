"""What the Forge 2 and the Forge Classic / reForge adapters share.

IC-Light goes in as those WebUIs expect an extension to do it, and their own patcher
merges: the UNet patcher (``p.sd_model.forge_objects.unet``) is cloned, the offsets are
queued on the clone as plain diff patches under ``diffusion_model.<ldm key>``, and a
``model_function_wrapper`` puts the conditioning latent into ``c["c_concat"]``. The WebUI
merges when it loads the clone, pads conv_in from 4 to 8 / 12 channels (probed, see
:func:`padding_style`) and restores the originals when it loads another patcher. The clone
stays loaded after a generation, as a LoRA does ("keep merged", :class:`CloneKeeper`).
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
from ..weights import ICOffsets
from .base import PerGeneration, module_fingerprint, refuse_other_families, refuse_other_input
from .status import ConvInWatch, MergeLedger, conv_in_weight
from .unet_patch import concat_to_batch

logger = logging.getLogger("iclight.backends.forge_common")

PREFIX = "diffusion_model."
"""Where the ldm UNet sits inside the patched model (Forge 2 ``KModel``, ComfyUI ``BaseModel``)."""

CONV_IN_KEY = "input_blocks.0.0.weight"
"""The ldm key of the weight IC-Light widens from 4 to 8 (fc) or 12 (fbc) input channels."""

PatchStyle = Literal["diff", "pad_weight"]
"""How the widened conv_in diff is written: ``(tensor,)``, which Forge 2 and Forge Classic
pad for, or ``("diff", (tensor, {"pad_weight": True}))``, which reForge (2024-10 on) needs."""

_MARK = "_iclight_concat"
"""Set on the c_concat tensor IC-Light put into ``c``, so that a second IC-Light wrapper
further down a wrapper chain does not concatenate twice."""


# -- Patch dicts --


@dataclass(frozen=True, eq=False)
class PatchSet:
    """The offsets of one :class:`ICOffsets` as a WebUI patch dict ``{"diffusion_model.<ldm
    key>": value}``. ``identifier`` is unique per ICOffsets object, as Forge 2 caches merges
    by identifier. ``conv_in_value`` is the very object queued for conv_in."""

    identifier: str
    style: PatchStyle
    patches: dict[str, tuple]
    conv_in_value: tuple


_lock = threading.Lock()
_serials = itertools.count(1)
_identifiers: "weakref.WeakKeyDictionary[ICOffsets, str]" = weakref.WeakKeyDictionary()
_patch_sets: "weakref.WeakKeyDictionary[ICOffsets, dict[str, PatchSet]]" = weakref.WeakKeyDictionary()


def patch_value(tensor: torch.Tensor, style: PatchStyle) -> tuple:
    """One diff patch in the given style (see :data:`PatchStyle`)."""
    return ("diff", (tensor, {"pad_weight": True})) if style == "pad_weight" else (tensor,)


def patch_set(offsets: ICOffsets, style: PatchStyle) -> PatchSet:
    """The patch dict of ``offsets``, built once per (offsets object, style)."""
    with _lock:
        by_style = _patch_sets.setdefault(offsets, {})
        if style in by_style:
            return by_style[style]
        identifier = _identifiers.get(offsets)
        if identifier is None:
            identifier = _identifiers[offsets] = f"IC-Light/{offsets.info.name}#{next(_serials)}"
        # Only conv_in is wider than the model's weight; every other diff is plain.
        patches = {PREFIX + key: patch_value(tensor, style) if key == CONV_IN_KEY else (tensor,)
                   for key, tensor in offsets.tensors.items()}
        if PREFIX + CONV_IN_KEY not in patches:
            raise ICLightError("model_type", f"{offsets.info.name} has no conv_in offset")
        built = by_style[style] = PatchSet(identifier, style, patches, patches[PREFIX + CONV_IN_KEY])
        return built


# -- How a WebUI's merge function treats a diff wider than the weight --

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
    """Whether ``merge(patches, weight, key)`` zero-pads a [1, 1, 1, 1] weight to a
    [1, 2, 1, 1] diff given in ``style``: the WebUI's own code, on tiny tensors. The entry
    has the five fields of the newest layout; older merges read the first three."""
    weight, diff = torch.zeros(1, 1, 1, 1), torch.ones(1, 2, 1, 1)
    try:
        with _quiet():
            merged = merge([(1.0, patch_value(diff, style), 1.0, None, None)], weight, "iclight-probe")
    except Exception as exc:  # noqa: BLE001 - any failure means "not this style"
        logger.debug("merge probe (%s) raised %r", style, exc)
        return False
    return (isinstance(merged, torch.Tensor) and tuple(merged.shape) == (1, 2, 1, 1)
            and bool(torch.equal(merged.detach().float().cpu(), diff)))


def padding_style(merge: Callable[[list, torch.Tensor, str], torch.Tensor], cache_key: Callable) -> PatchStyle | None:
    """The first style in which ``merge`` pads a wider conv_in diff, or None if it pads in
    neither. Probed once per ``cache_key`` (the WebUI's function object)."""
    with _lock:
        if cache_key in _styles:
            return _styles[cache_key]
    style = next((s for s in ("diff", "pad_weight") if pads_wider_diff(merge, s)), None)  # type: ignore[arg-type]
    with _lock:
        _styles[cache_key] = style  # type: ignore[assignment]
    logger.debug("merge %r pads a wider diff with style %s", cache_key, style)
    return style  # type: ignore[return-value]


# -- The concat wrapper --


class ConcatWrapper:
    """``model_function_wrapper`` that feeds the IC-Light latent as ``c["c_concat"]``.

    Called as ``wrapper(apply_model, {"input", "timestep", "c", ...})`` per UNet batch:
    ``concat`` [1, 4 or 8, h, w] is repeated to the rows of ``input`` [N, 4, h, w]. Chains
    to the wrapper set before (``previous``). ``on_pass_start`` runs on the first call after
    each :meth:`set_concat`, once the WebUI has loaded (merged) the patcher.
    """

    def __init__(self, concat: torch.Tensor, channels: int, previous: Callable | None = None,
                 on_pass_start: Callable[[], None] | None = None) -> None:
        self.channels = channels
        self.previous = previous
        self.concat = self._checked(concat)
        self.calls = 0
        self.on_pass_start = on_pass_start
        self._pass_started = False

    def _checked(self, concat: torch.Tensor) -> torch.Tensor:
        if concat.ndim != 4 or concat.shape[1] != self.channels:
            raise RuntimeError(f"IC-Light conditioning has shape {tuple(concat.shape)}, "
                               f"the model expects [1, {self.channels}, h, w]")
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
            raise RuntimeError("IC-Light cannot run together with another extension or model input that also "
                               f"feeds c_concat (got a tensor of shape {tuple(existing.shape)})")
        if self.previous is not None:
            return self.previous(apply_model, args)
        return apply_model(args["input"], args["timestep"], **c)


def without_concat_wrappers(wrapper: Callable | None) -> Callable | None:
    """``wrapper`` with IC-Light's own wrappers peeled off its top, so that cloning a clone
    (Forge 2's hires hook runs once before the WebUI resets the patcher) does not stack them."""
    while isinstance(wrapper, ConcatWrapper):
        wrapper = wrapper.previous
    return wrapper


# -- Model checks --


def unet_in_channels(unet: Any) -> int | None:
    """Input channels the loaded UNet was *built* with (4 for SD1.5, 9 for inpainting), from
    its configuration: between generations conv_in's weight may still be IC-Light's."""
    model = getattr(unet, "model", None)
    configs = (getattr(getattr(model, name, None), "unet_config", None) for name in ("model_config", "config"))
    found = [getattr(getattr(model, "diffusion_model", None), "in_channels", None),
             *(c.get("in_channels") for c in configs if isinstance(c, dict))]
    return next((c for c in found if isinstance(c, int)), None)


def check_sd15(sd_model: Any) -> Any:
    """Raise ICLightError("model_type") unless ``sd_model`` is a loaded SD1.5 checkpoint
    whose UNet takes 4 channels. Returns its ``forge_objects.unet`` patcher."""
    unet = getattr(getattr(sd_model, "forge_objects", None), "unet", None)
    if unet is None:  # Forge 2 holds a placeholder until the first generation loads one
        raise ICLightError("model_type", "no checkpoint is loaded yet; load an SD1.5 checkpoint first")
    refuse_other_families(sd_model)
    if not getattr(sd_model, "is_sd1", True):  # Forge 2's Flux / Chroma engines set no SD flag
        raise ICLightError(
            "model_type", f"IC-Light needs an SD1.5 checkpoint, but the loaded one is {type(sd_model).__name__}"
        )
    refuse_other_input(unet_in_channels(unet), getattr(sd_model, "is_inpaint", False))
    return unet


def check_offset_shapes(model: torch.nn.Module, offsets: ICOffsets) -> None:
    """Raise ICLightError("model_type") unless every offset has a parameter of its shape
    under ``diffusion_model.`` (conv_in: the same but for the input channels)."""
    shapes = {name: tuple(param.shape) for name, param in model.named_parameters()}
    for key, tensor in offsets.tensors.items():
        have, want = shapes.get(PREFIX + key), tuple(tensor.shape)
        if have is None:
            raise ICLightError("model_type", f"the loaded UNet has no parameter {key} (needed by "
                               f"{offsets.info.name}): IC-Light needs an SD1.5 checkpoint")
        if not (have == want or (key == CONV_IN_KEY and len(have) == len(want) == 4
                                 and have[0] == want[0] and have[2:] == want[2:])):
            raise ICLightError("model_type", f"the IC-Light offset {key} has shape {list(want)} but the loaded "
                               f"UNet has {list(have)}: IC-Light needs an unquantized SD1.5 checkpoint")


def require_all_patches(added: Any, patches: PatchSet) -> None:
    """Refuse a UNet that did not take every offset (``add_patches`` returns the keys it took)."""
    if len(added) != len(patches.patches):
        raise ICLightError("model_type", f"the loaded UNet took {len(added)} of {len(patches.patches)} "
                           "IC-Light offsets: IC-Light needs an SD1.5 checkpoint")


# -- Clones: made per generation, kept between generations --


@dataclass
class InstalledClone:
    """One patched clone: made from ``base`` (the patcher the WebUI had set) for ``offsets``."""

    base: Any
    clone: Any
    offsets: ICOffsets
    patches: PatchSet
    wrapper: ConcatWrapper


@dataclass
class GenerationState:
    """The clones one generation (one ``p``) made, reused across its passes and batches."""

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


_BOOKKEEPING = frozenset({"parent"})  # ComfyUI-lineage clone() records its parent, for memory only


def same_patcher_state(a: Any, b: Any) -> bool:
    """True when patchers ``a`` and ``b`` would sample alike: the same class and model and
    equal attributes (patches, model options, devices...); what cannot be compared differs.
    reForge's built-in scripts replace the patcher with a fresh ``clone()`` on every pass
    even while disabled: by identity alone, every pass would merge again (3-4 s on CPU)."""
    if a is b:
        return True
    if type(a) is not type(b) or getattr(a, "model", None) is not getattr(b, "model", None):
        return False
    state_a, state_b = vars(a), vars(b)
    return state_a.keys() == state_b.keys() and all(
        _same_value(state_a[k], state_b[k]) for k in state_a if k not in _BOOKKEEPING)


_KEPT = "_iclight_kept_clone"
"""Attribute of the patched *model* holding the kept clone: it lives as long as the model."""


class CloneKeeper:
    """The IC-Light clone left loaded after a generation ("keep merged"), reused only for the
    same offsets and a base patcher that samples alike. Held by the model (:data:`_KEPT`)."""

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
        return None if model is None else model.__dict__.pop(_KEPT, None)


MakeClone = Callable[[Any, ICOffsets, torch.Tensor], InstalledClone]


class KeptMergeBackend:
    """What the Forge 2 and the Forge Classic / reForge adapters share: the clones of each
    generation (held per ``p``, weakly), the clone kept between generations, the merge
    ledger and the watch on conv_in that feeds it."""

    def __init__(self) -> None:
        self.ledger = MergeLedger()
        self.watch = ConvInWatch(self.ledger)
        self.keeper = CloneKeeper()
        self._generations: PerGeneration[GenerationState] = PerGeneration()

    def check_model(self, p: Any) -> None:
        check_sd15(p.sd_model)

    def vae_fingerprint(self, p: Any) -> tuple:
        return module_fingerprint(p.sd_model.forge_objects.vae.first_stage_model)

    def unet_module(self, p: Any) -> torch.nn.Module:
        """The ldm UNet every patcher of the loaded checkpoint wraps: clones share it."""
        return check_sd15(p.sd_model).model.diffusion_model

    def attach_concat(self, base: Any, clone: Any, offsets: ICOffsets, patches: PatchSet,
                      concat: torch.Tensor) -> InstalledClone:
        """Give ``clone`` the concat wrapper, chained to any wrapper another extension set;
        on each pass's first UNet call it tells the ledger what the WebUI's load did."""
        previous = without_concat_wrappers(clone.model_options.get("model_function_wrapper"))
        model, name = clone.model, offsets.info.name

        def on_pass_start() -> None:
            self.watch.saw_ic(conv_in_weight(getattr(model, "diffusion_model", None)), name)

        wrapper = ConcatWrapper(concat, offsets.in_channels - 4, previous, on_pass_start)
        clone.set_model_unet_function_wrapper(wrapper)
        return InstalledClone(base, clone, offsets, patches, wrapper)

    def install_clone(self, p: Any, offsets: ICOffsets, concat: torch.Tensor, make_clone: MakeClone) -> InstalledClone:
        """Point ``p.sd_model.forge_objects.unet`` at a clone patched for ``offsets``.

        One clone per base patcher (or a plain copy of it: batch count, hires pass) and
        generation, so the WebUI merges once; if the current patcher is our clone (Forge 2
        calls the hook again before resetting) its base is used. Across generations the
        keeper offers the clone kept loaded, on the same terms.
        """
        objects = p.sd_model.forge_objects
        state = self._generations.setdefault(p, GenerationState)
        known = state.by_clone(objects.unet)
        base = known.base if known is not None else objects.unet
        entry = state.by_base(base, offsets)
        if entry is None:
            entry = self.keeper.reuse(base, offsets)
            if entry is None:
                entry = make_clone(base, offsets, concat)
                logger.debug("IC-Light: new patched clone for %s (%s)", offsets.info.name, entry.patches.identifier)
            state.installed.append(entry)
        entry.wrapper.set_concat(concat)
        self.keeper.keep(entry)
        objects.unet = entry.clone
        return entry

    def clones_to_restore(self, p: Any, keep_merged: bool) -> list[InstalledClone]:
        """Forget this generation's clones and put the base patcher back where one of them
        is still set. With ``keep_merged`` nothing is to be restored; without it, this
        generation's clones and the kept one are, and the keeper forgets it."""
        state = self._generations.pop(p) or GenerationState()
        objects = getattr(getattr(p, "sd_model", None), "forge_objects", None)
        current = getattr(objects, "unet", None)
        known = state.by_clone(current) if current is not None else None
        if known is not None:
            objects.unet = known.base
        if keep_merged:
            return []
        kept = self.keeper.drop()
        return [*state.installed, *([kept] if kept is not None else [])]

    def release_kept(self) -> None:
        """Forget the kept clone; the WebUI restores the weights at its next load."""
        self.keeper.drop()

    def observe(self, p: Any) -> None:
        """At every generation's hooks (IC-Light or not): drop a kept clone whose model is
        no longer the loaded one (a checkpoint switch), and let the ledger see a restore."""
        self._observe(p.sd_model)

    def _observe(self, sd_model: Any) -> None:
        model = getattr(getattr(getattr(sd_model, "forge_objects", None), "unet", None), "model", None)
        if model is None:
            return
        kept = self.keeper.current()
        if kept is not None and kept.clone.model is not model:  # a checkpoint switch
            self.keeper.drop()
        self.watch.saw_unet(conv_in_weight(getattr(model, "diffusion_model", None)))

    def unet_status(self, sd_model: Any) -> dict[str, Any]:
        """``holds``/``merges``/``restores`` from the ledger and the kept clone's model name."""
        self._observe(sd_model)
        kept = self.keeper.current()
        return {**self.ledger.snapshot().as_dict(), "kept_clone": None if kept is None else kept.offsets.info.name}

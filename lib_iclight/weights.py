"""Finding IC-Light SD1.5 offset files and loading them as ldm-keyed tensors.

An IC-Light file holds *offsets*: tensors added to the base UNet's parameters, plus a
``conv_in`` weight with 8 (``fc``: noise + foreground latents) or 12 (``fbc``: + background
latents) input channels. Which of the two a file is comes from that shape, read from the
safetensors header; the file name is only a display name, because community repacks name
their files freely.

Accepted files: the official ``iclight_sd15_fc/fbc/fcon.safetensors`` (diffusers names) and
repacks with ldm names, bare or with a ``diffusion_model.`` / ``model.diffusion_model.``
prefix, stored as float16, bfloat16, float32, float8_e4m3fn or float8_e5m2.

Loaded offsets are cached (see :func:`load_offsets`), because one generation may ask for
them several times and reading a 1.7 GB file is the slow part. An adapter that keeps the
merged weights between generations uses :class:`OffsetFile` instead: shapes from the
header, tensors read only for what must be merged, and never held afterwards.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Generic, Literal, Sequence, TypeVar

import torch
from safetensors import SafetensorError, safe_open

from . import keymap
from .errors import ICLightError, file_reason

logger = logging.getLogger("iclight.weights")

ARG = "model_type"  # the argument every error here is about
SUFFIX = ".safetensors"
ModelKind = Literal["fc", "fbc"]

# conv_in input channels -> kind: 4 noise latents + 4 foreground (+ 4 background) latents.
KIND_BY_CHANNELS: dict[int, ModelKind] = {8: "fc", 12: "fbc"}
CONV_IN_KEYS = ("conv_in.weight", "input_blocks.0.0.weight")
LDM_CONV_IN = "input_blocks.0.0.weight"
OFFICIAL_FILES = ("iclight_sd15_fc.safetensors", "iclight_sd15_fbc.safetensors")

# Not every torch a WebUI ships has float8 types; those that do can read such files.
_FLOAT8 = tuple(
    dt for dt in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if dt
)


@dataclass(frozen=True)
class ICModelInfo:
    """One IC-Light file as found on disk, known from its header only.

    ``name`` is the file stem (``"IC-Light-SD15-FC-fp8"``), unique among the listed models;
    ``kind`` and ``in_channels`` (8 for ``fc``, 12 for ``fbc``) come from conv_in's shape.
    """

    name: str
    path: Path
    kind: ModelKind
    in_channels: int


@dataclass(eq=False)
class ICOffsets:
    """Loaded offsets of one IC-Light file.

    ``tensors`` maps ldm names without prefix (``"input_blocks.0.0.weight"``,
    ``"time_embed.0.weight"``) to tensors of one dtype on one device, shaped like the
    base UNet's parameters except ``input_blocks.0.0.weight``: [320, in_channels, 3, 3].
    The object may be shared through the cache: treat the tensors as read-only.
    """

    info: ICModelInfo
    tensors: dict[str, torch.Tensor]

    @property
    def kind(self) -> ModelKind:
        return self.info.kind

    @property
    def in_channels(self) -> int:
        return self.info.in_channels

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @property
    def dtype_name(self) -> str:
        """The tensors' dtype without the ``torch.`` prefix ("float16", "float8_e4m3fn"),
        or the names joined by "+" for a file that mixes dtypes."""
        names = sorted({str(t.dtype).removeprefix("torch.") for t in self.tensors.values()})
        return "+".join(names) or "none"


# --------------------------------------------------------------------------------------
# Reading headers and listing folders.


def _refuse(path: Path, problem: str, cause: BaseException | None = None) -> ICLightError:
    """The error for a file that cannot serve. ``problem`` names the file by its name only:
    messages reach API clients, so the full path goes to the server log alone."""
    logger.warning("IC-Light file %s: %s", path, problem if cause is None else f"{problem} ({cause!r})")
    return ICLightError(ARG, problem)


def _cannot_read(path: Path, exc: BaseException) -> ICLightError:
    return _refuse(path, f"cannot read {path.name}: {file_reason(exc, path)}", exc)


def read_model_info(path: str | Path) -> ICModelInfo:
    """Describe one file from its safetensors header, without loading any tensor.

    Raises :class:`ICLightError` (``model_type: ...``) for an unreadable file, or one whose
    conv_in weight is missing or has neither 8 nor 12 input channels.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            by_bare_name = {keymap.normalize_ldm_key(k): k for k in f.keys()}
            conv_key = next((by_bare_name[k] for k in CONV_IN_KEYS if k in by_bare_name), None)
            shape = list(f.get_slice(conv_key).get_shape()) if conv_key else None
    except (SafetensorError, OSError) as exc:
        raise _cannot_read(path, exc) from exc
    if shape is None:
        raise _refuse(path, f"{path.name} is not an IC-Light SD1.5 offset file: it has no conv_in weight")
    if len(shape) != 4 or shape[1] not in KIND_BY_CHANNELS:
        raise _refuse(
            path,
            f"{path.name} is not an IC-Light SD1.5 offset file: conv_in weight has shape {shape}, "
            "expected [320, 8, 3, 3] (fc) or [320, 12, 3, 3] (fbc)",
        )
    return ICModelInfo(path.stem, path, KIND_BY_CHANNELS[shape[1]], shape[1])


_T = TypeVar("_T")
FileStamp = tuple[int, int]
"""A file's (size, mtime_ns): what tells a cached reading of it from a stale one."""


def file_stamp(st: os.stat_result) -> FileStamp:
    return st.st_size, st.st_mtime_ns


class _FileCache(Generic[_T]):
    """One value read from each file, by path, valid while the file's stamp is unchanged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[FileStamp, _T]] = {}

    def get(self, path: Path | str, stamp: FileStamp) -> _T | None:
        with self._lock:
            entry = self._entries.get(str(path))
        return entry[1] if entry is not None and entry[0] == stamp else None

    def put(self, path: Path | str, stamp: FileStamp, value: _T) -> None:
        with self._lock:
            self._entries[str(path)] = (stamp, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Header results by path; keeps a WebUI's repeated list refreshes from re-reading headers
# and repeating the same warning.
_probes: _FileCache[ICModelInfo | ICLightError] = _FileCache()


def _probe(path: Path) -> ICModelInfo | ICLightError:
    try:
        stamp = file_stamp(path.stat())
    except OSError as exc:
        return _cannot_read(path, exc)
    known = _probes.get(path, stamp)
    if known is not None:
        return known
    try:
        result: ICModelInfo | ICLightError = read_model_info(path)
    except ICLightError as exc:  # already logged, with the full path, by read_model_info
        result = exc
    _probes.put(path, stamp, result)
    return result


def _candidate_files(folder: Path) -> list[Path]:
    """``*.safetensors`` in ``folder`` and its direct subfolders; top level first, then by
    case-folded relative path, so the order is the same on every file system."""
    found: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        logger.debug("cannot list %s: %s", folder, exc)
        return []
    for entry in entries:
        if entry.name.startswith("."):  # hidden files, macOS "._" resource forks
            continue
        if entry.is_dir():
            try:
                found += [p for p in entry.iterdir() if _is_candidate(p)]
            except OSError as exc:
                logger.debug("cannot list %s: %s", entry, exc)
        elif _is_candidate(entry):
            found.append(entry)

    def order(p: Path) -> tuple[int, str, str]:
        rel = p.relative_to(folder).as_posix()
        return (rel.count("/"), rel.casefold(), rel)

    return sorted(found, key=order)


def _is_candidate(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIX) and not path.name.startswith(".") and path.is_file()


def _scan(dirs: Sequence[str | Path]) -> tuple[list[ICModelInfo], list[tuple[str, ICLightError]]]:
    """(usable models, first wins per name; (stem, reason) for each skipped file)."""
    models: list[ICModelInfo] = []
    skipped: list[tuple[str, ICLightError]] = []
    seen: set[str] = set()
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            logger.debug("model folder %s does not exist; skipped", folder)
            continue
        for path in _candidate_files(folder):
            result = _probe(path)
            stem = path.name[: -len(SUFFIX)]
            if isinstance(result, ICLightError):
                skipped.append((stem, result))
            elif result.name in seen:
                logger.debug("%s is shadowed by an earlier model of the same name", path)
            else:
                seen.add(result.name)
                models.append(result)
    return models, skipped


def list_unreadable(dirs: Sequence[str | Path]) -> list[tuple[str, str]]:
    """(name, reason) of each ``*.safetensors`` file in ``dirs`` that :func:`list_models`
    leaves out because it cannot be read or is not an IC-Light SD1.5 offset file. The
    reason names the file, never its folder."""
    return [(stem, error.problem) for stem, error in _scan(dirs)[1]]


def list_models(dirs: Sequence[str | Path]) -> list[ICModelInfo]:
    """The IC-Light files in ``dirs`` (each folder and its direct subfolders).

    Folders are searched in the order given and a name found twice keeps its first file.
    Missing folders are skipped; so, with a logged warning, are files that are not IC-Light
    SD1.5 offsets (no conv_in, or one with neither 8 nor 12 input channels) or not readable.
    """
    return _scan(dirs)[0]


# --------------------------------------------------------------------------------------
# Resolving a requested name.


def _check_name(name: object) -> str:
    """Reject anything that is not a bare file name, before it is compared with any file.

    Resolution only ever picks among listed files, so a path cannot escape the model
    folders anyway; refusing path-like names says so to the caller instead of reporting
    an unknown model.
    """
    if not isinstance(name, str) or not name.strip():
        raise ICLightError.expected(ARG, "the name of an IC-Light model", name)
    if "\x00" in name:
        raise ICLightError(ARG, "a model name cannot contain a NUL character")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ICLightError(ARG, f"expected a model name, not a path: {name!r}")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise ICLightError(ARG, f"expected a model name, not a path: {name!r}")
    return name


def resolve_model(name: str, dirs: Sequence[str | Path]) -> ICModelInfo:
    """The model a user or API caller asked for by ``name``.

    Tried in order: the exact file stem (``name`` may also end in ``.safetensors``), the
    stem ignoring case, then the aliases ``"fc"`` / ``"fbc"`` (any case), meaning the first
    listed model of that kind. Raises :class:`ICLightError` (``model_type: ...``) for a
    path-like name, a file that exists but is not a usable IC-Light file, or an unknown
    name; the last lists what is available.
    """
    name = _check_name(name)
    stem = name[: -len(SUFFIX)] if name.lower().endswith(SUFFIX) and len(name) > len(SUFFIX) else name
    models, skipped = _scan(dirs)

    for same in (lambda a, b: a == b, lambda a, b: a.casefold() == b.casefold()):
        for info in models:
            if same(info.name, stem):
                return info
    alias = stem.casefold()
    if alias in KIND_BY_CHANNELS.values():
        for info in models:
            if info.kind == alias:
                return info
    for same in (lambda a, b: a == b, lambda a, b: a.casefold() == b.casefold()):
        for skipped_stem, reason in skipped:
            if same(skipped_stem, stem):
                raise ICLightError(ARG, f"cannot use {name!r}: {reason.problem}")

    if models:
        kinds = sorted({m.kind for m in models})
        aliases = ", ".join(repr(k) for k in kinds)
        available = ", ".join(m.name for m in models)
        raise ICLightError(ARG, f"unknown model {name!r}; available: {available} (aliases: {aliases})")
    # The folders by their last two parts: enough to recognise them, and no server path.
    folders = ", ".join(Path(*Path(d).parts[-2:]).as_posix() for d in dirs) or "(no folders configured)"
    logger.warning("no IC-Light models in any of: %s", ", ".join(str(Path(d)) for d in dirs))
    raise ICLightError(
        ARG,
        f"unknown model {name!r}; no IC-Light models were found. Put {' and/or '.join(OFFICIAL_FILES)} "
        f"(from huggingface.co/lllyasviel/ic-light) into one of the model folders ({folders}); "
        "the server log gives their full paths",
    )


# --------------------------------------------------------------------------------------
# Loading offsets, with a small cache.

# Each cached entry of the SD1.5 offsets holds 859.5 M values, by default in the file's own
# dtype: 0.86 GB for a float8 file, 1.72 GB for float16 (the official files). The default
# of 2 entries covers switching between fc and fbc without reloading.
DEFAULT_CACHE_CAPACITY = 2

_CacheKey = tuple[str, int, int, "torch.dtype | None", str]
_cache_lock = threading.Lock()
_cache: "OrderedDict[_CacheKey, ICOffsets]" = OrderedDict()
_loading: dict[_CacheKey, threading.Lock] = {}
_capacity = DEFAULT_CACHE_CAPACITY


def clear_cache() -> None:
    """Forget all cached offsets (their memory is freed once no caller holds them) and the
    remembered file headers, so the next listing reads and reports every file afresh."""
    with _cache_lock:
        _cache.clear()
    _probes.clear()
    _headers.clear()


def set_cache_capacity(entries: int) -> None:
    """Keep at most ``entries`` loaded files (0 disables caching); evicts the oldest now."""
    global _capacity
    if entries < 0:
        raise ValueError(f"cache capacity must be >= 0, got {entries}")
    with _cache_lock:
        _capacity = entries
        _evict_locked()


def cache_info() -> list[tuple[str, str, str]]:
    """(path, dtype, device) of each cached entry, oldest first; for logs and tests.
    The dtype is "stored" for an entry kept in the file's own dtypes."""
    with _cache_lock:
        return [(k[0], "stored" if k[3] is None else str(k[3]), k[4]) for k in _cache]


def cache_entries() -> list[dict[str, object]]:
    """What the offset cache holds, oldest first, without paths (for the status route):
    ``{"model", "kind", "dtype", "device", "bytes"}`` per entry."""
    with _cache_lock:
        entries = [(k, v) for k, v in _cache.items()]
    return [
        {"model": v.info.name, "kind": v.kind, "dtype": v.dtype_name, "device": k[4], "bytes": v.nbytes}
        for k, v in entries
    ]


def _evict_locked() -> None:
    while len(_cache) > _capacity:
        key, _ = _cache.popitem(last=False)
        logger.debug("evicted offsets of %s (%s, %s) from the cache", key[0], key[3], key[4])


def load_offsets(info: ICModelInfo, dtype: torch.dtype | None = None,
                 device: str | torch.device = "cpu") -> ICOffsets:
    """Read the offsets of ``info``'s file as ldm-keyed tensors on ``device``.

    ``dtype`` None (the default) keeps each tensor in the dtype the file stores it in,
    float8 included: the cache then costs exactly the file's size (0.86 GB for an fp8
    SD1.5 file, 1.72 GB for fp16), and the WebUI's merge casts each offset when it adds
    it. A float ``dtype`` converts instead (float8 through float32, which represents every
    float8 value exactly). ``device`` may be a GPU: tensors are cast on the CPU, then moved
    (the cache then holds GPU memory). Raises :class:`ICLightError`
    (``model_type: ...``) for an unreadable file, keys that are not SD1.5 UNet parameters,
    or a missing conv_in.

    Cached: while the file keeps its size and mtime, a later call with the same
    ``dtype`` and ``device`` returns the very same :class:`ICOffsets` (least recently used
    entries are evicted beyond the capacity, see :data:`DEFAULT_CACHE_CAPACITY`). Safe to
    call from several threads; concurrent calls for one entry read the file once.
    """
    if dtype is not None and (not dtype.is_floating_point or dtype in _FLOAT8):
        raise ValueError(f"offsets are computed in float16, bfloat16, float32 or float64, not {dtype}")
    path = Path(info.path).resolve()
    try:
        st = path.stat()
    except OSError as exc:
        raise _cannot_read(path, exc) from exc
    device = torch.device(device)
    key: _CacheKey = (str(path), st.st_size, st.st_mtime_ns, dtype, str(device))

    with _cache_lock:
        if (hit := _cache.get(key)) is not None:
            _cache.move_to_end(key)
            return hit
        load_lock = _loading.setdefault(key, threading.Lock())
    with load_lock:
        try:
            with _cache_lock:  # another thread may have loaded it while we waited
                if (hit := _cache.get(key)) is not None:
                    _cache.move_to_end(key)
                    return hit
            offsets = _read_offsets(info, path, dtype, device)
            with _cache_lock:
                if _capacity > 0:
                    # An older version of the same file can never be hit again.
                    for stale in [k for k in _cache if k[0] == key[0] and k[1:3] != key[1:3]]:
                        del _cache[stale]
                    _cache[key] = offsets
                    _evict_locked()
            return offsets
        finally:
            with _cache_lock:
                _loading.pop(key, None)


def _read_offsets(info: ICModelInfo, path: Path, dtype: torch.dtype | None, device: torch.device) -> ICOffsets:
    started = time.perf_counter()
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            conversion = keymap.to_ldm_keys(f.keys())
            if conversion.unknown:
                shown = ", ".join(conversion.unknown[:5])
                raise _refuse(
                    path,
                    f"{path.name} is not an IC-Light SD1.5 offset file: {len(conversion.unknown)} "
                    f"unknown key(s), e.g. {shown}",
                )
            for file_key, ldm_key in conversion.mapping.items():
                tensors[ldm_key] = _convert(f.get_tensor(file_key), file_key, path, dtype, device)
    except ICLightError:
        raise
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise _cannot_read(path, exc) from exc

    conv_in = tensors.get(LDM_CONV_IN)
    if conv_in is None:
        raise _refuse(path, f"{path.name} is not an IC-Light SD1.5 offset file: it has no conv_in weight")
    if conv_in.ndim != 4 or conv_in.shape[1] not in KIND_BY_CHANNELS:
        raise _refuse(
            path, f"{path.name}: conv_in weight has shape {list(conv_in.shape)}, expected 8 or 12 input channels"
        )
    channels = conv_in.shape[1]
    if channels != info.in_channels:
        # The file changed since it was listed; trust what was just read.
        logger.warning("%s now has %d conv_in channels (listed with %d)", path, channels, info.in_channels)
        info = replace(info, kind=KIND_BY_CHANNELS[channels], in_channels=channels)

    offsets = ICOffsets(info, tensors)
    logger.info(
        "loaded IC-Light offsets %s (%s, %s keys, %d tensors, %.2f GB %s on %s) in %.2f s",
        info.name, info.kind, conversion.key_format, len(tensors), offsets.nbytes / 1e9,
        offsets.dtype_name, device, time.perf_counter() - started,
    )
    return offsets


def _convert(tensor: torch.Tensor, key: str, path: Path, dtype: torch.dtype | None, device: torch.device) -> torch.Tensor:
    """Cast one stored tensor to ``dtype`` (None: keep its own) on ``device``, in memory of its own.

    safetensors hands out tensors that view the memory-mapped file; a cached view would
    change (or fault) if the file were rewritten in place, so a tensor that needs neither
    a cast nor a move is copied.
    """
    if not tensor.is_floating_point():
        raise _refuse(path, f"{path.name}: tensor {key} has dtype {tensor.dtype}; offsets must be floats")
    stored = tensor
    if dtype is None:
        converted = tensor.to(device=device)
    else:
        if tensor.dtype in _FLOAT8:
            # Not every torch casts float8 straight to every float type; float32 holds each
            # float8 value exactly, so the detour changes nothing.
            tensor = tensor.to(torch.float32)
        converted = tensor.to(device=device, dtype=dtype)
    return converted.clone() if converted is stored else converted


_Header = tuple[tuple[str, int, int], dict[str, str], dict[str, tuple[int, ...]]]
"""An offset file's identity (path, size, mtime_ns), file key by ldm key, and shape by ldm key."""
_headers: _FileCache[_Header] = _FileCache()
"""The last parsed header of each offset file."""


class OffsetFile:
    """One IC-Light file as an :class:`~lib_iclight.backends.unet_patch.OffsetSource`.

    ``shapes`` (ldm keys without prefix -> shape) comes from the header, so a bad file is
    refused before anything is read. :meth:`load` reads just the requested tensors, as
    ``dtype`` on the CPU, and keeps nothing: for an adapter that caches merged weights,
    the merge is the cache, and also holding the offsets would cost another half UNet.
    """

    def __init__(self, info: ICModelInfo, dtype: torch.dtype = torch.float16) -> None:
        self.info = info
        self.dtype = dtype
        self.path = Path(info.path).resolve()
        self.identity, self._file_keys, self.shapes = self._cached_header()

    def _cached_header(self) -> _Header:
        """The parsed header, re-read only when the file's size or mtime changed.

        A1111 opens the file once per generation to check its kept merges; parsing the
        header's 686 keys each time cost ~10 ms, a visible share of a GPU generation.
        """
        try:
            stamp = file_stamp(self.path.stat())
        except OSError as exc:
            raise _cannot_read(self.path, exc) from exc
        header = _headers.get(self.path, stamp)
        if header is None:
            header = self._read_header()
            # Filed under the stamp it was read at, which a change in between makes differ.
            _headers.put(self.path, header[0][1:], header)
        return header

    def _read_header(self) -> _Header:
        path = self.path
        try:
            st = path.stat()
            with safe_open(str(path), framework="pt", device="cpu") as f:
                conversion = keymap.to_ldm_keys(f.keys())
                shapes = {ldm: tuple(f.get_slice(key).get_shape()) for key, ldm in conversion.mapping.items()}
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise _cannot_read(path, exc) from exc
        if conversion.unknown:
            raise _refuse(
                path,
                f"{path.name} is not an IC-Light SD1.5 offset file: {len(conversion.unknown)} unknown key(s), "
                f"e.g. {', '.join(conversion.unknown[:5])}",
            )
        conv_in = shapes.get(LDM_CONV_IN)
        if conv_in is None or len(conv_in) != 4 or conv_in[1] not in KIND_BY_CHANNELS:
            raise _refuse(path, f"{path.name} is not an IC-Light SD1.5 offset file: conv_in weight has shape {conv_in}")
        file_keys = {ldm: key for key, ldm in conversion.mapping.items()}
        return (str(path), st.st_size, st.st_mtime_ns), file_keys, shapes

    @property
    def kind(self) -> ModelKind:
        return KIND_BY_CHANNELS[self.shapes[LDM_CONV_IN][1]]

    def load(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """The offsets of ``keys`` as ``dtype`` CPU tensors, read from the file now."""
        started = time.perf_counter()
        identity, file_keys, shapes = self._read_header()
        if identity != self.identity or shapes != self.shapes:
            raise _refuse(self.path, f"{self.path.name} changed on disk during use; run the generation again")
        tensors: dict[str, torch.Tensor] = {}
        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as f:
                for key in keys:
                    tensors[key] = _convert(f.get_tensor(file_keys[key]), key, self.path, self.dtype, torch.device("cpu"))
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise _cannot_read(self.path, exc) from exc
        logger.debug("read %d of %d IC-Light offsets of %s in %.2f s",
                    len(tensors), len(self.shapes), self.info.name, time.perf_counter() - started)
        return tensors

"""Finding, naming and loading IC-Light offset files (tiny files written per test)."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lib_iclight import weights
from lib_iclight.errors import ICLightError
from lib_iclight.weights import ICModelInfo, ICOffsets, list_models, load_offsets, resolve_model
from tests.helpers.tiny_weights import (
    CONV_IN,
    OFFSET_FORMATS,
    TINY_UNET_CONFIG,
    build_unet,
    make_offset_file,
    small_sd15_shapes,
    tiny_unet_shapes,
)

FILE_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float8_e4m3fn, torch.float8_e5m2]


@pytest.fixture(autouse=True)
def _fresh_cache():
    weights.clear_cache()
    weights.set_cache_capacity(weights.DEFAULT_CACHE_CAPACITY)
    yield
    weights.clear_cache()
    weights.set_cache_capacity(weights.DEFAULT_CACHE_CAPACITY)


def tiny_file(folder: Path, stem: str, kind: str = "fc", **kwargs) -> Path:
    """A minimal IC-Light file: conv_in only ([4, C, 3, 3]), in ldm format."""
    path = folder / f"{stem}.safetensors"
    make_offset_file(path, {CONV_IN: (4, 4, 3, 3)}, kind=kind, fmt=kwargs.pop("fmt", "ldm"), **kwargs)
    return path


def only(info_list: list[ICModelInfo]) -> list[tuple[str, str]]:
    return [(m.name, m.kind) for m in info_list]


# ---------------------------------------------------------------------------------------
# Key formats and dtypes


@pytest.mark.parametrize("fmt", OFFSET_FORMATS)
@pytest.mark.parametrize("kind", ["fc", "fbc"])
def test_full_sd15_key_set_loads_in_every_format(tmp_path: Path, fmt: str, kind: str):
    path = tmp_path / f"model-{fmt}.safetensors"
    written = make_offset_file(path, small_sd15_shapes(), kind=kind, fmt=fmt, dtype=torch.float16)
    info = resolve_model(path.stem, [tmp_path])
    assert (info.kind, info.in_channels) == (kind, {"fc": 8, "fbc": 12}[kind])

    offsets = load_offsets(info, dtype=torch.float32)
    assert offsets.kind == kind and offsets.in_channels == info.in_channels
    assert set(offsets.tensors) == set(written) and len(offsets.tensors) == 686
    for key, value in written.items():
        assert offsets.tensors[key].dtype == torch.float32
        assert torch.equal(offsets.tensors[key], value.float()), key


@pytest.mark.parametrize("fmt", OFFSET_FORMATS)
def test_tiny_real_unet_offsets_match_its_state_dict(tmp_path: Path, fmt: str):
    unet = build_unet(TINY_UNET_CONFIG, seed=0)
    state = unet.state_dict()
    path = tmp_path / "tiny.safetensors"
    written = make_offset_file(path, state, kind="fbc", fmt=fmt, dtype=torch.bfloat16, seed=3)

    offsets = load_offsets(resolve_model("tiny", [tmp_path]), dtype=torch.float32)
    assert set(offsets.tensors) == set(state)
    for key, base in state.items():
        offset = offsets.tensors[key]
        assert torch.equal(offset, written[key].float())
        if key == CONV_IN:
            assert list(offset.shape) == [base.shape[0], 12, *base.shape[2:]]
        else:
            assert offset.shape == base.shape, key  # ready to add to the parameter
    # The offsets add onto the UNet's own parameters, name for name.
    merged = {k: v + offsets.tensors[k] for k, v in state.items() if k != CONV_IN}
    unet.load_state_dict({**merged, CONV_IN: state[CONV_IN]})


@pytest.mark.parametrize("file_dtype", FILE_DTYPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_any_float_storage_is_cast_to_the_requested_dtype(tmp_path: Path, file_dtype, dtype):
    path = tmp_path / "m.safetensors"
    written = make_offset_file(path, tiny_unet_shapes(), kind="fc", fmt="ldm-prefixed", dtype=file_dtype)
    offsets = load_offsets(resolve_model("m", [tmp_path]), dtype=dtype)
    assert {t.dtype for t in offsets.tensors.values()} == {dtype}
    for key, value in written.items():
        # Every float8/fp16/bf16 value is exact in float32; the cast to dtype then rounds once.
        assert torch.equal(offsets.tensors[key], value.to(torch.float32).to(dtype)), key


def test_loaded_tensors_do_not_alias_the_file(tmp_path: Path):
    path = tmp_path / "m.safetensors"
    written = make_offset_file(path, tiny_unet_shapes(), fmt="ldm", dtype=torch.float16)
    offsets = load_offsets(resolve_model("m", [tmp_path]), dtype=torch.float16)
    # Rewrite the file in place: a memory-mapped view would now read zeros.
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\0" * (size - size // 2))
    assert all(torch.equal(offsets.tensors[k], v) for k, v in written.items())


@pytest.mark.parametrize("file_dtype", [torch.float16, torch.float8_e5m2], ids=str)
def test_offsets_land_on_the_requested_device(tmp_path: Path, file_dtype):
    # The meta device stands in for a GPU: a device other than the CPU, with no memory.
    make_offset_file(tmp_path / "m.safetensors", tiny_unet_shapes(), fmt="ldm", dtype=file_dtype)
    info = resolve_model("m", [tmp_path])
    offsets = load_offsets(info, dtype=torch.float16, device="meta")
    assert {t.device.type for t in offsets.tensors.values()} == {"meta"}
    assert {t.dtype for t in offsets.tensors.values()} == {torch.float16}
    assert load_offsets(info, dtype=torch.float16, device="cpu") is not offsets


def test_unknown_keys_are_rejected_naming_the_file_and_keys(tmp_path: Path):
    path = tmp_path / "mixed.safetensors"
    extra = {"first_stage_model.decoder.conv_in.weight": torch.zeros(2)}
    make_offset_file(path, small_sd15_shapes(), fmt="model-prefixed", extra=extra)
    info = resolve_model("mixed", [tmp_path])  # the header alone looks fine
    with pytest.raises(ICLightError) as err:
        load_offsets(info)
    assert err.value.arg == "model_type"
    assert "mixed.safetensors" in str(err.value) and "first_stage_model.decoder.conv_in.weight" in str(err.value)


def test_non_float_tensors_are_rejected(tmp_path: Path):
    path = tmp_path / "ints.safetensors"
    extra = {"out.0.weight": torch.zeros(4, dtype=torch.int32)}
    make_offset_file(path, {CONV_IN: (4, 4, 3, 3)}, fmt="ldm", extra=extra)
    with pytest.raises(ICLightError, match="out.0.weight"):
        load_offsets(resolve_model("ints", [tmp_path]))


def test_the_requested_dtype_must_be_a_compute_float(tmp_path: Path):
    info = resolve_model("m", [tiny_file(tmp_path, "m").parent])
    with pytest.raises(ValueError):
        load_offsets(info, dtype=torch.int8)


# ---------------------------------------------------------------------------------------
# Kind detection and listing


def test_kind_comes_from_conv_in_not_the_file_name(tmp_path: Path):
    tiny_file(tmp_path, "iclight_sd15_fc", kind="fbc")
    tiny_file(tmp_path, "IC-Light-SD15-FBC-fp8", kind="fc", dtype=torch.float8_e4m3fn)
    assert only(list_models([tmp_path])) == [("IC-Light-SD15-FBC-fp8", "fc"), ("iclight_sd15_fc", "fbc")]
    info = resolve_model("iclight_sd15_fc", [tmp_path])
    assert info == ICModelInfo("iclight_sd15_fc", tmp_path / "iclight_sd15_fc.safetensors", "fbc", 12)
    assert load_offsets(info).in_channels == 12


def test_kind_is_read_from_the_header_without_loading_tensors(tmp_path: Path, monkeypatch):
    path = tmp_path / "m.safetensors"
    make_offset_file(path, small_sd15_shapes(), fmt="diffusers", kind="fbc")
    loaded: list[str] = []
    real_safe_open = weights.safe_open

    class Spy:
        def __init__(self, *args, **kwargs):
            self._inner = real_safe_open(*args, **kwargs)

        def __enter__(self):
            handle = self._inner.__enter__()

            class Handle:
                keys = handle.keys
                get_slice = handle.get_slice

                def get_tensor(self, key):
                    loaded.append(key)
                    return handle.get_tensor(key)

            return Handle()

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

    monkeypatch.setattr(weights, "safe_open", Spy)
    assert only(list_models([tmp_path])) == [("m", "fbc")]
    assert loaded == []


@pytest.mark.parametrize(
    "shapes, why",
    [
        ({"out.2.weight": (4, 4, 3, 3)}, "no conv_in"),
        ({CONV_IN: (4, 4, 3, 3)}, "[4, 4, 3, 3]"),  # a plain SD1.5 conv_in: not IC-Light
        ({CONV_IN: (4, 9, 3, 3)}, "[4, 9, 3, 3]"),  # an inpainting UNet
        ({CONV_IN: (4, 8)}, "[4, 8]"),
    ],
)
def test_files_without_a_usable_conv_in_are_skipped_with_a_warning(tmp_path: Path, caplog, shapes, why):
    save_file({k: torch.zeros(s) for k, s in shapes.items()}, str(tmp_path / "other.safetensors"))
    tiny_file(tmp_path, "good")
    with caplog.at_level(logging.WARNING, logger="iclight.weights"):
        assert only(list_models([tmp_path])) == [("good", "fc")]
    assert any("other.safetensors" in r.getMessage() and why in r.getMessage() for r in caplog.records)

    # Listing again does not repeat the warning for an unchanged file.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="iclight.weights"):
        list_models([tmp_path])
    assert caplog.records == []

    with pytest.raises(ICLightError) as err:
        resolve_model("other", [tmp_path])
    assert err.value.arg == "model_type" and why in err.value.problem


def test_listing_order_folders_and_duplicates(tmp_path: Path):
    first, second, missing = tmp_path / "first", tmp_path / "second", tmp_path / "missing"
    tiny_file(first, "b")
    tiny_file(first, "A", kind="fbc")
    tiny_file(first / "sub", "c")
    tiny_file(first / "sub" / "deeper", "too-deep")
    tiny_file(first / "sub", "b", kind="fbc")  # shadowed by first/b
    tiny_file(second, "b", kind="fbc")  # shadowed by first/b
    tiny_file(second, "d")
    (first / "notes.txt").write_text("not a model")
    (first / ".hidden.safetensors").write_bytes(b"")

    models = list_models([missing, first, second])
    assert only(models) == [("A", "fbc"), ("b", "fc"), ("c", "fc"), ("d", "fc")]
    assert models[1].path == first / "b.safetensors"
    assert resolve_model("b", [first, second]).path == first / "b.safetensors"
    assert resolve_model("b", [second, first]).path == second / "b.safetensors"
    assert list_models([missing]) == []
    assert list_models([]) == []


# ---------------------------------------------------------------------------------------
# Resolving names


def test_resolution_exact_then_case_insensitive_then_suffix(tmp_path: Path):
    tiny_file(tmp_path, "Model")
    tiny_file(tmp_path, "model", kind="fbc")
    tiny_file(tmp_path, "Other")
    assert resolve_model("Model", [tmp_path]).kind == "fc"
    assert resolve_model("model", [tmp_path]).kind == "fbc"
    assert resolve_model("MODEL", [tmp_path]).name == "Model"  # first in listing order
    assert resolve_model("other", [tmp_path]).name == "Other"
    assert resolve_model("Other.safetensors", [tmp_path]).name == "Other"
    assert resolve_model("other.SAFETENSORS", [tmp_path]).name == "Other"


def test_fc_and_fbc_aliases_pick_the_first_model_of_that_kind(tmp_path: Path):
    tiny_file(tmp_path, "b-light", kind="fbc")
    tiny_file(tmp_path, "a-light", kind="fbc")
    tiny_file(tmp_path, "z-light", kind="fc")
    assert resolve_model("fbc", [tmp_path]).name == "a-light"
    assert resolve_model("FC", [tmp_path]).name == "z-light"

    tiny_file(tmp_path, "fc", kind="fbc")  # a file of that exact name wins over the alias
    assert resolve_model("fc", [tmp_path]).name == "fc"


def test_alias_without_a_model_of_that_kind_is_unknown(tmp_path: Path):
    tiny_file(tmp_path, "only-fc")
    with pytest.raises(ICLightError, match=r"unknown model 'fbc'; available: only-fc"):
        resolve_model("fbc", [tmp_path])


def test_unknown_name_lists_what_is_available(tmp_path: Path):
    tiny_file(tmp_path, "iclight_sd15_fc")
    tiny_file(tmp_path, "iclight_sd15_fbc", kind="fbc")
    with pytest.raises(ICLightError) as err:
        resolve_model("iclight_sd15_fcon", [tmp_path])
    assert err.value.arg == "model_type"
    assert str(err.value) == (
        "model_type: unknown model 'iclight_sd15_fcon'; available: iclight_sd15_fbc, iclight_sd15_fc "
        "(aliases: 'fbc', 'fc')"
    )


def test_unknown_name_with_no_models_says_where_to_put_them(tmp_path: Path):
    folders = [tmp_path / "models" / "IC-Light", tmp_path / "extension" / "models"]
    with pytest.raises(ICLightError) as err:
        resolve_model("fc", folders)
    message = str(err.value)
    assert message.startswith("model_type: unknown model 'fc'; no IC-Light models were found")
    assert "iclight_sd15_fc.safetensors" in message and "iclight_sd15_fbc.safetensors" in message
    assert "models/IC-Light" in message and "extension/models" in message
    assert str(tmp_path) not in message  # the server's folders stay in its log


@pytest.mark.parametrize(
    "name",
    [
        "../m",
        "..",
        ".",
        "sub/m",
        "sub\\m",
        "/etc/passwd",
        "C:\\models\\m",
        "C:m",
        "\\\\server\\share\\m",
        "m\x00",
        "../../../../etc/passwd.safetensors",
        "",
        "   ",
        None,
        42,
    ],
)
def test_names_that_are_paths_or_not_names_are_rejected(tmp_path: Path, name):
    models = tmp_path / "models"
    tiny_file(models, "m")
    tiny_file(models / "sub", "m2")
    tiny_file(tmp_path, "outside")  # would be reachable with ../outside
    with pytest.raises(ICLightError) as err:
        resolve_model(name, [models])
    assert err.value.arg == "model_type"


def test_a_model_outside_the_folders_is_never_found(tmp_path: Path):
    models = tmp_path / "models"
    tiny_file(models, "m")
    tiny_file(tmp_path, "outside")
    with pytest.raises(ICLightError, match="unknown model 'outside'"):
        resolve_model("outside", [models])


# ---------------------------------------------------------------------------------------
# Caching


def test_second_load_returns_the_same_object(tmp_path: Path):
    path = tmp_path / "m.safetensors"
    make_offset_file(path, tiny_unet_shapes(), fmt="diffusers")
    info = resolve_model("m", [tmp_path])
    first = load_offsets(info)
    assert isinstance(first, ICOffsets)
    assert load_offsets(info) is first
    assert load_offsets(resolve_model("fc", [tmp_path])) is first  # same file by alias
    assert load_offsets(info, dtype=torch.float32) is not first  # another dtype is another entry
    assert load_offsets(info, dtype=None, device=torch.device("cpu")) is first

    weights.clear_cache()
    assert load_offsets(info) is not first


@pytest.mark.parametrize("stored", [torch.float16, torch.float8_e4m3fn, torch.float32])
def test_offsets_are_kept_in_the_files_own_dtype_by_default(tmp_path: Path, stored):
    """The cache costs the file's size, never an fp32 copy of an fp16 or fp8 file."""
    path = tmp_path / "m.safetensors"
    make_offset_file(path, tiny_unet_shapes(), fmt="ldm", dtype=stored)
    offsets = load_offsets(resolve_model("m", [tmp_path]))
    assert {t.dtype for t in offsets.tensors.values()} == {stored}
    assert offsets.nbytes == sum(t.numel() for t in offsets.tensors.values()) * torch.empty(0, dtype=stored).element_size()
    from safetensors.torch import load_file

    on_disk = load_file(str(path))
    assert sum(t.numel() * t.element_size() for t in on_disk.values()) == offsets.nbytes
    entry = weights.cache_entries()[-1]
    assert entry["model"] == "m" and entry["bytes"] == offsets.nbytes
    assert entry["dtype"] == str(stored).removeprefix("torch.")
    assert str(tmp_path) not in repr(entry)  # names, not paths


def test_a_changed_file_is_reloaded(tmp_path: Path):
    path = tmp_path / "m.safetensors"
    make_offset_file(path, tiny_unet_shapes(), fmt="ldm", seed=1)
    info = resolve_model("m", [tmp_path])
    first = load_offsets(info)

    # Same size, new content, new mtime.
    rewritten = make_offset_file(path, tiny_unet_shapes(), fmt="ldm", seed=2)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = load_offsets(info)
    assert second is not first
    assert torch.equal(second.tensors[CONV_IN], rewritten[CONV_IN])
    assert weights.cache_info() == [(str(path.resolve()), "stored", "cpu")]  # stale entry dropped

    # New size, mtime put back: still a change.
    mtime = path.stat().st_mtime_ns
    make_offset_file(path, tiny_unet_shapes(), fmt="ldm", kind="fbc", seed=3)
    os.utime(path, ns=(mtime, mtime))
    third = load_offsets(info)
    assert third is not second and third.kind == "fbc" and third.in_channels == 12


def test_cache_keeps_the_most_recently_used_entries(tmp_path: Path):
    infos = [resolve_model(tiny_file(tmp_path, name).stem, [tmp_path]) for name in ("a", "b", "c")]
    a = load_offsets(infos[0])
    b = load_offsets(infos[1])
    assert load_offsets(infos[0]) is a  # a is now the most recent
    load_offsets(infos[2])  # evicts b
    assert load_offsets(infos[0]) is a
    assert load_offsets(infos[1]) is not b

    weights.set_cache_capacity(0)
    assert weights.cache_info() == []
    assert load_offsets(infos[0]) is not load_offsets(infos[0])


def test_concurrent_loads_read_the_file_once(tmp_path: Path, monkeypatch):
    path = tmp_path / "m.safetensors"
    make_offset_file(path, tiny_unet_shapes(), fmt="diffusers")
    info = resolve_model("m", [tmp_path])
    reads: list[int] = []
    real_read = weights._read_offsets
    gate = threading.Barrier(4)

    def slow_read(*args, **kwargs):
        reads.append(1)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(weights, "_read_offsets", slow_read)

    def load(_):
        gate.wait()
        return load_offsets(info)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(load, range(4)))
    assert len(reads) == 1
    assert all(r is results[0] for r in results)


# ---------------------------------------------------------------------------------------
# Broken files


def test_corrupt_and_truncated_files(tmp_path: Path, caplog):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    good = tmp_path / "good.safetensors"
    make_offset_file(good, tiny_unet_shapes(), fmt="ldm")

    with caplog.at_level(logging.WARNING, logger="iclight.weights"):
        assert only(list_models([tmp_path])) == [("good", "fc")]
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 2

    for name in ("garbage", "empty"):
        with pytest.raises(ICLightError) as err:
            resolve_model(name, [tmp_path])
        assert err.value.arg == "model_type" and "cannot read" in err.value.problem

    # Listed while whole, truncated before loading (an interrupted copy).
    info = resolve_model("good", [tmp_path])
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(ICLightError) as err:
        load_offsets(info)
    assert err.value.problem.startswith("cannot read good.safetensors: ")

    good.unlink()
    with pytest.raises(ICLightError, match="cannot read"):
        load_offsets(info)


# ---------------------------------------------------------------------------------------
# OffsetFile: the lazily read form, for adapters that keep merged weights


@pytest.mark.parametrize("fmt", OFFSET_FORMATS)
def test_offset_file_knows_shapes_from_the_header_and_reads_only_what_is_asked(tmp_path: Path, fmt: str, monkeypatch):
    path = tmp_path / "m.safetensors"
    written = make_offset_file(path, small_sd15_shapes(), kind="fbc", fmt=fmt, dtype=torch.bfloat16)
    info = resolve_model("m", [tmp_path])
    reads = []
    real_open = weights.safe_open

    class CountingOpen:
        def __init__(self, *args, **kwargs):
            self._inner = real_open(*args, **kwargs)

        def __enter__(self):
            self._f = self._inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

        def get_tensor(self, key):
            reads.append(key)
            return self._f.get_tensor(key)

        def __getattr__(self, name):
            return getattr(self._f, name)

    monkeypatch.setattr(weights, "safe_open", CountingOpen)
    source = weights.OffsetFile(info)
    assert reads == [] and source.kind == "fbc"
    assert source.shapes == {k: tuple(v.shape) for k, v in written.items()}
    got = source.load([CONV_IN, "out.2.weight"])
    assert len(reads) == 2 and set(got) == {CONV_IN, "out.2.weight"}
    for key, value in got.items():
        assert value.dtype == torch.float16 and torch.equal(value, written[key].float().half())
    assert weights.cache_info() == []  # nothing kept


def test_offset_file_refuses_bad_files_before_reading_tensors(tmp_path: Path):
    path = tmp_path / "mixed.safetensors"
    make_offset_file(path, small_sd15_shapes(), fmt="ldm", extra={"first_stage_model.decoder.conv_in.weight": torch.zeros(2)})
    info = ICModelInfo("mixed", path, "fc", 8)
    with pytest.raises(ICLightError, match="^model_type: .*unknown key"):
        weights.OffsetFile(info)
    with pytest.raises(ICLightError, match="^model_type: cannot read"):
        weights.OffsetFile(ICModelInfo("gone", tmp_path / "gone.safetensors", "fc", 8))


def test_offset_file_notices_a_file_replaced_during_use(tmp_path: Path):
    path = tmp_path / "m.safetensors"
    make_offset_file(path, tiny_unet_shapes(), fmt="ldm", seed=1)
    source = weights.OffsetFile(resolve_model("m", [tmp_path]))
    make_offset_file(path, tiny_unet_shapes(), fmt="ldm", seed=2)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ICLightError, match="^model_type: .*changed on disk"):
        source.load([CONV_IN])


def test_offset_file_parses_a_header_once_per_version_of_the_file(tmp_path: Path, monkeypatch):
    # A1111 opens the offset file every generation; re-parsing 686 keys each time showed on a GPU.
    path = tmp_path / "m.safetensors"
    make_offset_file(path, tiny_unet_shapes(), fmt="ldm", seed=1)
    info = resolve_model("m", [tmp_path])
    parses = []
    real = weights.keymap.to_ldm_keys
    monkeypatch.setattr(weights.keymap, "to_ldm_keys", lambda keys: parses.append(1) or real(keys))
    first, second = weights.OffsetFile(info), weights.OffsetFile(info)
    assert len(parses) == 1 and second.shapes == first.shapes and second.identity == first.identity

    make_offset_file(path, tiny_unet_shapes(), kind="fbc", fmt="ldm", seed=2)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = weights.OffsetFile(info)
    assert len(parses) == 2 and third.kind == "fbc" and third.identity != first.identity
    weights.clear_cache()
    weights.OffsetFile(info)
    assert len(parses) == 3

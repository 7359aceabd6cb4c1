"""No ICLightError message holds a server path: errors reach API clients (as a 422 body),
so they name the file and the reason, and the full path goes to the server log only."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file

from lib_iclight import weights
from lib_iclight.errors import ICLightError, file_reason, without_path
from lib_iclight.weights import ICModelInfo, load_offsets, resolve_model
from tests.helpers.tiny_weights import CONV_IN, make_offset_file, tiny_unet_shapes


@pytest.fixture(autouse=True)
def _fresh_cache():
    weights.clear_cache()
    yield
    weights.clear_cache()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "webui" / "models" / "ic-light"
    path.mkdir(parents=True)
    return path


def good(folder: Path, stem: str = "good") -> Path:
    path = folder / f"{stem}.safetensors"
    make_offset_file(path, tiny_unet_shapes(), fmt="ldm", seed=1)
    return path


def refused(action: Callable[[], object]) -> ICLightError:
    with pytest.raises(ICLightError) as err:
        action()
    assert err.value.arg == "model_type"
    return err.value


def check(error: ICLightError, tmp_path: Path, file_name: str) -> None:
    message = str(error)
    assert str(tmp_path) not in message and "/webui/" not in message, message
    assert file_name in message, message


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_files_refused_while_listing(folder: Path, tmp_path: Path) -> None:
    (folder / "garbage.safetensors").write_bytes(os.urandom(4096))
    (folder / "empty.safetensors").write_bytes(b"")
    save_file({"first_stage_model.decoder.conv_in.weight": torch.zeros(2)}, str(folder / "no_conv_in.safetensors"))
    save_file({CONV_IN: torch.zeros(320, 5, 3, 3)}, str(folder / "five_channels.safetensors"))
    for stem in ("garbage", "empty", "no_conv_in", "five_channels"):
        check(refused(lambda stem=stem: resolve_model(stem, [folder])), tmp_path, f"{stem}.safetensors")
        check(refused(lambda stem=stem: weights.read_model_info(folder / f"{stem}.safetensors")), tmp_path,
              f"{stem}.safetensors")
    unreadable = dict(weights.list_unreadable([folder]))
    assert set(unreadable) == {"garbage", "empty", "no_conv_in", "five_channels"}
    for stem, reason in unreadable.items():
        assert str(tmp_path) not in reason and f"{stem}.safetensors" in reason


def test_a_missing_file(folder: Path, tmp_path: Path) -> None:
    info = ICModelInfo("gone", folder / "gone.safetensors", "fc", 8)
    error = refused(lambda: weights.read_model_info(info.path))
    check(error, tmp_path, "gone.safetensors")
    assert error.problem.startswith("cannot read gone.safetensors: No such file or directory")
    check(refused(lambda: load_offsets(info)), tmp_path, "gone.safetensors")
    check(refused(lambda: weights.OffsetFile(info)), tmp_path, "gone.safetensors")


def test_files_that_break_after_listing(folder: Path, tmp_path: Path) -> None:
    path = good(folder)
    info = resolve_model("good", [folder])
    source = weights.OffsetFile(info)
    truncate(path)
    check(refused(lambda: load_offsets(info)), tmp_path, "good.safetensors")
    check(refused(lambda: source.load([CONV_IN])), tmp_path, "good.safetensors")
    check(refused(lambda: weights.OffsetFile(info)), tmp_path, "good.safetensors")


def test_a_file_changed_during_use(folder: Path, tmp_path: Path) -> None:
    path = good(folder)
    source = weights.OffsetFile(resolve_model("good", [folder]))
    make_offset_file(path, tiny_unet_shapes(), kind="fbc", fmt="ldm", seed=2)
    bump_mtime(path)
    check(refused(lambda: source.load([CONV_IN])), tmp_path, "good.safetensors")


def test_files_with_bad_content(folder: Path, tmp_path: Path) -> None:
    mixed = folder / "mixed.safetensors"
    make_offset_file(mixed, tiny_unet_shapes(), fmt="ldm", extra={"first_stage_model.decoder.conv_in.weight": torch.zeros(2)})
    info = ICModelInfo("mixed", mixed, "fc", 8)
    check(refused(lambda: load_offsets(info)), tmp_path, "mixed.safetensors")
    check(refused(lambda: weights.OffsetFile(info)), tmp_path, "mixed.safetensors")

    ints = folder / "ints.safetensors"
    tensors = make_offset_file(ints, tiny_unet_shapes(), fmt="ldm")
    save_file({k: (v.to(torch.int32) if k == "out.2.weight" else v) for k, v in tensors.items()}, str(ints))
    check(refused(lambda: load_offsets(ICModelInfo("ints", ints, "fc", 8))), tmp_path, "ints.safetensors")


def test_no_models_names_the_folders_without_their_paths(folder: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="iclight.weights"):
        error = refused(lambda: resolve_model("fc", [folder]))
    check(error, tmp_path, "models/ic-light")
    assert any(str(folder) in record.getMessage() for record in caplog.records)


def test_the_full_path_goes_to_the_log(folder: Path, caplog) -> None:
    (folder / "garbage.safetensors").write_bytes(os.urandom(512))
    with caplog.at_level(logging.WARNING, logger="iclight.weights"):
        assert weights.list_models([folder]) == []
        weights.list_models([folder])  # listed again: remembered, not logged again
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and str(folder / "garbage.safetensors") in logged[0]


def test_without_path_and_file_reason(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.onnx"
    assert without_path(f"Load model from {path} failed", path) == "Load model from m.onnx failed"
    assert without_path(f"no folder {path.parent}", path) == "no folder sub"
    assert without_path("nothing to hide", path) == "nothing to hide"
    assert file_reason(FileNotFoundError(2, "No such file or directory", str(path)), path) == "No such file or directory"
    assert file_reason(ValueError(f"bad header in {path}"), path) == "bad header in m.onnx"

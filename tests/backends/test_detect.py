"""Telling the WebUI family by what can be imported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lib_iclight.backends import detect
from tests.backends.conftest import _purge


def _package(root: Path, dotted: str, body: str = "") -> None:
    """Write empty packages along ``dotted`` under ``root``; the last one is a module."""
    parts = dotted.split(".")
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").touch()
    (folder / f"{parts[-1]}.py").write_text(body)


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """An empty folder on sys.path for this test only; the packages written there are
    removed from sys.modules afterwards."""
    _purge()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    _purge()


def test_forge_2_is_found_by_its_backend_patcher(standins):
    # The stand-ins hold both families; Forge 2 is tested first.
    assert detect.detect_backend_name() == "forge"
    assert detect.make_backend().name == "forge"


def test_forge_classic_and_reforge_are_found_by_ldm_patched(fake_root):
    _package(fake_root, "ldm_patched.modules.model_patcher")
    assert detect.detect_backend_name() == "forge-classic"
    backend = detect.make_backend()
    assert type(backend).__name__ == "ForgeClassicBackend" and backend.name == "forge-classic"


def test_anything_else_is_a1111(fake_root):
    assert detect.detect_backend_name() == "a1111"
    backend = detect.make_backend()
    assert type(backend).__name__ == "A1111Backend" and backend.name == "a1111"


def test_an_unrelated_or_broken_backend_package_does_not_count(fake_root):
    _package(fake_root, "backend.something")
    assert detect.detect_backend_name() == "a1111"
    _purge()
    _package(fake_root, "backend.patcher.unet")
    (fake_root / "backend" / "__init__.py").write_text("raise RuntimeError('not Forge')\n")
    assert detect.detect_backend_name() == "a1111"
    assert "backend" not in sys.modules


def test_detection_imports_no_adapter_it_does_not_choose(fake_root, monkeypatch):
    for name in ("lib_iclight.backends.forge", "lib_iclight.backends.forge_classic"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    detect.make_backend("a1111")
    assert "lib_iclight.backends.forge" not in sys.modules
    assert "lib_iclight.backends.forge_classic" not in sys.modules


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown WebUI backend"):
        detect.make_backend("comfyui")  # type: ignore[arg-type]

"""install.py end to end: real pip resolving the command it runs, offline.

The scenario is the one met on a live Forge Classic: its builtin extensions had installed
opencv-contrib-python 5 (which asks for numpy >= 2) beside numpy 1.26, and rembg was
missing. install.py runs as the WebUI runs it, with a stand-in of the WebUI's ``launch``
module (``is_installed``, ``run_pip`` through a shell, as A1111's ``launch_utils`` does),
over fake installed distributions (``.dist-info`` folders on PYTHONPATH, site-packages
off) and a local index of hand-made wheels. pip runs for real with ``--dry-run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from lib_iclight.install_plan import REMBG_FOR_OLD_NUMPY, plan_installs

ROOT = Path(__file__).resolve().parents[2]

# What a live Forge Classic (1f95d717) had installed before the extension came.
FORGE_CLASSIC = {
    "numpy": "1.26.2",
    "Pillow": "9.5.0",
    "protobuf": "3.20.3",
    "opencv-python": "4.8.1.78",
    "opencv-python-headless": "4.11.0.86",
    "opencv-contrib-python": "5.0.0.93",
    "safetensors": "0.4.2",
    "onnxruntime": "1.26.0",
}

# The index pip may choose from: the installed versions, and newer ones that want numpy 2.
INDEX = [
    ("numpy", "1.26.2", []),
    ("numpy", "2.3.1", []),
    ("pillow", "9.5.0", []),
    ("pillow", "12.1.0", []),
    ("protobuf", "3.20.3", []),
    ("opencv-python", "4.8.1.78", ["numpy>=1.21"]),
    ("opencv-python-headless", "4.11.0.86", ["numpy>=1.21"]),
    ("opencv-python-headless", "4.12.0.88", ["numpy>=2"]),
    ("opencv-contrib-python", "5.0.0.93", ["numpy>=2"]),
    ("rembg", "2.0.69", ["numpy", "opencv-python-headless", "pillow"]),
    ("rembg", "2.0.70", ["numpy>=2.3", "opencv-python-headless", "pillow>=12.1"]),
]

LAUNCH_STANDIN = '''
"""Stand-in for the WebUI's ``launch`` module (A1111 modules/launch_utils.py): the two
names install.py uses. run_pip goes through a shell like the real one; the test adds the
offline dry-run options from ICLIGHT_TEST_PIP_EXTRA and records what pip would install."""
import importlib.util, os, subprocess, sys


def is_installed(package):
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:
        return False


def run_pip(command, desc=None, live=False):
    python = os.environ["ICLIGHT_TEST_PIP_PYTHON"]
    extra = os.environ["ICLIGHT_TEST_PIP_EXTRA"]
    line = f'"{python}" -m pip {command} --prefer-binary {extra}'
    with open(os.environ["ICLIGHT_TEST_COMMANDS"], "a", encoding="utf-8") as log:
        log.write(line + "\\n")
    result = subprocess.run(line, shell=True, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"Couldn't install {desc}.\\n{result.stdout}\\n{result.stderr}")
'''


def _dist_folder(name: str) -> str:
    return name.replace("-", "_")


def make_wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    """A minimal pure-Python wheel carrying only metadata."""
    base = f"{_dist_folder(name)}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    wheel = "Wheel-Version: 1.0\nGenerator: iclight-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(folder / f"{base}-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{base}.dist-info/METADATA", metadata)
        archive.writestr(f"{base}.dist-info/WHEEL", wheel)
        archive.writestr(f"{base}.dist-info/RECORD", "")


def fake_installed(folder: Path, installed: dict[str, str]) -> None:
    """``.dist-info`` folders that importlib.metadata reads as installed distributions."""
    for name, version in installed.items():
        info = folder / f"{_dist_folder(name)}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.fixture
def index(tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    folder.mkdir()
    for name, version, requires in INDEX:
        make_wheel(folder, name, version, requires)
    return folder


def pip_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def dry_run(args: list[str], index: Path, tmp_path: Path, report: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", *args, "--dry-run", "--ignore-installed", "--no-index",
               "--find-links", str(index), "--report", str(report), "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, env=pip_env(tmp_path), timeout=300)


def would_install(report: Path) -> dict[str, str]:
    data = json.loads(report.read_text())
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in data["install"]}


def test_install_py_keeps_forge_classic_versions_where_pins_as_requirements_fail(tmp_path: Path, index: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    fake_installed(site, FORGE_CLASSIC)
    (site / "launch.py").write_text(textwrap.dedent(LAUNCH_STANDIN))
    report = tmp_path / "report.json"
    commands = tmp_path / "commands.txt"
    env = pip_env(tmp_path)
    env.update(
        PYTHONPATH=str(site),
        ICLIGHT_TEST_PIP_PYTHON=sys.executable,
        ICLIGHT_TEST_PIP_EXTRA=f'--dry-run --ignore-installed --no-index --find-links "{index}" --report "{report}" --quiet',
        ICLIGHT_TEST_COMMANDS=str(commands),
    )
    # -S: no site-packages, so only the fake distributions count as installed.
    result = subprocess.run([sys.executable, "-S", str(ROOT / "install.py")], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    (line,) = commands.read_text().splitlines()
    assert "-U" not in line.split() and "--upgrade" not in line
    assert '"-c"' in line and "numpy==" not in line  # pins went to the constraints file only
    # rembg and its dependency come in at versions that leave numpy, pillow and OpenCV as they were.
    assert would_install(report) == {
        "rembg": "2.0.69",
        "numpy": "1.26.2",
        "opencv-python-headless": "4.11.0.86",
        "pillow": "9.5.0",
    }

    # Negative control: the same pins passed as requirements (what install.py did before)
    # make pip refuse the whole command, because contrib 5 wants numpy >= 2.
    plan = plan_installs(FORGE_CLASSIC)
    assert plan.install == [REMBG_FOR_OLD_NUMPY]
    old = dry_run(["install", *plan.install, *plan.hold], index, tmp_path, tmp_path / "old.json")
    assert old.returncode != 0
    assert "ResolutionImpossible" in old.stderr or "conflicting dependencies" in old.stderr

"""What ``install.py`` should pip-install, decided from what is already installed.

The rule is to add what is missing and never move a package the WebUI already has: A1111
1.10 ships numpy 1.26 and pillow 9.5, and the newest rembg (2.0.70 on) needs numpy >= 2.3
and pillow >= 12.1, which would break the WebUI. So rembg is pinned to the last release
that works with the numpy and pillow in place, and the installed versions of those two,
of protobuf and of any OpenCV build are given to pip as *constraints* in the same command:
they stop pip from moving them through a transitive dependency (a new
opencv-python-headless would pull numpy 2 in).

Constraints, not requirements: a constraint binds a package only if the resolver pulls it
in. Passed as requirements, the pins made the whole command impossible on a live Forge
Classic, whose builtin extensions had installed opencv-contrib-python 5 (which asks for
numpy >= 2) beside numpy 1.26: pip refused to install anything.

Pure functions only: no pip, no imports of the packages in question. Versions here are
compared numerically on their leading release numbers, which is all the decisions need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Collection, Mapping

REMBG_FOR_OLD_NUMPY = "rembg>=2.0.65,<2.0.70"
"""2.0.65 is the first with the session registry we read; 2.0.69 the last for numpy < 2.3."""
REMBG_ANY = "rembg"

NEW_REMBG_NEEDS_NUMPY = (2, 3)
NEW_REMBG_NEEDS_PILLOW = (12, 1)

ONNXRUNTIME_DISTS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-silicon",
    "onnxruntime-rocm",
    "onnxruntime-openvino",
    "ort-nightly",
    "ort-nightly-gpu",
)
OPENCV_DISTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
HELD_DISTS = ("numpy", "pillow", "protobuf", *OPENCV_DISTS)
"""Packages the WebUI pins that a new dependency could move: their installed version goes
to pip as a constraint. protobuf: onnxruntime >= 1.20 asks for protobuf >= 4.25, which
moved Forge 2's pinned 3.20 (seen on a live Forge 2 install)."""

RELEVANT_DISTS = ("rembg", "safetensors", *ONNXRUNTIME_DISTS, *HELD_DISTS)
"""Every distribution :func:`plan_installs` looks at; the installer reads these versions."""
RELEVANT_MODULES = ("rembg", "onnxruntime", "cv2", "safetensors")
"""Import names that count as installed even without package metadata (e.g. a local build)."""


@dataclass(frozen=True)
class InstallPlan:
    """``install``: requirements to add. ``hold``: ``name==version`` pins of packages
    already there, given to pip as constraints so that it keeps them. Nothing to do when
    ``install`` is empty."""

    install: list[str] = field(default_factory=list)
    hold: list[str] = field(default_factory=list)

    def constraints_text(self) -> str:
        """The contents of the constraints file for ``-c``: one ``name==version`` a line."""
        return "".join(f"{pin}\n" for pin in self.hold)

    def pip_args(self, constraints_file: str | None) -> list[str]:
        """Arguments after ``pip``, given the path the caller wrote :meth:`constraints_text`
        to (None when ``hold`` is empty). Never ``-U``: nothing already met is upgraded."""
        if not self.install:
            return []
        if self.hold and constraints_file is None:
            raise ValueError("the held versions need a constraints file")
        return ["install", *self.install, *(["-c", constraints_file] if self.hold else [])]


def normalise_name(name: str) -> str:
    """PEP 503 name: ``Pillow`` -> ``pillow``, ``opencv_python`` -> ``opencv-python``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version: ``"1.26.4"`` -> (1, 26, 4),
    ``"2.3.0rc1"`` -> (2, 3, 0), ``"9.5.0.post1"`` -> (9, 5, 0)."""
    numbers: list[int] = []
    for part in version.strip().lstrip("vV").split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        numbers.append(int(match.group()))
        if match.end() != len(part):
            break
    return tuple(numbers)


def rembg_requirement(numpy_version: str | None, pillow_version: str | None) -> str:
    """The newest rembg the installed numpy and pillow can live with.

    Unknown versions count as old: a pin that is a little conservative costs nothing,
    a rembg that upgrades numpy breaks the WebUI.
    """
    numpy_ok = numpy_version is not None and release(numpy_version) >= NEW_REMBG_NEEDS_NUMPY
    pillow_ok = pillow_version is not None and release(pillow_version) >= NEW_REMBG_NEEDS_PILLOW
    return REMBG_ANY if numpy_ok and pillow_ok else REMBG_FOR_OLD_NUMPY


def plan_installs(installed: Mapping[str, str], importable: Collection[str] = ()) -> InstallPlan:
    """Decide what to install.

    ``installed`` maps distribution names (any spelling) to versions; ``importable`` names
    the modules of :data:`RELEVANT_MODULES` that import, for packages without metadata.

    - rembg, when missing, pinned per :func:`rembg_requirement`;
    - onnxruntime, when no onnxruntime build at all is there (``-gpu``, ``-directml``...
      count), since rembg only names it as an extra;
    - opencv-python, only when no ``cv2`` imports and no OpenCV build is installed;
    - safetensors, when missing.
    """
    versions = {normalise_name(name): version for name, version in installed.items()}
    modules = set(importable)

    def have(dists: tuple[str, ...], module: str) -> bool:
        return module in modules or any(d in versions for d in dists)

    install: list[str] = []
    if not have(("rembg",), "rembg"):
        install.append(rembg_requirement(versions.get("numpy"), versions.get("pillow")))
    if not have(ONNXRUNTIME_DISTS, "onnxruntime"):
        install.append("onnxruntime")
    if not have(OPENCV_DISTS, "cv2"):
        install.append("opencv-python")
    if not have(("safetensors",), "safetensors"):
        install.append("safetensors")

    hold = [f"{name}=={versions[name]}" for name in HELD_DISTS if name in versions]
    return InstallPlan(install, hold if install else [])

"""install.py's decisions, without running pip."""

from __future__ import annotations

import pytest

from lib_iclight.install_plan import (
    REMBG_ANY,
    REMBG_FOR_OLD_NUMPY,
    InstallPlan,
    normalise_name,
    plan_installs,
    release,
    rembg_requirement,
)

# What A1111 1.10 ships, roughly (names spelled as pip metadata gives them).
A1111 = {"numpy": "1.26.2", "Pillow": "9.5.0", "opencv-python": "4.8.0.76", "safetensors": "0.4.2"}


def test_a1111_gets_a_rembg_that_keeps_its_numpy_and_pillow() -> None:
    plan = plan_installs(A1111, importable={"cv2", "safetensors"})
    assert plan.install == [REMBG_FOR_OLD_NUMPY, "onnxruntime"]
    assert plan.hold == ["numpy==1.26.2", "pillow==9.5.0", "opencv-python==4.8.0.76"]
    args = plan.pip_args("/tmp/held.txt")
    assert args[0] == "install"
    assert "-U" not in args and "--upgrade" not in args and "--no-deps" not in args
    # The held versions are constraints, never requirements.
    assert args[1:] == [REMBG_FOR_OLD_NUMPY, "onnxruntime", "-c", "/tmp/held.txt"]
    assert plan.constraints_text() == "numpy==1.26.2\npillow==9.5.0\nopencv-python==4.8.0.76\n"


def test_old_numpy_pin_admits_2_0_69_only_up_to_it() -> None:
    assert REMBG_FOR_OLD_NUMPY == "rembg>=2.0.65,<2.0.70"


def test_nothing_to_do_when_everything_is_there() -> None:
    have = {**A1111, "rembg": "2.0.69", "onnxruntime": "1.17.1"}
    plan = plan_installs(have)
    assert plan == InstallPlan([], [])
    assert plan.pip_args(None) == []


def test_an_installed_rembg_is_never_touched_even_if_old() -> None:
    plan = plan_installs({**A1111, "rembg": "2.0.50", "onnxruntime": "1.16.0"})
    assert plan.install == []


@pytest.mark.parametrize("variant", ["onnxruntime-gpu", "onnxruntime_gpu", "onnxruntime-directml", "onnxruntime-silicon"])
def test_any_onnxruntime_build_counts(variant: str) -> None:
    plan = plan_installs({**A1111, "rembg": "2.0.69", variant: "1.17.0"})
    assert "onnxruntime" not in plan.install


def test_onnxruntime_module_without_metadata_counts() -> None:
    plan = plan_installs({**A1111, "rembg": "2.0.69"}, importable={"onnxruntime"})
    assert plan.install == []


def test_new_numpy_and_pillow_get_the_newest_rembg() -> None:
    plan = plan_installs({"numpy": "2.3.1", "pillow": "12.1.0", "opencv-python-headless": "4.12.0.88",
                          "safetensors": "0.6", "onnxruntime-gpu": "1.22"})
    assert plan.install == [REMBG_ANY]
    assert plan.hold == ["numpy==2.3.1", "pillow==12.1.0", "opencv-python-headless==4.12.0.88"]


@pytest.mark.parametrize(
    ("numpy", "pillow", "expected"),
    [
        ("1.26.4", "10.4.0", REMBG_FOR_OLD_NUMPY),
        ("2.2.6", "12.1.0", REMBG_FOR_OLD_NUMPY),  # numpy too old
        ("2.3.0", "11.3.0", REMBG_FOR_OLD_NUMPY),  # pillow too old (Gradio 3 and 4 need < 11)
        ("2.3.0rc1", "12.1.0", REMBG_ANY),
        ("2.4.0", "12.2.0", REMBG_ANY),
        (None, "12.1.0", REMBG_FOR_OLD_NUMPY),  # unknown counts as old
        ("2.3.0", None, REMBG_FOR_OLD_NUMPY),
    ],
)
def test_rembg_requirement(numpy: str | None, pillow: str | None, expected: str) -> None:
    assert rembg_requirement(numpy, pillow) == expected


def test_opencv_only_when_no_cv2_at_all() -> None:
    bare = {"numpy": "1.26.4", "pillow": "10.4.0", "rembg": "2.0.69", "onnxruntime": "1.17", "safetensors": "0.4"}
    assert plan_installs(bare).install == ["opencv-python"]
    assert plan_installs(bare, importable={"cv2"}).install == []
    for dist in ("opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"):
        assert plan_installs({**bare, dist: "4.11.0.86"}).install == []


def test_safetensors_only_when_missing() -> None:
    have = {**A1111, "rembg": "2.0.69", "onnxruntime": "1.17"}
    del have["safetensors"]
    assert plan_installs(have).install == ["safetensors"]
    assert plan_installs(have, importable={"safetensors"}).install == []


def test_empty_environment() -> None:
    plan = plan_installs({})
    assert plan.install == [REMBG_FOR_OLD_NUMPY, "onnxruntime", "opencv-python", "safetensors"]
    assert plan.hold == []


def test_helpers() -> None:
    assert normalise_name("Pillow") == "pillow"
    assert normalise_name("opencv_python.Headless") == "opencv-python-headless"
    assert release("1.26.4") == (1, 26, 4)
    assert release("2.3.0rc1") == (2, 3, 0)
    assert release("v9.5.0.post1") == (9, 5, 0)
    assert release("2.1.2+cu121") == (2, 1, 2)
    assert release("dev") == ()


def test_forge_2_keeps_its_pinned_protobuf() -> None:
    """onnxruntime >= 1.20 asks for protobuf >= 4.25; on a live Forge 2 that moved the
    pinned protobuf 3.20 until the installed version was held in the same command."""
    forge = {**A1111, "protobuf": "3.20.0"}
    plan = plan_installs(forge, importable={"cv2", "safetensors"})
    assert "protobuf==3.20.0" in plan.hold
    assert "protobuf==3.20.0\n" in plan.constraints_text()


def test_held_versions_need_a_constraints_file() -> None:
    plan = plan_installs(A1111, importable={"cv2", "safetensors"})
    with pytest.raises(ValueError, match="constraints file"):
        plan.pip_args(None)
    assert plan_installs({}, importable=()).pip_args(None) == ["install", REMBG_FOR_OLD_NUMPY, "onnxruntime",
                                                               "opencv-python", "safetensors"]

"""lib_iclight.rembg_session against the real rembg, with tiny stand-in ONNX models.

The network is cut for every test here (requests.get/head raise), so a missing model
fails the way it does offline, and no test can start a 170 MB download by accident.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
from PIL import Image

from lib_iclight import rembg_session
from lib_iclight.errors import ICLightError
from lib_iclight.rembg_session import (
    clear_session_cache,
    cut_out_subject,
    get_session,
    list_rembg_models,
    model_home,
    predict_mask,
    remove_background,
)
from tests.helpers.images import disc_image, disc_rgba
from tests.helpers.onnx_models import block_downloads, install_standin, use_model_home

rembg = pytest.importorskip("rembg")
import rembg.bg  # noqa: E402, F811 - after the skip guard; the submodule, for monkeypatching

MODEL = "u2net_human_seg"
FG, BG, ERODE = 225, 16, 16


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    block_downloads(monkeypatch)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty U2NET_HOME and an empty session cache."""
    yield use_model_home(monkeypatch, tmp_path / "u2net")
    clear_session_cache()


@pytest.fixture
def standin(home):
    """U2NET_HOME holding the stand-in as u2net_human_seg.onnx."""
    install_standin(home, MODEL)
    return home


@pytest.fixture
def count_new_session(monkeypatch):
    calls: list[str] = []
    real = rembg.new_session

    def counting(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(rembg, "new_session", counting)
    return calls


@pytest.fixture
def spy_matting(monkeypatch):
    """Records every pymatting estimate_alpha_cf call rembg makes (with its trimap)."""
    trimaps: list[np.ndarray] = []
    real = rembg.bg.estimate_alpha_cf

    def spy(image, trimap, *args, **kwargs):
        trimaps.append(np.array(trimap))
        return real(image, trimap, *args, **kwargs)

    monkeypatch.setattr(rembg.bg, "estimate_alpha_cf", spy)
    return trimaps


# ------------------------------------------------------------------------- home


def test_model_home_follows_rembg_rule(monkeypatch, tmp_path):
    from rembg.sessions.base import BaseSession

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "models"))
    assert model_home() == tmp_path / "models"
    assert str(model_home()) == BaseSession.u2net_home()

    monkeypatch.delenv("U2NET_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert model_home() == tmp_path / "xdg" / ".u2net"
    assert str(model_home()) == BaseSession.u2net_home()

    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert model_home() == tmp_path / "me" / ".u2net"
    assert str(model_home()) == BaseSession.u2net_home()


# ------------------------------------------------------------------------- list


def test_list_rembg_models_reads_rembgs_registry():
    from rembg.sessions import sessions_names

    names = list_rembg_models()
    assert names == sorted(names)
    assert {"u2net", "u2net_human_seg", "u2netp", "isnet-anime", "silueta"} <= set(names)
    expected = {n for n in sessions_names if not n.endswith("_custom") and n != "sam"}
    assert set(names) == expected


def test_list_leaves_out_sessions_that_need_more_than_a_name():
    names = list_rembg_models()
    assert "sam" not in names and not any(n.endswith("_custom") for n in names)


# ---------------------------------------------------------------------- session


def test_session_is_created_once_and_reused(standin, count_new_session):
    first = get_session(MODEL)
    second = get_session(MODEL)
    assert first is second
    assert count_new_session == [MODEL]


def test_session_cache_is_per_model(standin, count_new_session):
    install_standin(standin, "u2netp")
    a, b = get_session(MODEL), get_session("u2netp")
    assert a is not b
    assert get_session("u2netp") is b
    assert count_new_session == [MODEL, "u2netp"]


def test_concurrent_first_calls_create_one_session(standin, count_new_session):
    results: list[object] = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        results.append(get_session(MODEL))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert count_new_session == [MODEL]


def test_clear_session_cache_forces_a_new_session(standin, count_new_session):
    first = get_session(MODEL)
    clear_session_cache()
    assert get_session(MODEL) is not first
    assert count_new_session == [MODEL, MODEL]


def test_session_loads_the_file_from_u2net_home(standin):
    session = get_session(MODEL)
    # The stand-in's graph, not a real u2net: one input named "input".
    assert [i.name for i in session.inner_session.get_inputs()] == ["input"]


def test_unknown_model_lists_the_available_ones(home):
    with pytest.raises(ICLightError) as info:
        get_session("u3net")
    message = str(info.value)
    assert message.startswith('rembg_model: unknown model "u3net", available: ')
    assert "u2net_human_seg" in message and "isnet-anime" in message


@pytest.mark.parametrize("name", ["u2net_custom", "sam"])
def test_models_needing_extra_arguments_are_refused(home, name):
    with pytest.raises(ICLightError, match=rf"^rembg_model: {name} needs a model path or prompts"):
        get_session(name)


@pytest.mark.parametrize("name", [None, "", "  ", 3])
def test_bad_model_names(home, name):
    with pytest.raises(ICLightError, match=r"^rembg_model: expected a rembg model name"):
        get_session(name)


def test_missing_model_says_which_file_to_put_where(home, count_new_session):
    with pytest.raises(ICLightError) as info:
        get_session("u2net")
    message = str(info.value)
    assert message.startswith("rembg_model: the model file u2net.onnx is missing and could not be downloaded")
    assert message.endswith("put u2net.onnx in the rembg model folder (U2NET_HOME, default ~/.u2net; "
                            "the server log gives its full path)")
    assert str(home) not in message
    assert "ConnectionError" in message
    # A failure is not cached: once the file is there, the same name works.
    install_standin(home, "u2net")
    assert get_session("u2net") is get_session("u2net")
    assert count_new_session == ["u2net", "u2net"]


def test_corrupt_model_file_is_named(home):
    (home / "u2netp.onnx").write_bytes(b"this is not an onnx model")
    with pytest.raises(ICLightError) as info:
        get_session("u2netp")
    message = str(info.value)
    assert message.startswith("rembg_model: could not load u2netp.onnx (")
    assert "replace the file" in message
    assert str(home) not in message  # onnxruntime's own text names the full path


def test_checksum_check_is_disabled_so_user_files_work(home, monkeypatch):
    install_standin(home, MODEL)
    monkeypatch.delenv("MODEL_CHECKSUM_DISABLED")
    # With the md5 check on, rembg 2.0.69 rejects the local file and tries to download.
    with pytest.raises(Exception, match="network disabled"):
        rembg.new_session(MODEL)
    assert get_session(MODEL) is not None
    assert os.environ["MODEL_CHECKSUM_DISABLED"] == "1"


def test_users_own_checksum_setting_is_kept(standin, monkeypatch):
    monkeypatch.setenv("MODEL_CHECKSUM_DISABLED", "yes")
    get_session(MODEL)
    assert os.environ["MODEL_CHECKSUM_DISABLED"] == "yes"


# ---------------------------------------------------------------------- cut-out


def test_predict_mask_is_the_disc(standin):
    mask = np.asarray(predict_mask(disc_image(), MODEL))
    assert mask.shape == (64, 64)
    assert mask[32, 32] == 255 and mask[0, 0] == 0 and mask[2, 60] == 0
    # Clean: most pixels are sure subject or sure background, with a thin soft band.
    soft = ((mask > BG) & (mask < FG)).sum()
    assert (mask >= FG).sum() > 900 and (mask <= BG).sum() > 2000 and 0 < soft < 400


def test_remove_background_returns_rgba_of_the_same_size(standin):
    out = remove_background(disc_image(), MODEL, FG, BG, ERODE)
    assert out.mode == "RGBA" and out.size == (64, 64)
    alpha = np.asarray(out.getchannel("A"))
    assert alpha[32, 32] == 255 and alpha[0, 0] == 0


def test_alpha_matting_really_runs(standin, spy_matting):
    img = disc_image()
    mask = np.asarray(predict_mask(img, MODEL)).astype(int)
    cut = cut_out_subject(img, MODEL, FG, BG, ERODE)
    assert cut.matted

    # pymatting solved a real trimap: sure background (0), sure subject (1), unknown (0.5).
    assert len(spy_matting) == 1
    trimap = spy_matting[0]
    assert set(np.unique(trimap)) == {0.0, 128 / 255, 1.0}

    alpha = np.asarray(cut.mask).astype(int)
    assert np.array_equal(alpha, np.asarray(cut.image.getchannel("A")))
    # A plain cut-out's alpha is the model mask, byte for byte; matting re-solved the
    # unknown band, so alpha differs there, and it is soft (not 0/255) at the edge.
    unknown = trimap == 128 / 255
    assert np.abs(alpha - mask)[unknown].max() > 10
    soft = (alpha > 0) & (alpha < 255)
    assert soft[unknown].sum() > 50
    # Outside the unknown band matting keeps the trimap's verdict.
    assert (alpha[trimap == 1.0] == 255).all() and (alpha[trimap == 0.0] == 0).all()


def test_thresholds_and_erode_reach_rembg(standin, monkeypatch, spy_matting):
    seen: list[tuple] = []
    real = rembg.bg.alpha_matting_cutout

    def spy(img, mask, fg, bg, erode):
        seen.append((img.mode, img.size, mask.mode, fg, bg, erode))
        return real(img, mask, fg, bg, erode)

    monkeypatch.setattr(rembg.bg, "alpha_matting_cutout", spy)
    cut_out_subject(disc_image(), MODEL, 200, 30, 4)
    cut_out_subject(disc_image(), MODEL, 240, 5, 12)
    assert seen == [("RGB", (64, 64), "L", 200, 30, 4), ("RGB", (64, 64), "L", 240, 5, 12)]

    # And they shape the trimap: a larger erosion leaves fewer sure pixels.
    sure = [int(((t == 0.0) | (t == 1.0)).sum()) for t in spy_matting]
    assert sure[0] > sure[1]


def test_erode_size_shrinks_sure_foreground(standin, spy_matting):
    for erode in (0, 8, 16):
        cut_out_subject(disc_image(), MODEL, FG, BG, erode)
    fg_counts = [int((t == 1.0).sum()) for t in spy_matting]
    assert fg_counts[0] > fg_counts[1] > fg_counts[2] > 0


def test_matting_fallback_is_logged_and_reported(standin, spy_matting, caplog):
    img = disc_image()
    mask = np.asarray(predict_mask(img, MODEL))
    with caplog.at_level(logging.WARNING, logger="iclight.rembg_session"):
        cut = cut_out_subject(img, MODEL, 255, BG, ERODE)  # nothing is above 255: no sure subject
    assert not cut.matted
    assert np.array_equal(np.asarray(cut.mask), mask)
    assert np.array_equal(np.asarray(cut.image)[..., :3], np.asarray(img))
    records = [r for r in caplog.records if r.name == "iclight.rembg_session" and r.levelno == logging.WARNING]
    assert len(records) == 1
    assert "alpha matting skipped" in records[0].getMessage()
    assert "foreground_threshold=255" in records[0].getMessage()


def test_without_matting_the_mask_is_used_as_is(standin, spy_matting):
    img = disc_image()
    cut = cut_out_subject(img, MODEL, FG, BG, ERODE, alpha_matting=False)
    assert not cut.matted and spy_matting == []
    assert np.array_equal(np.asarray(cut.mask), np.asarray(predict_mask(img, MODEL)))


def test_rgba_input_is_flattened_on_grey_before_prediction(standin, monkeypatch):
    # Transparent pixels of disc_rgba are black; the model must see them as grey 127.
    session = get_session(MODEL)
    seen: list[Image.Image] = []
    real = session.predict

    def spy(img, *args, **kwargs):
        seen.append(img)
        return real(img, *args, **kwargs)

    monkeypatch.setattr(session, "predict", spy)
    out = remove_background(disc_rgba(), MODEL, FG, BG, ERODE)
    assert out.mode == "RGBA" and out.size == (64, 64)
    assert len(seen) == 1 and seen[0].mode == "RGB"
    assert seen[0].getpixel((0, 0)) == (127, 127, 127)
    assert seen[0].getpixel((32, 32)) == (230, 200, 180)


def test_several_masks_are_merged_as_a_union(monkeypatch):
    left = np.zeros((8, 8), np.uint8)
    left[:, :4] = 200
    right = np.zeros((8, 8), np.uint8)
    right[:, 4:] = 100

    class TwoMasks:
        def predict(self, img):
            return [Image.fromarray(left, "L"), Image.fromarray(right, "L")]

    monkeypatch.setattr(rembg_session, "get_session", lambda name: TwoMasks())
    merged = np.asarray(predict_mask(Image.new("RGB", (8, 8)), "u2net_cloth_seg"))
    assert (merged[:, :4] == 200).all() and (merged[:, 4:] == 100).all()


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"foreground_threshold": 256}, "foreground_threshold"),
        ({"foreground_threshold": "225"}, "foreground_threshold"),
        ({"background_threshold": -1}, "background_threshold"),
        ({"background_threshold": True}, "background_threshold"),
        ({"erode_size": -2}, "erode_size"),
        ({"erode_size": 1.5}, "erode_size"),
    ],
)
def test_bad_cut_out_arguments(kwargs, arg, home):
    args = {"foreground_threshold": FG, "background_threshold": BG, "erode_size": ERODE, **kwargs}
    with pytest.raises(ICLightError, match=rf"^{arg}: expected an int"):
        cut_out_subject(disc_image(), MODEL, **args)


def test_importing_rembg_keeps_torch_thread_count():
    """pymatting's numba/OpenMP start-up resets torch's threads; a CPU WebUI would then
    produce different bits for the same plain generation."""
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from lib_iclight import rembg_session\n"
        "rembg_session._import_rembg('rembg.bg')\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.stdout.strip().splitlines()[-1] == "1"

"""How long background removal costs: importing rembg, the first and the cached session,
and one remove_background at 512x512 with alpha matting.

Uses the stand-in ONNX model from tests/helpers (fixed 1x3x320x320 input, like
u2net_human_seg) written into a temporary U2NET_HOME, so nothing is downloaded and
the model's own inference is near zero: what is measured is rembg's and the
extension's overhead, plus pymatting's closed-form matting, which does not depend on
the model. Target: the second get_session at least 5x faster than the first. Usage::

    python bench/bench_rembg.py [--size 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib_iclight import rembg_session  # noqa: E402
from tests.helpers.images import disc_image  # noqa: E402
from tests.helpers.onnx_models import install_standin  # noqa: E402

MODEL = "u2net_human_seg"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="side of the square test image")
    parser.add_argument("--repeat", type=int, default=3, help="remove_background runs after the first")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="u2net-bench-") as home:
        os.environ["U2NET_HOME"] = home
        os.environ["MODEL_CHECKSUM_DISABLED"] = "1"
        path = install_standin(Path(home), MODEL, size=320)
        print(f"stand-in model: {path} ({path.stat().st_size} bytes, input 1x3x320x320)")

        start = time.perf_counter()
        import rembg  # noqa: F401 - timed on its own so the session times exclude it

        print(f"import rembg:                  {time.perf_counter() - start:8.4f} s")

        rembg_session.clear_session_cache()
        start = time.perf_counter()
        first_session = rembg_session.get_session(MODEL)
        first = time.perf_counter() - start

        seconds = []
        for _ in range(1000):
            start = time.perf_counter()
            session = rembg_session.get_session(MODEL)
            seconds.append(time.perf_counter() - start)
        assert session is first_session
        second = statistics.median(seconds)
        print(f"get_session, first call:       {first:8.4f} s")
        print(f"get_session, second call:      {second * 1e6:8.2f} us (median of 1000)")
        ratio = first / second
        print(f"first / second:                {ratio:8.0f}x  (target >= 5x: {'PASS' if ratio >= 5 else 'FAIL'})")

        img = disc_image(size=args.size, radius=args.size * 0.3)
        times = []
        for _ in range(1 + args.repeat):
            start = time.perf_counter()
            cut = rembg_session.cut_out_subject(img, MODEL, 225, 16, 16)
            times.append(time.perf_counter() - start)
        assert cut.matted and cut.image.size == (args.size, args.size)
        # cut_out_subject is remove_background plus the mask and the matted flag.
        label = f"remove_background {args.size}x{args.size}"
        print(f"{label}, first: {times[0]:8.4f} s  (alpha matting ran: {cut.matted})")
        if args.repeat:
            print(f"{label}, later: {statistics.median(times[1:]):8.4f} s  (median of {args.repeat})")
        return 0 if ratio >= 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())

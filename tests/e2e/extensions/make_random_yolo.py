"""Write a random-weight YOLOv8n detector that finds "something" in every image, for ADetailer.

    WEBUI_VENV_PYTHON tests/e2e/extensions/make_random_yolo.py WEBUI_DIR/models/adetailer/random_yolov8n.pt

ADetailer's own detectors download from huggingface, and its offline mediapipe face models
find no face in a random-weight WebUI's images, so live tests would never see ADetailer's
inpainting passes. This model is built from the ``yolov8n.yaml`` that ships in the
ultralytics wheel (no download). Its class head is set so that every anchor scores class 0
at about 0.9997, and its box head to zero (each box is then 15 strides wide around its
anchor), so a detection pass returns the same boxes for any image. ADetailer lists any
``*.pt`` file in ``models/adetailer`` as a model under its file name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from ultralytics import YOLO


def make(out: Path) -> None:
    model = YOLO("yolov8n.yaml")
    detect = model.model.model[-1]
    with torch.no_grad():
        for head in detect.cv2:  # box regression (DFL bins): all zero = uniform = 7.5 strides a side
            head[-1].weight.zero_()
            head[-1].bias.zero_()
        for head in detect.cv3:  # class scores: class 0 certain, the rest absent
            head[-1].weight.zero_()
            head[-1].bias.fill_(-8.0)
            head[-1].bias[0] = 8.0
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    make(Path(sys.argv[1]))

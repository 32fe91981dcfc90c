"""Every reduced-precision path keeps the detections of float32 on the real yolov3-tiny COCO weights and real
photos: at least 99% of the float32 boxes found again with the same class at IoU >= 0.9.

Paths: ``TorchBackend`` in bfloat16 (``--half`` on CPU; slow on CPUs without AVX512_BF16/AMX but correct
everywhere), and the float16 ONNX export (``yolo export --half``) run by onnxruntime. The real files come from
``../shared/real`` next to the repository (``$YOLO_SHARED`` overrides the ``shared`` folder); the tests skip,
saying what is missing, without them.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest
import torch
from torchvision.ops import box_iou

from tests.helpers import CFG, ROOT, photo_rgb
from yolo.detect.predictor import Detector

REAL = Path(os.environ.get("YOLO_SHARED", ROOT.parent / "shared")) / "real"
WEIGHTS = REAL / "yolov3-tiny.weights"
CONF = 0.05  # low, for enough boxes (45 in float32) to compare (yolov3-tiny finds few objects above 0.25 on these photos)
MARGIN = 0.03  # the reduced-precision run keeps scores down to CONF - MARGIN: rounding across CONF is no miss
SIZE = 416

pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"needs the real weights at {WEIGHTS} "
                                "(../shared/real/ next to the repository, or $YOLO_SHARED/real)")


@pytest.fixture(scope="module")
def photos() -> list:
    """The real photos of ``shared/real/images`` and matplotlib's Grace Hopper, each also mirrored (BGR uint8)."""
    images = [cv2.imread(str(p)) for p in sorted((REAL / "images").iterdir())]
    images = [img for img in images if img is not None] + [photo_rgb()[:, :, ::-1].copy()]
    assert len(images) >= 5, f"expected the 5 photos of {REAL / 'images'}"
    return images + [cv2.flip(img, 1) for img in images]


@pytest.fixture(scope="module")
def float32(photos) -> list:
    detector = Detector(str(WEIGHTS), cfg=CFG / "yolov3-tiny.cfg", img_size=SIZE, conf=CONF)
    return [d.tensor() for d in detector(photos, batch_size=1)]  # per image [K, 6]


def _matched(reference: list, other: list) -> tuple[int, int]:
    """(reference boxes with an ``other`` box of the same class at IoU >= 0.9, reference boxes)."""
    matched = total = 0
    for a, b in zip(reference, other):
        total += len(a)
        if len(a) and len(b):
            iou = box_iou(a[:, :4].double(), b[:, :4].double()) * (a[:, 5, None] == b[None, :, 5])  # [Ka, Kb]
            matched += int((iou.max(1).values >= 0.9).sum())
    return matched, total


def test_bf16_torch_backend_keeps_the_detections(photos, float32):
    detector = Detector(str(WEIGHTS), cfg=CFG / "yolov3-tiny.cfg", img_size=SIZE, conf=CONF - MARGIN, half=True)
    assert detector.backend.dtype == torch.bfloat16
    matched, total = _matched(float32, [d.tensor() for d in detector(photos, batch_size=4)])
    assert total >= 30 and matched >= 0.99 * total, (matched, total)


def test_fp16_onnx_export_keeps_the_detections(photos, float32, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from yolo.export import export_model

    out = tmp_path / "tiny16.onnx"
    export_model(str(WEIGHTS), "onnx", out, img_size=SIZE, half=True, cfg=CFG / "yolov3-tiny.cfg")
    detector = Detector(str(out), img_size=SIZE, conf=CONF - MARGIN)
    assert detector.backend.dtype == torch.float16
    matched, total = _matched(float32, [d.tensor() for d in detector(photos, batch_size=1)])
    assert total >= 30 and matched >= 0.99 * total, (matched, total)

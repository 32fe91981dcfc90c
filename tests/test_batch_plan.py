"""The CPU path's per-shape choices: ``TorchBackend`` (with ``cpu_batch="auto"``) measures whether a batch runs
faster whole or image by image and keeps the faster, and the Winograd tile size follows each input's shape, so a process that ran
batch 1 first gives at batch 8 what a fresh process gives (and the reverse)."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import CFG, ROOT, calibrated_model, photo_batch, photo_rgb
from yolo.detect.predictor import Detector
from yolo.model.winograd import WinogradConv2d
from yolo.runtime.backends import TorchBackend

CONF = 0.6


def test_batch_plan_tries_both_ways_then_keeps_one():
    model = calibrated_model(CFG / "yolov3-tiny.cfg", seed=2)
    auto, single = TorchBackend(model, cpu_batch="auto"), TorchBackend(calibrated_model(CFG / "yolov3-tiny.cfg", seed=2), cpu_batch=1)
    x = photo_batch(128, 160, n=3)  # [3, 3, 128, 160]
    ref = torch.cat([single(x[i:i + 1]) for i in range(3)])  # [3, N, 85]
    assert torch.equal(single(x), ref)  # cpu_batch=1: exactly three forwards of one image
    for _ in range(TorchBackend.TRIALS + 1):
        torch.testing.assert_close(auto(x), ref, atol=1e-3, rtol=1e-4)  # whole or split: the same rows
    assert [chunk for chunk, _ in auto._trials[(3, 128, 160)]] == [3, 1, 3, 1]
    assert auto.batch_plan == {(3, 128, 160): auto.batch_plan[(3, 128, 160)]}
    assert auto.batch_plan[(3, 128, 160)] in (1, 3)
    with pytest.raises(Exception, match="cpu_batch"):
        TorchBackend(model, cpu_batch=0)


def _folder(path, n: int = 8):
    path.mkdir()
    img = photo_rgb()[:, :, ::-1]
    for i in range(n):
        crop = img[i * 19:, i * 31:]
        cv2.imwrite(str(path / f"im{i}.png"), cv2.resize(crop, (200 + 16 * i, 150 + 8 * i)))
    return path


def _labels(run_dir) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((run_dir / "labels").glob("*.txt"))}


def _fresh_process(weights, folder, out, batch: int) -> dict[str, str]:
    cmd = [sys.executable, "-m", "yolo", "detect", "--weights", str(weights), "--cfg", str(CFG / "yolov3-tiny.cfg"),
           "--source", str(folder), "--img-size", "320", "--conf", str(CONF), "--batch-size", str(batch),
           "--save-txt", "--nosave", "--no-progress", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return _labels(out)


def test_batch_1_then_8_in_one_process_equals_fresh_processes(tmp_path):
    """yolov3-tiny at 320 has 256..1024-channel 3x3 convs at 20x20 and 10x10: 25 and 9 tiles per image, so batch 1
    runs them with F(2x2, 3x3) and batch 8 (200 and 72 tiles) with F(4x4, 3x3), whichever batch came first."""
    weights = tmp_path / "tiny.weights"
    calibrated_model(CFG / "yolov3-tiny.cfg", seed=4).save_darknet_weights(weights)
    folder = _folder(tmp_path / "images")
    detector = Detector(str(weights), cfg=CFG / "yolov3-tiny.cfg", img_size=320, conf=CONF)
    here = {}
    for batch in (1, 8):
        out = tmp_path / f"here{batch}"
        out.mkdir()
        detector.run(folder, out, save_txt=True, nosave=True, batch_size=batch, progress=False, increment=False)
        here[batch] = _labels(out)
    tiles = {m.tiles for m in detector.backend.model.modules() if isinstance(m, WinogradConv2d)}
    assert (4, 2) in tiles  # the 13x13 layers used both tile sizes in this process
    assert sum(len(t.splitlines()) for t in here[1].values()) >= 8
    for batch in (8, 1):
        assert here[batch] == _fresh_process(weights, folder, tmp_path / f"fresh{batch}", batch), batch
    assert here[1].keys() == here[8].keys()
    for name, text in here[1].items():  # batch 1 and batch 8: the same boxes up to float rounding
        a = np.array([line.split() for line in text.splitlines()], dtype=float).reshape(-1, 6)
        b = np.array([line.split() for line in here[8][name].splitlines()], dtype=float).reshape(-1, 6)
        assert a.shape == b.shape and np.allclose(a, b, atol=2e-5), name

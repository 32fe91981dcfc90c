"""Counts in printed lines agree with their number: "1 image", "2 boxes", never "1 images" or "file(s)"."""

from __future__ import annotations

import cv2
import numpy as np

from yolo.cli import main
from yolo.data.report import DatasetReport
from yolo.detect.run import format_summary
from yolo.utils.text import count, plural


def test_plural_and_count():
    assert [plural(w) for w in ("image", "box", "class", "entry", "day", "batch", "detection", "epoch")] == [
        "images", "boxes", "classes", "entries", "days", "batches", "detections", "epochs"]
    assert (count(1, "box"), count(0, "box"), count(2, "class"), count(1, "unreadable file"),
            count(3, "unreadable file")) == ("1 box", "0 boxes", "2 classes", "1 unreadable file", "3 unreadable files")


def test_detect_summary_of_one():
    s = {"images": 1, "detections": 1, "per_class": {"dog": 1}, "unreadable": 1, "unreadable_files": ["x.jpg"],
         "run_dir": "runs/detect/exp", "ms_per_image": {"pre": 1.0, "infer": 2.0, "post": 0.1, "write": 0.1}}
    text = format_summary(s)
    assert text.startswith("1 image, 1 detection (1 dog)\n") and "1 unreadable file skipped: x.jpg" in text
    assert "(s)" not in text
    s.update(images=2, detections=0, per_class={}, unreadable=2, unreadable_files=["x.jpg", "y.jpg"])
    text = format_summary(s)
    assert text.startswith("2 images, 0 detections (none)\n") and "2 unreadable files skipped" in text


def test_data_report_of_one():
    r = DatasetReport(split="val", source="data.yaml", names=["only"])
    r.images, r.instances = 1, [1]
    assert r.format().startswith("val (data.yaml): 1 image, 1 box in 1 of 1 class;")


def test_cli_detect_one_image(tmp_path, capsys):
    from tests.helpers import CFG, calibrated_model
    from yolo.model.checkpoint import save_checkpoint

    weights = tmp_path / "tiny.pt"
    save_checkpoint(calibrated_model(CFG / "yolov3-tiny.cfg"), weights)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 127, np.uint8))
    assert main(["detect", "--weights", str(weights), "--source", str(img), "--img-size", "64", "--conf", "0.999",
                 "--nosave", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 image, 0 detections (none)" in out and "1 images" not in out

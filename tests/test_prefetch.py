"""``yolo detect``'s reader thread (``yolo.detect.sources.Prefetcher``): same outputs as reading in the loop, same
errors, bounded read-ahead, and a clean stop."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from tests.helpers import CFG, calibrated_model, photo_rgb, yolo_warnings
from yolo.detect.predictor import Detector
from yolo.detect.run import run_detection
from yolo.detect.sources import Frame, Prefetcher, Source
from yolo.errors import InputError


@pytest.fixture(scope="module")
def detector():
    return Detector(calibrated_model(CFG / "yolov3-tiny.cfg"), img_size=128, conf=0.6)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Seven crops of the photo and an unreadable file in the middle."""
    d = tmp_path_factory.mktemp("imgs")
    img = photo_rgb()[:, :, ::-1]
    for i in range(7):
        crop = np.ascontiguousarray(img[i * 29:, i * 13:])
        cv2.imwrite(str(d / f"im{i}.jpg"), cv2.resize(crop, (90 + 20 * i, 140 - 10 * i)))
    (d / "im3b.jpg").write_bytes(b"not a jpeg")
    return d


def _outputs(run_dir):
    files = sorted((run_dir / "labels").glob("*.txt"))
    return [(f.name, f.read_text()) for f in files], (run_dir / "predictions.json").read_text()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_same_outputs_and_skips_with_and_without_prefetch(detector, folder, tmp_path, batch_size, capsys):
    runs = {}
    for prefetch in (False, True):
        with yolo_warnings() as said:
            summary = run_detection(detector, folder, tmp_path / f"p{prefetch}", save_txt=True, save_json=True,
                                    nosave=True, batch_size=batch_size, progress=False, prefetch=prefetch)
        runs[prefetch] = summary, _outputs(tmp_path / f"p{prefetch}")
        assert [s.endswith("im3b.jpg: cannot read this image, skipped") for s in said] == [True]
    (s0, out0), (s1, out1) = runs[False], runs[True]
    assert out0 == out1 and len(out0[0]) == 7 and out0[1].count('"file_name"') >= 5
    for key in ("images", "unreadable", "unreadable_files", "detections", "per_class"):
        assert s0[key] == s1[key]
    assert s1["images"] == 7 and s1["unreadable"] == 1 and s1["unreadable_files"][0].endswith("im3b.jpg")


class _FailingSource(Source):
    """Two readable frames, then the error a reader can raise mid-stream."""

    def __iter__(self):
        img = np.full((64, 80, 3), 127, np.uint8)
        yield Frame("a.png", img)
        yield Frame("b.png", img)
        raise InputError("cannot open video or stream", "clip.mp4")


@pytest.mark.parametrize("prefetch", [False, True])
def test_reader_error_surfaces_in_the_loop(detector, folder, tmp_path, prefetch):
    with pytest.raises(InputError) as info:
        run_detection(detector, _FailingSource(str(folder)), tmp_path / "r", save_txt=True, nosave=True,
                      batch_size=1, progress=False, prefetch=prefetch)
    assert str(info.value) == "clip.mp4: cannot open video or stream"
    assert sorted(p.name for p in (tmp_path / "r" / "labels").glob("*.txt")) == ["a.txt", "b.txt"]
    assert not any(t.name == "yolo-prefetch" and t.is_alive() for t in threading.enumerate())


def test_read_ahead_is_bounded_and_close_stops_the_reader():
    made, finished = [], threading.Event()

    def items():
        try:
            for i in range(1000):
                made.append(i)
                yield i
        finally:
            finished.set()

    reader = Prefetcher(items(), depth=2)
    it = iter(reader)
    assert next(it) == 0
    time.sleep(0.3)  # the reader runs ahead as far as it may
    assert len(made) <= 1 + 2 + 1  # consumed + queued + the one waiting for room
    assert [next(it) for _ in range(3)] == [1, 2, 3]  # in order
    reader.close()
    assert finished.wait(5) and not reader.alive and len(made) < 10


def test_keyboard_interrupt_in_the_loop_stops_the_reader(detector, folder, tmp_path, monkeypatch):
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(detector, "detect_letterboxed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_detection(detector, folder, tmp_path / "k", nosave=True, batch_size=1, progress=False)
    assert calls == [1]
    assert not any(t.name == "yolo-prefetch" and t.is_alive() for t in threading.enumerate())

"""``yolo detect`` on a real stream (issue 19): an MJPEG stream (multipart/x-mixed-replace of JPEG frames) that
the test serves itself from a thread on 127.0.0.1, read by OpenCV's FFmpeg backend as a user's IP camera is.

Bounded: each stream is a fixed number of small frames a few milliseconds apart, the server stops with the
test, and every command has a timeout.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from tests.helpers import ROOT
from tests.test_torchscript_trust import SMALL_CFG

FRAMES = 12
GAP_S = 0.01


def _jpegs(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [cv2.imencode(".jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))[1].tobytes() for _ in range(n)]


class _Mjpeg(http.server.BaseHTTPRequestHandler):
    """``/stream.mjpg``: ``FRAMES`` frames then a clean end; ``/drop.mjpg``: 5 frames and half of the sixth, then
    the connection is cut; anything else: 404."""

    frames = _jpegs(FRAMES)

    def do_GET(self):
        if self.path not in ("/stream.mjpg", "/drop.mjpg"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        drop = self.path == "/drop.mjpg"
        for i, jpg in enumerate(self.frames[:6] if drop else self.frames):
            head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
            if drop and i == 5:
                self.wfile.write(head + jpg[: len(jpg) // 2])
                self.wfile.flush()
                self.connection.shutdown(2)  # cut mid-frame, as a camera that goes away
                return
            self.wfile.write(head + jpg + b"\r\n")
            self.wfile.flush()
            time.sleep(GAP_S)
        self.wfile.write(b"--frame--\r\n")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mjpeg)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from yolo.model.checkpoint import save_checkpoint
    from yolo.model.darknet import Darknet

    root = tmp_path_factory.mktemp("stream")
    (root / "small.cfg").write_text(SMALL_CFG)
    save_checkpoint(Darknet.from_cfg(root / "small.cfg"), root / "small.pt")
    return root / "small.pt"


def _detect(weights, source, out, *extra):
    env = {k: v for k, v in os.environ.items() if k != "YOLO_VERBOSE"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "yolo", "detect", "--weights", str(weights), "--source", source,
                        "--out", str(out), "--img-size", "64", "--conf", "0.01", "--save-txt", "--save-json",
                        "--no-progress", *extra], capture_output=True, text=True, timeout=300,
                       env={**env, "PYTHONPATH": str(ROOT)}, cwd=out.parent)
    return r, time.perf_counter() - t0


def test_opencv_reads_the_test_stream(server):
    """The premise: this opencv-python's FFmpeg backend reads the served MJPEG, every frame."""
    cap = cv2.VideoCapture(f"{server}/stream.mjpg")
    assert cap.isOpened()
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == FRAMES


def test_detect_on_a_stream_writes_every_frame_and_ends_with_it(server, weights, tmp_path):
    r, seconds = _detect(weights, f"{server}/stream.mjpg", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    labels = sorted((tmp_path / "out" / "labels").iterdir())
    assert [p.name for p in labels] == sorted(f"stream_{i}.txt" for i in range(FRAMES))
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {row["frame"] for row in rows} <= set(range(FRAMES)) and rows
    assert (tmp_path / "out" / "stream.mp4").is_file()
    cap = cv2.VideoCapture(str(tmp_path / "out" / "stream.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    print(f"stream: {FRAMES} frames in {seconds:.1f} s (yolo detect, start to exit)")


def test_a_stream_that_cannot_be_opened_is_exit_2_with_one_line(server, weights, tmp_path):
    r, _ = _detect(weights, f"{server}/nothing.mjpg", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if not line.startswith("[")]  # FFmpeg's own log
    assert lines == [f"yolo detect: error: {server}/nothing.mjpg: cannot open video or stream"], r.stderr
    assert not (tmp_path / "out").exists()


def test_a_stream_that_drops_midway_ends_cleanly_keeping_what_was_written(server, weights, tmp_path):
    r, _ = _detect(weights, f"{server}/drop.mjpg", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]  # it ended with exit 0, unsaid
    assert len(said) == 1 and re.fullmatch(rf"warning: {re.escape(server)}/drop.mjpg: the stream ended after \d "
                                           r"frames \(closed, or no frame within OpenCV's read timeout, 30 s for "
                                           r"FFmpeg\)", said[0]), r.stderr
    labels = sorted(p.name for p in (tmp_path / "out" / "labels").iterdir())
    assert len(labels) >= 5 and set(labels) <= {f"stream_{i}.txt" for i in range(6)}, labels  # a URL is "stream"
    json.loads((tmp_path / "out" / "predictions.json").read_text())  # closed properly: valid JSON
    cap = cv2.VideoCapture(str(tmp_path / "out" / "stream.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(labels)

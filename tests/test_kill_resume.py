"""A training killed with SIGKILL mid-run resumes from its last checkpoint and finishes (issue #8)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT
from yolo.model.checkpoint import load_model
from yolo.utils.checkpoint import load_safe


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_then_resume_finishes_the_run(tmp_path):
    data = tmp_path / "tiny.yaml"
    data.write_text("synthetic: {kind: shapes, train: 16, val: 4, size: 96, seed: 1}\n"
                    "names: [circle, rectangle, triangle, star, cross]\n")
    env = {**os.environ, "YOLO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "yolo", "train", "--cfg", str(ROOT / "cfg" / "train" / "shapes.yaml"), "--set",
           f"data={data}", "epochs=40", "img_size=64", "batch_size=8", "workers=0", f"out={tmp_path / 'run'}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "run" / "weights" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and load_safe(last)["epoch"] >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: only what was already on disk survives
    proc.wait(timeout=30)
    killed_at = load_safe(last)["epoch"]  # loads: the atomic write never leaves a torn file
    assert killed_at < 39

    r = subprocess.run([sys.executable, "-m", "yolo", "train", "--resume", str(last), "--set", "epochs=" +
                        str(killed_at + 3)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_safe(last)["epoch"] == killed_at + 2  # 0-based: the last of killed_at + 3 epochs
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert [int(float(row["epoch"])) for row in rows] == list(range(killed_at + 3))
    assert load_model(tmp_path / "run" / "weights" / "best.pt").num_classes == 5
    assert not list((tmp_path / "run" / "weights").glob("*.tmp*")) and not list((tmp_path / "run").glob(".*tmp*"))


def _wait_for(condition, proc, seconds=240):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None and not condition():
        time.sleep(0.1)
    assert proc.poll() is None, "the command ended before the signal"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_ends_commands_as_ctrl_c_does(tmp_path):
    """SIGTERM (kill, timeout, docker stop, a scheduler) killed the process where it stood: no predictions.json
    (a hidden .partial), no last.pt of the epoch under way. Now it ends as Ctrl-C does, with exit 143."""
    import cv2
    import json

    from tests.helpers import photo_rgb

    env = {**os.environ, "YOLO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    src = tmp_path / "src"
    src.mkdir()
    img = cv2.resize(photo_rgb()[:, :, ::-1], (160, 120))
    for k in range(400):
        cv2.imwrite(str(src / f"{k:03d}.jpg"), img)
    from yolo.model.checkpoint import save_checkpoint
    from yolo.model.darknet import Darknet

    save_checkpoint(Darknet.from_cfg(ROOT / "cfg" / "yolov3-tiny.cfg"), tmp_path / "tiny.pt")
    out = tmp_path / "det"
    proc = subprocess.Popen([sys.executable, "-m", "yolo", "detect", "--weights", str(tmp_path / "tiny.pt"),
                             "--source", str(src), "--img-size", "128", "--save-txt", "--save-json", "--nosave",
                             "--batch-size", "2", "--no-progress", "--out", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / "labels").is_dir() and len(list((out / "labels").iterdir())) >= 4, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "yolo detect: terminated (SIGTERM)" in err, err
    labels = len(list((out / "labels").iterdir()))
    assert 4 <= labels < 400 and isinstance(json.loads((out / "predictions.json").read_text()), list)
    assert not list(out.glob(".*partial*"))

    data = tmp_path / "tiny.yaml"
    data.write_text("synthetic: {kind: shapes, train: 64, val: 4, size: 96, seed: 1}\n"
                    "names: [circle, rectangle, triangle, star, cross]\n")
    cmd = [sys.executable, "-m", "yolo", "train", "--cfg", str(ROOT / "cfg" / "train" / "shapes.yaml"), "--set",
           f"data={data}", "epochs=40", "img_size=64", "batch_size=4", "nbs=4", "workers=0", f"out={tmp_path / 'run'}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "run" / "weights" / "last.pt"
    _wait_for(lambda: last.is_file(), proc)
    time.sleep(0.5)  # into the next epoch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and f"yolo train: terminated (SIGTERM); saved {last}" in err, err[-2000:]
    assert load_safe(last)["interrupted"] is True

"""Issue #8, reliability and security, through the command line: every bad input is one line with exit code 2
naming the file (and line), found before anything is written; pickles that would run code are refused by every
command that loads checkpoints; Ctrl-C saves a resumable checkpoint; tracebacks only on request; detection
over a large folder and the label cache of a large dataset keep memory bounded."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT
from yolo.utils.checkpoint import load_safe

PY = sys.executable


def _env(tmp_path, **extra) -> dict:
    env = {**os.environ, "YOLO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), **extra}
    env.pop("YOLO_VERBOSE", None)
    return env


def _tiny_data(tmp_path) -> str:
    data = tmp_path / "tiny.yaml"
    data.write_text("synthetic: {kind: shapes, train: 16, val: 4, size: 64, seed: 1}\n"
                    "names: [circle, rectangle, triangle, star, cross]\n")
    return str(data)


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child")
def test_sigint_saves_a_resumable_checkpoint_and_exits_130(tmp_path):
    env = _env(tmp_path)
    run = tmp_path / "run"
    cmd = [PY, "-m", "yolo", "train", "--cfg", str(ROOT / "cfg" / "train" / "shapes.yaml"), "--set",
           f"data={_tiny_data(tmp_path)}", "epochs=40", "img_size=64", "batch_size=4", "workers=0", "device=cpu",
           f"out={run}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = run / "weights" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (last.is_file() and load_safe(last)["epoch"] >= 0):
        time.sleep(0.1)
    assert proc.poll() is None, "training ended before it could be interrupted"
    time.sleep(0.5)  # into the next epoch's batches (4 batches of 4 images per epoch)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("yolo train: interrupted")]
    assert lines == [f"yolo train: interrupted; saved {last}; continue with: yolo train --resume {last}"], err[-2000:]
    assert "Traceback" not in err
    ckpt = load_safe(last)  # loads: written atomically on the way out
    assert ckpt["interrupted"] is True and ckpt["epoch"] >= 0
    done = ckpt["epoch"] + 1  # finished epochs; the interrupted one is redone
    assert not list((run / "weights").glob(".*tmp*"))

    r = subprocess.run([PY, "-m", "yolo", "train", "--resume", str(last), "--set", f"epochs={done + 1}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    final = load_safe(last)
    assert final["epoch"] == done and final["interrupted"] is False
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(float(row["epoch"])) for row in rows] == list(range(done + 1))

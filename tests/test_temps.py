"""What a killed write leaves behind is cleaned up later, and only that: temporary files and folders whose
writer is gone (its flock is free) and that are old; a live writer's are kept. A killed dataset generation
takes its worker processes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolo.utils.checkpoint import atomic_write
from yolo.utils.temps import ABANDONED_AFTER_S, FOLDER_LOCK, hold, hold_folder, remove_abandoned

ROOT = Path(__file__).resolve().parents[1]
OLD = time.time() - 2 * ABANDONED_AFTER_S


def _aged(path: Path) -> Path:
    os.utime(path, (OLD, OLD))
    return path


def test_only_abandoned_temporaries_are_removed(tmp_path):
    for name in (".a.pt.1.tmp", ".a.pt.2.tmp", ".a.pt.3.tmp"):
        (tmp_path / name).write_bytes(b"half a checkpoint")
    _aged(tmp_path / ".a.pt.1.tmp")  # old, nobody's: removed
    held = _aged(tmp_path / ".a.pt.2.tmp")  # old, but its writer is alive
    fd = os.open(held, os.O_RDWR)
    assert hold(fd)
    # .a.pt.3.tmp: unlocked but fresh (a writer of an older version may still be at it): kept
    dead_dir, live_dir = tmp_path / ".shapes-1.x.tmp", tmp_path / ".shapes-2.y.tmp"
    for d in (dead_dir, live_dir):
        (d / "images").mkdir(parents=True)
    os.close(hold_folder(dead_dir))  # its writer took the lock and died
    lock = hold_folder(live_dir)
    for d in (dead_dir, live_dir):
        _aged(d)
    try:
        assert remove_abandoned(tmp_path, ".a.pt.*.tmp") == 1
        assert sorted(p.name for p in tmp_path.glob(".a.pt.*")) == [".a.pt.2.tmp", ".a.pt.3.tmp"]
        assert remove_abandoned(tmp_path, ".shapes-*.tmp") == 1
        assert not dead_dir.exists() and (live_dir / FOLDER_LOCK).is_file()
    finally:
        os.close(fd)
        os.close(lock)
    assert remove_abandoned(tmp_path, ".a.pt.*.tmp") == 1  # its writer ended: now it is abandoned too
    assert remove_abandoned(tmp_path / "missing", "*.tmp") == 0


def test_atomic_write_removes_what_killed_writes_of_the_same_file_left(tmp_path):
    """With ``sweep`` (checkpoints, .weights, label caches)."""
    mine, other = tmp_path / ".last.pt.k3j9.tmp", tmp_path / ".best.pt.q1.tmp"
    for p in (mine, other):
        p.write_bytes(b"cut short")
        _aged(p)
    with atomic_write(tmp_path / "last.pt") as f:  # a small file written often (a label per image): no scan
        f.write(b"whole")
    assert mine.exists()
    with atomic_write(tmp_path / "last.pt", sweep=True) as f:  # save_atomic, .weights, label caches
        f.write(b"whole")
        assert not mine.exists()
        live = list(tmp_path.glob(".last.pt.*.tmp"))
        assert len(live) == 1 and remove_abandoned(tmp_path, ".last.pt.*.tmp", now=time.time() + 1e6) == 0
    assert (tmp_path / "last.pt").read_bytes() == b"whole" and other.exists()  # another file's: not ours to judge


def test_a_name_near_the_length_limit_is_written_and_one_past_it_is_one_line(tmp_path, capsys):
    """The temporary sibling added 18-20 characters: a legal 240-character name failed (ENAMETOOLONG), and
    ``yolo detect`` on a video with a long name ended with "unexpected OSError" (exit 1) part-way."""
    import errno

    import cv2
    import numpy as np

    from yolo.utils.temps import new_temp_folder

    long = tmp_path / ("x" * 250 + ".txt")  # 254 bytes: legal
    aged = tmp_path / f".{'x' * 241}.abcdefgh.tmp"  # what a killed write of it left: found by the sweep
    aged.write_bytes(b"cut short")
    _aged(aged)
    with atomic_write(long, sweep=True) as f:
        f.write(b"whole")
    assert long.read_bytes() == b"whole" and not aged.exists() and len(list(tmp_path.iterdir())) == 1
    folder, fd = new_temp_folder(tmp_path / ("y" * 254))
    os.close(fd)
    assert folder.is_dir()
    with pytest.raises(OSError) as e:
        with atomic_write(tmp_path / ("z" * 256)) as f:  # past the limit: the rename says so, nothing is left
            f.write(b"whole")
    assert e.value.errno == errno.ENAMETOOLONG and len(list(tmp_path.iterdir())) == 2

    from yolo.cli import main

    video = tmp_path / ("v" * 248 + ".avi")  # frame 10's labels: 248 + len("_10.txt") = 255 bytes, legal
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(12):
        writer.write(np.full((48, 64, 3), 20 * k, np.uint8))
    writer.release()
    weights = tmp_path / "m.pt"
    from tests.helpers import CFG
    from yolo.model.checkpoint import save_checkpoint
    from yolo.model.darknet import Darknet

    save_checkpoint(Darknet.from_cfg(CFG / "yolov3-tiny.cfg"), weights)
    assert main(["detect", "--weights", str(weights), "--source", str(video), "--img-size", "64", "--save-txt",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert len(list((tmp_path / "run" / "labels").iterdir())) == 12
    annotated = cv2.VideoCapture(str(tmp_path / "run" / ("v" * 248 + ".mp4")))  # its temporary name was 261 bytes
    assert annotated.get(cv2.CAP_PROP_FRAME_COUNT) == 12
    annotated.release()
    video.rename(tmp_path / ("w" * 249 + ".avi"))  # frame 10's labels would be 256 bytes: one line, exit 1
    capsys.readouterr()
    assert main(["detect", "--weights", str(weights), "--source", str(tmp_path / ("w" * 249 + ".avi")), "--img-size",
                 "64", "--save-txt", "--nosave", "--out", str(tmp_path / "run2"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith("File name too long; nothing was half-written")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_a_killed_generation_takes_its_workers_along_and_its_folder_is_removed_later(tmp_path):
    root = tmp_path / "ds"
    code = ("import sys; from yolo.data.synthetic import write_dataset\n"
            "if __name__ == '__main__':\n"
            f"    write_dataset({str(root)!r}, 200000, 0, 64, 0, workers=2)\n")
    script = tmp_path / "gen.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not any(tmp_path.glob(".ds.*.tmp/images/train/*.png")):
            time.sleep(0.1)
        workers = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert workers, "the generation had not started its workers"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 10
    alive = workers
    while alive and time.time() < deadline:
        alive = [w for w in alive if Path(f"/proc/{w}").exists() and "Z" not in _state(w)]
        time.sleep(0.05)
    assert not alive, f"workers {alive} outlived the killed generation"
    (left,) = tmp_path.glob(".ds.*.tmp")
    _aged(left)
    assert syn_write(root) and not left.exists() and not (root / FOLDER_LOCK).exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def syn_write(root: Path) -> bool:
    from yolo.data.synthetic import write_dataset

    return write_dataset(root, 2, 1, 32, 0, workers=1).is_dir()


def test_export_removes_what_a_killed_export_of_the_same_file_left(tmp_path):
    from tests.helpers import CFG
    from yolo.export.exporter import export_model
    from yolo.model.cfg_parser import parse_cfg
    from yolo.model.darknet import Darknet

    out = tmp_path / "m.torchscript"
    left = tmp_path / ".m.torchscript.k3j9.tmp"
    left.write_bytes(b"half an export")
    _aged(left)
    model = Darknet(parse_cfg(CFG / "yolov3-tiny.cfg"))
    export_model(model, "torchscript", out=out, img_size=64)
    assert out.is_file() and not left.exists() and not list(tmp_path.glob(".*.tmp"))

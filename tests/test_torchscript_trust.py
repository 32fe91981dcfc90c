"""A ``.torchscript`` file is a program: one without our export metadata is refused unless ``--trust`` (issue 19).

The foreign file here is a real TorchScript program whose code prints a line when it is loaded (a module's
scripted ``__setstate__``), around a traced small Darknet, saved without our metadata. Refused, that line must
not appear; with ``--trust`` it appears (the code ran) and detection works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Tuple

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import ROOT
from yolo.cli import main

RAN = "torchscript code ran at load"
SMALL_CFG = """
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=2
num=3
"""


class Marker(torch.nn.Module):
    """Prints when TorchScript restores it: code in the file that runs at load."""

    def __init__(self):
        super().__init__()
        self.flag = 0

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[int, bool]:
        return (self.flag, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[int, bool]):
        print("torchscript code ran at load")
        self.flag = state[0]
        self.training = state[1]


class Foreign(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.marker = Marker()

    def forward(self, x):
        return self.marker(self.inner(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``(foreign.torchscript, an image folder, a data yaml)``."""
    from yolo.export.exporter import DecodedModel
    from yolo.model.darknet import Darknet

    root = tmp_path_factory.mktemp("ts")
    (root / "small.cfg").write_text(SMALL_CFG)
    torch.manual_seed(0)
    decoded = DecodedModel(Darknet.from_cfg(root / "small.cfg")).eval()
    with torch.no_grad():
        inner = torch.jit.trace(decoded, torch.zeros(1, 3, 64, 64))
    path = root / "foreign.torchscript"
    torch.jit.save(torch.jit.script(Foreign(inner)), str(path))  # no config.json: not ours
    (root / "img").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(root / "img" / f"{i}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        (root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.3 0.3\n")
    (root / "d.yaml").write_text(f"path: {root}\ntrain: img\nval: img\nnames: [a, b]\n")
    return path, root / "img", root / "d.yaml"


def _yolo(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "YOLO_VERBOSE"}
    return subprocess.run([sys.executable, "-m", "yolo", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**env, "PYTHONPATH": str(ROOT)})


def test_detect_refuses_a_foreign_torchscript_without_running_it(files, tmp_path):
    path, img, _ = files
    r = _yolo("detect", "--weights", path, "--source", img, "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: no yolo-toolkit export metadata" in lines[0] and "--trust" in lines[0], lines
    assert RAN not in r.stdout + r.stderr and not (tmp_path / "out").exists()


def test_detect_with_trust_runs_it(files, tmp_path):
    path, img, _ = files
    r = _yolo("detect", "--weights", path, "--source", img, "--out", tmp_path / "out", "--trust", "--save-txt",
              "--img-size", "64", "--conf", "0.01", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert RAN in r.stdout  # the file's own code ran: that is what --trust allows
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["0.txt", "1.txt"]


def test_val_refuses_it_and_takes_trust(files, tmp_path, monkeypatch, capsys):
    path, _, data = files
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path / "cache"))
    args = ["val", "--weights", str(path), "--data", str(data), "--img-size", "64", "--out", str(tmp_path / "v"),
            "--no-plots"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no yolo-toolkit export metadata" in err and "--trust" in err
    assert main(args + ["--trust"]) == 0
    assert "mAP" in capsys.readouterr().out


def test_metadata_is_read_before_anything_is_loaded(files, monkeypatch):
    """The refusal comes from the archive's listing: ``torch.jit.load`` is never reached."""
    from yolo.errors import InputError
    from yolo.runtime.exported import load_exported

    def boom(*args, **kwargs):
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", boom)
    with pytest.raises(InputError, match=r"pass trust=True to run it anyway\)$"):  # the Python form
        load_exported(files[0])
    with pytest.raises(InputError, match="torch.jit.load was called"):  # with trust, it is loaded
        load_exported(files[0], trust=True)


def test_ours_needs_no_trust(tmp_path):
    from yolo.export.exporter import export_model
    from yolo.model.checkpoint import save_checkpoint
    from yolo.model.darknet import Darknet
    from yolo.runtime.exported import load_exported

    (tmp_path / "small.cfg").write_text(SMALL_CFG)
    save_checkpoint(Darknet.from_cfg(tmp_path / "small.cfg"), tmp_path / "m.pt")
    export_model(tmp_path / "m.pt", format="torchscript", out=tmp_path / "m.torchscript", img_size=64)
    backend = load_exported(tmp_path / "m.torchscript")
    assert backend.metadata["format"] == "yolo-toolkit-export" and backend.names == ["class0", "class1"]

"""How ``yolo`` ends: after a read-only command the console script leaves without the interpreter's teardown
(``yolo.cli.entry``), with everything printed and written; otherwise it exits as usual. And
``yolo.utils.malloc.reuse_freed_memory``, which ``yolo detect`` and ``yolo val`` set, measured by the
kernel's own count of page faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PY = sys.executable


def _python(*args: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    """``python ARGS`` with this checkout importable and ``env`` added."""
    return subprocess.run([PY, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


ENTRY = ("import atexit, sys, threading\n"
         "atexit.register(lambda: print('TEARDOWN', flush=True))\n"
         "{before}\n"
         "sys.argv = ['yolo'] + {argv!r}\n"
         "from yolo.cli import entry\n"
         "entry()\n")


def test_read_only_command_skips_teardown_and_prints_everything():
    r = _python("-c", ENTRY.format(before="", argv=["cfgs", "--json"]))
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)  # the whole listing arrived (flushed before the exit) ...
    assert {"yolov3.cfg", "yolov3-tiny.cfg", "yolov4.cfg", "coco.names"} <= {c["name"] for c in listing}
    assert "TEARDOWN" not in r.stdout  # ... and the interpreter's teardown (atexit) never ran


@pytest.mark.parametrize("before, argv, code", [
    ("", ["cfgs", "--json", "--no-such-option"], 2),  # a failed command exits as usual
    ("", ["anchors", "--help"], 0),  # argparse's own exit
    ("threading.Thread(target=__import__('time').sleep, args=(1,)).start()", ["cfgs"], 0),  # a live thread
])
def test_teardown_runs_when_the_fast_exit_is_not_safe(before, argv, code):
    r = _python("-c", ENTRY.format(before=before, argv=argv))
    assert r.returncode == code, r.stderr
    assert "TEARDOWN" in r.stdout


@pytest.mark.parametrize("command", [["cfgs"], ["cfgs", "--json"], ["detect", "--help"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(command):
    """``yolo cfgs | head -1``: the pipe's reader is gone before the output comes; exit 141 (as SIGPIPE would),
    nothing on stderr (before: ``yolo cfgs: unexpected BrokenPipeError``, and Python's own "Exception
    ignored" at exit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all: every write gets EPIPE
    try:
        r = subprocess.run([PY, "-m", "yolo", *command], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
                           text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
    # --help: argparse prints inside parse_args, before any command; a help shorter than stdout's buffer is only
    # flushed at exit, where Python itself drops the error
    assert r.returncode == 141 or (command[-1] == "--help" and r.returncode == 0), r.stderr
    assert r.stderr == ""


def test_detect_through_the_console_entry_writes_every_file(tmp_path):
    """``python -m yolo detect`` (the fast exit) leaves the txt, JSON and picture of every image complete."""
    import cv2

    weights, _ = _tiny_weights_and_images(tmp_path)
    r = _python("-m", "yolo", "detect", "--weights", str(weights), "--source", str(tmp_path / "imgs"),
                "--img-size", "64", "--conf", "0.01", "--save-txt", "--save-json", "--no-progress",
                "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "5 images" in r.stdout and "results in" in r.stdout
    out = tmp_path / "out"
    predictions = json.loads((out / "predictions.json").read_text())
    txt_lines = sum(len(p.read_text().splitlines()) for p in (out / "labels").glob("*.txt"))
    assert len(predictions) == txt_lines > 0
    for i in range(5):
        assert cv2.imread(str(out / f"{i}.png")).shape == (48, 64, 3)


def _closed(fd: int):
    """``preexec_fn`` closing ``fd`` in the child: it starts with that stream closed (``>&-``, ``2>&-``)."""
    return lambda: os.close(fd)


def test_commands_started_with_stdout_or_stderr_closed_finish(tmp_path):
    """``yolo cfgs >&-`` and ``yolo detect ... 2>&-`` (Python's ``sys.stdout`` / ``sys.stderr`` are then None:
    the progress bar and the fast exit's flush tripped over it, exit 1 with every file written, or nothing)."""
    r = subprocess.run([PY, "-m", "yolo", "cfgs"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=_closed(1))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    weights, images = _tiny_weights_and_images(tmp_path)
    for fd in (1, 2):  # the progress bar is on (no --no-progress)
        out = tmp_path / f"out{fd}"
        r = subprocess.run([PY, "-m", "yolo", "detect", "--weights", str(weights), "--source", str(images),
                            "--img-size", "64", "--conf", "0.01", "--save-txt", "--nosave", "--out", str(out)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=_closed(fd))
        assert r.returncode == 0, (fd, r.stdout, r.stderr)
        assert len(list((out / "labels").glob("*.txt"))) == 5


def _tiny_weights_and_images(tmp_path):
    import cv2
    import numpy as np

    from tests.helpers import CFG, calibrated_model
    from yolo.model.checkpoint import save_checkpoint

    weights = tmp_path / "m.pt"
    save_checkpoint(calibrated_model(CFG / "yolov3-tiny.cfg", size=(64, 64)), weights)
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(tmp_path / "imgs" / f"{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return weights, tmp_path / "imgs"


FAULTS = ("import resource, sys, torch\n"
          "from yolo.utils.malloc import reuse_freed_memory\n"
          "applied = reuse_freed_memory() if sys.argv[1] == '1' else False\n"
          "from yolo.model.cfg_parser import parse_cfg\n"
          "from yolo.model.darknet import Darknet\n"
          "from yolo.runtime.backends import TorchBackend\n"
          "backend = TorchBackend(Darknet(parse_cfg('cfg/yolov3-tiny.cfg')), 'cpu')\n"
          "x = torch.rand(8, 3, 320, 320)  # its first conv's output: 52 MB, over glibc's largest mmap threshold\n"
          "def faults():\n"
          "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
          "for _ in range(3):\n"
          "    backend(x)  # warm-up: the heap grows to the forward's peak\n"
          "per_forward = []\n"
          "for _ in range(5):\n"
          "    f0 = faults()\n"
          "    backend(x)\n"
          "    per_forward.append(faults() - f0)\n"
          "# the median: the heap may still grow once after the warm-ups (seen: one forward of 2,400 faults, then 0)\n"
          "print(applied, sorted(per_forward)[2])\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_reuse_freed_memory_stops_the_page_faults_of_repeated_forwards():
    """yolov3-tiny at 320, batch 8, after three warm-up forwards (the median of the next five): by default every
    forward maps its larger activations afresh (tens of thousands of 4 kB pages faulted in each time, measured
    1.7x slower at 416 on 2 AVX2 cores); after ``reuse_freed_memory`` it reuses the pages of the one before.
    ``YOLO_MALLOC=default`` opts out."""
    runs = {}
    for name, arg, env in (("default", "0", {}), ("reused", "1", {}), ("opted out", "1", {"YOLO_MALLOC": "default"})):
        r = _python("-c", FAULTS, arg, OMP_NUM_THREADS="2", **env)
        assert r.returncode == 0, r.stderr[-2000:]
        applied, faults = r.stdout.split()[-2:]
        runs[name] = (applied, int(faults))
    assert [a for a, _ in runs.values()] == ["False", "True", "False"]
    assert runs["default"][1] > 2000 and runs["opted out"][1] > 2000, runs  # 52 MB alone: 12,800 pages
    assert runs["reused"][1] < 0.05 * min(runs["default"][1], runs["opted out"][1]), runs


TRAIN_FAULTS = ("import resource, sys, torch\n"
                "from torch import nn\n"
                "from yolo.utils.malloc import reuse_freed_memory\n"
                "applied = reuse_freed_memory() if sys.argv[1] == '1' else False\n"
                "torch.manual_seed(0)\n"
                "# darknet's first layer: each activation and its gradient 34 MB, over glibc's largest mmap threshold\n"
                "model = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.LeakyReLU(0.1)).train()\n"
                "opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)\n"
                "x = torch.rand(4, 3, 256, 256)\n"
                "def step():\n"
                "    loss = model(x).pow(2).mean()\n"
                "    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()\n"
                "for _ in range(4):\n"
                "    step()  # warm-up: the heap grows to a step's peak\n"
                "per_step = []\n"
                "for _ in range(5):\n"
                "    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
                "    step()\n"
                "    per_step.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n"
                "print(applied, sorted(per_step)[2])  # the median: the heap may still grow once (seen: 8,192)\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_training_steps_reuse_memory_and_yolo_train_sets_it(monkeypatch):
    """A training step (forward, backward, SGD) of a darknet-like first layer at 256, batch 4: by default each step
    faults its activations and gradients in afresh; with the reuse (which ``yolo train`` sets: measured 1.25x
    images/s at 256 and 1.4x at 416 for yolov3-tiny on 2 AVX2 cores) it does not."""
    runs = {}
    for name, arg in (("default", "0"), ("reused", "1")):
        r = _python("-c", TRAIN_FAULTS, arg, OMP_NUM_THREADS="2")
        assert r.returncode == 0, r.stderr[-2000:]
        applied, faults = r.stdout.split()[-2:]
        runs[name] = (applied, int(faults))
    assert runs["default"][0] == "False" and runs["reused"][0] == "True"
    assert runs["default"][1] > 2000, runs
    assert runs["reused"][1] < 0.15 * runs["default"][1], runs

    from yolo.cli import main
    from yolo.train import run as train_run
    from yolo.utils import malloc

    calls = []
    monkeypatch.setattr(malloc, "reuse_freed_memory", lambda: calls.append("reuse") or True)
    monkeypatch.setattr(train_run, "train", lambda cfg, resume=None, progress=True: calls.append("train"))
    assert main(["train", "--set", "epochs=1"]) == 0
    assert calls == ["reuse", "train"]  # set before the model and the loader workers exist

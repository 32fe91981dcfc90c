"""A DDP process that dies or hangs mid-training does not leave the other hanging (issue #8): the survivor fails
within about ``ddp_timeout`` seconds with one clear line, and the run folder keeps its last good checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT
from yolo.model.checkpoint import load_model
from yolo.utils.checkpoint import load_safe

TIMEOUT_S = 4


@pytest.mark.skipif(sys.platform == "win32", reason="os._exit mid-collective, gloo")
@pytest.mark.parametrize("mode", ["die", "hang"])
def test_dead_or_hung_rank_does_not_hang_the_survivor(tmp_path, mode):
    data = tmp_path / "tiny.yaml"
    data.write_text("synthetic: {kind: shapes, train: 16, val: 4, size: 64, seed: 1}\n"
                    "names: [circle, rectangle, triangle, star, cross]\n")
    env = {**os.environ, "YOLO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("YOLO_DDP_TIMEOUT", None)
    timeout = [f"ddp_timeout={TIMEOUT_S}"]
    if mode == "hang":  # the environment variable wins over the run config
        env["YOLO_DDP_TIMEOUT"], timeout = str(TIMEOUT_S), ["ddp_timeout=600"]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_die_worker.py"), mode, "--", "train", "--cfg",
           str(ROOT / "cfg" / "train" / "shapes.yaml"), "--set", f"data={data}", "epochs=5", "img_size=64",
           "batch_size=8", "workers=0", "device=cpu", *timeout, f"out={run}"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    seconds = time.monotonic() - t0
    assert r.returncode != 0, r.stderr[-3000:]
    assert seconds < 120, seconds  # start-up, one epoch and the timeout; not the 600 s default
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("train: ")]  # rank 0's only
    assert len(said) == 1 and "; DDP: 2 processes x 4 images, BN statistics per process)" in said[0], \
        r.stderr[-3000:]
    if mode == "hang":  # the survivor itself gave up after ddp_timeout and said why, in one line
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("yolo train: error: process 0 of 2")]
        assert lines, r.stderr[-3000:]
        assert f"ddp_timeout={TIMEOUT_S} s" in lines[0] and str(run / "weights") in lines[0]
    else:  # torchrun may end the survivor first; either way someone says which process failed
        assert "yolo train: error: process 0 of 2" in r.stderr or "exitcode" in r.stderr, r.stderr[-3000:]
    ended = [ln for ln in r.stderr.splitlines() if ln.startswith("yolo train: terminated (SIGTERM)")]
    if ended and "; saved " not in ended[0]:  # ended by torchrun before it could save: the line says why
        assert "under torchrun this is how the other processes end when one fails" in ended[0], ended[0]
    print(f"{mode}: torchrun returned {r.returncode} after {seconds:.1f} s")
    ckpt = load_safe(run / "weights" / "last.pt")  # the last good checkpoint: epoch 0, intact
    assert ckpt["epoch"] == 0  # epoch 1 was under way: torchrun ends the survivor with SIGTERM, which saves
    if ckpt["interrupted"]:  # it as Ctrl-C does (as of its last optimizer step), or the survivor gave up first
        assert ckpt["interrupted_epoch"]["epoch"] == 1
    assert load_model(run / "weights" / "last.pt").num_classes == 5
    assert not list((run / "weights").glob(".*tmp*"))
    assert not (run.parent / "run2").exists()  # rank 1 made no folder of its own


def test_timeout_comes_from_the_run_config_or_the_environment(monkeypatch):
    import yolo.train.run as train_module
    from yolo.errors import InputError
    from yolo.train.config import RunConfig

    seen = []

    class Stop(Exception):
        pass

    def fake_init(env, device, timeout_s=None):
        seen.append(timeout_s)
        raise Stop

    monkeypatch.setattr(train_module, "init_distributed", fake_init)
    monkeypatch.delenv("YOLO_DDP_TIMEOUT", raising=False)
    for env_value, expected in ((None, 7.0), ("2.5", 2.5)):
        if env_value:
            monkeypatch.setenv("YOLO_DDP_TIMEOUT", env_value)
        with pytest.raises(Stop):
            train_module.train(RunConfig.from_dict({"ddp_timeout": 7, "device": "cpu"}))
        assert seen[-1] == expected
    for bad in ("0", "-3", "abc", "inf"):
        monkeypatch.setenv("YOLO_DDP_TIMEOUT", bad)
        with pytest.raises(InputError, match="YOLO_DDP_TIMEOUT must be a positive number"):
            train_module.train(RunConfig.from_dict({"device": "cpu"}))
    with pytest.raises(InputError, match="ddp_timeout must be > 0"):
        RunConfig.from_dict({"ddp_timeout": 0})

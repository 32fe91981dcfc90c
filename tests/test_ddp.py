"""DDP on CPU (gloo) under torchrun: 2 processes give the single-process weights, and only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from tests.ddp_toy_worker import run
from tests.helpers import ROOT
from yolo.utils.checkpoint import load_safe
from yolo.utils.dist import DistEnv


def _torchrun(out, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "tests" / "ddp_toy_worker.py"), str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _threads_at_exit(stdout: str) -> dict[int, str]:
    return {int(line.split()[1]): line.split(": ", 1)[1] for line in stdout.splitlines()
            if " threads at exit: " in line}


def test_two_process_ddp_matches_one_process(tmp_path):
    out = tmp_path / "ddp"
    r = _torchrun(out)
    assert r.returncode == 0, r.stderr[-3000:]  # no retry: an abort at exit is a failure
    assert _threads_at_exit(r.stdout) == {0: "['python']", 1: "['python']"}, r.stdout  # gloo's threads are gone
    assert not (out / "rank1").exists()  # rank 1 wrote nothing
    ddp = load_safe(out / "rank0" / "weights" / "last.pt")
    single = run(tmp_path / "single", DistEnv())
    assert ddp["epoch"] == 2 and ddp["ema"]["updates"] == single.ema.updates
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp["train_model"][k], v, atol=1e-5, rtol=0, msg=k)
    for k, v in single.ema.ema.state_dict().items():
        torch.testing.assert_close(ddp["model"][k], v, atol=1e-5, rtol=0, msg=k)
    rows = (out / "rank0" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 4
    single_rows = (tmp_path / "single" / "results.csv").read_text().strip().splitlines()
    assert rows[0] == single_rows[0] and rows[0].startswith("epoch,train/mse,train/mae,")  # the parts' order


def test_no_gloo_thread_outlives_a_failed_run(tmp_path):
    """A run that fails after training keeps its Trainer alive in the traceback while the process group is
    torn down; the trainer's DDP wrapper must not keep gloo's threads running into interpreter exit."""
    r = _torchrun(tmp_path / "ddp", "fail")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _threads_at_exit(r.stdout) == {0: "['python']", 1: "['python']"}, r.stdout

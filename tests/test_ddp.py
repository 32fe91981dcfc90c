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


def test_two_process_ddp_matches_one_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for attempt in range(2):
        out = tmp_path / f"ddp{attempt}"
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            str(ROOT / "tests" / "ddp_toy_worker.py"), str(out)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        # Seen about once in 5 runs on a loaded 2-core machine: gloo aborts at interpreter exit after a run
        # that finished (every epoch written). One retry for that case only; any other failure fails.
        if r.returncode == 0 or "terminate called without an active exception" not in r.stderr:
            break
    assert r.returncode == 0, r.stderr[-3000:]
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

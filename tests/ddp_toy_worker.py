"""A toy training run for the DDP test: ``torchrun --nproc_per_node N tests/ddp_toy_worker.py OUT [fail]``.

Each rank trains on its share of every global batch; rank r writes nothing unless r == 0 (checked by the test
through per-rank run folders). Also imported by the test for the single-process reference run. After leaving
the process group each rank prints the threads it still has (``threads at exit: ...``): gloo's must be gone.
``fail``: raise once training is done, with the trainer still on the stack (as a failed or interrupted run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from yolo.train.config import RunConfig
from yolo.train.engine import Trainer, TrainTask
from yolo.utils.dist import DistEnv, cleanup, env_from_torchrun, init_distributed, native_threads

TOTAL_BATCH = 8


class ShardedToyLoader:
    """Global batches of ``TOTAL_BATCH`` rows in an order fixed by (seed, epoch); rank r gets rows r::world."""

    def __init__(self, rank: int, world: int, n: int = 48):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=g)
        self.y = self.x @ torch.randn(6, 1, generator=g) + 0.5
        self.rank, self.world, self.epoch = rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x) // TOTAL_BATCH

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(100 + self.epoch))
        for i in range(0, len(order), TOTAL_BATCH):
            idx = order[i:i + TOTAL_BATCH][self.rank::self.world]
            yield self.x[idx], self.y[idx]


def mse(model, batch, device):
    x, y = batch
    loss = nn.functional.mse_loss(model(x.to(device)), y.to(device))
    mae = (model(x.to(device)) - y.to(device)).abs().mean()  # a second part, logged only: "mae" sorts first
    return loss, {"mse": loss.detach(), "mae": mae.detach()}


def run(out: Path, env: DistEnv) -> Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    cfg = RunConfig.from_dict(dict(epochs=3, batch_size=TOTAL_BATCH, nbs=16, lr0=0.05, warmup_epochs=1,
                                   optimizer="sgd", ema={"tau": 2}))
    trainer = Trainer(cfg, TrainTask(model, ShardedToyLoader(env.rank, env.world_size), mse), out, "cpu", env,
                      progress=False, plots=False)
    trainer.fit()
    return trainer


def run_then_fail(out: Path, env: DistEnv) -> None:
    trainer = run(out, env)  # noqa: F841 (kept on the stack, and so in the traceback)
    raise RuntimeError("failed after training")


if __name__ == "__main__":
    env = env_from_torchrun()
    init_distributed(env, torch.device("cpu"), timeout_s=120)
    fail = sys.argv[2:] == ["fail"]
    try:
        try:
            (run_then_fail if fail else run)(Path(sys.argv[1]) / f"rank{env.rank}", env)
        finally:  # as in yolo.train.run.train: on a failure, while the exception (and its traceback) is alive
            cleanup()
            # one write with its newline: print() writes the text and the newline apart, and with
            # PYTHONUNBUFFERED the two ranks' lines could interleave on the shared pipe
            sys.stdout.write(f"rank {env.rank} threads at exit: {native_threads()}\n")
            sys.stdout.flush()
    except RuntimeError:
        if not fail:
            raise

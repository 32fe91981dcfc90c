"""``torchrun --nproc_per_node 2 tests/ddp_die_worker.py MODE -- <yolo train arguments>``: the real ``yolo train``
where rank 1 stops in the middle of its second epoch: MODE ``die`` (``os._exit(1)``, as a crash or the OOM
killer would) or ``hang`` (sleeps, as a stuck process would). Used by tests/test_ddp_failure.py."""

from __future__ import annotations

import os
import sys
import time

from yolo.cli import main
from yolo.train.engine import Trainer


def _stop_rank_1(mode: str):
    step = Trainer.train_step

    def train_step(self, i, batch):
        if self.env.rank == 1 and self.epoch == 1 and i == 1:
            if mode == "die":
                os._exit(1)
            time.sleep(3600)
        return step(self, i, batch)

    Trainer.train_step = train_step


if __name__ == "__main__":
    _stop_rank_1(sys.argv[1])
    sys.exit(main(sys.argv[3:]))

"""Run logs: results.csv (rewritten atomically every epoch) and TensorBoard when it is installed."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from yolo.utils.checkpoint import atomic_write


class ResultsLog:
    """One row per epoch in ``results.csv``; the whole file is rewritten atomically, so a crash never leaves a
    torn row. Rows already in the file (a resumed run) are kept."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = list(csv.DictReader(f))

    def drop_from(self, epoch: int) -> list[int]:
        """Forget the rows of ``epoch`` and later (a run resumed from an earlier checkpoint trains them again:
        they were another course of the run); returns their epochs. The file changes at the next ``append``."""
        later = [int(float(r["epoch"])) for r in self.rows if int(float(r.get("epoch", -1))) >= epoch]
        self.rows = [r for r in self.rows if int(float(r.get("epoch", -1))) < epoch]
        return later

    def append(self, row: dict) -> None:
        self.rows = [r for r in self.rows if str(r.get("epoch")) != str(row.get("epoch"))] + [row]
        self.rows.sort(key=lambda r: float(r.get("epoch", 0)))  # by epoch, whatever order they were logged in
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: _fmt(r.get(k, "")) for k in keys})
        with atomic_write(self.path) as f:
            f.write(buf.getvalue().encode())


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class TensorBoard:
    """Scalars to TensorBoard under ``folder``; does nothing when tensorboard is not installed."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional extra: pip install ".[tb]"
            self.writer = None
        else:
            self.writer = SummaryWriter(str(folder))

    def scalars(self, values: dict, step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

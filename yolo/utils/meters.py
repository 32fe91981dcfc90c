"""Windowed meters (YOLOX-style): a window for the recent median/average, totals for the global average."""

from __future__ import annotations

from collections import defaultdict, deque


class AverageMeter:
    """Keeps the last ``window`` values and the running total of all values."""

    def __init__(self, window: int = 50):
        self.values: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.values.append(float(value))
        self.total += float(value) * n
        self.count += n

    @property
    def latest(self) -> float:
        return self.values[-1] if self.values else 0.0

    @property
    def avg(self) -> float:
        """Average over the window."""
        return sum(self.values) / len(self.values) if self.values else 0.0

    @property
    def median(self) -> float:
        if not self.values:
            return 0.0
        s = sorted(self.values)
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else 0.0

    def reset(self) -> None:
        self.values.clear()
        self.total, self.count = 0.0, 0


class MeterBuffer(defaultdict):
    """``buffer["loss"].update(v)`` creates the meter on first use; ``update(**values)`` feeds several."""

    def __init__(self, window: int = 50):
        super().__init__(lambda: AverageMeter(window))

    def update(self, values: dict | None = None, **kwargs) -> None:  # type: ignore[override]
        for key, value in {**(values or {}), **kwargs}.items():
            self[key].update(float(value))

    def totals(self) -> dict[str, list[float]]:
        """``{name: [total, count]}``: what the global averages need (a checkpoint of an epoch under way)."""
        return {k: [m.total, m.count] for k, m in self.items()}

    def load_totals(self, totals: dict[str, list[float]]) -> None:
        """Continue from :meth:`totals` (the recent windows start empty)."""
        for key, (total, count) in totals.items():
            self[key].total, self[key].count = float(total), int(count)

    def averages(self) -> dict[str, float]:
        """Global average of every meter (e.g. the epoch's mean losses)."""
        return {k: m.global_avg for k, m in self.items()}

    def reset(self) -> None:
        for meter in self.values():
            meter.reset()

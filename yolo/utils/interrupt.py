"""Ctrl-C held back while something must be written whole (a training epoch's checkpoints).

``torch.save`` interrupted by ``KeyboardInterrupt`` half-way through its zip archive raises a ``RuntimeError``
from the archive writer instead (the atomic write leaves the old file in place, but the run then ends as an
unexpected failure, not as an interruption that saves ``last.pt``). :func:`deferred_interrupt` lets the block
finish and delivers the interrupt right after it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold SIGINT until the block ends, then deliver it to the handler that was in place (the default raises
    ``KeyboardInterrupt`` there; an ignored SIGINT stays ignored). Only the main thread receives signals:
    elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)

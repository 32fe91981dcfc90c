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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; kill, timeout, docker stop, a batch scheduler


def settle() -> None:
    """A command's outputs are all written and it is about to say so: a Ctrl-C or SIGTERM from here on no longer
    changes its outcome (a success line, then exit 130, then "output exists" on the retry). Ignored until the
    command returns, when the CLI puts the handlers back (:func:`handlers_kept`). Main thread only."""
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def handlers_kept() -> Iterator[None]:
    """The SIGINT and SIGTERM handlers of the block's start put back at its end (whatever :func:`settle` did)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:  # None: set outside Python, which cannot be put back from here
                signal.signal(s, handler)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first to the handler that was in place
    (SIGINT's default raises ``KeyboardInterrupt`` there, the CLI's SIGTERM handler too; an ignored signal stays
    ignored). Only the main thread receives signals: elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        signal.raise_signal(received[0])


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[dict]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does, so a command ends the same way
    (train saves last.pt, detect closes its JSON, export removes its temporary file) instead of dying where it
    stands; the yielded dict's ``"terminated"`` says whether it was SIGTERM. Main thread only."""
    state = {"terminated": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def on_term(signum, frame):
        state["terminated"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)

"""Session set-up: every test process and the subprocesses tests start share one cache of built native kernels
(the user's), even where a test points ``YOLO_CACHE_DIR`` at a temporary folder for its data: otherwise
each such subprocess would compile the Winograd kernels again (seconds each)."""

from __future__ import annotations

import os

import pytest

from yolo.utils.native import native_dir

os.environ.setdefault("YOLO_NATIVE_DIR", str(native_dir()))


@pytest.fixture
def fresh_native(tmp_path, monkeypatch):
    """A private kernel cache and no native library loaded or checked yet (the Winograd transforms and the
    matrix product); the process's state is restored afterwards."""
    from yolo.model import winograd

    monkeypatch.setenv("YOLO_NATIVE_DIR", str(tmp_path / "native"))
    winograd.forget_native()
    yield tmp_path / "native"
    winograd.forget_native()

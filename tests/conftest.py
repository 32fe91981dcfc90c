"""Session set-up: every test process and the subprocesses tests start share one cache of built native kernels
(the user's), even where a test points ``YOLO_CACHE_DIR`` at a temporary folder for its data: otherwise
each such subprocess would compile the Winograd kernels again (seconds each)."""

from __future__ import annotations

import os

from yolo.utils.native import native_dir

os.environ.setdefault("YOLO_NATIVE_DIR", str(native_dir()))

"""Keep freed memory for reuse (glibc's malloc), so that a loop of forwards stops page-faulting.

PyTorch's CPU tensors come from ``malloc``. glibc serves a block of more than its mmap threshold (128 kB,
rising to at most 32 MB as such blocks are freed) with a fresh ``mmap`` and returns it to the kernel when it
is freed, so every batch's larger activations (yolov3-tiny at 416, batch 8: 89 MB after its first conv) are
new pages: the kernel zeroes them and faults them in, again each batch. :func:`reuse_freed_memory` makes
malloc take every block from its heap and keep what is freed there (``M_MMAP_MAX=0``,
``M_TRIM_THRESHOLD=-1``), as jemalloc or tcmalloc would: the second batch reuses the first one's pages.
The cost: the process keeps its peak heap until it exits (it reaches that peak anyway, every batch).

``yolo detect``, ``yolo val`` and ``yolo train`` call it; a program of your own can (it changes the whole process).
``YOLO_MALLOC=default`` leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h>
_applied = False


def reuse_freed_memory() -> bool:
    """Set glibc's malloc to serve every block from its heap and never give freed memory back to the kernel.
    Returns True when set (now or by an earlier call); False on another C library or platform, or when
    ``YOLO_MALLOC=default``."""
    global _applied
    if _applied:
        return True
    if os.environ.get("YOLO_MALLOC", "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
    return _applied

"""Atomic writes and safe checkpoint loading (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

import torch

from yolo.errors import InputError


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``path``; on success flush, fsync and rename it over ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomic(obj, path: str | Path) -> None:
    """``torch.save`` through :func:`atomic_write`: a crash never leaves a half-written checkpoint."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def is_torch_file(path: str | Path) -> bool:
    """True for files ``torch.save`` writes (a zip archive, or a legacy pickle starting with 0x80)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    return magic == b"PK\x03\x04" or magic[:1] == b"\x80"


def load_safe(path: str | Path):
    """``torch.load(path, weights_only=True)`` on CPU; refuses pickled code with a one-line error."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError("checkpoint not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError / RuntimeError with long multi-line texts
        text = str(e)
        if "weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text:
            raise InputError("refused: the checkpoint holds pickled Python objects (for example a whole model), "
                             "which could run code; only tensors and plain containers are loaded", path) from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise InputError(f"not a readable PyTorch checkpoint ({first})", path) from None

"""Run folders: ``runs/detect/exp``, ``exp2``, ``exp3``, ... never shared, never overwritten; the cache folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from yolo.errors import InputError


def cache_dir() -> Path:
    """The toolkit's cache (generated datasets, built kernels, label caches of read-only datasets):
    ``$YOLO_CACHE_DIR`` (``~`` expanded), else ``$XDG_CACHE_HOME/yolo-toolkit``, else ``~/.cache/yolo-toolkit``."""
    if os.environ.get("YOLO_CACHE_DIR"):
        return Path(os.environ["YOLO_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "yolo-toolkit"


def increment_path(base: str | Path, mkdir: bool = True) -> Path:
    """The first of ``base``, ``base2``, ``base3``, ... that does not exist yet (``base-2``, ``base-3``, ... when
    ``base``'s name ends in a digit: ``run1`` then ``run1-2``, never ``run12``, which reads as run 12).

    With ``mkdir`` the folder is created with ``mkdir(exist_ok=False)`` in a loop, so two runs started at
    the same moment never get the same folder (the loser of the race moves on to the next number).
    Parents are created as needed. Without ``mkdir`` the free name is only returned.
    """
    base = Path(base)
    if base.name in ("", "..") or base.name.strip(".") == "":
        raise InputError("a run folder needs a name to make a new folder of (e.g. runs/detect/exp), not an existing "
                         "folder's '.' or '..'", str(base))
    sep = "-" if base.name[-1:].isdigit() else ""
    for n in range(1, 1_000_000):
        path = base if n == 1 else base.with_name(f"{base.name}{sep}{n}")
        if not mkdir:
            if not path.exists():
                return path
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise InputError("no free run folder name", str(base))


def make_run_dir(base: str | Path) -> Path:
    """``increment_path(base)`` and proof that the new folder is writable, as a one-line ``InputError``; a
    ``base`` that is an existing file (a mistyped ``--out``) is an error, not a reason to make ``base2``."""
    if Path(base).exists() and not Path(base).is_dir():
        raise InputError("is a file, not a folder: name a folder for the run's outputs", str(base))
    for parent in Path(base).parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"cannot make the run folder: {parent} is a file, not a folder", str(base))
    made = missing_folders(base)  # the parents increment_path makes for it
    try:
        path = increment_path(base)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise InputError(f"output folder is not writable ({e.strerror or e})", str(base)) from None
    if made:
        _MADE_PARENTS[path] = made
    return path


_MADE_PARENTS: dict[Path, list[Path]] = {}  # run folder -> the parent folders make_run_dir made for it


def missing_folders(path: str | Path) -> list[Path]:
    """``path``'s parent folders that do not exist yet, deepest first: what ``mkdir(parents=True)`` of its
    parent would make (and :func:`remove_empty` takes away again)."""
    return [p for p in Path(path).parents if not p.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; one that is not stays, with its parents."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def discard_run_dir(path: str | Path) -> None:
    """Remove a run folder that holds no result (a run that never started, or wrote nothing), with the parent
    folders :func:`make_run_dir` made for it (``runs/``, ``runs/detect/``) while they are empty: a refused run
    leaves nothing behind."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    remove_empty(_MADE_PARENTS.pop(path, []))  # only when empty: another run may have started there since


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder/.lock`` (an exclusive ``flock``, released by the kernel when the process ends, even by
    SIGKILL) while a run writes into the folder; a second process (two ``--resume`` of one run, or a resume
    of a run still training) gets an ``InputError`` naming the holder's PID instead of mixing two runs'
    checkpoints and rows. Without ``fcntl`` (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(folder) / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise InputError(f"this run is in use by another process (PID {holder}); wait for it to end or stop "
                             "it first", str(folder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def unique_name(used: set[str], name: str) -> str:
    """``name``, or ``stem_2.ext``, ``stem_3.ext``, ... when already in ``used`` (which gets the result added)."""
    stem, ext = os.path.splitext(name)
    out, n = name, 1
    while out in used:
        n += 1
        out = f"{stem}_{n}{ext}"
    used.add(out)
    return out

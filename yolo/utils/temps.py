"""Temporary files and folders that a write cut short leaves behind, and their cleaning.

Every write of the toolkit goes to a temporary sibling (``.last.pt.k3j9.tmp``, ``.shapes-ab12.x8.tmp/``) that is
renamed into place at the end; an exception removes it, but a SIGKILL, an out-of-memory kill or a power cut
does not, and nothing used to remove it later (a killed dataset generation left hundreds of MB). The writer
now holds an exclusive ``flock`` on the temporary file (a folder: on its ``.writer.lock``) for as long as it
writes; the kernel releases it when the process ends, however it ends. :func:`remove_abandoned` removes the
siblings whose lock is free and that have not changed for :data:`ABANDONED_AFTER_S` (a writer of an older
version takes no lock: the age keeps its files safe while it may still be writing).
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from pathlib import Path

ABANDONED_AFTER_S = 600.0  # an unlocked temporary untouched this long is no one's
FOLDER_LOCK = ".writer.lock"  # inside a temporary folder
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def hold(fd: int) -> bool:
    """Take an exclusive ``flock`` on the open ``fd`` (kept until it is closed or the process ends). False
    where there is no ``fcntl`` or the file system refuses locks (then nothing is ever treated as abandoned
    before its age says so)."""
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except (ImportError, OSError):
        return False


def hold_folder(folder: str | Path) -> int:
    """Lock the temporary folder ``folder`` for its writer: returns the lock's fd, to ``os.close`` when done
    (after the folder was renamed or removed)."""
    fd = os.open(Path(folder) / FOLDER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    hold(fd)
    return fd


NAME_MAX = 255  # bytes in one file name (ext4, XFS, APFS, NTFS); os.pathconf says where it can
TEMP_EXTRA = len(".") + len(".") + 8 + len(".tmp")  # what a temporary name adds: dots, mkstemp's 8, suffix


def _cut(text: str, room: int) -> str:
    """``text`` cut at a character so that its file-system bytes fit in ``room``."""
    while text and len(os.fsencode(text)) > room:
        text = text[:-1]
    return text


def _room_in_name(path: Path, added: str = "") -> int:
    """Bytes left for a name in ``path``'s folder once ``added`` is counted (the file system's limit)."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = NAME_MAX
    return limit - len(os.fsencode(added))


def _temp_stem(path: Path) -> str:
    """``path``'s name, cut (at a character) so that its temporary sibling's name stays a legal one: a name
    near the limit (a video's 240-character stem plus ``_0.txt``) made the write fail with ENAMETOOLONG."""
    return _cut(path.name, _room_in_name(path) - TEMP_EXTRA)


def prefixed_sibling(path: str | Path, prefix: str) -> Path:
    """``path``'s sibling named ``prefix`` + its name, the stem cut (at a character) where that would pass the
    file system's limit on a name; the suffix is kept (OpenCV picks a video's container by it)."""
    path = Path(path)
    return path.with_name(prefix + _cut(path.stem, _room_in_name(path, prefix + path.suffix)) + path.suffix)


def _left_by_earlier_writes(stem: str) -> str:
    """The glob of the temporary siblings :func:`new_temp_file` / :func:`new_temp_folder` make for a path whose
    :func:`_temp_stem` is ``stem``."""
    return f".{glob.escape(stem)}.*.tmp"


def new_temp_file(path: str | Path, sweep: bool = True) -> tuple[int, str]:
    """A temporary file beside ``path`` (``.NAME.XXXX.tmp``), locked for its writer: ``(fd, its path)``; close
    the fd when done. ``sweep``: first remove what killed writes of ``path`` left (:func:`remove_abandoned`: one
    scan of the folder)."""
    path = Path(path)
    stem = _temp_stem(path)  # one look at the file system's name limit per write
    if sweep:
        remove_abandoned(path.parent, _left_by_earlier_writes(stem))
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=path.parent)
    hold(fd)  # released when the fd is closed, or by the kernel if this process is killed
    return fd, tmp


def new_temp_folder(path: str | Path) -> tuple[Path, int]:
    """A temporary folder beside ``path`` (``.NAME.XXXX.tmp/``), locked for its writer, after removing what
    killed writes of ``path`` left: ``(folder, the lock's fd)``; close the fd when done."""
    path = Path(path)
    stem = _temp_stem(path)
    remove_abandoned(path.parent, _left_by_earlier_writes(stem))
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".tmp", dir=path.parent))
    return tmp, hold_folder(tmp)


def _free(lock: Path) -> bool:
    """Whether no process holds ``lock``'s ``flock`` (a missing lock file: True)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # held (BlockingIOError), or locks unsupported here: keep it
        return False
    finally:
        os.close(fd)  # releases the lock taken just now


def remove_abandoned(folder: str | Path, pattern: str, now: float | None = None) -> int:
    """Remove the entries of ``folder`` matching ``pattern`` (e.g. ``.last.pt.*.tmp``) that no writer holds and
    that have not changed for ``ABANDONED_AFTER_S``; returns how many were removed. Never raises for a file
    that vanished meanwhile or cannot be removed."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(Path(folder).glob(pattern))
    except OSError:
        return 0
    for path in entries:
        try:
            st = path.lstat()
            is_dir = path.is_dir() and not path.is_symlink()
            if now - st.st_mtime < ABANDONED_AFTER_S or not _free(path / FOLDER_LOCK if is_dir else path):
                continue
            if is_dir:
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def end_with_parent(parent: int) -> None:
    """A process pool's ``initializer``: the kernel kills this worker when the process that started it dies,
    SIGKILL included (Linux ``PR_SET_PDEATHSIG``; a killed generation otherwise left its workers asleep
    forever), and the worker leaves at once if ``parent`` (that process's PID) is already gone."""
    import sys

    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


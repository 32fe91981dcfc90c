"""Atomic writes and safe checkpoint loading (``torch.load(weights_only=True)``, legacy pickles without their code)."""

from __future__ import annotations

import contextlib
import errno
import os
import warnings
from pathlib import Path
from typing import IO, Iterator

import torch

from yolo.errors import InputError, on_command_line
from yolo.utils.temps import new_temp_file
from yolo.utils.zipcheck import CrcCheck


@contextlib.contextmanager
def atomic_write(path: str | Path, sweep: bool = False) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``path``; on success flush, fsync and rename it over ``path``.

    On any error the temporary file is removed and ``path`` is left as it was. The writer holds a lock on it
    while it writes; with ``sweep`` the temporary files of earlier writes of ``path`` that a kill cut short are
    removed first (:mod:`yolo.utils.temps`: one scan of the folder, so for big files written now and then, not
    for a detection's label file per image).
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path, sweep)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException as e:
        full = isinstance(e, Exception) and disk_full(e, path.parent)  # before the partial file is removed
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full:  # torch.save says "[enforce fail at inline_container.cc] unexpected pos": name the file
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from e
        raise


def disk_full(error: BaseException, folder: str | Path) -> bool:
    """Whether a failed write into ``folder`` failed for want of space: ENOSPC/EDQUOT, or (a writer that hides
    the errno, such as torch.save) less than 256 KiB left there."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return st.f_bavail * st.f_frsize < 256 * 1024


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomic(obj, path: str | Path) -> None:
    """``torch.save`` through :func:`atomic_write`: a crash never leaves a half-written checkpoint (and the
    temporary file of one cut short by a kill is removed at the next save)."""
    with atomic_write(path, sweep=True) as f:
        torch.save(obj, f)


_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"BM", "a BMP image"), (b"RIFF", "a RIFF file (WebP image, AVI video)"))


def foreign_kind(path: str | Path) -> str | None:
    """What a file that is neither a checkpoint nor darknet weights evidently is: ``"an empty file"``, an image
    kind, or ``"a text file"`` (its first 64 bytes printable: a darknet header's small int32s hold zero bytes);
    None when it could be either (binary data)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "an empty file"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    text = None
    for cut in range(min(4, len(head))):  # the 64th byte may fall inside a multi-byte character
        try:
            text = head[:len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return "a text file"
    return None


def is_torch_file(path: str | Path) -> bool:
    """True for files ``torch.save`` writes (a zip archive, or a legacy pickle starting with 0x80)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    return magic == b"PK\x03\x04" or magic[:1] == b"\x80"


def refused() -> str:
    """Why a pickle that would call code is refused; the global it names is in the exception this one is raised
    from (shown by ``--verbose``), not in the line: the name is the file's own text."""
    where = "--verbose names the global" if on_command_line() else "the exception it comes from names the global"
    return ("refused: unpickling it would call a function it names, which could run code; only tensors, plain "
            f"data and inert stand-ins of the classes it names are read ({where})")


def load_safe(path: str | Path):
    """``torch.load(path, weights_only=True)`` on CPU; a whole pickled model through :func:`load_checkpoint_data`."""
    return load_checkpoint_data(path)[0]


def load_checkpoint_data(path: str | Path) -> tuple[object, list[str]]:
    """A checkpoint's contents and the pickled classes read as inert stand-ins (none for a plain one).

    ``torch.load(weights_only=True)`` first; a checkpoint it refuses for naming Python classes (a legacy
    whole-model pickle) is read by :func:`yolo.utils.legacy_pickle.load_legacy`, which keeps its tensors and
    plain data and refuses, with a one-line error naming the file, anything that would call code. Every record's
    CRC-32 is checked beside the load (:mod:`yolo.utils.zipcheck`): a damaged file is an error naming the record,
    not wrong weights.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise InputError("checkpoint not found", path)
    check = CrcCheck(path)
    try:
        with warnings.catch_warnings():  # torch's own about the file ("Detected pickle protocol 4 ..."): ours say it
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True), []
    except Exception as e:  # torch raises UnpicklingError / RuntimeError with long multi-line texts
        _raise_if_damaged(path, check)
        text = str(e)
        if not ("weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text):
            raise _unreadable(path, text or type(e).__name__) from None
        data = None
    _raise_if_damaged(path, check)
    return data if data is not None else _load_legacy(path)


def _raise_if_damaged(path: str, check: CrcCheck) -> None:
    damaged = check.result()
    if damaged is not None:
        raise InputError(f"damaged file: the bytes of {damaged} do not match the CRC-32 stored with them (changed on "
                         "disk or in a copy); use a good copy", path)


def _load_legacy(path: str) -> tuple[object, list[str]]:
    from yolo.utils.legacy_pickle import RefusedGlobal, load_legacy

    try:
        return load_legacy(path)
    except RefusedGlobal as e:
        raise InputError(refused(), path) from e
    except Exception as e:
        raise _unreadable(path, str(e).strip() or type(e).__name__) from None


def _unreadable(path: str, reason: str) -> InputError:
    """The one-line error for a file that no loader could read: what it evidently is (text, an image; a
    protocol-0 pickle is text too, so this is asked only after the loaders failed), else the loader's reason."""
    kind = None if is_torch_file(path) else foreign_kind(path)
    if kind is not None:
        return InputError(f"not a PyTorch checkpoint: it is {kind}", path)
    return InputError(f"not a readable PyTorch checkpoint ({reason.strip().splitlines()[0]})", path)

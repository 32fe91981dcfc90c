"""Errors the command line maps to exit code 2 (bad usage or bad input).

This module imports nothing from the package so every layer (the torch-free cfg parser included)
can raise these without breaking the import direction in DESIGN.md.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

_command_line = False  # True while a ``yolo`` command runs (:func:`command_line`)


class YoloWarning(UserWarning):
    """A warning of the toolkit's own (``warnings.warn``: filter or catch it by this class); a ``yolo`` command
    prints it as one line, ``warning: <message>``."""


class YoloRuntimeWarning(YoloWarning, RuntimeWarning):
    """A ``YoloWarning`` about the running machine (a native kernel not built, or disagreeing with PyTorch)."""


def warn(message: str, category: type[Warning] = YoloWarning, stacklevel: int = 1) -> None:
    """A warning of the toolkit's own, given the one way: ``warnings.warn`` with a ``YoloWarning`` class (a Python
    caller filters or catches it by that class; a ``yolo`` command prints ``warning: <message>`` on one line).
    ``stacklevel`` counts from the caller, as ``warnings.warn``'s does."""
    warnings.warn(message, category, stacklevel=stacklevel + 1)


class InputError(ValueError):
    """A user-supplied file or value is wrong; the message is one line naming the file (and line)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


_UNSET = object()


def option(name: str, value=_UNSET, flag: str | None = None) -> str:
    """A parameter as the user wrote it, for messages: ``--max-det`` (``--format onnx``; ``--force`` for a
    ``True``) while a ``yolo`` command runs, ``max_det`` (``format='onnx'``, ``force=True``) when the Python API
    was called. ``flag``: the command line's name where it is not ``name`` with dashes."""
    if not _command_line:
        return name if value is _UNSET else f"{name}={value!r}"
    text = "--" + (flag or name).replace("_", "-")
    return text if value is _UNSET or isinstance(value, bool) else f"{text} {value}"


def on_command_line() -> bool:
    """True while a ``yolo`` command runs (messages then name flags and commands, else Python calls)."""
    return _command_line


def override(*items: str) -> str:
    """Run-config overrides as the user writes them: ``--set a=1 b=2`` while a ``yolo`` command runs,
    ``overrides=['a=1', 'b=2']`` (``load_run_config``'s / ``config_for_resume``'s) from Python."""
    return "--set " + " ".join(items) if _command_line else f"overrides={list(items)!r}"


@contextmanager
def command_line():
    """Within this block, :func:`option` names parameters by their command-line flags (``yolo.cli`` enters it
    around a command)."""
    global _command_line
    before, _command_line = _command_line, True
    try:
        yield
    finally:
        _command_line = before


def positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int when it is an integer >= ``minimum`` (not a bool), else an ``InputError`` naming
    ``name`` as the user wrote it (:func:`option`)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{option(name)} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{option(name)} must be >= {minimum}, got {value}")
    return int(value)


# {what}: the picture; a declared dependency that trimmed environments drop
MATPLOTLIB_MISSING = "matplotlib is not installed: no {what} (pip install matplotlib)"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # how a UTF-16 text file starts (PowerShell's '>' writes one)


def read_text(path, expected: str) -> str:
    """A user's text file as ``str`` (UTF-8; a byte order mark, as Notepad writes, is dropped). Text in another
    encoding (Latin-1, UTF-16) or a binary file is an ``InputError`` naming the file, the line and what was
    ``expected`` ("a darknet .cfg")."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        if data[:2] in UTF16_BOMS and _decodes(data, "utf-16"):
            raise InputError(f"UTF-16 text (as PowerShell's '>' writes it): save it as UTF-8; expected {expected}",
                             str(path)) from None
        raise InputError(f"not UTF-8 text (byte 0x{data[e.start]:02x}); expected {expected}", str(path),
                         line) from None


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def weights_file_problem(path) -> str | None:
    """Why ``path`` cannot be weights before it is read (:func:`not_a_weights_file`: not a file, or a ``.cfg``,
    a file or a built-in's name), or None."""
    path = Path(path)
    return not_a_weights_file(path) if not path.is_file() or path.suffix.lower() == ".cfg" else None


def not_a_weights_file(path) -> str:
    """Why ``path``, which is not a file or is a ``.cfg``, cannot be loaded as weights: a folder, a cfg (a
    built-in's name too), or nothing there."""
    path = Path(path)
    if path.is_dir():
        return "is a folder, not a weights file (.pt or .weights)"
    if path.suffix.lower() == ".cfg":
        how = ("give the weights with --weights and the cfg with --cfg" if _command_line else
               f"an untrained model is Darknet.from_cfg({str(path)!r})")
        return f"a cfg, not weights (.pt or .weights): {how}"
    return "weights file not found"

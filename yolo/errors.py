"""Errors the command line maps to exit code 2 (bad usage or bad input).

This module imports nothing from the package so every layer (the torch-free cfg parser included)
can raise these without breaking the import direction in DESIGN.md.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user-supplied file or value is wrong; the message is one line naming the file (and line)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line

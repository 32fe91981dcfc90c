"""Run folders that are never overwritten."""

from __future__ import annotations

from pathlib import Path


def increment_path(base: Path, mkdir: bool = True) -> Path:
    """``base`` if free, else ``base2``, ``base3``, ...; created with ``mkdir(exist_ok=False)`` when ``mkdir``
    (so two processes racing for a name never share a folder)."""
    base = Path(base)
    n = 1
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}{n}")
        if not path.exists():
            if not mkdir:
                return path
            try:
                path.mkdir(parents=True, exist_ok=False)
                return path
            except FileExistsError:
                pass
        n += 1

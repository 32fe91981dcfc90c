"""Input sizes rounded up to a model's stride: one rule and one warning for every command and the Python API
(standard library only, so the command line's option checks can use it without importing torch)."""

from __future__ import annotations

import sys


def round_to_stride(size: tuple[int, int], stride: int, quiet: bool = False) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``stride``; a one-line warning on stderr when that changes it,
    unless ``quiet`` (a default size nobody asked for)."""
    h, w = size
    rounded = (-(-h // stride) * stride, -(-w // stride) * stride)
    if rounded != (h, w) and not quiet:
        print(f"warning: image size {h}x{w} is not a multiple of {stride}; using {rounded[0]}x{rounded[1]}",
              file=sys.stderr)
    return rounded

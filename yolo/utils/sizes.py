"""Input sizes rounded up to a model's stride: one rule and one warning for every command and the Python API
(standard library only, so the command line's option checks can use it without importing torch)."""

from __future__ import annotations

import numbers

from yolo.errors import InputError, option, warn

DEFAULT_IMG_SIZE = 416  # the input size when none is asked for, rounded up to the model's stride (448 at 64)
MAX_IMG_SIZE = 16384  # the largest input side: yolo.model.cfg_specs.MAX_NET_SIZE, a cfg's bound (tested equal)


def round_to_stride(size: tuple[int, int], stride: int, quiet: bool = False) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``stride``; a one-line warning on stderr when that changes it,
    unless ``quiet`` (a default size nobody asked for). A side over ``MAX_IMG_SIZE`` is an ``InputError`` (it
    would end in a failed allocation of many GiB)."""
    h, w = size
    if max(h, w) > MAX_IMG_SIZE:
        raise InputError(f"{option('img_size')} must be at most {MAX_IMG_SIZE}, got {h}x{w}")
    rounded = (-(-h // stride) * stride, -(-w // stride) * stride)
    if rounded != (h, w) and not quiet:
        warn(f"image size {h}x{w} is not a multiple of {stride}; using {rounded[0]}x{rounded[1]}")
    return rounded


def default_img_size(stride: int) -> tuple[int, int]:
    """The size when none is asked for: ``DEFAULT_IMG_SIZE`` square, rounded up to ``stride`` without a word."""
    return round_to_stride((DEFAULT_IMG_SIZE, DEFAULT_IMG_SIZE), stride, quiet=True)


def check_img_size(img_size) -> tuple[int, int]:
    """A Python caller's ``img_size`` (an int, or (height, width) of ints) -> ``(H, W)``; anything else, or a
    size that is not positive, is an ``InputError``."""
    try:
        h, w = (img_size, img_size) if isinstance(img_size, numbers.Integral) else tuple(img_size)
        if any(not isinstance(v, numbers.Integral) or isinstance(v, bool) for v in (h, w)):
            raise TypeError
    except (TypeError, ValueError):
        raise InputError(f"img_size must be an int or (height, width) of ints, got {img_size!r}") from None
    h, w = int(h), int(w)
    if h <= 0 or w <= 0:
        raise InputError(f"{option('img_size')} must be positive, got {h}x{w}")
    return h, w

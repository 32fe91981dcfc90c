"""Helpers the command modules share."""

from __future__ import annotations

import os
from pathlib import Path

from yolo.errors import InputError
from yolo.utils.interrupt import handlers_kept, settle, terminate_as_interrupt  # noqa: F401  (the CLI's signals)
from yolo.utils.sizes import default_img_size, round_to_stride


def img_size(values: list[int] | None, stride: int) -> tuple[int, int]:
    """One or two sizes; each rounded up to a multiple of ``stride`` with a warning. ``None`` (the option not
    given) is 416 rounded up to the stride without a word, as ``yolo detect`` and ``yolo val`` do."""
    if values is None:
        return default_img_size(stride)
    if len(values) not in (1, 2) or min(values) <= 0:
        raise InputError(f"--img-size takes one or two positive integers, got {values}")
    h, w = (values * 2)[:2]
    return round_to_stride((h, w), stride)


def add_resize_flags(p) -> None:
    """``--letterbox`` / ``--stretch`` (``args.letterbox``: True, False, or None = what the model wants)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--letterbox", dest="letterbox", action="store_true", default=None,
                       help="letterbox the images: keep the aspect ratio, pad (default when the model's cfg does "
                            "not say letter_box=0)")
    group.add_argument("--stretch", dest="letterbox", action="store_false",
                       help="stretch the images to --img-size, as AlexeyAB darknet does for models trained "
                            "without letter_box=1 (default when the cfg says letter_box=0)")


def check_output_file(path: str | None) -> None:
    """Before any work: ``path``'s folder is (or can be made under) a writable folder, as a one-line error."""
    if not path:
        return
    folder = Path(path).resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write here: {folder} is not a writable folder", path)


def data_config(data: str, images: str | None = None):
    from yolo.data.formats import coco_config, load_data_config

    if images is not None:
        if not data.endswith(".json"):
            raise InputError("--images goes with a COCO json as DATA", data)
        return coco_config(images, data)
    return load_data_config(data)

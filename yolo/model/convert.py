"""``yolo convert-weights``: darknet ``.weights`` <-> our ``.pt``, and other toolkits' checkpoints -> ours.

The output's extension picks the direction: ``.pt`` writes our checkpoint, ``.weights`` a darknet file.
"""

from __future__ import annotations

import re
from pathlib import Path

from yolo.errors import InputError
from yolo.model.checkpoint import (
    CHECKPOINT_SUFFIXES,
    WEIGHTS_SUFFIXES,
    check_names,
    is_darknet_file,
    load_checkpoint,
    load_model,
    refuse_exported,
    save_checkpoint,
)
from yolo.model.darknet import Darknet
from yolo.utils.names import load_names


def writes_darknet(out: Path) -> bool:
    """``.weights``, or a backbone name such as ``darknet53.conv.74``."""
    return out.suffix.lower() in WEIGHTS_SUFFIXES or re.search(r"\.conv\.\d+$", out.name) is not None


def default_output(src: Path, darknet: bool) -> Path:
    """``x.weights -> x.pt``, ``darknet53.conv.74 -> darknet53.conv.74.pt``; ``x.pt -> x.weights``."""
    if darknet:
        return src.with_suffix(".pt") if src.suffix.lower() in WEIGHTS_SUFFIXES else src.with_name(src.name + ".pt")
    return src.with_suffix(".weights")


def _read(src: Path, darknet: bool, cfg: str | Path | None, cutoff: int | None, bn_eps: float | None
          ) -> tuple[Darknet, str]:
    if darknet:
        model = load_model(src, cfg=cfg, cutoff=cutoff, bn_eps=bn_eps)
        h = model.header
        layers = f"layers 0..{cutoff - 1}" if cutoff else "all layers"
        return model, f"darknet weights v{h.major}.{h.minor}.{h.revision}, seen {h.seen}, {layers}"
    model, report = load_checkpoint(src, cfg, bn_eps)
    return model, report.summary()


def convert_weights(src: str | Path, out: str | Path | None = None, cfg: str | Path | None = None,
                    cutoff: int | None = None, names: str | Path | None = None, force: bool = False,
                    bn_eps: float | None = None) -> str:
    """Convert ``src`` to ``out``; returns a one-line summary. Never overwrites without ``force``.

    ``cutoff`` limits a ``.weights`` input or output to the first N layers (backbone files such as
    ``darknet53.conv.74``); when writing ``.weights`` from a checkpoint made from such a file, the
    checkpoint's own cutoff is used unless one is given. ``bn_eps`` overrides the BN epsilon stored in
    the output (default: ours 1e-5, or the source toolkit's, e.g. 1e-4 for ultralytics/yolov3).
    """
    src = Path(src)
    if not src.is_file():
        raise InputError("input file not found", str(src))
    refuse_exported(src)
    darknet = is_darknet_file(src)
    out = Path(out) if out is not None else default_output(src, darknet)
    if not writes_darknet(out) and out.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise InputError("output must end in .weights or .conv.N (darknet) or .pt/.pth/.ckpt (this toolkit)",
                         str(out))
    if out.resolve() == src.resolve():
        raise InputError("output would overwrite the input", str(out))
    if out.exists() and not force:
        raise InputError("output exists; pass --force to replace it", str(out))
    if bn_eps is not None and not 0 < bn_eps < 1:
        raise InputError(f"--bn-eps {bn_eps} must be in (0, 1)")
    model, how = _read(src, darknet, cfg, cutoff if darknet else None, bn_eps)
    if names is not None:
        model.names = check_names(load_names(names), model, str(names))
    if writes_darknet(out):
        model.save_darknet_weights(out, cutoff if cutoff is not None else model.cutoff)
    else:
        save_checkpoint(model, out)
    return f"{src} -> {out} ({how})"

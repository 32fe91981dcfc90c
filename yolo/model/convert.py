"""``yolo convert-weights``: darknet ``.weights`` <-> our ``.pt``, and other toolkits' checkpoints -> ours.

The output's extension picks the direction: ``.pt`` writes our checkpoint, ``.weights`` a darknet file.
"""

from __future__ import annotations

from pathlib import Path

from yolo.errors import InputError
from yolo.model.checkpoint import CHECKPOINT_SUFFIXES, WEIGHTS_SUFFIXES, load_checkpoint, save_checkpoint
from yolo.model.darknet import Darknet
from yolo.utils.names import load_names


def default_output(src: Path) -> Path:
    """``x.weights -> x.pt``; ``x.pt -> x.weights``."""
    return src.with_suffix(".pt" if src.suffix.lower() in WEIGHTS_SUFFIXES else ".weights")


def _read(src: Path, cfg: str | Path | None, cutoff: int | None) -> tuple[Darknet, str]:
    suffix = src.suffix.lower()
    if suffix in WEIGHTS_SUFFIXES:
        if cfg is None:
            raise InputError("converting a darknet .weights file needs its cfg: pass --cfg", str(src))
        model = Darknet.from_cfg(cfg)
        header = model.load_darknet_weights(src, cutoff)
        layers = f"layers 0..{cutoff - 1}" if cutoff else "all layers"
        return model, f"darknet weights v{header.major}.{header.minor}.{header.revision}, seen {header.seen}, {layers}"
    if suffix in CHECKPOINT_SUFFIXES:
        model, report = load_checkpoint(src, cfg)
        return model, report.summary()
    raise InputError(f"unknown input type {suffix!r}: expected .weights or a PyTorch checkpoint "
                     f"({', '.join(CHECKPOINT_SUFFIXES)})", str(src))


def convert_weights(src: str | Path, out: str | Path | None = None, cfg: str | Path | None = None,
                    cutoff: int | None = None, names: str | Path | None = None, force: bool = False) -> str:
    """Convert ``src`` to ``out``; returns a one-line summary. Never overwrites without ``force``.

    ``cutoff`` limits a ``.weights`` input or output to the first N layers (backbone files such as
    ``darknet53.conv.74``); when writing ``.weights`` from a checkpoint made from such a file, the
    checkpoint's own cutoff is used unless one is given.
    """
    src = Path(src)
    if not src.is_file():
        raise InputError("input file not found", str(src))
    out = Path(out) if out is not None else default_output(src)
    if out.suffix.lower() not in WEIGHTS_SUFFIXES + CHECKPOINT_SUFFIXES:
        raise InputError("output must end in .weights (darknet) or .pt (this toolkit)", str(out))
    if out.resolve() == src.resolve():
        raise InputError("output would overwrite the input", str(out))
    if out.exists() and not force:
        raise InputError("output exists; pass --force to replace it", str(out))
    model, how = _read(src, cfg, cutoff if src.suffix.lower() in WEIGHTS_SUFFIXES else None)
    if names is not None:
        model.names = load_names(names)
        if len(model.names) != model.num_classes:
            raise InputError(f"{len(model.names)} class names for a model with {model.num_classes} classes", str(names))
    if out.suffix.lower() in WEIGHTS_SUFFIXES:
        model.save_darknet_weights(out, cutoff if cutoff is not None else model.cutoff)
    else:
        save_checkpoint(model, out)
    return f"{src} -> {out} ({how})"

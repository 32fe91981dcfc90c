"""``yolo convert-weights``: darknet ``.weights`` <-> our ``.pt``, and other toolkits' checkpoints -> ours.

The output's extension picks the direction: ``.pt`` writes our checkpoint, ``.weights`` a darknet file.
"""

from __future__ import annotations

import re
from pathlib import Path

from yolo.errors import InputError, on_command_line, option
from yolo.model.cfg_specs import ConvSpec
from yolo.model.checkpoint import (
    check_names,
    companion,
    is_darknet_file,
    load_checkpoint,
    load_model,
    refuse_exported,
    save_checkpoint,
)
from yolo.model.darknet import Darknet
from yolo.model.weights import CHECKPOINT_SUFFIXES, DARKNET_BN_EPS, WEIGHTS_SUFFIXES, bn_eps_to_fold
from yolo.utils.checkpoint import atomic_write
from yolo.utils.interrupt import deferred_interrupt
from yolo.utils.names import default_names, load_names


def writes_darknet(out: Path) -> bool:
    """``.weights``, or a backbone name such as ``darknet53.conv.74``."""
    return out.suffix.lower() in WEIGHTS_SUFFIXES or re.search(r"\.conv\.\d+$", out.name) is not None


def default_output(src: Path, darknet: bool) -> Path:
    """``x.weights -> x.pt``, ``darknet53.conv.74 -> darknet53.conv.74.pt``; ``x.pt -> x.weights``."""
    if darknet:
        return companion(src, ".pt")
    return src.with_suffix(".weights")


def companions(out: Path, model: Darknet, cutoff: int | None) -> dict[Path, str]:
    """The text files a whole-network ``.weights`` output needs beside it: ``OUT.cfg`` (the network the weights
    belong to: the checkpoint's own cfg, e.g. with heads rebuilt for the training data's classes) and
    ``OUT.names`` (its class names, one per line). None for a backbone file (``cutoff``): it goes with
    whatever cfg is trained next."""
    if cutoff is not None:
        return {}
    names = model.names or default_names(model.num_classes)  # a checkpoint without names: what detect shows
    return {companion(out, ".cfg"): model.spec.text, companion(out, ".names"): "".join(f"{n}\n" for n in names)}


def _check_companions(files: dict[Path, str], force: bool) -> None:
    """An existing companion with other content is replaced only with ``force`` (the same content: kept)."""
    for path, text in files.items():
        if path.exists() and not force and path.read_bytes() != text.encode():
            other = "-o another name" if on_command_line() else "another out"
            raise InputError(f"exists with other content (the converted weights need this {path.suffix} beside "
                             f"them); pass {option('force', True)} to replace it, or {other}", str(path))


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
    the output (default: ours 1e-5, or the source toolkit's, e.g. 1e-4 for ultralytics/yolov3). A whole
    network's ``.weights`` is written with its ``.cfg`` and ``.names`` beside it (:func:`companions`).
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
        raise InputError(f"output exists; pass {option('force', True)} to replace it", str(out))
    if bn_eps is not None and not 0 < bn_eps < 1:
        raise InputError(f"{option('bn_eps')} {bn_eps} must be in (0, 1)")
    model, how = _read(src, darknet, cfg, cutoff if darknet else None, bn_eps)
    if names is not None:
        model.names = check_names(load_names(names), model, str(names))
    if not writes_darknet(out):
        save_checkpoint(model, out)
        return f"{src} -> {out} ({how})"
    cutoff = cutoff if cutoff is not None else model.cutoff
    files = companions(out, model, cutoff)
    _check_companions(files, force)
    with deferred_interrupt():  # a Ctrl-C never leaves the .weights without its .cfg and .names: it comes after
        model.save_darknet_weights(out, cutoff)
        for path, text in files.items():
            if not path.exists() or path.read_bytes() != text.encode():
                with atomic_write(path) as f:
                    f.write(text.encode())
    also = f"; with {', '.join(p.name for p in files)}" if files else ""
    if files and not model.names:
        also += f" (the checkpoint names no classes: {'COCO' if model.num_classes == 80 else 'class0, ...'}; " \
                f"{option('names')} FILE gives yours)"
    folded = {float(m.bn.eps) for m in model.module_list if getattr(m, "bn", None) is not None
              and bn_eps_to_fold(float(m.bn.eps))}
    if folded:
        also += f"; BN eps {max(folded):g} folded into the variances (darknet computes with {DARKNET_BN_EPS:g})"
    if cutoff is not None:  # the summary so far described what was read: say what the backbone file holds
        convs = sum(isinstance(s, ConvSpec) for s in model.spec.layers[:cutoff])
        also += f"; wrote layers 0..{cutoff - 1} ({convs} conv layers)"
    return f"{src} -> {out} ({how}{also})"

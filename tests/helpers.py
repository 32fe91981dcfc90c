"""Shared test helpers: real pixels, random weights whose BN statistics are calibrated on them, and the toolkit's
warnings collected."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from yolo.errors import YoloWarning
from yolo.model.darknet import Darknet
from yolo.model.layers import ConvBlock

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "cfg"


@contextlib.contextmanager
def yolo_warnings():
    """The messages of the toolkit's warnings (``YoloWarning``) given inside the block, each one every time it is
    given, in order: a list filled when the block ends. Other warnings are left as they were."""
    said: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", YoloWarning)
        yield said
    for w in caught:
        if issubclass(w.category, YoloWarning):
            said.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def photo_rgb() -> np.ndarray:
    """A real photograph (Grace Hopper, shipped inside matplotlib's wheel) as ``[H, W, 3]`` uint8 RGB."""
    from matplotlib import cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    assert bgr is not None, "matplotlib's sample photo is missing"
    return np.ascontiguousarray(bgr[:, :, ::-1])


def photo_batch(height: int, width: int, n: int = 1) -> torch.Tensor:
    """``[n, 3, H, W]`` float in [0, 1]: crops of the photo resized to H x W (image i shifted by i*37 px)."""
    img = photo_rgb()
    out = []
    for i in range(n):
        crop = img[i * 37 % 100:, i * 53 % 100:]
        out.append(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255).contiguous()


@torch.no_grad()
def calibrated_model(cfg: str | Path, seed: int = 0, bn_eps: float = 1e-5, size: tuple[int, int] = (256, 320),
                     calib: torch.Tensor | None = None, bn_gamma: tuple[float, float] = (0.5, 1.5)) -> Darknet:
    """A model with random weights whose BN running statistics are measured on real pixels.

    Plain random statistics make the output nearly independent of the input; measuring them on the
    photo keeps every layer's activations in a healthy range, so outputs depend on the pixels.
    ``bn_gamma``: the range BN scales are drawn from; below 1 on average, deep networks stop amplifying
    rounding errors layer after layer (float32 drift) while their outputs still follow the input.
    """
    torch.manual_seed(seed)
    model = Darknet.from_cfg(cfg, bn_eps=bn_eps)
    for m in model.module_list:
        if isinstance(m, ConvBlock):
            fan_in = m.conv.weight[0].numel()
            if m.conv.bias is None:
                m.conv.weight.normal_(0, (2.0 / fan_in) ** 0.5)  # He init keeps activations O(1)
            else:  # output convs: logits of a realistic size (boxes of tens to hundreds of pixels)
                m.conv.weight.normal_(0, 0.5 / fan_in ** 0.5)
                m.conv.bias.normal_(0, 0.5)
            if m.bn is not None:
                m.bn.weight.uniform_(*bn_gamma)
                m.bn.bias.normal_(0, 0.3)
                m.bn.reset_running_stats()
                m.bn.momentum = None  # cumulative average over the calibration pass
    model.train()
    model(calib if calib is not None else photo_batch(*size, n=2))
    model.eval()
    for m in model.module_list:
        if isinstance(m, ConvBlock) and m.bn is not None:
            m.bn.momentum = 0.03
    return model


def fake_compiler(folder: Path, refuse_openmp: bool) -> Path:
    """A ``cc`` for ``$CC`` in ``folder/bin``: the real one refusing ``-fopenmp`` (as Apple's clang does), or
    (``refuse_openmp=False``) one that always fails with ``cc: error: no such thing``, exit 3."""
    from yolo.utils.native import find_compiler

    path = folder / "bin" / "cc"
    path.parent.mkdir(exist_ok=True)
    if refuse_openmp:
        path.write_text(f"#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -fopenmp ] && {{ echo 'unsupported option "
                        f"-fopenmp' >&2; exit 1; }}; done\nexec {find_compiler()} \"$@\"\n")
    else:
        path.write_text("#!/bin/sh\necho 'cc: error: no such thing' >&2\nexit 3\n")
    path.chmod(0o755)
    return path

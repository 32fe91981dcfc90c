"""``Darknet``: a network built from parsed cfg specs; forward walks the layer list in cfg order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from yolo.errors import InputError
from yolo.model.cfg_parser import parse_cfg, parse_cfg_text
from yolo.model.cfg_specs import (
    AvgPoolSpec,
    ConvSpec,
    DropoutSpec,
    MaxPoolSpec,
    ModelSpec,
    RouteSpec,
    ScaleChannelsSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
)
from yolo.model.head import YoloHead
from yolo.model.layers import ConvBlock, GlobalAvgPool, MaxPoolDarknet, Route, ScaleChannels, Shortcut
from yolo.model.weights import DarknetHeader, load_darknet_weights, save_darknet_weights


GREY_WEIGHTS = (77 / 256, 150 / 256, 29 / 256)  # R, G, B: darknet loads a channels=1 image with stb_image's luma


class Darknet(nn.Module):
    """A darknet network.

    ``model(x)``: ``x [B, 3, H, W]`` RGB in [0, 1], H and W multiples of the network stride (32 for YOLOv3),
    independent of the cfg's width/height -> list of raw head maps ``[B, A, H_i, W_i, 5+C]`` in cfg order.
    ``model.decode(raw)`` -> ``[B, N, 5+C]``: rows head by head, inside a head anchor, then y, then x.
    Raw maps are logits for every head: the logistic that darknet puts on the conv before a ``new_coords=1``
    head is applied by that head's decoding instead (see ``yolo.model.head``), so the loss can work on logits.
    ``model.letterbox``: the resize the model wants at inference (``[net] letter_box``; see ``NetSpec``).
    A grey model (``[net] channels=1``) takes ``[B, 1, H, W]``, or the ``[B, 3, H, W]`` RGB every image path
    makes, turned grey first with darknet's weights (stb_image's luma: (77 R + 150 G + 29 B) / 256).
    """

    def __init__(self, spec: ModelSpec | str | Path, bn_eps: float = 1e-5, init: bool = True):
        """``spec``: a parsed cfg, or a ``.cfg`` file's path (as :meth:`from_cfg`). ``init=False`` leaves the
        convs' weights uninitialized: for a caller that loads all of them next."""
        super().__init__()
        if isinstance(spec, (str, Path)):
            spec = parse_cfg(spec)
        elif not isinstance(spec, ModelSpec):
            raise InputError(f"Darknet takes a .cfg path or a ModelSpec (yolo.parse_cfg), not {type(spec).__name__}")
        self.spec = spec
        self.bn_eps = bn_eps
        into_logistic_head = {s.index - 1 for s in spec.layers if isinstance(s, YoloSpec) and s.new_coords}
        self.module_list = nn.ModuleList(
            self._build(replace(s, activation="linear") if s.index in into_logistic_head else s, bn_eps, init)
            for s in spec.layers)
        self.head_indices = [s.index for s in spec.layers if isinstance(s, YoloSpec)]
        # outputs later layers read again (route / shortcut / scale_channels sources)
        # (forward passes the previous output along itself, except to a route, which reads only saved maps)
        self._keep = {i for s in spec.layers for i in s.inputs if i != s.index - 1 or isinstance(s, RouteSpec)}
        self.max_stride = max(s.out_stride for s in spec.layers)
        self.header = DarknetHeader()  # of the .weights file last loaded; written back by save_darknet_weights
        self.cutoff: int | None = None  # layers that .weights file held (None: all)
        self.names: list[str] | None = None
        self.cfg_name: str | None = None  # the cfg's file name when it came embedded in a checkpoint
        self.frozen = 0  # leading layers kept in inference mode by train() (set by the trainer's freeze)

    @staticmethod
    def _build(s, bn_eps: float, init: bool = True) -> nn.Module:
        if isinstance(s, ConvSpec):
            return ConvBlock(s, bn_eps=bn_eps, init=init)
        if isinstance(s, MaxPoolSpec):
            return MaxPoolDarknet(s)
        if isinstance(s, UpsampleSpec):
            return nn.Upsample(scale_factor=s.stride, mode="nearest")
        if isinstance(s, RouteSpec):
            return Route(s)
        if isinstance(s, ShortcutSpec):
            return Shortcut(s.activation)
        if isinstance(s, YoloSpec):
            return YoloHead(s)
        if isinstance(s, DropoutSpec):
            return nn.Dropout(s.probability)
        if isinstance(s, AvgPoolSpec):
            return GlobalAvgPool()
        if isinstance(s, ScaleChannelsSpec):
            return ScaleChannels(s.activation)
        raise TypeError(f"no module for {type(s).__name__}")

    @classmethod
    def from_cfg(cls, path: str | Path, bn_eps: float = 1e-5, init: bool = True) -> "Darknet":
        """Build from a darknet ``.cfg`` file (weights are PyTorch's random init; ``init=False``: the convs'
        weights uninitialized, for a caller that loads every one of them next)."""
        return cls(parse_cfg(path), bn_eps=bn_eps, init=init)

    @classmethod
    def from_cfg_text(cls, text: str, source: str = "<cfg>", bn_eps: float = 1e-5) -> "Darknet":
        return cls(parse_cfg_text(text, source), bn_eps=bn_eps)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def letterbox(self) -> bool:
        """True: letterbox inputs (aspect kept, padded); False: stretch them to the network size."""
        return self.spec.net.letterbox

    @property
    def diou_beta(self) -> float | None:
        """Darknet's DIoU-NMS beta when the cfg asks for it (``nms_kind=greedynms`` / ``diounms`` on its last
        ``[yolo]``), else None (IoU NMS): what detect and val pass to ``non_max_suppression``."""
        return self.spec.diou_beta

    @property
    def heads(self) -> list[YoloHead]:
        return [self.module_list[i] for i in self.head_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W] -> [[B, A, H/s, W/s, 5+C] per head]``."""
        channels = self.spec.net.channels
        if x.dim() == 4 and channels == 1 and x.shape[1] == 3:  # RGB from the image paths: grey, as darknet loads
            x = (x * x.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if x.dim() != 4 or x.shape[1] != channels:
            also = " (or RGB [B, 3, H, W], made grey)" if channels == 1 else ""
            raise InputError(f"expected input [B, {channels}, H, W]{also}, got {[int(v) for v in x.shape]}")
        if not x.is_floating_point():  # a uint8 image batch: conv2d said "expected scalar type Byte but found Float"
            dtype = str(x.dtype).replace("torch.", "")
            raise InputError(f"expected a floating-point input (RGB in [0, 1]), got {dtype}: divide a uint8 batch by "
                             "255 (x.float() / 255)")
        h, w = x.shape[-2:]
        if h % self.max_stride or w % self.max_stride:
            raise InputError(f"input size {h}x{w} must be a multiple of {self.max_stride} in both dimensions")
        saved: dict[int, torch.Tensor] = {}
        heads: list[torch.Tensor] = []
        for spec, module in zip(self.spec.layers, self.module_list):
            if isinstance(spec, RouteSpec):
                x = module([saved[i] for i in spec.sources])
            elif isinstance(spec, (ShortcutSpec, ScaleChannelsSpec)):  # from=-1: the previous layer, twice
                x = module(x, x if spec.source == spec.index - 1 else saved[spec.source])
            else:
                x = module(x)
            if isinstance(spec, YoloSpec):
                heads.append(x)
            if spec.index in self._keep:
                saved[spec.index] = x
        return heads

    def train(self, mode: bool = True) -> "Darknet":
        """As ``nn.Module.train``, except that the first ``self.frozen`` layers stay in inference mode: a frozen
        layer's BN keeps its running statistics (as detectron2's and mmdetection's frozen stages), so a frozen
        trunk computes exactly what it computed before training."""
        super().train(mode)
        if mode:
            for module in list(self.module_list)[:self.frozen]:
                module.eval()
        return self

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Raw head maps -> ``[B, N, 5+C]`` (cx, cy, w, h in input pixels, objectness, class probabilities)."""
        return torch.cat([head.decode(r) for head, r in zip(self.heads, raw)], dim=1)

    def fuse(self) -> "Darknet":
        """Fold every BN into its conv for inference; returns ``self``."""
        for m in self.module_list:
            if isinstance(m, ConvBlock):
                m.fuse()
        return self

    def load_darknet_weights(self, path: str | Path, cutoff: int | None = None) -> DarknetHeader:
        """Read a darknet ``.weights`` file (the first ``cutoff`` layers when given) into this model."""
        self.header = load_darknet_weights(self, path, cutoff)
        self.cutoff = cutoff
        return self.header

    def save_darknet_weights(self, path: str | Path, cutoff: int | None = None) -> None:
        """Write this model (the first ``cutoff`` layers when given) as a darknet ``.weights`` file."""
        save_darknet_weights(self, path, cutoff, self.header)

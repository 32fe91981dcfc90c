"""Typed darknet layer specs (no torch): what :mod:`yolo.model.cfg_parser` makes of a cfg's text, and the
bounds and activation names it accepts.

Indices follow darknet: the first section after ``[net]`` is layer 0. Route and shortcut sources are
stored as absolute indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Darknet's activation names this toolkit builds (yolo/model/layers.py has their formulas, from darknet's
# src/activations.h). Darknet falls back to relu on a name it does not know; we refuse it.
ACTIVATIONS = ("leaky", "linear", "relu", "mish", "swish", "logistic", "relu6", "elu", "selu", "gelu", "tanh",
               "hardtan", "relie", "loggy")
# Darknet names we do not build: refused with a message that says so (not "unknown").
DARKNET_ONLY_ACTIVATIONS = ("hard_mish", "normalize_channels", "normalize_channels_softmax",
                            "normalize_channels_softmax_maxval", "ramp", "plse", "lhtan", "stair", "revleaky")

# Sane bounds: a cfg cannot make the toolkit allocate absurd memory.
MAX_FILTERS = 16384
MAX_KERNEL = 63
MAX_STRIDE = 32
MAX_CLASSES = 100000
MAX_LAYERS = 10000
MAX_NET_SIZE = 16384


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """Common fields: position, source line, and the output channels/stride relative to the input."""

    index: int
    line: int
    out_channels: int = 0
    out_stride: int = 1  # 0: a global (1x1) map, e.g. after [avgpool]

    @property
    def kind(self) -> str:
        return SECTION_OF[type(self)]

    @property
    def inputs(self) -> tuple[int, ...]:
        """Absolute indices of the layers whose outputs this one reads (the previous one by default)."""
        return (self.index - 1,) if self.index else ()


@dataclass(frozen=True, kw_only=True)
class ConvSpec(LayerSpec):
    in_channels: int
    filters: int
    size: int
    stride: int
    padding: int
    groups: int = 1
    batch_normalize: bool = False
    activation: str = "logistic"


@dataclass(frozen=True, kw_only=True)
class ShortcutSpec(LayerSpec):
    """Previous layer + layer ``source``, over the channels both have; the output keeps the previous layer's."""

    source: int  # absolute index of the layer added to the previous one
    activation: str = "linear"

    @property
    def inputs(self) -> tuple[int, ...]:
        return (self.index - 1, self.source)


@dataclass(frozen=True, kw_only=True)
class RouteSpec(LayerSpec):
    sources: tuple[int, ...]  # absolute indices, concatenated along channels in this order
    groups: int = 1
    group_id: int = 0

    @property
    def inputs(self) -> tuple[int, ...]:
        return self.sources


@dataclass(frozen=True, kw_only=True)
class UpsampleSpec(LayerSpec):
    stride: int = 2


@dataclass(frozen=True, kw_only=True)
class MaxPoolSpec(LayerSpec):
    size: int
    stride: int
    padding: int  # darknet's total padding; left/top get padding // 2, right/bottom the rest

    def out_size(self, n: int) -> int:
        return (n + self.padding - self.size) // self.stride + 1


@dataclass(frozen=True, kw_only=True)
class AvgPoolSpec(LayerSpec):
    """``[avgpool]``: darknet's global average pool, ``[C, H, W] -> [C, 1, 1]``."""


@dataclass(frozen=True, kw_only=True)
class ScaleChannelsSpec(LayerSpec):
    """``[scale_channels]``: ``out[c, y, x] = prev[c] * layer_source[c, y, x]`` (prev is a 1x1 map), then activation."""

    source: int
    activation: str = "linear"

    @property
    def inputs(self) -> tuple[int, ...]:
        return (self.index - 1, self.source)


@dataclass(frozen=True, kw_only=True)
class YoloSpec(LayerSpec):
    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]  # all anchors of the cfg, (w, h) in input pixels
    classes: int
    scale_x_y: float = 1.0  # x = (s * p - (s - 1) / 2 + col) * stride, same for y
    new_coords: bool = False  # the conv before is logistic: p = its outputs, w = (2 * p_w)^2 * anchor_w
    diou_beta: float | None = None  # nms_kind=greedynms (0.6) / diounms (beta_nms): darknet's DIoU-NMS; None: IoU
    extras: dict = field(default_factory=dict)  # training keys (jitter, ignore_thresh, ...) as data

    @property
    def head_anchors(self) -> tuple[tuple[float, float], ...]:
        return tuple(self.anchors[i] for i in self.mask)


@dataclass(frozen=True, kw_only=True)
class DropoutSpec(LayerSpec):
    probability: float = 0.5


@dataclass(frozen=True)
class NetSpec:
    width: int
    height: int
    channels: int
    extras: dict  # every other [net] key, as data
    letter_box: int | None = None  # AlexeyAB's [net] letter_box (0 / 1); None when the cfg does not say

    @property
    def letterbox(self) -> bool:
        """Which resize the model wants at inference: letterbox (aspect kept, padded) unless the cfg says
        ``letter_box=0`` (AlexeyAB's stretch to the network size). Without the key: letterbox, as pjreddie's
        darknet (``detector test`` / ``valid``) and this toolkit's trainer do."""
        return self.letter_box != 0


@dataclass(frozen=True)
class ModelSpec:
    """A parsed cfg: the ``[net]`` block, the layers in cfg order, and the source text."""

    net: NetSpec
    layers: tuple[LayerSpec, ...]
    text: str
    source: str

    @property
    def heads(self) -> list[YoloSpec]:
        return [s for s in self.layers if isinstance(s, YoloSpec)]

    @property
    def num_classes(self) -> int:
        heads = self.heads
        return heads[0].classes if heads else 0

    @property
    def diou_beta(self) -> float | None:
        """The NMS darknet runs for this network, as it reads it from the last layer: DIoU-NMS at this beta
        (``nms_kind=greedynms``: 0.6, ``diounms``: ``beta_nms``), or None for IoU NMS."""
        heads = self.heads
        return heads[-1].diou_beta if heads else None


SECTION_OF = {
    ConvSpec: "convolutional",
    ShortcutSpec: "shortcut",
    RouteSpec: "route",
    UpsampleSpec: "upsample",
    MaxPoolSpec: "maxpool",
    AvgPoolSpec: "avgpool",
    ScaleChannelsSpec: "scale_channels",
    YoloSpec: "yolo",
    DropoutSpec: "dropout",
}

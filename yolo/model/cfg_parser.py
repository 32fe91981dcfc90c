"""Darknet cfg text -> typed, validated layer specs (no torch).

The cfg is parsed once; the model is built from the specs and never re-reads strings in forward.
Every error names the file and the line it comes from.

Indices follow darknet: the first section after ``[net]`` is layer 0. Route and shortcut sources are
stored as absolute indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from yolo.errors import InputError
from yolo.resources import resolve

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


# ----------------------------------------------------------------------------- reading sections


@dataclass
class _Section:
    name: str
    line: int
    keys: dict[str, tuple[str, int]]  # key -> (raw value, line)


def _split_sections(text: str, source: str) -> list[_Section]:
    sections: list[_Section] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise InputError(f"malformed section header {raw.strip()!r}, expected [name]", source, lineno)
            sections.append(_Section(line[1:-1].strip().lower(), lineno, {}))
            continue
        if not sections:
            raise InputError(f"{raw.strip()!r} appears before the first [section]", source, lineno)
        if "=" not in line:
            raise InputError(f"expected key=value, got {raw.strip()!r}", source, lineno)
        key, value = (part.strip() for part in line.split("=", 1))
        key = key.lower()
        if not key or not value:
            raise InputError(f"expected key=value, got {raw.strip()!r}", source, lineno)
        sect = sections[-1]
        if key in sect.keys:
            raise InputError(f"key {key!r} repeated in [{sect.name}] (first at line {sect.keys[key][1]})", source, lineno)
        sect.keys[key] = (value, lineno)
    return sections


class _Reader:
    """Typed access to one section's keys; remembers which keys were used to reject unknown ones."""

    def __init__(self, sect: _Section, source: str):
        self.sect, self.source, self.used = sect, source, set()

    def error(self, key: str | None, message: str) -> InputError:
        line = self.sect.keys[key][1] if key in self.sect.keys else self.sect.line
        return InputError(message, self.source, line)

    def _get(self, key, default, convert: Callable, what: str):
        self.used.add(key)
        if key not in self.sect.keys:
            if default is _REQUIRED:
                raise self.error(None, f"[{self.sect.name}] needs the key {key!r}")
            return default
        value = self.sect.keys[key][0]
        try:
            return convert(value)
        except ValueError:
            raise self.error(key, f"{key}={value!r} in [{self.sect.name}]: expected {what}") from None

    def int(self, key, default=None, lo=None, hi=None):
        v = self._get(key, default, _parse_int, "an integer")
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise self.error(key, f"{key}={v} in [{self.sect.name}]: expected a value in [{lo}, {hi}]")
        return v

    def float(self, key, default=None, lo=None, hi=None):
        v = self._get(key, default, _parse_float, "a finite number")
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise self.error(key, f"{key}={v} in [{self.sect.name}]: expected a value in [{lo}, {hi}]")
        return v

    def ints(self, key, default=None):
        return self._get(key, default, lambda s: tuple(_parse_int(x) for x in _items(s)), "comma-separated integers")

    def floats(self, key, default=None):
        return self._get(key, default, lambda s: tuple(_parse_float(x) for x in _items(s)), "comma-separated finite numbers")

    def choice(self, key, default, choices):
        v = self._get(key, default, str.lower, "a word")
        if v not in choices:
            raise self.error(key, f"{key}={v!r} in [{self.sect.name}]: expected one of {', '.join(choices)}")
        return v

    def raw(self, key):
        self.used.add(key)
        return self.sect.keys[key][0]

    def activation(self, key: str, default: str) -> str:
        v = self._get(key, default, str.lower, "a word")
        if v in DARKNET_ONLY_ACTIVATIONS:
            raise self.error(key, f"activation={v} in [{self.sect.name}] is darknet's but not implemented here "
                                  f"(implemented: {', '.join(ACTIVATIONS)})")
        if v not in ACTIVATIONS:
            raise self.error(key, f"{key}={v!r} in [{self.sect.name}]: expected one of {', '.join(ACTIVATIONS)}")
        return v

    def reject_unknown(self, extra_allowed=()):
        """Refuse keys nobody read: darknet keys that change the forward by name and value, others as unknown.

        Keys that only steer darknet's training (``TRAINING_LAYER_KEYS``) are accepted; the cfg text keeps them.
        """
        refused = UNSUPPORTED_KEYS.get(self.sect.name, {}) | UNSUPPORTED_KEYS["*"]
        for key, (value, line) in self.sect.keys.items():
            if key in self.used or key in extra_allowed:
                continue
            if self.sect.name not in ("net", "network") and key in TRAINING_LAYER_KEYS:
                continue
            if key in refused:
                what, noop = refused[key]
                if noop is not None and _convert_value(value.lower()) == noop:
                    continue  # darknet's default: the key changes nothing
                raise InputError(f"{key}={value} in [{self.sect.name}] changes what darknet computes ({what}); "
                                 "this toolkit does not implement it", self.source, line)
            known = sorted(self.used | set(extra_allowed))
            raise InputError(
                f"unknown key {key!r} in [{self.sect.name}] (known: {', '.join(known)})", self.source, line
            )


_REQUIRED = object()


def _parse_int(s: str) -> int:
    return int(s.strip())


def _parse_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(s)
    return v


def _items(s: str) -> list[str]:
    items = [x.strip() for x in s.split(",")]
    if not items or any(x == "" for x in items):
        raise ValueError(s)
    return items


def _convert_value(s: str):
    """Training keys are kept as data: int, float, a list of numbers, or the string itself."""
    parts = [p.strip() for p in s.split(",")]
    out = []
    for p in parts:
        try:
            out.append(int(p))
        except ValueError:
            try:
                out.append(float(p))
            except ValueError:
                return s
    return out[0] if len(out) == 1 else out


# ----------------------------------------------------------------------------- per-section parsers

# [net] keys darknet (pjreddie and AlexeyAB: parse_net_options) knows; kept as data, none changes the network.
NET_KEYS = frozenset(
    """batch subdivisions width height channels momentum decay angle saturation exposure hue learning_rate
    burn_in max_batches policy steps scales step gamma power max_crop min_crop aspect flip mosaic mixup cutmix
    blur gaussian_noise letter_box label_smooth_eps adam b1 b2 eps time_steps notruth random max_chart_loss
    inputs track augment_speed sequential_subdivisions try_fix_nan loss_scale dynamic_minibatch optimized_memory
    workspace_size_limit_mb adversarial_lr attention contrastive unsupervised mosaic_bound equidistant_point
    burn_out rate seed ema_alpha learning_rate_min sgdr_cycle sgdr_mult seq_scales resize_step scale
    badlabels_rejection_percentage num_sigmas_reject_badlabels weights_reject_freq contrastive_color
    contrastive_jit_flip use_cuda_graph""".split()
)

# Keys darknet reads on any layer that only steer its training (frozen layers, learning-rate scales, update
# schedules) or its GPU streams; accepted on every layer, kept in the cfg text. dropblock* act in training only.
TRAINING_LAYER_KEYS = frozenset(
    """stopbackward onlyforward dont_update burnin_update train_only_bn learning_rate clip stream wait_stream
    dot grad_centr dropblock dropblock_size_rel dropblock_size_abs""".split()
)

# Darknet keys that change the forward (or how .weights are read) and that this toolkit does not build:
# section -> key -> (what it does, the value at which it changes nothing, or None). "*": every section.
UNSUPPORTED_KEYS: dict[str, dict[str, tuple[str, object]]] = {
    "*": {
        "dontload": ("the layer's weights are not read from the .weights file", 0),
        "dontloadscales": ("the layer's BN scales are not read from the .weights file", 0),
    },
    "convolutional": {
        "dilation": ("dilated convolution", 1),
        "antialiasing": ("anti-aliased strided convolution", 0),
        "share_index": ("weights shared with another layer", None),
        "cbn": ("cross-iteration batch norm", 0),
        "binary": ("binary weights", 0),
        "xnor": ("XNOR convolution", 0),
        "bin_output": ("binary output", 0),
        "sway": ("deformable convolution", 0),
        "rotate": ("deformable convolution", 0),
        "stretch": ("deformable convolution", 0),
        "stretch_sway": ("deformable convolution", 0),
        "angle": ("deformable convolution", None),
        "reverse": ("deformable convolution", None),
        "flipped": ("transposed weights", 0),
        "coordconv": ("coordinate channels", 0),
        "assisted_excitation": ("assisted excitation", 0),
    },
    "maxpool": {
        "maxpool_depth": ("max over channels", 0),
        "out_channels": ("max over channels", 1),
        "antialiasing": ("anti-aliased pooling", 0),
        "maxpool_zero_nonmax": ("non-maximum outputs set to zero", 0),
    },
    "shortcut": {
        "weights_type": ("weighted shortcut", "none"),
        "weights_normalization": ("weighted shortcut", "none"),
    },
    "upsample": {"scale": ("output scaled", 1)},
    "scale_channels": {"scale_wh": ("scale by a spatial map instead of per channel", 0)},
}
UNSUPPORTED_KEYS["conv"] = UNSUPPORTED_KEYS["convolutional"]
UNSUPPORTED_KEYS["max"] = UNSUPPORTED_KEYS["maxpool"]

# Darknet section names this toolkit does not build: refused by name.
DARKNET_ONLY_SECTIONS = frozenset(
    """sam reorg3d reorg local_avgpool local_avg implicit region detection gaussian_yolo connected conn crop cost
    local activation crnn gru lstm conv_lstm history rnn normalization lrn batchnorm softmax soft contrastive
    empty silence""".split()
)

YOLO_TRAINING_KEYS = frozenset(
    """jitter ignore_thresh truth_thresh random iou_normalizer cls_normalizer obj_normalizer iou_loss
    iou_thresh_kind iou_thresh nms_kind beta_nms max_delta counters_per_class label_smooth_eps resize
    focal_loss max map objectness_smooth track_history_size sim_thresh dets_for_track dets_for_show
    track_ciou_norm embedding_layer delta_normalizer""".split()
)


def _parse_net(r: _Reader) -> NetSpec:
    width = r.int("width", 416, 32, MAX_NET_SIZE)
    height = r.int("height", 416, 32, MAX_NET_SIZE)
    channels = r.int("channels", 3, 1, 64)
    letter_box = r.int("letter_box", None, 0, 1)
    extras = {k: _convert_value(r.raw(k)) for k in r.sect.keys if k in NET_KEYS and k not in r.used}
    r.reject_unknown()
    return NetSpec(width=width, height=height, channels=channels, extras=extras, letter_box=letter_box)


def _square_stride(r: _Reader) -> int:
    """``stride``, or darknet's ``stride_x`` / ``stride_y`` when they agree (unequal ones are refused)."""
    stride = r.int("stride", 1, 1, MAX_STRIDE)
    sx, sy = r.int("stride_x", stride, 1, MAX_STRIDE), r.int("stride_y", stride, 1, MAX_STRIDE)
    if sx != sy:
        raise r.error("stride_x", f"stride_x={sx} and stride_y={sy} in [{r.sect.name}] differ; this toolkit "
                                  "implements square strides only")
    return sx


def _parse_conv(r: _Reader, index: int, in_channels: int, in_stride: int) -> ConvSpec:
    filters = r.int("filters", 1, 1, MAX_FILTERS)
    size = r.int("size", 1, 1, MAX_KERNEL)
    stride = _square_stride(r)
    pad = r.int("pad", 0, 0, 1)
    padding = size // 2 if pad else r.int("padding", 0, 0, MAX_KERNEL)
    if pad and "padding" in r.sect.keys:
        r.used.add("padding")  # darknet: pad=1 overrides padding
    groups = r.int("groups", 1, 1, MAX_FILTERS)
    bn = bool(r.int("batch_normalize", 0, 0, 1))
    act = r.activation("activation", "logistic")
    if size == 1 and "dilation" in r.sect.keys:
        r.used.add("dilation")  # darknet: a 1x1 convolution ignores dilation
    if in_channels % groups or filters % groups:
        raise r.error("groups", f"groups={groups} must divide the input channels ({in_channels}) and filters ({filters})")
    r.reject_unknown()
    return ConvSpec(
        index=index, line=r.sect.line, in_channels=in_channels, filters=filters, size=size, stride=stride,
        padding=padding, groups=groups, batch_normalize=bn, activation=act,
        out_channels=filters, out_stride=in_stride * stride,
    )


def _source(r: _Reader, key: str, value: int, index: int) -> int:
    absolute = index + value if value < 0 else value
    if not 0 <= absolute < index:
        raise r.error(key, f"{key}={value} in [{r.sect.name}] (layer {index}) points to layer {absolute}, "
                           + (f"which does not exist yet (valid: 0..{index - 1} or -1..-{index})" if index
                              else "but a route or shortcut cannot be the first layer"))
    return absolute


def _parse_shortcut(r: _Reader, index: int, layers: list[LayerSpec]) -> ShortcutSpec:
    if "," in r.sect.keys.get("from", ("", 0))[0]:
        raise r.error("from", "[shortcut] with several from= layers is not implemented (one layer only)")
    src = _source(r, "from", r.int("from", _REQUIRED), index)
    act = r.activation("activation", "linear")
    prev, other = layers[index - 1], layers[src]
    if prev.out_stride != other.out_stride:
        raise r.error("from", f"[shortcut] adds layer {src} (stride {other.out_stride}) to layer {index - 1} "
                              f"(stride {prev.out_stride}); their maps must have the same size")
    r.reject_unknown()
    return ShortcutSpec(index=index, line=r.sect.line, source=src, activation=act,
                        out_channels=prev.out_channels, out_stride=prev.out_stride)


def _parse_route(r: _Reader, index: int, layers: list[LayerSpec]) -> RouteSpec:
    sources = tuple(_source(r, "layers", v, index) for v in r.ints("layers", _REQUIRED))
    groups = r.int("groups", 1, 1, MAX_FILTERS)
    group_id = r.int("group_id", 0, 0, groups - 1)
    strides = {layers[s].out_stride for s in sources}
    if len(strides) > 1:
        raise r.error("layers", f"[route] concatenates layers {list(sources)} with different strides {sorted(strides)}")
    for s in sources:
        if layers[s].out_channels % groups:
            raise r.error("groups", f"groups={groups} does not divide the {layers[s].out_channels} channels of layer {s}")
    channels = sum(layers[s].out_channels for s in sources) // groups
    r.reject_unknown()
    return RouteSpec(index=index, line=r.sect.line, sources=sources, groups=groups, group_id=group_id,
                     out_channels=channels, out_stride=strides.pop())


def _parse_upsample(r: _Reader, index: int, prev: LayerSpec) -> UpsampleSpec:
    stride = r.int("stride", 2, 1, MAX_STRIDE)
    if prev.out_stride % stride:
        raise r.error("stride", f"[upsample] stride={stride} does not divide the input's stride {prev.out_stride}")
    r.reject_unknown()
    return UpsampleSpec(index=index, line=r.sect.line, stride=stride,
                        out_channels=prev.out_channels, out_stride=prev.out_stride // stride)


def _parse_maxpool(r: _Reader, index: int, prev: LayerSpec) -> MaxPoolSpec:
    stride = _square_stride(r)
    size = r.int("size", stride, 1, MAX_KERNEL)
    padding = r.int("padding", size - 1, 0, MAX_KERNEL)
    r.reject_unknown()
    return MaxPoolSpec(index=index, line=r.sect.line, size=size, stride=stride, padding=padding,
                       out_channels=prev.out_channels, out_stride=prev.out_stride * stride)


def _parse_yolo(r: _Reader, index: int, prev: LayerSpec) -> YoloSpec:
    classes = r.int("classes", 20, 1, MAX_CLASSES)
    flat = r.floats("anchors", _REQUIRED)
    if len(flat) % 2:
        raise r.error("anchors", f"anchors has {len(flat)} numbers; expected pairs of width,height")
    anchors = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
    if any(w <= 0 or h <= 0 for w, h in anchors):
        raise r.error("anchors", "anchors must be positive")
    num = r.int("num", len(anchors), 1, 1000)
    if num != len(anchors):
        raise r.error("num", f"num={num} but anchors lists {len(anchors)} pairs")
    mask = r.ints("mask", tuple(range(num)))
    bad = [m for m in mask if not 0 <= m < num]
    if bad:
        raise r.error("mask", f"mask {list(mask)} names anchors {bad}; only 0..{num - 1} exist")
    scale_x_y = r.float("scale_x_y", 1.0, 0.5, 4.0)
    new_coords = bool(r.int("new_coords", 0, 0, 1))
    if new_coords and not (isinstance(prev, ConvSpec) and prev.activation == "logistic"):
        raise r.error("new_coords", f"new_coords=1 needs the layer before [yolo] (layer {index - 1}) to be a "
                                    "[convolutional] with activation=logistic: the head applies no sigmoid itself")
    need = len(mask) * (classes + 5)
    if prev.out_channels != need:
        raise r.error(None, f"[yolo] with {len(mask)} anchors and {classes} classes needs {need} channels from "
                            f"layer {index - 1}, which gives {prev.out_channels}")
    extras = {k: _convert_value(r.raw(k)) for k in list(r.sect.keys) if k in YOLO_TRAINING_KEYS}
    r.reject_unknown()
    return YoloSpec(index=index, line=r.sect.line, mask=mask, anchors=anchors, classes=classes,
                    scale_x_y=scale_x_y, new_coords=new_coords, extras=extras, out_channels=prev.out_channels,
                    out_stride=prev.out_stride)


def _parse_avgpool(r: _Reader, index: int, prev: LayerSpec) -> AvgPoolSpec:
    r.reject_unknown()
    return AvgPoolSpec(index=index, line=r.sect.line, out_channels=prev.out_channels, out_stride=0)


def _parse_scale_channels(r: _Reader, index: int, layers: list[LayerSpec]) -> ScaleChannelsSpec:
    src = _source(r, "from", r.int("from", _REQUIRED), index)
    act = r.activation("activation", "linear")
    if act in ("swish", "mish"):  # darknet prints a warning and computes zeros
        raise r.error("activation", f"darknet's [scale_channels] does not support activation={act}")
    prev, other = layers[index - 1], layers[src]
    if prev.out_stride != 0 or prev.out_channels != other.out_channels:
        raise r.error("from", f"[scale_channels] scales the {other.out_channels} channels of layer {src} by layer "
                              f"{index - 1}, which must be a global 1x1 map (after [avgpool]) of as many channels; "
                              f"it has {prev.out_channels}" + ("" if prev.out_stride == 0 else " and is not 1x1"))
    r.reject_unknown()
    return ScaleChannelsSpec(index=index, line=r.sect.line, source=src, activation=act,
                             out_channels=other.out_channels, out_stride=other.out_stride)


def _parse_dropout(r: _Reader, index: int, prev: LayerSpec) -> DropoutSpec:
    p = r.float("probability", 0.5, 0.0, 1.0)
    r.reject_unknown()
    return DropoutSpec(index=index, line=r.sect.line, probability=p,
                       out_channels=prev.out_channels, out_stride=prev.out_stride)


# ----------------------------------------------------------------------------- entry points


def parse_cfg_text(text: str, source: str = "<cfg>") -> ModelSpec:
    """Parse darknet cfg text into a :class:`ModelSpec`; raise :class:`InputError` naming ``source:line``."""
    sections = _split_sections(text, source)
    if not sections or sections[0].name not in ("net", "network"):
        line = sections[0].line if sections else 1
        raise InputError("a darknet cfg must start with a [net] section", source, line)
    net = _parse_net(_Reader(sections[0], source))
    if len(sections) - 1 > MAX_LAYERS:
        raise InputError(f"{len(sections) - 1} layers; at most {MAX_LAYERS} are allowed", source, sections[-1].line)
    layers: list[LayerSpec] = []
    for index, sect in enumerate(sections[1:]):
        layers.append(_parse_layer(sect, source, index, net, layers))
    if not layers:
        raise InputError("the cfg has no layers after [net]", source, sections[0].line)
    return ModelSpec(net=net, layers=tuple(layers), text=text, source=source)


def _parse_layer(sect: _Section, source: str, index: int, net: NetSpec, layers: list[LayerSpec]) -> LayerSpec:
    r = _Reader(sect, source)
    prev = layers[-1] if layers else LayerSpec(index=-1, line=0, out_channels=net.channels, out_stride=1)
    name = sect.name
    if name in ("convolutional", "conv"):
        return _parse_conv(r, index, prev.out_channels, prev.out_stride)
    if name == "shortcut":
        return _parse_shortcut(r, index, layers)
    if name == "route":
        return _parse_route(r, index, layers)
    if name == "upsample":
        return _parse_upsample(r, index, prev)
    if name in ("maxpool", "max"):
        return _parse_maxpool(r, index, prev)
    if name in ("yolo",):
        return _parse_yolo(r, index, prev)
    if name == "dropout":
        return _parse_dropout(r, index, prev)
    if name in ("avgpool", "avg"):
        return _parse_avgpool(r, index, prev)
    if name == "scale_channels":
        return _parse_scale_channels(r, index, layers)
    known = "convolutional, shortcut, route, upsample, maxpool, avgpool, scale_channels, yolo, dropout"
    if name in DARKNET_ONLY_SECTIONS:
        raise InputError(f"darknet's [{name}] layer (layer {index}) is not implemented by this toolkit; "
                         f"supported: {known}", source, sect.line)
    raise InputError(f"unknown section [{name}] (layer {index}); supported: {known}", source, sect.line)


def parse_cfg(path: str | Path) -> ModelSpec:
    """Read and parse a darknet cfg file: a path, or the name of a built-in (``yolov3-tiny.cfg``, see
    ``yolo.resources``)."""
    path = resolve(path, "model")
    if not path.is_file():
        raise InputError("cfg file not found", str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a text file (expected a darknet .cfg)", str(path)) from None
    return parse_cfg_text(text, str(path))


# ----------------------------------------------------------------------------- shapes and counts


def layer_shapes(spec: ModelSpec, height: int, width: int) -> list[tuple[int, int, int]]:
    """Output ``(C, H, W)`` of every layer for an input of ``height x width``, by darknet's formulas."""
    shapes: list[tuple[int, int, int]] = []
    c, h, w = spec.net.channels, height, width
    for s in spec.layers:
        if isinstance(s, ConvSpec):
            h = (h + 2 * s.padding - s.size) // s.stride + 1
            w = (w + 2 * s.padding - s.size) // s.stride + 1
            c = s.filters
        elif isinstance(s, MaxPoolSpec):
            h, w = s.out_size(h), s.out_size(w)
        elif isinstance(s, UpsampleSpec):
            h, w = h * s.stride, w * s.stride
        elif isinstance(s, RouteSpec):
            hw = {shapes[i][1:] for i in s.sources}
            if len(hw) > 1:
                raise InputError(f"[route] layer {s.index} concatenates maps of sizes {sorted(hw)} "
                                 f"for a {height}x{width} input", spec.source, s.line)
            (h, w), c = hw.pop(), s.out_channels
        elif isinstance(s, ShortcutSpec):
            if shapes[s.source][1:] != (h, w):
                raise InputError(f"[shortcut] layer {s.index} adds {shapes[s.source]} to {(c, h, w)} "
                                 f"for a {height}x{width} input", spec.source, s.line)
        elif isinstance(s, AvgPoolSpec):
            h = w = 1
        elif isinstance(s, ScaleChannelsSpec):
            if (h, w) != (1, 1):
                raise InputError(f"[scale_channels] layer {s.index} scales by a {h}x{w} map, not 1x1, "
                                 f"for a {height}x{width} input", spec.source, s.line)
            c, h, w = shapes[s.source]
        if h <= 0 or w <= 0:
            raise InputError(f"layer {s.index} output is empty for a {height}x{width} input", spec.source, s.line)
        shapes.append((c, h, w))
    return shapes


def conv_param_count(s: ConvSpec, fused: bool = False) -> int:
    """Learnable parameters of one conv block: weights plus BN gamma/beta (or the conv bias)."""
    weights = s.filters * (s.in_channels // s.groups) * s.size * s.size
    if s.batch_normalize and not fused:
        return weights + 2 * s.filters
    return weights + s.filters


def param_count(spec: ModelSpec, fused: bool = False) -> int:
    """Parameters of the whole network; ``fused=True`` counts BN folded into conv (weight + bias)."""
    return sum(conv_param_count(s, fused) for s in spec.layers if isinstance(s, ConvSpec))


def darknet_float_count(s: ConvSpec) -> int:
    """float32 values one conv layer holds in a darknet ``.weights`` file."""
    weights = s.filters * (s.in_channels // s.groups) * s.size * s.size
    return weights + (4 if s.batch_normalize else 1) * s.filters



def darknet_layer_flops(s: LayerSpec, shape: tuple[int, int, int]) -> tuple[int, int]:
    """``(conv FLOPs, AlexeyAB FLOPs)`` of one layer whose output is ``shape`` ``(C, H, W)``, for one image.

    The first is pjreddie's ``darknet ops`` count: 2 x multiply-adds of convolutions only. The second is what
    AlexeyAB's darknet sums into its printed "Total BFLOPS" (``l.bflops`` of each layer, src/*_layer.c): the
    same conv term, plus ``size^2 x outputs`` for a max-pool and ``outputs`` for an unweighted shortcut;
    route, upsample, avgpool, scale_channels, dropout and yolo set no ``bflops`` and count 0.
    """
    c, h, w = shape
    if isinstance(s, ConvSpec):
        conv = 2 * (s.in_channels // s.groups) * s.filters * s.size * s.size * h * w
        return conv, conv
    if isinstance(s, MaxPoolSpec):
        return 0, s.size * s.size * c * h * w
    if isinstance(s, ShortcutSpec):
        return 0, c * h * w
    return 0, 0

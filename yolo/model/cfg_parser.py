"""Darknet cfg text -> typed, validated layer specs (no torch).

The cfg is parsed once; the model is built from the specs (:mod:`yolo.model.cfg_specs`) and never re-reads
strings in forward. Every error names the file and the line it comes from. :mod:`yolo.model.cfg_reader`
cuts the text into sections and reads their values; this module turns each section into its spec.

Indices follow darknet: the first section after ``[net]`` is layer 0. Route and shortcut sources are
stored as absolute indices.
"""

from __future__ import annotations

from pathlib import Path

from yolo.errors import InputError, read_text
from yolo.model.cfg_counts import check_head_grids
from yolo.model.cfg_reader import (
    DARKNET_ONLY_SECTIONS,
    NET_KEYS,
    REQUIRED,
    YOLO_TRAINING_KEYS,
    Section,
    SectionReader,
    convert_value,
    split_sections,
)
from yolo.model.cfg_specs import (
    MAX_CLASSES,
    MAX_FILTERS,
    MAX_KERNEL,
    MAX_LAYERS,
    MAX_NET_SIZE,
    MAX_STRIDE,
    AvgPoolSpec,
    ConvSpec,
    DropoutSpec,
    LayerSpec,
    MaxPoolSpec,
    ModelSpec,
    NetSpec,
    RouteSpec,
    ScaleChannelsSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
)
from yolo.resources import resolve


def _parse_net(r: SectionReader) -> NetSpec:
    width = r.int("width", 416, 32, MAX_NET_SIZE)
    height = r.int("height", 416, 32, MAX_NET_SIZE)
    channels = r.int("channels", 3, 1, 64)
    letter_box = r.int("letter_box", None, 0, 1)
    extras = {k: convert_value(r.raw(k)) for k in r.sect.keys if k in NET_KEYS and k not in r.used}
    r.reject_unknown()
    return NetSpec(width=width, height=height, channels=channels, extras=extras, letter_box=letter_box)


def _square_stride(r: SectionReader) -> int:
    """``stride``, or darknet's ``stride_x`` / ``stride_y`` when they agree (unequal ones are refused)."""
    stride = r.int("stride", 1, 1, MAX_STRIDE)
    sx, sy = r.int("stride_x", stride, 1, MAX_STRIDE), r.int("stride_y", stride, 1, MAX_STRIDE)
    if sx != sy:
        raise r.error("stride_x", f"stride_x={sx} and stride_y={sy} in [{r.sect.name}] differ; this toolkit "
                                  "implements square strides only")
    return sx


def _parse_conv(r: SectionReader, index: int, in_channels: int, in_stride: int) -> ConvSpec:
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
        raise r.error("groups", f"groups={groups} must divide the input channels ({in_channels}) and filters "
                                f"({filters})")
    r.reject_unknown()
    return ConvSpec(
        index=index, line=r.sect.line, in_channels=in_channels, filters=filters, size=size, stride=stride,
        padding=padding, groups=groups, batch_normalize=bn, activation=act,
        out_channels=filters, out_stride=in_stride * stride,
    )


def _source(r: SectionReader, key: str, value: int, index: int) -> int:
    absolute = index + value if value < 0 else value
    if not 0 <= absolute < index:
        raise r.error(key, f"{key}={value} in [{r.sect.name}] (layer {index}) points to layer {absolute}, "
                           + (f"which does not exist yet (valid: 0..{index - 1} or -1..-{index})" if index
                              else "but a route or shortcut cannot be the first layer"))
    return absolute


def _parse_shortcut(r: SectionReader, index: int, layers: list[LayerSpec]) -> ShortcutSpec:
    if "," in r.sect.keys.get("from", ("", 0))[0]:
        raise r.error("from", "[shortcut] with several from= layers is not implemented (one layer only)")
    src = _source(r, "from", r.int("from", REQUIRED), index)
    act = r.activation("activation", "linear")
    prev, other = layers[index - 1], layers[src]
    if prev.out_stride != other.out_stride:
        raise r.error("from", f"[shortcut] adds layer {src} (stride {other.out_stride}) to layer {index - 1} "
                              f"(stride {prev.out_stride}); their maps must have the same size")
    r.reject_unknown()
    return ShortcutSpec(index=index, line=r.sect.line, source=src, activation=act,
                        out_channels=prev.out_channels, out_stride=prev.out_stride)


def _parse_route(r: SectionReader, index: int, layers: list[LayerSpec]) -> RouteSpec:
    sources = tuple(_source(r, "layers", v, index) for v in r.ints("layers", REQUIRED))
    groups = r.int("groups", 1, 1, MAX_FILTERS)
    group_id = r.int("group_id", 0, 0, groups - 1)
    strides = {layers[s].out_stride for s in sources}
    if len(strides) > 1:
        raise r.error("layers", f"[route] concatenates layers {list(sources)} with different strides {sorted(strides)}")
    for s in sources:
        if layers[s].out_channels % groups:
            raise r.error("groups", f"groups={groups} does not divide the {layers[s].out_channels} channels of "
                                    f"layer {s}")
    channels = sum(layers[s].out_channels for s in sources) // groups
    r.reject_unknown()
    return RouteSpec(index=index, line=r.sect.line, sources=sources, groups=groups, group_id=group_id,
                     out_channels=channels, out_stride=strides.pop())


def _parse_upsample(r: SectionReader, index: int, prev: LayerSpec) -> UpsampleSpec:
    stride = r.int("stride", 2, 1, MAX_STRIDE)
    if prev.out_stride % stride:
        raise r.error("stride", f"[upsample] stride={stride} does not divide the input's stride {prev.out_stride}")
    r.reject_unknown()
    return UpsampleSpec(index=index, line=r.sect.line, stride=stride,
                        out_channels=prev.out_channels, out_stride=prev.out_stride // stride)


def _parse_maxpool(r: SectionReader, index: int, prev: LayerSpec) -> MaxPoolSpec:
    stride = _square_stride(r)
    size = r.int("size", stride, 1, MAX_KERNEL)
    padding = r.int("padding", size - 1, 0, MAX_KERNEL)
    r.reject_unknown()
    return MaxPoolSpec(index=index, line=r.sect.line, size=size, stride=stride, padding=padding,
                       out_channels=prev.out_channels, out_stride=prev.out_stride * stride)


def _parse_yolo(r: SectionReader, index: int, prev: LayerSpec) -> YoloSpec:
    classes = r.int("classes", 20, 1, MAX_CLASSES)
    flat = r.floats("anchors", REQUIRED)
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
    # darknet's NMS for this head: greedynms thresholds DIoU at beta 0.6 (box_diou), diounms at beta_nms;
    # default (and cornersnms, which [yolo] does not know either) is IoU
    nms_kind = r.choice("nms_kind", "default", ("default", "greedynms", "diounms", "cornersnms"))
    beta_nms = r.float("beta_nms", 0.6, 0.0, 100.0)
    diou_beta = {"greedynms": 0.6, "diounms": beta_nms}.get(nms_kind)
    extras = {k: convert_value(r.raw(k)) for k in list(r.sect.keys) if k in YOLO_TRAINING_KEYS}
    r.reject_unknown()
    return YoloSpec(index=index, line=r.sect.line, mask=mask, anchors=anchors, classes=classes,
                    scale_x_y=scale_x_y, new_coords=new_coords, diou_beta=diou_beta, extras=extras,
                    out_channels=prev.out_channels, out_stride=prev.out_stride)


def _parse_avgpool(r: SectionReader, index: int, prev: LayerSpec) -> AvgPoolSpec:
    r.reject_unknown()
    return AvgPoolSpec(index=index, line=r.sect.line, out_channels=prev.out_channels, out_stride=0)


def _parse_scale_channels(r: SectionReader, index: int, layers: list[LayerSpec]) -> ScaleChannelsSpec:
    src = _source(r, "from", r.int("from", REQUIRED), index)
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


def _parse_dropout(r: SectionReader, index: int, prev: LayerSpec) -> DropoutSpec:
    p = r.float("probability", 0.5, 0.0, 1.0)
    r.reject_unknown()
    return DropoutSpec(index=index, line=r.sect.line, probability=p,
                       out_channels=prev.out_channels, out_stride=prev.out_stride)


# ----------------------------------------------------------------------------- entry points


def parse_cfg_text(text: str, source: str = "<cfg>") -> ModelSpec:
    """Parse darknet cfg text into a :class:`ModelSpec`; raise :class:`InputError` naming ``source:line``."""
    sections = split_sections(text, source)
    if not sections or sections[0].name not in ("net", "network"):
        line = sections[0].line if sections else 1
        raise InputError("a darknet cfg must start with a [net] section", source, line)
    net = _parse_net(SectionReader(sections[0], source))
    if len(sections) - 1 > MAX_LAYERS:
        raise InputError(f"{len(sections) - 1} layers; at most {MAX_LAYERS} are allowed", source, sections[-1].line)
    layers: list[LayerSpec] = []
    for index, sect in enumerate(sections[1:]):
        layers.append(_parse_layer(sect, source, index, net, layers))
    if not layers:
        raise InputError("the cfg has no layers after [net]", source, sections[0].line)
    spec = ModelSpec(net=net, layers=tuple(layers), text=text, source=source)
    check_head_grids(spec)
    return spec


def _parse_layer(sect: Section, source: str, index: int, net: NetSpec, layers: list[LayerSpec]) -> LayerSpec:
    r = SectionReader(sect, source)
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
        raise InputError("is a folder, not a cfg file" if path.is_dir() else "cfg file not found", str(path))
    text = read_text(path, "a darknet .cfg")
    return parse_cfg_text(text, str(path))

"""Shapes and counts of a parsed cfg (no torch): each layer's output ``(C, H, W)`` by darknet's formulas,
parameters, the floats a ``.weights`` file holds per conv, and darknet's two FLOPs conventions."""

from __future__ import annotations

from yolo.errors import InputError
from yolo.model.cfg_specs import (
    AvgPoolSpec,
    ConvSpec,
    LayerSpec,
    MaxPoolSpec,
    ModelSpec,
    RouteSpec,
    ScaleChannelsSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
)


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


def check_head_grids(spec: ModelSpec) -> None:
    """Refuse a cfg whose heads get grids other than input / stride cells: a padding beyond darknet's usual
    (``pad=0`` with ``size=3``, ``padding=2``) changes a map's size, and darknet then decodes on that odd grid
    (``x = (col + p) / grid_w * net_w``) where this toolkit's heads decode on ``stride``-pixel cells, so every box
    would be off. Map sizes differ from input / stride by the same cells at every input size that is a multiple
    of the largest stride, so one size decides."""
    heads = [s for s in spec.layers if isinstance(s, YoloSpec)]
    if not heads:
        return
    n = 8 * max(s.out_stride for s in spec.layers)
    shapes = layer_shapes(spec, n, n)

    def off(i: int) -> bool:
        s = spec.layers[i]
        return s.out_stride > 0 and shapes[i][1:] != (n // s.out_stride, n // s.out_stride)

    for head in heads:
        if not off(head.index - 1):
            continue
        first = head.index - 1  # back along the head's input to where its map first went off
        while spec.layers[first].inputs and off(spec.layers[first].inputs[0]):
            first = spec.layers[first].inputs[0]
        layer, got = spec.layers[first], shapes[first][1]
        raise InputError(f"[{layer.kind}] (layer {first}) makes its map {got}x{got} for a {n}x{n} input, not input / "
                         f"stride {layer.out_stride} = {n // layer.out_stride}x{n // layer.out_stride}, so [yolo] "
                         f"layer {head.index} would decode on another grid; this toolkit's heads need every map to "
                         "be the input size / its stride (the usual pad=1, or a maxpool's padding = size - 1)",
                         spec.source, layer.line)


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

"""The torch-free darknet cfg parser: shipped cfgs, syntax tolerance, extras, errors, and geometry.

Expected numbers for the shipped cfgs are published facts about the official darknet networks
(layer indices of the heads, parameter counts as torch/ultralytics report them), not our outputs.
Geometry expectations for hand-made cfgs are worked out by hand in the comments next to them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from yolo.errors import InputError
from yolo.model.cfg_counts import conv_param_count, layer_shapes, param_count
from yolo.model.cfg_parser import parse_cfg, parse_cfg_text
from yolo.model.cfg_specs import ConvSpec, MaxPoolSpec, RouteSpec, ShortcutSpec, UpsampleSpec, YoloSpec

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "cfg"
SRC = "test.cfg"


def expect_error(text: str, line: int, *needles: str, source: str = SRC) -> str:
    """Parse ``text``; it must raise InputError at ``source:line`` whose message contains every needle."""
    with pytest.raises(InputError) as info:
        parse_cfg_text(text, source)
    msg = str(info.value)
    assert msg.startswith(f"{source}:{line}: "), msg
    assert info.value.path == source and info.value.line == line
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert "\n" not in msg  # one line
    return msg


def line_at(text: str, line: int) -> str:
    """The text of 1-based ``line`` (used to double-check the hand-counted line numbers of the test cfgs)."""
    return text.splitlines()[line - 1]


# ============================================================================ shipped cfgs

SHIPPED = {
    # name: (layers, yolo head indices, params as torch counts them (BN gamma+beta, conv bias on outputs))
    "yolov3": (107, [82, 94, 106], 61_949_149),
    "yolov3-tiny": (24, [16, 23], 8_852_366),
    "yolov3-spp": (114, [89, 101, 113], 62_998_749),
}


@pytest.fixture(scope="module")
def shipped():
    return {name: parse_cfg(CFG / f"{name}.cfg") for name in SHIPPED}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_cfg_layers_heads_params(shipped, name):
    n_layers, heads, params = SHIPPED[name]
    spec = shipped[name]
    assert len(spec.layers) == n_layers
    assert [s.index for s in spec.layers] == list(range(n_layers))
    assert [h.index for h in spec.heads] == heads
    assert [i for i, s in enumerate(spec.layers) if isinstance(s, YoloSpec)] == heads
    assert param_count(spec) == params
    assert spec.num_classes == 80
    assert (spec.net.width, spec.net.height, spec.net.channels) == (416, 416, 3)
    assert spec.source == str(CFG / f"{name}.cfg")
    # COCO anchors of YOLOv3; the big anchors go to the stride-32 head
    all_anchors = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
    tiny_anchors = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
    for h in spec.heads:
        assert h.classes == 80
        assert h.anchors == (tiny_anchors if name == "yolov3-tiny" else all_anchors)
        assert h.out_channels == len(h.mask) * 85 == 255
    assert [h.out_stride for h in spec.heads] == ([32, 16] if name == "yolov3-tiny" else [32, 16, 8])
    big = ((81, 82), (135, 169), (344, 319)) if name == "yolov3-tiny" else ((116, 90), (156, 198), (373, 326))
    assert spec.heads[0].head_anchors == big


def test_yolov3_fused_param_count(shipped):
    assert param_count(shipped["yolov3"], fused=True) == 61_922_845
    # folding BN removes one of (gamma, beta) per BN channel, so the difference is the BN channel count
    for name, spec in shipped.items():
        bn_channels = sum(s.filters for s in spec.layers if isinstance(s, ConvSpec) and s.batch_normalize)
        assert param_count(spec) - param_count(spec, fused=True) == bn_channels


def test_layer_kinds_of_official_networks(shipped):
    def kinds(spec):
        out: dict[str, int] = {}
        for s in spec.layers:
            out[s.kind] = out.get(s.kind, 0) + 1
        return out

    # YOLOv3: 52 convs of darknet-53 + 23 in the heads; 23 residual shortcuts (1+2+8+8+4)
    assert kinds(shipped["yolov3"]) == {"convolutional": 75, "shortcut": 23, "route": 4, "upsample": 2, "yolo": 3}
    assert kinds(shipped["yolov3-tiny"]) == {"convolutional": 13, "maxpool": 6, "route": 2, "upsample": 1, "yolo": 2}
    spp = kinds(shipped["yolov3-spp"])
    assert spp["maxpool"] == 3 and spp["yolo"] == 3 and spp["shortcut"] == 23
    sizes = [s.size for s in shipped["yolov3-spp"].layers if isinstance(s, MaxPoolSpec)]
    assert sizes == [5, 9, 13]


@pytest.mark.parametrize("name", list(SHIPPED))
@pytest.mark.parametrize("height,width", [(416, 416), (256, 320), (320, 256)])
def test_layer_shapes_head_maps(shipped, name, height, width):
    spec = shipped[name]
    shapes = layer_shapes(spec, height, width)
    assert len(shapes) == len(spec.layers)
    strides = [32, 16] if name == "yolov3-tiny" else [32, 16, 8]
    assert [shapes[h.index] for h in spec.heads] == [(255, height // s, width // s) for s in strides]
    if (height, width) == (416, 416):
        assert [shapes[h.index][1] for h in spec.heads] == ([13, 26] if name == "yolov3-tiny" else [13, 26, 52])
    # every layer's spatial size matches the stride the parser tracked
    for s, (c, h, w) in zip(spec.layers, shapes):
        assert c == s.out_channels
        assert (h, w) == (height // s.out_stride, width // s.out_stride)


def test_tiny_stride1_maxpool_keeps_13x13(shipped):
    spec = shipped["yolov3-tiny"]
    shapes = layer_shapes(spec, 416, 416)
    pool = spec.layers[11]
    assert isinstance(pool, MaxPoolSpec) and (pool.size, pool.stride, pool.padding) == (2, 1, 1)
    assert shapes[10] == (512, 13, 13) and shapes[11] == (512, 13, 13)
    # route layers=-1,8 -> upsampled 128 channels + layer 8's 256 channels
    route = spec.layers[20]
    assert isinstance(route, RouteSpec) and route.sources == (19, 8) and route.out_channels == 384
    assert shapes[20] == (384, 26, 26)


def test_layer_shapes_reject_inputs_that_do_not_fit(shipped):
    # 416+32 = 448 is fine, but 400 is not a multiple of 32: yolov3's route concatenates 25x25 and 26x26
    with pytest.raises(InputError) as info:
        layer_shapes(shipped["yolov3"], 400, 416)
    assert str(info.value).startswith(f"{shipped['yolov3'].source}:")


# ============================================================================ syntax tolerance

LOOSE = """# leading comment
; another comment style

[NET]
  width = 64  
height=32 ; trailing comment
channels= 3 # trailing comment

\t
[Convolutional]
  filters =  16 
SIZE=3
   pad=1
BATCH_NORMALIZE=1
activation = LEAKY

# between sections
[MAXPOOL]
size=2
stride=2
[ yolo ]
mask = 0
anchors = 10,13,  16,30
classes=11
"""


def test_loose_syntax_is_accepted():
    spec = parse_cfg_text(LOOSE)
    assert (spec.net.width, spec.net.height, spec.net.channels) == (64, 32, 3)
    conv, pool, yolo = spec.layers
    assert isinstance(conv, ConvSpec)
    assert (conv.filters, conv.size, conv.stride, conv.padding) == (16, 3, 1, 1)
    assert conv.batch_normalize and conv.activation == "leaky" and conv.in_channels == 3
    assert conv.line == 10  # the [Convolutional] header
    assert isinstance(pool, MaxPoolSpec) and (pool.size, pool.stride, pool.padding) == (2, 2, 1)
    assert pool.line == 18
    assert isinstance(yolo, YoloSpec)
    assert yolo.mask == (0,) and yolo.anchors == ((10, 13), (16, 30)) and yolo.classes == 11
    assert yolo.out_channels == 16 == 1 * (11 + 5)


def test_crlf_line_endings_parse_the_same():
    a = parse_cfg_text(LOOSE)
    b = parse_cfg_text(LOOSE.replace("\n", "\r\n"))
    assert a.layers == b.layers and a.net == b.net


def test_network_alias_and_comment_only_lines():
    spec = parse_cfg_text("[network]\n#x\n;y\n[convolutional]\nfilters=2\n")
    assert spec.layers[0].filters == 2 and spec.layers[0].in_channels == 3


# ============================================================================ extras are kept as data


def test_yolo_training_keys_and_net_keys_are_kept_as_data():
    text = """[net]
learning_rate=0.001
steps=400000,450000
scales=.1,.1
policy=steps
[convolutional]
filters=18
[yolo]
mask=0,1,2
anchors=1,2, 3,4, 5,6
classes=1
jitter=.3
ignore_thresh = .7
truth_thresh = 1
random=1
"""
    spec = parse_cfg_text(text)
    assert spec.net.extras == {"learning_rate": 0.001, "steps": [400000, 450000], "scales": [0.1, 0.1],
                               "policy": "steps"}
    (yolo,) = spec.heads
    assert yolo.extras == {"jitter": 0.3, "ignore_thresh": 0.7, "truth_thresh": 1, "random": 1}
    assert isinstance(yolo.extras["truth_thresh"], int) and isinstance(yolo.extras["jitter"], float)
    # the training keys change nothing structural
    assert yolo.mask == (0, 1, 2) and yolo.classes == 1 and yolo.scale_x_y == 1.0


def test_shipped_yolo_extras(shipped):
    for spec in shipped.values():
        for h in spec.heads:
            assert h.extras == {"jitter": 0.3, "ignore_thresh": 0.7, "truth_thresh": 1, "random": 1}
        assert spec.net.extras["learning_rate"] == 0.001
        assert spec.net.extras["steps"] == [400000, 450000]
        assert "width" not in spec.net.extras and "channels" not in spec.net.extras


# ============================================================================ errors name source:line


def test_unknown_section():
    text = "[net]\nchannels=3\n[convolutional]\nfilters=4\n[frobnicate]\nx=1\n"
    assert line_at(text, 5) == "[frobnicate]"
    expect_error(text, 5, "unknown section [frobnicate]", "convolutional", "maxpool", "yolo")


def test_unknown_key_lists_known_keys():
    text = "[net]\n[convolutional]\nfilters=4\nsize=3\nfliters=8\nactivation=leaky\n"
    assert line_at(text, 5) == "fliters=8"
    msg = expect_error(text, 5, "unknown key 'fliters'", "[convolutional]", "known:")
    known = msg.split("known:")[1]
    for key in ("filters", "size", "stride", "pad", "batch_normalize", "activation", "groups"):
        assert key in known


def test_unknown_net_key():
    text = "[net]\nwidth=416\nwidht=416\n[convolutional]\nfilters=4\n"
    expect_error(text, 3, "unknown key 'widht'", "[net]", "width")


@pytest.mark.parametrize(
    "line,needles",
    [
        ("filters=abc", ("filters='abc'", "expected an integer")),
        ("filters=16.5", ("filters='16.5'", "expected an integer")),
        ("activation=sigmoidal", ("activation='sigmoidal'", "expected one of", "leaky")),
        ("batch_normalize=yes", ("batch_normalize='yes'", "expected an integer")),
    ],
)
def test_bad_value(line, needles):
    text = f"[net]\nchannels=3\n[convolutional]\nsize=3\n{line}\n"
    assert line_at(text, 5) == line
    expect_error(text, 5, *needles)


@pytest.mark.parametrize(
    "line,needles",
    [
        ("size=0", ("size=0", "expected a value in [1,")),
        ("filters=0", ("filters=0", "expected a value in [1,")),
        ("stride=-2", ("stride=-2", "expected a value in [1,")),
        ("pad=2", ("pad=2", "expected a value in [0, 1]")),
        ("filters=100000000", ("filters=100000000", "expected a value in [1,")),
    ],
)
def test_out_of_range_value(line, needles):
    text = f"[net]\nchannels=3\n[convolutional]\nactivation=leaky\n{line}\n"
    expect_error(text, 5, *needles)


def test_net_size_out_of_range():
    expect_error("[net]\nwidth=416\nheight=0\n[convolutional]\n", 3, "height=0", "expected a value in")


def test_bad_float_list():
    text = "[net]\n[convolutional]\nfilters=6\n[yolo]\nclasses=1\nanchors=10,13,x,30\n"
    expect_error(text, 6, "anchors=", "expected comma-separated finite numbers")


def test_nms_kind_is_read_and_a_kind_darknet_does_not_know_is_refused():
    """``nms_kind`` and ``beta_nms`` were kept as inert data; they now choose the NMS (darknet's parse_yolo)."""
    head = "[net]\n[convolutional]\nfilters=18\n[yolo]\nclasses=1\nanchors=10,13, 16,30, 33,23\n"
    assert parse_cfg_text(head + "nms_kind=greedynms\nbeta_nms=0.9\n", SRC).diou_beta == 0.6  # box_diou's 0.6
    assert parse_cfg_text(head + "nms_kind=DIOUNMS\nbeta_nms=0.9\n", SRC).diou_beta == 0.9
    assert parse_cfg_text(head + "nms_kind=cornersnms\n", SRC).diou_beta is None  # [yolo]: IoU, as darknet
    assert parse_cfg_text(head, SRC).diou_beta is None
    expect_error(head + "nms_kind=fastnms\n", 7, "nms_kind='fastnms' in [yolo]: expected one of default, greedynms")


ROUTE_BASE = "[net]\nchannels=3\n[convolutional]\nfilters=4\n[convolutional]\nfilters=4\n[route]\n"
# layer 0 at line 3, layer 1 at line 5, the route (layer 2) at line 7, its key at line 8


@pytest.mark.parametrize("layers", ["2", "3", "7", "-3", "-100", "0,2", "-1,5"])
def test_route_to_missing_layer(layers):
    text = ROUTE_BASE + f"layers={layers}\n"
    assert line_at(text, 8) == f"layers={layers}"
    expect_error(text, 8, "[route] (layer 2)", "does not exist yet")


def test_route_valid_positive_and_negative_indices():
    spec = parse_cfg_text(ROUTE_BASE + "layers=0,-1\n")
    assert spec.layers[2].sources == (0, 1) and spec.layers[2].out_channels == 8
    spec = parse_cfg_text(ROUTE_BASE + "layers=-2\n")
    assert spec.layers[2].sources == (0,)


def test_route_as_first_layer_has_nothing_to_point_at():
    expect_error("[net]\n[route]\nlayers=-1\n", 3, "cannot be the first layer")


def test_shortcut_to_future_layer():
    text = "[net]\n[convolutional]\nfilters=4\n[convolutional]\nfilters=4\n[shortcut]\nactivation=linear\nfrom=2\n"
    assert line_at(text, 8) == "from=2"
    expect_error(text, 8, "from=2", "[shortcut] (layer 2)", "does not exist yet")
    expect_error(text.replace("from=2", "from=-3"), 8, "from=-3", "does not exist yet")


def test_shortcut_needs_from():
    text = "[net]\n[convolutional]\nfilters=4\n[shortcut]\nactivation=linear\n"
    expect_error(text, 4, "[shortcut] needs the key 'from'")


def test_shortcut_with_different_channels_keeps_the_previous_layers():
    """AlexeyAB's shortcut adds over the channels both have (yolov3-tiny-prn); the output has the previous's."""
    text = "[net]\n[convolutional]\nfilters=4\n[convolutional]\nfilters=8\n[shortcut]\nfrom=-2\n"
    sc = parse_cfg_text(text).layers[2]
    assert isinstance(sc, ShortcutSpec) and sc.source == 0 and sc.out_channels == 8
    assert layer_shapes(parse_cfg_text(text), 32, 32)[2] == (8, 32, 32)


def test_shortcut_mismatched_strides():
    text = "[net]\n[convolutional]\nfilters=4\n[convolutional]\nfilters=4\nstride=2\n[shortcut]\nfrom=-2\n"
    assert line_at(text, 8) == "from=-2"
    expect_error(text, 8, "stride 1", "stride 2", "same size")


def test_shortcut_ok():
    text = "[net]\n[convolutional]\nfilters=4\n[convolutional]\nfilters=4\n[shortcut]\nfrom=-2\nactivation=leaky\n"
    sc = parse_cfg_text(text).layers[2]
    assert isinstance(sc, ShortcutSpec) and sc.source == 0 and sc.activation == "leaky" and sc.out_channels == 4


def test_route_concatenating_different_strides():
    text = ("[net]\n[convolutional]\nfilters=4\n[convolutional]\nfilters=4\nstride=2\n"
            "[route]\nlayers=-1,-2\n")
    assert line_at(text, 8) == "layers=-1,-2"
    expect_error(text, 8, "different strides", "[1, 2]")


YOLO_OK = """[net]
[convolutional]
filters=14
[yolo]
mask=0,1
anchors=10,13, 16,30, 33,23
num=3
classes=2
"""
# [yolo] header at line 4, mask at 5, anchors at 6, num at 7, classes at 8; needs 2 * (2 + 5) = 14 filters


def test_yolo_ok():
    (yolo,) = parse_cfg_text(YOLO_OK).heads
    assert yolo.head_anchors == ((10, 13), (16, 30)) and yolo.out_channels == 14


def test_yolo_mask_names_missing_anchor():
    text = YOLO_OK.replace("mask=0,1", "mask=1,3")
    assert line_at(text, 5) == "mask=1,3"
    expect_error(text, 5, "mask [1, 3]", "anchors [3]", "0..2")


def test_yolo_odd_anchor_values():
    text = YOLO_OK.replace("anchors=10,13, 16,30, 33,23", "anchors=10,13, 16,30, 33").replace("num=3\n", "")
    assert line_at(text, 6).startswith("anchors=")
    expect_error(text, 6, "5 numbers", "pairs")


def test_yolo_num_disagrees_with_anchors():
    text = YOLO_OK.replace("num=3", "num=4")
    assert line_at(text, 7) == "num=4"
    expect_error(text, 7, "num=4", "3 pairs")


def test_yolo_nonpositive_anchor():
    expect_error(YOLO_OK.replace("16,30", "16,0"), 6, "positive")


@pytest.mark.parametrize("old,new,line", [("16,30", "nan,nan", 6), ("16,30", "inf,30", 6),
                                          ("classes=2", "classes=2\nscale_x_y=nan", 9)])
def test_non_finite_numbers_are_rejected(old, new, line):
    expect_error(YOLO_OK.replace(old, new), line, "finite number")


def test_conv_before_yolo_with_wrong_filter_count():
    text = YOLO_OK.replace("filters=14", "filters=255")
    # the error names the [yolo] section and the layer that feeds it
    expect_error(text, 4, "needs 14 channels", "layer 0", "gives 255")
    expect_error(YOLO_OK.replace("classes=2", "classes=80"), 4, "needs 170 channels", "gives 14")


def test_cfg_must_start_with_net():
    expect_error("[convolutional]\nfilters=4\n", 1, "must start with a [net]")
    expect_error("# comment\n\n[convolutional]\nfilters=4\n[net]\n", 3, "must start with a [net]")
    expect_error("", 1, "must start with a [net]")
    expect_error("# only a comment\n", 1, "must start with a [net]")


def test_net_without_layers():
    expect_error("# c\n[net]\nwidth=416\n", 2, "no layers")


def test_key_value_before_any_section():
    text = "# comment\nwidth=416\n[net]\n[convolutional]\n"
    expect_error(text, 2, "'width=416'", "before the first [section]")


def test_line_without_equals():
    text = "[net]\nwidth 416\n[convolutional]\n"
    expect_error(text, 2, "expected key=value", "'width 416'")
    expect_error("[net]\n[convolutional]\nfilters=\n", 3, "expected key=value")
    expect_error("[net]\n[convolutional]\n=4\n", 3, "expected key=value")


def test_malformed_section_header():
    expect_error("[net]\n[convolutional\nfilters=4\n", 2, "malformed section header", "[name]")
    expect_error("[net]\n[]\n", 2, "malformed section header")


def test_repeated_key():
    text = "[net]\nwidth=416\nheight=416\n\nWIDTH=320\n[convolutional]\n"
    expect_error(text, 5, "'width' repeated", "[net]", "first at line 2")


def test_same_key_in_different_sections_is_fine():
    spec = parse_cfg_text("[net]\n[convolutional]\nfilters=4\n[convolutional]\nfilters=8\n")
    assert [s.filters for s in spec.layers] == [4, 8]
    assert spec.layers[1].in_channels == 4


def test_missing_file(tmp_path):
    path = tmp_path / "nope.cfg"
    with pytest.raises(InputError) as info:
        parse_cfg(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "not found" in msg
    assert info.value.path == str(path) and info.value.line is None


def test_parse_cfg_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.cfg"
    path.write_text("[net]\n[convolutional]\nsize=0\n")
    with pytest.raises(InputError) as info:
        parse_cfg(path)
    assert str(info.value).startswith(f"{path}:3: ")
    binary = tmp_path / "bin.cfg"
    binary.write_bytes(b"\xff\xfe\x00\x80garbage")
    with pytest.raises(InputError, match=r"bin.cfg:1: not UTF-8 text \(byte 0xff\); expected a darknet .cfg$"):
        parse_cfg(binary)
    latin = tmp_path / "latin.cfg"
    latin.write_bytes(b"[net]\n# caf\xe9\nwidth=416\n")
    with pytest.raises(InputError, match=r"latin.cfg:2: not UTF-8 text \(byte 0xe9\); expected a darknet .cfg$"):
        parse_cfg(latin)
    wide = tmp_path / "wide.cfg"
    wide.write_text("[net]\nwidth=416\n", encoding="utf-16")
    with pytest.raises(InputError, match=r"wide.cfg: UTF-16 text \(as PowerShell's '>' writes it\): save it as "
                                         r"UTF-8; expected a darknet .cfg$"):
        parse_cfg(wide)


def test_conv_groups_must_divide_channels():
    text = "[net]\nchannels=3\n[convolutional]\nfilters=4\ngroups=2\n"
    assert line_at(text, 5) == "groups=2"
    expect_error(text, 5, "groups=2", "(3)")
    text = "[net]\nchannels=4\n[convolutional]\nfilters=3\ngroups=2\n"
    expect_error(text, 5, "groups=2", "(3)")
    spec = parse_cfg_text("[net]\nchannels=4\n[convolutional]\nfilters=6\ngroups=2\nsize=3\n")
    assert spec.layers[0].groups == 2 and conv_param_count(spec.layers[0]) == 6 * 2 * 3 * 3 + 6


def test_route_groups_must_divide_channels():
    text = "[net]\n[convolutional]\nfilters=8\n[route]\nlayers=-1\ngroups=3\n"
    assert line_at(text, 6) == "groups=3"
    expect_error(text, 6, "groups=3", "8 channels")
    text = "[net]\n[convolutional]\nfilters=8\n[route]\nlayers=-1\ngroups=2\ngroup_id=2\n"
    expect_error(text, 7, "group_id=2", "expected a value in [0, 1]")


# ============================================================================ route groups (yolov4-tiny)

V4_TINY_BLOCK = """[net]
width=64
height=64
[convolutional]
batch_normalize=1
filters=64
size=3
stride=2
pad=1
activation=leaky
[route]
layers=-1
groups=2
group_id=1
[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky
[route]
layers=-1,-3
"""


def test_route_groups_give_half_the_channels():
    spec = parse_cfg_text(V4_TINY_BLOCK)
    conv0, split, conv2, cat = spec.layers
    assert isinstance(split, RouteSpec)
    assert split.sources == (0,) and split.groups == 2 and split.group_id == 1
    assert split.out_channels == 64 // 2 == 32
    assert conv2.in_channels == 32  # the conv after the split sees half the channels
    assert cat.sources == (2, 0) and cat.groups == 1 and cat.out_channels == 32 + 64
    # geometry: the stride-2 conv halves 64 -> 32; the split keeps the map, only channels halve
    assert layer_shapes(spec, 64, 96) == [(64, 32, 48), (32, 32, 48), (32, 32, 48), (96, 32, 48)]


# ============================================================================ maxpool geometry

POOLS = """[net]
channels=3
[convolutional]
filters=4
size=1
[maxpool]
size=2
stride=2
[maxpool]
size=2
stride=1
[maxpool]
size=2
stride=2
padding=0
[maxpool]
size=3
stride=2
[maxpool]
size=5
stride=1
"""


def test_maxpool_specs_default_padding_is_size_minus_one():
    spec = parse_cfg_text(POOLS)
    pools = [s for s in spec.layers if isinstance(s, MaxPoolSpec)]
    assert [(p.size, p.stride, p.padding) for p in pools] == [(2, 2, 1), (2, 1, 1), (2, 2, 0), (3, 2, 2), (5, 1, 4)]
    assert [p.out_stride for p in pools] == [2, 2, 4, 8, 8]
    # stride alone: size defaults to the stride
    (pool,) = parse_cfg_text("[net]\n[maxpool]\nstride=2\n").layers
    assert (pool.size, pool.stride, pool.padding) == (2, 2, 1)


def test_maxpool_geometry_odd_input():
    # darknet: out = (n + padding - size) // stride + 1, padding defaults to size - 1. Input 13 x 7 (H x W).
    # conv 1x1:                          (4, 13, 7)
    # size 2 stride 2 pad 1:  H (13+1-2)//2+1 = 7,  W (7+1-2)//2+1 = 4   -> (4, 7, 4)   (ceil(n/2))
    # size 2 stride 1 pad 1:  H (7+1-2)//1+1 = 7,   W (4+1-2)//1+1 = 4   -> (4, 7, 4)   (keeps the size)
    # size 2 stride 2 pad 0:  H (7+0-2)//2+1 = 3,   W (4+0-2)//2+1 = 2   -> (4, 3, 2)   (floor(n/2))
    # size 3 stride 2 pad 2:  H (3+2-3)//2+1 = 2,   W (2+2-3)//2+1 = 1   -> (4, 2, 1)
    # size 5 stride 1 pad 4:  H (2+4-5)//1+1 = 2,   W (1+4-5)//1+1 = 1   -> (4, 2, 1)
    spec = parse_cfg_text(POOLS)
    assert layer_shapes(spec, 13, 7) == [(4, 13, 7), (4, 7, 4), (4, 7, 4), (4, 3, 2), (4, 2, 1), (4, 2, 1)]


def test_maxpool_geometry_even_input():
    # Input 12 x 10:
    # size 2 stride 2 pad 1:  H (12+1-2)//2+1 = 6,  W (10+1-2)//2+1 = 5  -> (4, 6, 5)
    # size 2 stride 1 pad 1:  keeps                                      -> (4, 6, 5)
    # size 2 stride 2 pad 0:  H (6-2)//2+1 = 3,     W (5-2)//2+1 = 2     -> (4, 3, 2)
    # size 3 stride 2 pad 2:  H (3+2-3)//2+1 = 2,   W (2+2-3)//2+1 = 1   -> (4, 2, 1)
    # size 5 stride 1 pad 4:  keeps                                      -> (4, 2, 1)
    spec = parse_cfg_text(POOLS)
    assert layer_shapes(spec, 12, 10) == [(4, 12, 10), (4, 6, 5), (4, 6, 5), (4, 3, 2), (4, 2, 1), (4, 2, 1)]


def test_maxpool_out_size_formula():
    (pool,) = parse_cfg_text("[net]\n[maxpool]\nsize=2\nstride=2\n").layers
    assert [pool.out_size(n) for n in (1, 2, 3, 13, 26)] == [1, 1, 2, 7, 13]  # ceil(n / 2)
    (pool,) = parse_cfg_text("[net]\n[maxpool]\nsize=2\nstride=1\n").layers
    assert [pool.out_size(n) for n in (1, 2, 13)] == [1, 2, 13]


def test_empty_map_is_an_error():
    # size 2 stride 2 padding 0 on a 1-pixel-wide map: (1 + 0 - 2) // 2 + 1 = 0
    text = "[net]\n[maxpool]\nsize=2\nstride=2\npadding=0\n"
    spec = parse_cfg_text(text, SRC)
    with pytest.raises(InputError) as info:
        layer_shapes(spec, 4, 1)
    assert str(info.value).startswith(f"{SRC}:2: ")


def test_upsample_geometry_and_stride():
    text = "[net]\n[convolutional]\nfilters=4\nstride=4\nsize=3\npad=1\n[upsample]\nstride=2\n[upsample]\nstride=4\n"
    expect_error(text, 10, "stride=4", "does not divide")
    spec = parse_cfg_text(text.replace("[upsample]\nstride=4\n", ""))
    up = spec.layers[1]
    assert isinstance(up, UpsampleSpec) and up.out_stride == 2
    # conv 3x3 stride 4 pad 1 on 16 x 8: (16+2-3)//4+1 = 4, (8+2-3)//4+1 = 2; upsample x2 -> 8 x 4
    assert layer_shapes(spec, 16, 8) == [(4, 4, 2), (4, 8, 4)]


# ============================================================================ no torch


def test_parser_imports_no_torch():
    code = "import sys; import yolo.model.cfg_parser, yolo.model.cfg_counts, yolo.errors; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

"""Darknet ``.weights`` files: layout, both header variants, round trips, cutoff and bad files.

The oracle for the layout is a writer in this file that follows darknet's format description
(header, then per conv: BN beta, gamma, mean, variance or the conv bias, then OIHW weights).
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import torch

from tests.helpers import CFG
from yolo import Darknet, DarknetHeader, InputError, load_model
from yolo.cli import main
from yolo.model.cfg_parser import parse_cfg
from yolo.model.cfg_specs import ConvSpec

TINY = CFG / "yolov3-tiny.cfg"


def write_reference_weights(path, cfg, major=0, minor=2, revision=0, seen=123456789, cutoff=None, seed=0):
    """Write a darknet file from random arrays, independently of our writer; return the arrays per layer."""
    spec = Darknet.from_cfg(cfg).spec
    rng = np.random.default_rng(seed)
    layers = {}
    with open(path, "wb") as f:
        f.write(struct.pack("<iii", major, minor, revision))
        f.write(struct.pack("<Q" if major * 10 + minor >= 2 else "<I", seen))
        for s in spec.layers[:cutoff]:
            if not isinstance(s, ConvSpec):
                continue
            n = s.filters
            w = rng.standard_normal((n, s.in_channels // s.groups, s.size, s.size)).astype("<f4")
            parts = {"bias": rng.standard_normal(n).astype("<f4")}
            if s.batch_normalize:
                parts["gamma"] = rng.standard_normal(n).astype("<f4")
                parts["mean"] = rng.standard_normal(n).astype("<f4")
                parts["var"] = rng.uniform(0.1, 2, n).astype("<f4")
            parts["weight"] = w
            for a in parts.values():
                f.write(a.tobytes())
            layers[s.index] = parts
    return layers


@pytest.mark.parametrize("minor,seen_bytes", [(1, 4), (2, 8)])
def test_layout_and_both_header_variants(tmp_path, minor, seen_bytes):
    path = tmp_path / "ref.weights"
    ref = write_reference_weights(path, TINY, minor=minor, seen=4_000_000_000 if seen_bytes == 8 else 77)
    model = Darknet.from_cfg(TINY)
    header = model.load_darknet_weights(path)
    assert (header.major, header.minor, header.nbytes) == (0, minor, 12 + seen_bytes)
    assert header.seen == (4_000_000_000 if seen_bytes == 8 else 77)
    for index, parts in ref.items():
        block = model.module_list[index]
        assert torch.equal(block.conv.weight, torch.from_numpy(parts["weight"]))
        if block.bn is not None:
            assert torch.equal(block.bn.bias, torch.from_numpy(parts["bias"]))
            assert torch.equal(block.bn.weight, torch.from_numpy(parts["gamma"]))
            assert torch.equal(block.bn.running_mean, torch.from_numpy(parts["mean"]))
            assert torch.equal(block.bn.running_var, torch.from_numpy(parts["var"]))
        else:
            assert torch.equal(block.conv.bias, torch.from_numpy(parts["bias"]))


@pytest.mark.parametrize("minor", [1, 2])
def test_round_trip_through_checkpoint_is_byte_identical(tmp_path, minor):
    src = tmp_path / "a.weights"
    write_reference_weights(src, TINY, minor=minor, revision=5, seen=987654)
    assert main(["convert-weights", str(src), "--cfg", str(TINY), "-o", str(tmp_path / "a.pt")]) == 0
    assert main(["convert-weights", str(tmp_path / "a.pt"), "-o", str(tmp_path / "b.weights")]) == 0
    assert (tmp_path / "b.weights").read_bytes() == src.read_bytes()
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    assert ckpt["darknet"] == {"major": 0, "minor": minor, "revision": 5, "seen": 987654, "cutoff": None}
    assert ckpt["cfg"] == TINY.read_text()


def test_cutoff_backbone_file(tmp_path, capsys):
    """A yolov3-tiny.conv.15-style file: the convs among the first 15 layers (0..14)."""
    src = tmp_path / "yolov3-tiny.conv.15"
    ref = write_reference_weights(src, TINY, cutoff=15)
    model = Darknet.from_cfg(TINY)
    untouched = model.module_list[15].conv.weight.clone()
    with pytest.raises(InputError, match=r"ends exactly after layer 14: a backbone file\? read it with cutoff=15 "
                                         r"\(in a run YAML: cutoff: 15\)"):
        model.load_darknet_weights(src)
    assert main(["convert-weights", str(src), "--cfg", str(TINY), "-o", str(tmp_path / "x.pt")]) == 2
    assert ("a backbone file? train from it (cutoff: 15 in a run YAML) or convert it with yolo convert-weights "
            "--cutoff 15") in capsys.readouterr().err  # yolo detect has no --cutoff: the hint named it anyway
    model.load_darknet_weights(src, cutoff=15)
    assert torch.equal(model.module_list[14].conv.weight, torch.from_numpy(ref[14]["weight"]))
    assert torch.equal(model.module_list[15].conv.weight, untouched)
    out = tmp_path / "again.weights"
    model.save_darknet_weights(out, cutoff=15)
    assert out.read_bytes() == src.read_bytes()
    # through a checkpoint, the cutoff is remembered
    pt = tmp_path / "b.pt"
    assert main(["convert-weights", str(src), "--cfg", str(TINY), "--cutoff", "15", "-o", str(pt)]) == 0
    capsys.readouterr()
    assert main(["convert-weights", str(pt), "-o", str(tmp_path / "c.weights")]) == 0
    assert (tmp_path / "c.weights").read_bytes() == src.read_bytes()
    # the line says what the file holds: layers 0..14 hold 9 of yolov3-tiny's 13 convs (the cfg counts them)
    convs = [s.index for s in parse_cfg(TINY).layers if isinstance(s, ConvSpec)]
    assert len(convs) == 13 and sum(i < 15 for i in convs) == 9
    assert capsys.readouterr().out.rstrip().endswith("; wrote layers 0..14 (9 conv layers))")


def test_cutoff_cuts_a_whole_file_as_darknet_partial_does(tmp_path):
    """``--cutoff 15`` of a whole yolov3-tiny.weights is the backbone file of the first 15 layers, byte for byte
    what writing those layers gives (docs/convert.md's ``--cutoff 74`` recipe; it was refused as 'left over')."""
    whole = tmp_path / "whole.weights"
    write_reference_weights(whole, TINY, revision=5, seen=32013312)
    backbone = tmp_path / "expected.conv.15"
    write_reference_weights(backbone, TINY, revision=5, seen=32013312, cutoff=15)
    out = tmp_path / "yolov3-tiny.conv.15"
    assert main(["convert-weights", str(whole), "--cfg", str(TINY), "--cutoff", "15", "-o", str(out)]) == 0
    assert out.read_bytes() == backbone.read_bytes()
    with pytest.raises(InputError, match="runs out"):  # a cut file is still too short for more layers
        Darknet.from_cfg(TINY).load_darknet_weights(backbone, cutoff=16)


def test_full_model_matches_official_file_size(tmp_path):
    path = tmp_path / "t.weights"
    Darknet.from_cfg(TINY).save_darknet_weights(path)
    assert os.path.getsize(path) == 35_434_956  # pjreddie's yolov3-tiny.weights


def _truncate(src, dst, nbytes):
    dst.write_bytes(src.read_bytes()[:nbytes])


def test_too_short_names_counts_and_layer(tmp_path):
    src = tmp_path / "a.weights"
    write_reference_weights(src, TINY)
    bad = tmp_path / "short.weights"
    _truncate(src, bad, 20 + 4 * 1000)
    with pytest.raises(InputError) as e:
        Darknet.from_cfg(TINY).load_darknet_weights(bad)
    msg = str(e.value)
    assert str(bad) in msg and "holds 1000 float32 values" in msg and "needs 8858734" in msg
    assert "layer 2 (convolutional, 32 filters)" in msg  # layer 0 holds 16*4 + 432 = 496 values; layer 2 runs out
    assert "\n" not in msg


def test_too_long_and_wrong_cfg(tmp_path):
    src = tmp_path / "a.weights"
    write_reference_weights(src, TINY)
    long = tmp_path / "long.weights"
    long.write_bytes(src.read_bytes() + b"\0" * 40)
    with pytest.raises(InputError, match="holds 8858744 float32 values .* needs 8858734: 10 left over"):
        Darknet.from_cfg(TINY).load_darknet_weights(long)
    with pytest.raises(InputError, match="needs 62001757"):
        Darknet.from_cfg(CFG / "yolov3.cfg").load_darknet_weights(src)


@pytest.mark.parametrize("content,message", [
    (b"\0" * 8, "too short for a darknet .weights header"),
    (struct.pack("<iii", 0, 2, 0) + b"\0" * 4, "ends inside the darknet header"),
    (struct.pack("<iiiQ", 1001, 2, 0, 0), "transposed darknet weights"),
    (struct.pack("<iiiQ", 0, 2, 0, 0) + b"\0" * 6, "not a 20-byte header plus float32 values"),
])
def test_bad_headers(tmp_path, content, message):
    path = tmp_path / "bad.weights"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        Darknet.from_cfg(TINY).load_darknet_weights(path)


def test_cutoff_out_of_range_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="cutoff 99 is out of range"):
        Darknet.from_cfg(TINY).save_darknet_weights(tmp_path / "x.weights", cutoff=99)
    with pytest.raises(InputError, match="not found"):
        Darknet.from_cfg(TINY).load_darknet_weights(tmp_path / "missing.weights")


def test_failed_save_leaves_old_file_intact(tmp_path):
    path = tmp_path / "keep.weights"
    path.write_bytes(b"previous")
    model = Darknet.from_cfg(TINY).fuse()  # fused BN cannot be written: the writer fails midway
    with pytest.raises(ValueError, match="fused"):
        model.save_darknet_weights(path)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.weights"]


def test_load_model_from_weights_and_checkpoint(tmp_path):
    src = tmp_path / "a.weights"
    write_reference_weights(src, TINY)
    with pytest.raises(InputError, match="needs its cfg"):
        load_model(src)
    a = load_model(src, cfg=TINY)
    assert main(["convert-weights", str(src), "--cfg", str(TINY)]) == 0
    b = load_model(tmp_path / "a.pt")
    assert not a.training and b.names[0] == "person" and len(b.names) == 80
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(a.decode(a(x)), b.decode(b(x)))
    assert isinstance(b.header, DarknetHeader) and b.header.seen == 123456789


def test_whole_file_load_skips_random_init_and_cutoff_load_keeps_it(tmp_path, monkeypatch):
    """A whole ``.weights`` file overwrites every conv, so ``load_model`` builds the model without PyTorch's
    random init (0.66 s of yolov3's load on 2 cores); the loaded tensors are the file's, every one. A cutoff
    file leaves the layers after it at PyTorch's init (kaiming-uniform: |w| <= 1/sqrt(fan_in), spread like
    it), never at uninitialized memory."""
    whole, part = tmp_path / "a.weights", tmp_path / "a.conv.15"
    ref = write_reference_weights(whole, TINY)
    write_reference_weights(part, TINY, cutoff=15)

    init = torch.nn.init.kaiming_uniform_

    def no_init(tensor, *args, **kwargs):
        if tensor.device.type != "meta":  # uninitialized_conv builds on the meta device: no work
            raise AssertionError("random init of a conv whose weights are loaded next")
        return init(tensor, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch.nn.init, "kaiming_uniform_", no_init)
        model = load_model(whole, cfg=TINY)
    for index, parts in ref.items():
        conv = model.module_list[index].conv
        assert torch.equal(conv.weight, torch.from_numpy(parts["weight"])), index
        if conv.bias is not None:
            assert torch.equal(conv.bias, torch.from_numpy(parts["bias"])), index
    partial = load_model(part, cfg=TINY, cutoff=15)
    for index in (15, 18, 21, 22):
        w = partial.module_list[index].conv.weight
        bound = 1 / w[0].numel() ** 0.5
        assert torch.isfinite(w).all() and w.abs().max() <= bound, index
        assert w.std() > 0.4 * bound, index  # uniform on [-b, b]: std b/sqrt(3); zeroed memory: 0


def test_a_weights_file_reads_the_cfg_and_names_beside_it(tmp_path, capsys):
    """``convert-weights`` writes X.weights with X.cfg and X.names (and darknet's zoo ships yolov3.weights beside
    yolov3.cfg), yet reading X.weights back needed --cfg: now the cfg and names of its name are found; one
    that does not fit says it was the one beside it."""
    src = tmp_path / "a.weights"
    write_reference_weights(src, TINY)
    ref = load_model(src, cfg=TINY)
    (tmp_path / "a.cfg").write_text(TINY.read_text())
    (tmp_path / "a.names").write_text("".join(f"n{i}\n" for i in range(80)))
    model = load_model(src)
    assert model.names[:2] == ["n0", "n1"] and load_model(src, names="coco.names").names[0] == "person"
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    image = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    assert main(["detect", "--weights", str(src), "--source", str(image), "--img-size", "64", "--nosave",
                 "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    (tmp_path / "a.cfg").write_text((CFG / "yolov3.cfg").read_text())  # another network's cfg
    with pytest.raises(InputError, match=r"needs \d+\b.*\(read with a.cfg, found beside the weights; pass cfg to "
                                         r"choose another\)$"):
        load_model(src)
    (tmp_path / "a.cfg").unlink()
    with pytest.raises(InputError, match=r"needs its cfg: pass cfg \(or put a.cfg beside it\)$"):
        load_model(src)


def test_a_weights_file_read_with_a_cfg_still_takes_the_names_beside_it(tmp_path):
    """``--weights best.weights --cfg best.cfg`` (darknet users pass the cfg by habit) named the classes class0,
    class1... although ``best.names`` lay beside both, as ``convert-weights`` writes them; now the names beside
    the weights (else beside the cfg) are taken when their count fits, and one that does not fit is said."""
    from tests.helpers import yolo_warnings
    from yolo.model.cfg_edit import set_num_classes
    from yolo.model.cfg_parser import parse_cfg_text

    three = set_num_classes(TINY.read_text(), 3)
    model = Darknet(parse_cfg_text(three, "three.cfg"))
    (tmp_path / "best.cfg").write_text(three)
    model.save_darknet_weights(tmp_path / "best.weights")
    (tmp_path / "best.names").write_text("circle\nrectangle\ntriangle\n")
    assert load_model(tmp_path / "best.weights", cfg=tmp_path / "best.cfg").names == ["circle", "rectangle",
                                                                                      "triangle"]
    other = tmp_path / "cfgs"
    other.mkdir()
    (other / "net.cfg").write_text(three)
    (other / "net.names").write_text("a\nb\nc\n")
    assert load_model(tmp_path / "best.weights", cfg=other / "net.cfg").names == ["circle", "rectangle",
                                                                                 "triangle"]  # the weights' first
    (tmp_path / "best.names").write_text("circle\nrectangle\n")  # another count: passed over, with a warning
    with yolo_warnings() as said:
        assert load_model(tmp_path / "best.weights", cfg=other / "net.cfg").names == ["a", "b", "c"]
    assert said == [f"{tmp_path / 'best.names'}: 2 class names for a model with 3 classes; not used"]
    (other / "net.names").unlink()
    with yolo_warnings() as said:
        assert load_model(tmp_path / "best.weights", cfg=other / "net.cfg").names == ["class0", "class1", "class2"]
    assert len(said) == 1

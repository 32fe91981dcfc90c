"""A checkpoint whose bytes changed after writing is refused, naming the file and the damaged record: torch.load
alone does not compare the CRC-32 its zip records carry and returns wrong weights without a word."""

from __future__ import annotations

import struct
import zipfile

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import CFG
from yolo.cli import main
from yolo.errors import InputError
from yolo.model.cfg_parser import parse_cfg
from yolo.model.checkpoint import load_model, save_checkpoint
from yolo.model.darknet import Darknet
from yolo.utils.zipcheck import first_damaged_record


def _flip_a_byte_of_the_largest_tensor(path) -> str:
    """Flip one bit inside the data of the archive's largest record (a conv weight); returns its name."""
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)  # the local file header
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    return info.filename


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(Darknet(parse_cfg(CFG / "yolov3-tiny.cfg")), path)
    return path


def test_a_flipped_bit_is_refused_where_torch_load_is_silent(tiny, tmp_path, capsys):
    good = load_model(tiny)
    assert first_damaged_record(tiny) is None
    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny.read_bytes())
    record = _flip_a_byte_of_the_largest_tensor(bad)
    # the oracle: PyTorch itself reads the damaged file without complaint, and a weight differs
    theirs = torch.load(bad, map_location="cpu", weights_only=True)
    ours = torch.load(tiny, map_location="cpu", weights_only=True)
    assert any(not torch.equal(a, b) for a, b in zip(_tensors(theirs), _tensors(ours)))
    assert first_damaged_record(bad) == record
    with pytest.raises(InputError, match=rf"^{bad}: damaged file: the bytes of {record} do not match the CRC-32"):
        load_model(bad)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    assert main(["detect", "--weights", str(bad), "--source", str(img), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged file" in err and str(bad) in err
    assert main(["convert-weights", str(bad), "-o", str(tmp_path / "out.weights")]) == 2
    assert not (tmp_path / "out.weights").exists()
    assert sum(p.numel() for p in good.parameters()) > 0


def test_files_without_a_crc_are_left_to_their_loader(tmp_path):
    legacy = tmp_path / "old.pt"
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)  # a pre-1.6 pickle: no CRC
    assert first_damaged_record(legacy) is None
    assert first_damaged_record(tmp_path / "missing.pt") is None


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)

"""Property-based tests: on any input the cfg parser and the .weights readers return a result or raise the
project's own ``InputError``, never anything else (no IndexError, no MemoryError, no hang)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import CFG
from yolo.errors import InputError
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.cfg_specs import ModelSpec
from yolo.model.weights import read_darknet_weights, read_header

TINY = (CFG / "yolov3-tiny.cfg").read_text()
TINY_LINES = TINY.splitlines()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values that stress the parser: empty, huge, negative, non-numeric, lists, odd floats, odd characters.
ODD_VALUES = st.sampled_from(["", "0", "-1", "1e9", "99999999999999999999", "nan", "inf", "-inf", "3.5", "abc",
                              ",", "1,,2", "1,2,3", "-1,-4", "0x10", "=", "[", "]", " ", "\t", "1 2", "é", "\x00"])


def _parse(text: str) -> ModelSpec | None:
    try:
        return parse_cfg_text(text, "fuzz.cfg")
    except InputError as e:
        assert str(e).startswith("fuzz.cfg"), f"error does not name the file: {e}"
        assert "\n" not in str(e), f"error is not one line: {e!r}"
        return None


@SETTINGS
@given(st.text(max_size=400))
def test_cfg_parser_on_arbitrary_text(text):
    _parse(text)


@SETTINGS
@given(st.data())
def test_cfg_parser_on_mutated_real_cfg(data):
    """Replace values, drop lines and duplicate lines of yolov3-tiny.cfg."""
    lines = list(TINY_LINES)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["value", "drop", "dup", "section"]))
        if action == "value" and "=" in lines[i]:
            lines[i] = lines[i].split("=")[0] + "=" + data.draw(ODD_VALUES)
        elif action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        else:
            lines.insert(i, data.draw(st.sampled_from(["[route]", "[yolo]", "[shortcut]", "[upsample]", "[net]",
                                                       "[convolutional]", "[maxpool]", "[bogus]", "[", "layers=-99"])))
    spec = _parse("\n".join(lines))
    if spec is not None:  # what parses must describe a buildable network
        assert spec.layers and all(layer.out_channels > 0 for layer in spec.layers)


@SETTINGS
@given(st.binary(max_size=40))
def test_header_reader_on_arbitrary_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("h") / "x.weights"
    path.write_bytes(blob)
    try:
        header = read_header(path)
    except InputError as e:
        assert "x.weights" in str(e)
        return
    assert header.nbytes in (16, 20) and len(blob) >= header.nbytes


@SETTINGS
@given(major=st.integers(-2**31, 2**31 - 1), minor=st.integers(-2**31, 2**31 - 1), extra=st.binary(max_size=64))
def test_weights_reader_never_trusts_the_header(tmp_path_factory, major, minor, extra):
    """Any header with any payload: a clear error (sizes are checked against the cfg before reading)."""
    path = tmp_path_factory.mktemp("w") / "x.weights"
    path.write_bytes(struct.pack("<iii", major, minor, 0) + extra)
    spec = parse_cfg_text(TINY, "tiny.cfg")
    with pytest.raises(InputError, match="x.weights"):
        read_darknet_weights(path, spec)

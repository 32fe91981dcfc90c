"""Edit darknet cfg text: set the class count (every [yolo] ``classes`` and the ``filters`` of the conv feeding it)
and ``[net] letter_box``."""

from __future__ import annotations

import re

from yolo.errors import InputError
from yolo.model.cfg_parser import parse_cfg_text
from yolo.model.cfg_specs import ConvSpec


def _set_key(lines: list[str], section_line: int, key: str, value: int) -> None:
    """Set ``key=value`` in the section whose header is on 1-based ``section_line`` (adding the key if absent)."""
    pattern = re.compile(rf"^\s*{key}\s*=", re.IGNORECASE)
    i = section_line  # 0-based index of the first line after the header
    while i < len(lines) and not lines[i].lstrip().startswith("["):
        if pattern.match(lines[i].split("#", 1)[0]):
            lines[i] = f"{key}={value}"
            return
        i += 1
    lines.insert(section_line, f"{key}={value}")


def set_num_classes(text: str, num_classes: int, source: str = "<cfg>") -> str:
    """The cfg ``text`` with ``num_classes`` in every ``[yolo]`` and ``filters = anchors * (classes + 5)`` in the
    convolution right before each; everything else (comments included) is kept."""
    if num_classes < 1:
        raise InputError(f"the class count must be >= 1, got {num_classes}", source)
    spec = parse_cfg_text(text, source)
    lines = text.splitlines()
    edits = []
    for head in spec.heads:
        conv = spec.layers[head.index - 1]
        if not isinstance(conv, ConvSpec):
            raise InputError(f"the layer before [yolo] at line {head.line} is not a [convolutional]; cannot change "
                             "its class count", source, head.line)
        edits += [(head.line, "classes", num_classes), (conv.line, "filters", len(head.mask) * (num_classes + 5))]
    for line, key, value in sorted(edits, reverse=True):  # bottom-up: an inserted line never shifts a later edit
        _set_key(lines, line, key, value)
    out = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    parse_cfg_text(out, source)  # the result must still be a valid network
    return out


def set_letter_box(text: str, letterbox: bool, source: str = "<cfg>") -> str:
    """The cfg ``text`` with ``letter_box=1`` (or ``0``) in its ``[net]`` section; everything else is kept."""
    parse_cfg_text(text, source)  # a valid cfg: its first section is [net]
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split("#", 1)[0].strip().startswith("["))
    _set_key(lines, header + 1, "letter_box", int(letterbox))
    out = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    parse_cfg_text(out, source)
    return out

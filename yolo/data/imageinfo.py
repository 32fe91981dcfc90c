"""Image sizes without decoding: PNG, JPEG and BMP headers are parsed here (with their EXIF orientation),
other formats go to OpenCV.

A header that parses is not proof that every pixel decodes; what is checked cheaply is the header, the
end-of-image marker (JPEG ``FFD9``, PNG ``IEND``) and BMP's declared file size, which catches truncated files.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2

from yolo.utils.image import imread

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class CorruptImage(Exception):
    """The image cannot be used; the message says why."""


def image_size(path: str | Path) -> tuple[int, int]:
    """``(h, w)`` in pixels as ``cv2.imread`` would return them (EXIF rotation applied), or ``CorruptImage``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
            if not head:
                raise CorruptImage("empty file")
            f.seek(max(0, path.stat().st_size - 64))
            tail = f.read()
    except OSError as e:
        raise CorruptImage(f"unreadable ({e.strerror or e})") from None
    size = None
    if head.startswith(_PNG_SIG):
        size = _png_size(head, _png_ends(path, tail))
    elif head.startswith(b"\xff\xd8"):
        if not _jpeg_ends(path, tail):
            raise CorruptImage("truncated JPEG (no end-of-image marker)")
        size = _jpeg_size(path, head)
    elif head.startswith(b"BM") and len(head) >= 26:
        size = _bmp_size(path, head)
    return size if size is not None else _decode_size(path)


def truncated_jpeg(path: str | Path) -> bool:
    """True for a JPEG file without its end-of-image marker (a cut download: libjpeg decodes what is there
    and fills the rest with grey); a marker followed by appended data (motion photos) is not truncation."""
    tail = _tail_of(path, b"\xff\xd8")
    return tail is not None and not _jpeg_ends(Path(path), tail)


def truncated_png(path: str | Path) -> bool:
    """True for a PNG file without its IEND chunk (a cut download or copy: libpng fails on it, printing its own
    "libpng error: Read Error" line to stderr)."""
    tail = _tail_of(path, _PNG_SIG)
    return tail is not None and not _png_ends(Path(path), tail)


def _tail_of(path: str | Path, signature: bytes) -> bytes | None:
    """The last 64 bytes of a file that starts with ``signature``; None for another file or one that cannot
    be read."""
    try:
        with open(path, "rb") as f:
            if f.read(len(signature)) != signature:
                return None
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64))
            return f.read()
    except OSError:
        return None


def _png_ends(path: Path, tail: bytes) -> bool:
    """A PNG's IEND chunk ends the file (``tail``: its last bytes), or comes after its image data with more
    appended."""
    return tail.endswith(_PNG_END) or bool(_after(path, b"IDAT", _PNG_END[4:]))


def _jpeg_ends(path: Path, tail: bytes) -> bool:
    """A JPEG's end-of-image marker ends the file (``tail``: its last bytes; zero padding allowed), or comes
    after the image data with more appended (motion photos)."""
    return tail.rstrip(b"\x00").endswith(b"\xff\xd9") or bool(_after(path, b"\xff\xda", b"\xff\xd9"))


def _after(path: Path, start: bytes, end: bytes) -> bytes:
    """Files with data after their end marker (phone 'motion photos' append a video): ``end`` returned
    when it occurs after the first ``start`` (image data) anywhere in the file, else ``b""``. Rare: only
    called when the tail check fails, as it reads the whole file."""
    data = path.read_bytes()
    i = data.find(start)
    return end if i >= 0 and data.find(end, i) >= 0 else b""


def _png_size(head: bytes, ends: bool) -> tuple[int, int] | None:
    """``(h, w)`` from a PNG's first bytes ``head`` (None: let OpenCV decide), or ``CorruptImage``; ``ends``:
    its IEND chunk is there (:func:`_png_ends`)."""
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise CorruptImage("bad PNG header")
    if not ends:
        raise CorruptImage("truncated PNG (no IEND chunk at the end)")
    w, h = struct.unpack(">II", head[16:24])
    orientation = _png_orientation(head)
    if orientation is None:
        return None
    return _checked(*((w, h) if orientation in (5, 6, 7, 8) else (h, w)))


def _png_orientation(head: bytes) -> int | None:
    """The EXIF orientation of a PNG's ``eXIf`` chunk (OpenCV applies it as for JPEG), 1 without one; None
    when the chunks before the image data run past ``head`` (let OpenCV decide)."""
    i = 8
    while i + 8 <= len(head):
        (length,) = struct.unpack(">I", head[i:i + 4])
        kind = head[i + 4:i + 8]
        if kind in (b"IDAT", b"IEND"):  # eXIf must come before the image data
            return 1
        if kind == b"eXIf":
            return _exif_orientation(head[i + 8:i + 8 + length]) if i + 8 + length <= len(head) else None
        i += 12 + length
    return None


def _jpeg_size(path: Path, head: bytes) -> tuple[int, int] | None:
    i, orientation = 2, 1
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            raise CorruptImage("bad JPEG marker")
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", head[i + 2:i + 4])
        if marker == 0xE1 and head[i + 4:i + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(head[i + 10:i + 2 + length])
        if marker in _SOF:
            if i + 9 > len(head):
                break
            h, w = struct.unpack(">HH", head[i + 5:i + 9])
            return _checked(*((w, h) if orientation in (5, 6, 7, 8) else (h, w)))
        i += 2 + length
    return None  # the frame header lies past the first 64 KiB (huge EXIF): let OpenCV decide


def _exif_orientation(tiff: bytes) -> int:
    """The EXIF orientation tag (1 = upright; 5..8 swap width and height), 1 when absent or unreadable."""
    try:
        end = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(end + "I", tiff[4:8])
        (count,) = struct.unpack(end + "H", tiff[ifd:ifd + 2])
        for k in range(count):
            entry = tiff[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
            tag, _, _ = struct.unpack(end + "HHI", entry[:8])
            if tag == 0x0112:
                return struct.unpack(end + "H", entry[8:10])[0]
    except (KeyError, struct.error):
        pass
    return 1


def _bmp_size(path: Path, head: bytes) -> tuple[int, int]:
    declared, = struct.unpack("<I", head[2:6])
    if declared and path.stat().st_size < declared:
        raise CorruptImage("truncated BMP (shorter than its header says)")
    w, h = struct.unpack("<ii", head[18:26])
    return _checked(abs(h), w)


def _decode_size(path: Path) -> tuple[int, int]:
    img = imread(path, cv2.IMREAD_COLOR)  # as read_image decodes it: EXIF orientation applied (WebP, TIFF, ...)
    if img is None or img.size == 0:
        raise CorruptImage("OpenCV cannot decode it")
    return _checked(*img.shape[:2])


def _checked(h: int, w: int) -> tuple[int, int]:
    if h <= 0 or w <= 0:
        raise CorruptImage(f"zero size ({w}x{h})")
    return int(h), int(w)

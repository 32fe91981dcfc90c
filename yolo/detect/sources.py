"""Where ``yolo detect`` reads pictures from: an image, a folder, a glob, a text file listing paths, a video
file, a camera index or a stream URL. Everything streams one frame at a time (a folder is never loaded whole).

Frames are BGR ``[H, W, 3]`` uint8 (as OpenCV reads them): grayscale, alpha and 16-bit images are converted,
and JPEG EXIF orientation is applied (``cv2.IMREAD_COLOR`` does both).
"""

from __future__ import annotations

import glob
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from yolo.data.imageinfo import truncated_jpeg, truncated_png
from yolo.errors import InputError, warn
from yolo.utils.image import (
    IMAGE_SUFFIXES,
    JPEG_SUFFIXES,
    VIDEO_SUFFIXES,
    UnreadableImage,
    opencv_safe,
    read_image,
    to_bgr8,
)
from yolo.utils.text import count


@dataclass
class Frame:
    """One picture to detect on. ``image`` is None when the file could not be read (a warning, not an error).
    ``index`` is the frame number inside a video (0 for images); ``fps`` is set for video frames."""

    path: str
    image: np.ndarray | None
    index: int = 0
    fps: float | None = None
    problem: str = ""  # why ``image`` is None, when more is known than "cannot read"

    @property
    def is_video(self) -> bool:
        return self.fps is not None

    @property
    def is_live(self) -> bool:
        """A camera index or a stream URL rather than a file."""
        return self.path.isdigit() or "://" in self.path


def _read_bgr_or_none(path: Path) -> np.ndarray | None:
    """BGR ``[H, W, 3]`` uint8, or None for a file OpenCV cannot decode (the detect loop counts and names it).
    A truncated JPEG decodes in part (grey below the cut): it is used, with a warning naming it."""
    try:
        img = read_image(path, "bgr")
    except UnreadableImage:
        return None
    if path.suffix.lower() in JPEG_SUFFIXES and truncated_jpeg(path):
        warn(f"{path}: truncated JPEG (no end-of-image marker); detecting on the part that decodes")
    return img


def open_video(name: str | int) -> cv2.VideoCapture:
    """An opened capture, or an ``InputError`` naming the video, camera or URL."""
    if not opencv_safe(name):
        raise InputError("cannot open a video whose file name is not valid UTF-8 (OpenCV takes names as UTF-8); "
                         "rename it", os.fsencode(name).decode("utf-8", "backslashreplace"))
    cap = cv2.VideoCapture(name)
    if not cap.isOpened():
        what = f"camera {name}" if isinstance(name, int) else "video or stream"
        raise InputError(f"cannot open {what}", str(name))
    return cap


def _list_file(path: Path) -> list[Path]:
    """A text file with one image/video path per line (relative paths are relative to the file; a listed folder
    gives its images and videos, sorted; a UTF-8 byte order mark is ignored)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start}: {e.reason}); a list file holds one path per line",
                         str(path)) from None
    files = []
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line) if Path(line).is_absolute() else path.parent / line
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if _is_media_file(q))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"listed file not found: {line}", str(path), i)
    if not files:
        raise InputError("lists no image or video (one path per line; blank lines and # comments are skipped)",
                         str(path))
    return files




def _check_source(source) -> list[str] | None:
    """None for one source (a path, pattern, camera index or URL); a list or tuple of paths -> those, as text.
    Anything else (an image array: ``Detector(...)(image)`` takes those) is an ``InputError``."""
    if isinstance(source, (str, Path, int)) and not isinstance(source, bool):
        return None
    if isinstance(source, (list, tuple)):
        bad = [type(s).__name__ for s in source if not isinstance(s, (str, Path))]
        if bad or not source:
            raise InputError(f"a list of sources must hold paths (files, folders, patterns, .txt lists), got "
                             f"{'an empty list' if not source else ', '.join(sorted(set(bad)))}")
        return [str(s) for s in source]
    hint = "; an image array goes to detector(image)" if isinstance(source, np.ndarray) else ""
    raise InputError(f"a source is a path, folder, pattern, .txt list, video, camera index or URL, or a list of "
                     f"paths; got {type(source).__name__}{hint}")


def _is_media(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() in VIDEO_SUFFIXES


def _is_media_file(p: Path) -> bool:
    """An image or video file of a folder or pattern, or a link to one that is gone (kept: it is then read,
    fails and is counted among the unreadable files, never skipped without a word)."""
    return (p.is_file() or (p.is_symlink() and not p.exists())) and _is_media(p)


class Source:
    """An iterable of :class:`Frame` s. ``Source("0")`` is camera 0; ``"rtsp://..."`` a stream;
    a folder, glob or ``.txt`` list expands to files (images and videos, sorted); otherwise one file; a Python
    list or tuple of those (not cameras or URLs) is their files one after another, in the list's order.
    Missing sources, empty folders, and a video file, camera or stream OpenCV cannot open given as the source
    itself are ``InputError`` s raised here, before any work (a live source's capture is kept for the first
    pass). Among the files of a folder, glob or list, a video that cannot be opened is one unreadable frame
    (``image`` None: the detect loop counts and names it), as an undecodable image is."""

    def __init__(self, source: str | Path | int | list | tuple):
        items = _check_source(source)
        text = str(source) if items is None else f"{len(items)} listed sources"
        self.text = text
        self.camera: int | None = int(text) if items is None and text.isdigit() else None
        self.url = text if items is None and "://" in text else None
        self.files: list[Path] = []
        self.video_frames: dict[Path, int] = {}  # frame count each video file reports (0: unknown)
        self.unopened: set[Path] = set()  # videos of a folder, glob or list that OpenCV cannot open
        self._capture: cv2.VideoCapture | None = None  # a live source, opened here so failing to is an error now
        if self.is_live:
            self._capture = open_video(self.camera if self.camera is not None else self.url)
        else:
            self.files = self._expand(text) if items is None else [f for item in items for f in self._expand(item)]
            single = self.files == [Path(text if items is None else items[0])]
            for p in self.files:  # the video named as the source fails here, before any work
                if p.suffix.lower() in VIDEO_SUFFIXES:
                    try:
                        cap = open_video(str(p))
                    except InputError:
                        if single:
                            raise
                        self.unopened.add(p)
                        self.video_frames[p] = 1  # counted as one unreadable file
                        continue
                    self.video_frames[p] = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
                    cap.release()

    @staticmethod
    def _expand(text: str) -> list[Path]:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if _is_media_file(p))
            if not files:
                raise InputError("no images or videos in folder", text)
            return files
        if path.is_file():
            if path.suffix and path.suffix.lower() != ".txt" and not _is_media(path):  # no suffix: sniffed on read
                raise InputError(f"not an image, video or .txt list (suffix {path.suffix!r})", text)
            return _list_file(path) if path.suffix.lower() == ".txt" else [path]
        if any(ch in text for ch in "*?["):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if _is_media_file(Path(p)))
            if not files:
                raise InputError("no images or videos match this pattern", text)
            return files
        raise InputError("source not found", text)

    @property
    def is_live(self) -> bool:
        return self.camera is not None or self.url is not None

    def count(self) -> int | None:
        """Frames expected (images + video frames as the containers report them), None for live sources."""
        if self.is_live:
            return None
        return sum(self.video_frames.get(p, 1) for p in self.files)

    def __iter__(self) -> Iterator[Frame]:
        if self.is_live:
            cap, self._capture = self._capture, None  # the capture opened by __init__, once; then a new one
            yield from _video_frames(self.camera if self.camera is not None else self.url, self.text, cap)
            return
        for p in self.files:
            if p in self.unopened:
                yield Frame(str(p), None)
            elif p.suffix.lower() in VIDEO_SUFFIXES:
                yield from _video_frames(str(p), str(p))
            elif truncated_png(p):  # not handed to libpng, which would fail saying so itself on stderr
                yield Frame(str(p), None, problem="truncated PNG (no IEND chunk)")
            else:
                image = _read_bgr_or_none(p)
                if image is None and _opens_as_video(p):  # a clip saved under an image's name, or none
                    yield from _video_frames(str(p), str(p))
                else:
                    yield Frame(str(p), image)


def _opens_as_video(path: Path) -> bool:
    """Whether a file that did not decode as an image opens as a video with a first frame (asked only of
    files that failed as images: a corrupt picture stays an unreadable file)."""
    if not opencv_safe(path):
        return False
    cap = cv2.VideoCapture(str(path))
    try:
        return cap.isOpened() and cap.grab()
    finally:
        cap.release()


def _video_frames(name: str | int, label: str, cap: cv2.VideoCapture | None = None) -> Iterator[Frame]:
    """Frames of a video, camera or stream until it ends (or drops: what was read is kept)."""
    cap = cap if cap is not None else open_video(name)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else 30.0
    try:
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield Frame(label, to_bgr8(frame), index, fps)
            index += 1
        if index == 0:  # opened, but nothing in it: an unreadable file (a source of nothing else is an error)
            yield Frame(label, None, problem="no frame could be read")
        live = isinstance(name, int) or "://" in name
        if live and index:  # a camera or stream ends by itself only when closed or stalled: say which it was
            warn(f"{label}: the stream ended after {count(index, 'frame')} (closed, or no frame within OpenCV's "
                 "read timeout, 30 s for FFmpeg)")
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0
        if 0 < index < declared - max(1, declared // 100):  # a container's count can be an estimate: some slack
            warn(f"{label}: read {index} of the {declared} frames its header declares (a truncated file?)")
    finally:
        cap.release()


class Prefetcher:
    """Runs ``iterable`` in a daemon thread, at most ``depth`` items ahead of the consumer, so reading and
    decoding (OpenCV releases the GIL) overlap the consumer's work. Iterate it once; items come in order;
    an exception raised by ``iterable`` is raised again, as the same object, where the consumer reached it.
    :meth:`close` (also on Ctrl-C in the consumer) stops the thread and closes ``iterable``'s generator.

    Memory: ``depth`` items in the queue, one being made in the thread and the consumer's current one."""

    _END = object()

    def __init__(self, iterable: Iterable, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(iter(iterable),), name="yolo-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        """Queue ``item`` unless :meth:`close` was called while waiting for room; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            self._put((None, error))
        finally:
            close = getattr(items, "close", None)  # a generator: release what it holds (video captures)
            if close is not None:
                close()

    def __iter__(self) -> Iterator:
        while True:
            item, error = self._queue.get()
            if error is not None:
                self.close()
                raise error
            if item is self._END:
                return
            yield item

    def close(self, timeout: float = 10.0) -> None:
        """Stop reading ahead and wait (up to ``timeout`` s) for the thread to finish its current item."""
        self._stop.set()
        while True:  # drop what was read ahead (frees memory; a put waiting for room sees the stop)
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

"""The writers of a ``yolo detect`` run: annotated images/videos, YOLO txt, COCO-style JSON, crops.

Everything is written as it comes (memory does not grow with the number of images) and atomically:
images, txt files and crops through ``atomic_write``, videos and the JSON file under a temporary name
renamed when complete (also on Ctrl-C, so what was done is kept).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from yolo.detect.sources import Frame
from yolo.errors import InputError, warn
from yolo.utils.checkpoint import atomic_write
from yolo.utils.draw import draw_detections
from yolo.utils.files import make_run_dir, unique_name
from yolo.utils.interrupt import deferred_interrupt
from yolo.utils.temps import prefixed_sibling

SAVE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _write_image(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix, img)
    if not ok:
        raise OSError(f"cannot encode {path}")
    with atomic_write(path) as f:
        f.write(buf.tobytes())


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))


class JsonArrayWriter:
    """Streams dicts into a JSON array at ``path`` (temporary name until :meth:`close`)."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(f".{path.name}.partial")
        self.file = open(self.tmp, "w", encoding="utf-8")
        self.file.write("[")
        self.count = 0

    def write(self, items: list[dict]) -> None:
        for item in items:
            self.file.write(("," if self.count else "") + "\n" + json.dumps(item))
            self.count += 1

    def close(self) -> None:
        self.file.write("\n]\n")
        self.file.close()
        os.replace(self.tmp, self.path)


class VideoOut:
    """An annotated video written under a temporary name and renamed on :meth:`close`. The MPEG-4 encoder needs
    even sides (it cut an odd last row and column, and refused a side of 1 pixel): odd frames are padded with
    black at the right and bottom instead, so every pixel of the source is in the video."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = path
        self.tmp = prefixed_sibling(path, ".partial.")  # a name near the length limit: its copy cut to fit
        w, h = size
        self.pad = (h % 2, w % 2)  # rows, columns added
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w + w % 2, h + h % 2))
        if not self.writer.isOpened():
            raise OSError(f"OpenCV cannot write a {w}x{h} video")

    def write(self, frame: np.ndarray) -> None:
        """One BGR frame ``[h, w, 3]`` of the size given at opening."""
        if any(self.pad):
            frame = cv2.copyMakeBorder(frame, 0, self.pad[0], 0, self.pad[1], cv2.BORDER_CONSTANT, value=0)
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()
        os.replace(self.tmp, self.path)


class RunWriter:
    """Writes one run folder's outputs as detections come; ``close`` finishes open videos and the JSON."""

    def __init__(self, run_dir: Path, names: list[str], save_img: bool, save_txt: bool, save_json: bool,
                 save_crop: bool):
        self.dir, self.names = run_dir, names
        self.save_img, self.save_txt, self.save_crop = save_img, save_txt, save_crop
        self.json = JsonArrayWriter(run_dir / "predictions.json") if save_json else None
        self.used: set[str] = set()  # output stems already taken (two sources may share a file name)
        self.numbered: set[str] = set()  # X for every taken X_<digits>: stems a video cannot take
        self.video: VideoOut | None = None
        self.video_source: str | None = None
        self.video_failed: str | None = None  # the video whose annotated copy OpenCV could not write
        self.videos: list[str] = []

    @staticmethod
    def _stem(frame: Frame) -> str:
        """The output name of ``frame``'s source, valid UTF-8 (bytes of a non-UTF-8 file name become U+FFFD)."""
        if frame.path.isdigit():
            return f"camera{frame.path}"
        if "://" in frame.path:
            return "stream"
        return os.fsencode(Path(frame.path).stem).decode("utf-8", "replace")

    def _video_stem(self, stem: str) -> str:
        """``stem``, or ``stem_2``, ``stem_3``, ... : the first free name none of whose frame names
        (``<stem>_<frame>``) is taken yet, so a video's frames are all named ``<its stem>_<frame>`` (an image
        ``clip_5.png`` written before ``clip.avi`` moves the video to ``clip_2``, not its frame 5 alone)."""
        name, n = stem, 1
        while name in self.used or name in self.numbered:
            n += 1
            name = f"{stem}_{n}"
        return self._take(name)

    def _take(self, name: str) -> str:
        """``name``, or the first free ``name_2``, ... (see ``unique_name``), now taken; a taken ``X_<digits>``
        also marks ``X`` as a stem no video may take."""
        name = unique_name(self.used, name)
        head, _, tail = name.rpartition("_")
        if head and tail.isdigit():
            self.numbered.add(head)
        return name

    def write(self, frame: Frame, det) -> None:
        """Outputs for one ``frame`` and its :class:`yolo.detect.Detections`, all or none: a Ctrl-C (or SIGTERM)
        waits for them, so the annotated video never holds a frame the labels and JSON lack."""
        with deferred_interrupt():
            self._write(frame, det)

    def _write(self, frame: Frame, det) -> None:
        if frame.is_video and frame.path != self.video_source:
            self._close_video()
            self.video_source = frame.path
            self.video_stem = self._video_stem(self._stem(frame))
        if not frame.is_video:
            stem = self._take(self._stem(frame))
        elif frame.is_live:  # the only source of the run: no other name to meet (and no set growing forever)
            stem = f"{self.video_stem}_{frame.index}"
        else:  # a later image named like a frame (clip_2.png after clip.avi) takes clip_2_2.png
            stem = self._take(f"{self.video_stem}_{frame.index}")
        rows = det.tensor().numpy()  # [K, 6]
        if self.save_img:
            drawn = draw_detections(frame.image, rows, self.names)
            if frame.is_video:
                self._video_frame(frame, drawn)
            else:
                suffix = Path(frame.path).suffix  # as the file has it (C.JPG stays C.JPG)
                _write_image(self.dir / f"{stem}{suffix if suffix.lower() in SAVE_SUFFIXES else '.jpg'}", drawn)
        if self.save_txt:
            _write_text(self.dir / "labels" / f"{stem}.txt", det.to_txt())
        if self.json is not None:  # file_name: unique in the run, as the labels and images are named; path: the source
            suffix = Path(frame.path).suffix
            name = self._stem(frame) if frame.is_live else f"{self.video_stem if frame.is_video else stem}{suffix}"
            items = det.to_json(name)
            if frame.is_video:
                items = [{**item, "frame": frame.index} for item in items]
            self.json.write(items)
        if self.save_crop:
            self._crops(frame.image, rows, stem)

    def _video_frame(self, frame: Frame, drawn: np.ndarray) -> None:
        if self.video_failed == frame.path:
            return
        if self.video is None:
            h, w = drawn.shape[:2]
            try:
                self.video = VideoOut(self.dir / f"{self.video_stem}.mp4", frame.fps, (w, h))
            except OSError as e:  # one video's picture lost, said once; its labels and JSON, and the run, go on
                warn(f"{frame.path}: no annotated video ({e})")
                self.video_failed = frame.path
                return
            self.videos.append(self.video.path.name)
        self.video.write(drawn)

    def _crops(self, img: np.ndarray, rows: np.ndarray, stem: str) -> None:
        h, w = img.shape[:2]
        for k, (x1, y1, x2, y2, _, c) in enumerate(rows):
            x1, y1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
            x2, y2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
            if x2 <= x1 or y2 <= y1:
                continue
            name = self.names[int(c)] if int(c) < len(self.names) else str(int(c))
            folder = self.dir / "crops" / name.replace("/", "_").replace("\\", "_")
            _write_image(folder / f"{stem}_{k}.jpg", img[y1:y2, x1:x2])

    def _close_video(self) -> None:
        if self.video is not None:
            self.video.close()
            self.video = None

    def close(self) -> None:
        self._close_video()
        if self.json is not None:
            self.json.close()


def prepare_dir(out: str | Path, increment: bool) -> Path:
    if increment:
        return make_run_dir(out)
    out = Path(out)
    if not out.is_dir() or not os.access(out, os.W_OK):
        raise InputError("output folder does not exist or is not writable", str(out))
    return out

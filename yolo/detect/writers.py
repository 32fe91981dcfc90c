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
from yolo.errors import InputError
from yolo.utils.checkpoint import atomic_write
from yolo.utils.draw import draw_detections
from yolo.utils.files import make_run_dir, unique_name

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
    """An annotated video written under a temporary name and renamed on :meth:`close`."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = path
        self.tmp = path.with_name(f".partial.{path.name}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise OSError(f"OpenCV cannot write the video {path}")

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
        self.video: VideoOut | None = None
        self.video_source: str | None = None
        self.videos: list[str] = []

    @staticmethod
    def _stem(frame: Frame) -> str:
        if frame.path.isdigit():
            return f"camera{frame.path}"
        return "stream" if "://" in frame.path else Path(frame.path).stem

    def write(self, frame: Frame, det) -> None:
        """Outputs for one ``frame`` and its :class:`yolo.detect.Detections`."""
        if frame.is_video and frame.path != self.video_source:
            self._close_video()
            self.video_source = frame.path
            self.video_stem = unique_name(self.used, self._stem(frame))
        if not frame.is_video:
            stem = unique_name(self.used, self._stem(frame))
        elif frame.is_live:  # the only source of the run: no other name to meet (and no set growing forever)
            stem = f"{self.video_stem}_{frame.index}"
        else:  # a video file's frame may meet an image's name (clip.avi frame 2 and clip_2.png)
            stem = unique_name(self.used, f"{self.video_stem}_{frame.index}")
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
        if self.json is not None:
            items = det.to_json(self._stem(frame) if frame.is_live else Path(frame.path).name)
            if frame.is_video:
                items = [{**item, "frame": frame.index} for item in items]
            self.json.write(items)
        if self.save_crop:
            self._crops(frame.image, rows, stem)

    def _video_frame(self, frame: Frame, drawn: np.ndarray) -> None:
        if self.video is None:
            h, w = drawn.shape[:2]
            self.video = VideoOut(self.dir / f"{self.video_stem}.mp4", frame.fps, (w, h))
            self.videos.append(self.video.path.name)
        self.video.writer.write(drawn)

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

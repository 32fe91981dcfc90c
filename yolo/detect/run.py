"""The ``yolo detect`` run loop and its writers: annotated images/videos, YOLO txt, COCO-style JSON, crops.

Everything is written as it comes (memory does not grow with the number of images) and atomically:
images, txt files and crops through ``atomic_write``, videos and the JSON file under a temporary name
renamed when complete (also on Ctrl-C, so what was done is kept).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from yolo.errors import InputError
from yolo.sources import Frame, Prefetcher, Source
from yolo.utils.checkpoint import atomic_write
from yolo.utils.draw import draw_detections
from yolo.utils.files import make_run_dir, unique_name

SAVE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MAX_LISTED_UNREADABLE = 20
PREFETCH_BATCHES = 2  # batches read and letterboxed ahead of the one running


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
        stem = f"{self.video_stem}_{frame.index}" if frame.is_video else unique_name(self.used, self._stem(frame))
        rows = det.tensor().numpy()  # [K, 6]
        if self.save_img:
            drawn = draw_detections(frame.image, rows, self.names)
            if frame.is_video:
                self._video_frame(frame, drawn)
            else:
                suffix = Path(frame.path).suffix.lower()
                _write_image(self.dir / f"{stem}{suffix if suffix in SAVE_SUFFIXES else '.jpg'}", drawn)
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


def _prepare_dir(out: str | Path, increment: bool) -> Path:
    if increment:
        return make_run_dir(out)
    out = Path(out)
    if not out.is_dir() or not os.access(out, os.W_OK):
        raise InputError("output folder does not exist or is not writable", str(out))
    return out


class _Stats:
    """Counts and seconds for the closing summary."""

    def __init__(self):
        self.images = self.unreadable = 0
        self.bad_files: list[str] = []
        self.per_class: Counter = Counter()
        self.seconds = Counter()

    def skip(self, frame: Frame) -> None:
        self.unreadable += 1
        if len(self.bad_files) < MAX_LISTED_UNREADABLE:
            self.bad_files.append(frame.path)
        print(f"warning: {frame.path}: cannot read this image, skipped", file=sys.stderr)

    def summary(self, run_dir: Path, writer: RunWriter, names: list[str]) -> dict:
        n = max(self.images, 1)
        return {
            "run_dir": str(run_dir), "images": self.images, "unreadable": self.unreadable,
            "unreadable_files": self.bad_files, "detections": sum(self.per_class.values()),
            "per_class": {names[c] if c < len(names) else str(c): k for c, k in sorted(self.per_class.items())},
            "ms_per_image": {k: round(1000 * self.seconds[k] / n, 3) for k in ("pre", "infer", "post", "write")},
            "json": str(writer.json.path) if writer.json is not None else None, "videos": writer.videos,
        }


def run_detection(detector, source, out, save_txt=False, save_json=False, save_crop=False, nosave=False,
                  batch_size=8, progress=True, increment=True, prefetch=True) -> dict:
    """The loop behind ``Detector.run``: stream frames in batches, detect, write, count; returns the summary:
    ``run_dir``, ``images``, ``unreadable``, ``unreadable_files`` (first 20), ``detections``, ``per_class``
    {name: count}, ``ms_per_image`` {pre (read + letterbox: with ``prefetch``, only the time the loop waited
    for them), infer, post (NMS + un-letterbox), write}, ``json`` (path or None), ``videos`` (file names).

    ``prefetch``: a reader thread reads and letterboxes the next batches (two at most) while the current one
    runs; same results, in the same order, and its errors are raised here."""
    from tqdm import tqdm

    from yolo.detect import to_input

    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    src = source if isinstance(source, Source) else Source(source)
    run_dir = _prepare_dir(out, increment)
    writer = RunWriter(run_dir, detector.names, not nosave, save_txt, save_json, save_crop)
    total = src.count()
    bar = tqdm(total=total, unit="img", file=sys.stderr, disable=not progress or total == 1, dynamic_ncols=True)
    stats = _Stats()
    batches = _letterboxed_batches(iter(src), 1 if src.is_live else batch_size, detector.img_size)
    reader = Prefetcher(batches, depth=PREFETCH_BATCHES) if prefetch else None
    batches = iter(reader) if reader is not None else batches
    try:
        while True:
            t0 = time.perf_counter()
            item = next(batches, None)
            stats.seconds["pre"] += time.perf_counter() - t0  # reading and letterboxing count as pre-processing
            if item is None:
                break
            batch, boxed, infos = item
            for f in batch:
                if f.image is None:
                    stats.skip(f)
            if boxed is not None:
                t0 = time.perf_counter()
                x = to_input(boxed)  # [G, 3, H, W] float
                stats.seconds["pre"] += time.perf_counter() - t0
                _detect_and_write(detector, [f for f in batch if f.image is not None], x, infos, writer, stats)
            bar.update(len(batch))
    finally:
        if reader is not None:
            reader.close()
        bar.close()
        writer.close()
    return stats.summary(run_dir, writer, detector.names)


def _letterboxed_batches(frames: Iterator[Frame], step: int, size: tuple[int, int]) -> Iterator[tuple]:
    """Groups of ``step`` frames, read and letterboxed (OpenCV only, no torch threads):
    ``(frames, boxed [G, H, W, 3] BGR uint8 or None, infos)``, the G readable frames in order."""
    from yolo.detect import letterbox_images

    while True:
        batch = list(itertools.islice(frames, step))
        if not batch:
            return
        images = [f.image for f in batch if f.image is not None]
        boxed, infos = letterbox_images(images, size) if images else (None, [])
        yield batch, boxed, infos


def _detect_and_write(detector, frames: list[Frame], x, infos, writer: RunWriter, stats: _Stats) -> None:
    """Detect on ``x [G, 3, H, W]`` (the letterboxed ``frames``) and write each frame's outputs."""
    dets, seconds = detector.detect_letterboxed(x, infos, [f.path for f in frames], [f.index for f in frames])
    stats.seconds.update(seconds)
    t0 = time.perf_counter()
    for f, d in zip(frames, dets):
        writer.write(f, d)
        stats.per_class.update(d.classes.tolist())
    stats.images += len(frames)
    stats.seconds["write"] += time.perf_counter() - t0


def format_summary(s: dict) -> str:
    """The closing lines ``yolo detect`` prints."""
    t = s["ms_per_image"]
    per_class = ", ".join(f"{k} {name}" for name, k in s["per_class"].items()) or "none"
    lines = [f"{s['images']} images, {s['detections']} detections ({per_class})",
             f"per image: {t['pre']:.1f} ms pre-process (read + letterbox), {t['infer']:.1f} ms inference, "
             f"{t['post']:.1f} ms post-process (NMS), {t['write']:.1f} ms writing"]
    if s["unreadable"]:
        lines.append(f"{s['unreadable']} unreadable file(s) skipped: {', '.join(s['unreadable_files'])}")
    lines.append(f"results in {s['run_dir']}")
    return "\n".join(lines)

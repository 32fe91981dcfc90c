"""The ``yolo detect`` run loop: frames from a source, in batches, through a detector, into the writers."""

from __future__ import annotations

import itertools
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

from yolo.detect.sources import Frame, Prefetcher, Source
from yolo.detect.writers import RunWriter, prepare_dir
from yolo.errors import positive_int, warn
from yolo.utils.files import discard_run_dir
from yolo.utils.image import VIDEO_SUFFIXES
from yolo.runtime.preprocess import letterbox_images, to_input
from yolo.utils.text import count

MAX_LISTED_UNREADABLE = 20
PREFETCH_BATCHES = 2  # batches read and letterboxed ahead of the one running


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
        path = Path(frame.path)
        what = "a link to a file that is gone" if path.is_symlink() and not path.exists() else \
            "cannot open this video" if path.suffix.lower() in VIDEO_SUFFIXES else "cannot read this image"
        warn(f"{frame.path}: {frame.problem or what}, skipped")

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

    batch_size = positive_int(batch_size, "batch_size")
    src = source if isinstance(source, Source) else Source(source)
    run_dir = prepare_dir(out, increment)
    writer = RunWriter(run_dir, detector.names, not nosave, save_txt, save_json, save_crop)
    total = src.count()
    bar = tqdm(total=total, unit="img", file=sys.stderr, disable=not progress or total == 1, dynamic_ncols=True)
    stats = _Stats()
    detected = _detected_batches(detector, src, batch_size, prefetch, stats)
    try:
        for batch, frames, dets in detected:
            t0 = time.perf_counter()
            for f, d in zip(frames, dets):
                writer.write(f, d)
                stats.per_class.update(d.classes.tolist())
            stats.images += len(frames)
            stats.seconds["write"] += time.perf_counter() - t0
            bar.update(len(batch))
    finally:
        detected.close()  # the reader thread stops here, also on Ctrl-C
        bar.close()
        writer.close()
    summary = stats.summary(run_dir, writer, detector.names)
    if increment and nosave and not (save_txt or save_json or save_crop):
        discard_if_empty(summary)
    return summary


def discard_if_empty(summary: dict) -> None:
    """Remove the run folder when the run wrote nothing into it (for ``nosave`` without txt, JSON or crops: an
    empty folder is no result); ``summary["run_dir"]`` becomes None."""
    run_dir = Path(summary["run_dir"])
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        discard_run_dir(run_dir)
        summary["run_dir"] = None


def _letterboxed_batches(frames: Iterator[Frame], step: int, size: tuple[int, int], letterbox: bool = True
                         ) -> Iterator[tuple]:
    """Groups of ``step`` frames, read and letterboxed (or stretched: ``letterbox=False``; OpenCV only, no torch
    threads):
    ``(frames, boxed [G, H, W, 3] BGR uint8 or None, infos)``, the G readable frames in order."""
    while True:
        batch = list(itertools.islice(frames, step))
        if not batch:
            return
        images = [f.image for f in batch if f.image is not None]
        boxed, infos = letterbox_images(images, size, letterbox) if images else (None, [])
        yield batch, boxed, infos


def _detected_batches(detector, src: Source, batch_size: int, prefetch: bool, stats: _Stats) -> Iterator[tuple]:
    """``(frames read, the readable ones, their Detections)`` per batch of ``src``, in order; unreadable files
    are counted and warned about in ``stats``, and the time spent reading and letterboxing (with ``prefetch``,
    waiting for the reader thread), detecting and post-processing is added to it."""
    batches = _letterboxed_batches(iter(src), 1 if src.is_live else batch_size, detector.img_size,
                                   getattr(detector, "letterbox", True))
    reader = Prefetcher(batches, depth=PREFETCH_BATCHES) if prefetch else None
    batches = iter(reader) if reader is not None else batches
    try:
        while True:
            t0 = time.perf_counter()
            item = next(batches, None)
            stats.seconds["pre"] += time.perf_counter() - t0  # reading and letterboxing count as pre-processing
            if item is None:
                return
            batch, boxed, infos = item
            for f in batch:
                if f.image is None:
                    stats.skip(f)
            frames, dets = [f for f in batch if f.image is not None], []
            if boxed is not None:
                t0 = time.perf_counter()
                x = to_input(boxed)  # [G, 3, H, W] float
                stats.seconds["pre"] += time.perf_counter() - t0
                dets, seconds = detector.detect_letterboxed(x, infos, [f.path for f in frames],
                                                            [f.index for f in frames])
                stats.seconds.update(seconds)
            yield batch, frames, dets
    finally:
        if reader is not None:
            reader.close()


def stream_detections(detector, source, batch_size: int = 1, prefetch: bool = True) -> Iterator:
    """The loop behind ``Detector.stream``: one ``Detections`` per readable frame of ``source``, in order,
    nothing written (an unreadable file is skipped with a warning)."""
    src = source if isinstance(source, Source) else Source(source)  # a bad source is an error here, not later
    return _each_detection(_detected_batches(detector, src, positive_int(batch_size, "batch_size"), prefetch,
                                             _Stats()))


def _each_detection(detected) -> Iterator:
    try:
        for _, _, dets in detected:
            yield from dets
    finally:
        detected.close()


def format_summary(s: dict) -> str:
    """The closing lines ``yolo detect`` prints."""
    t = s["ms_per_image"]
    per_class = ", ".join(f"{k} {name}" for name, k in s["per_class"].items()) or "none"
    lines = [f"{count(s['images'], 'image')}, {count(s['detections'], 'detection')} ({per_class})",
             f"per image: {t['pre']:.1f} ms pre-process (read + letterbox), {t['infer']:.1f} ms inference, "
             f"{t['post']:.1f} ms post-process (NMS), {t['write']:.1f} ms writing"]
    if s["unreadable"]:
        lines.append(f"{count(s['unreadable'], 'unreadable file')} skipped: {', '.join(s['unreadable_files'])}")
    lines.append(f"results in {s['run_dir']}" if s["run_dir"] is not None else
                 "nothing saved (--nosave without --save-txt, --save-json or --save-crop)")
    return "\n".join(lines)

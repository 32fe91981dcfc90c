"""``load_split``: one split of a ``DataConfig`` -> a checked ``DatasetIndex``, through the label cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from yolo.data.cache import cache_key, load_cache, save_cache
from yolo.data.formats import DataConfig, SplitSpec, load_data_config
from yolo.data.formats_coco import read_coco
from yolo.data.formats_yolo import list_images, parse_label_file, resolve_label, stat_or_none
from yolo.data.imageinfo import CorruptImage, image_size
from yolo.data.index import DatasetIndex
from yolo.data.report import DatasetReport
from yolo.errors import InputError
from yolo.utils.text import count


def load_split(config: DataConfig | str | os.PathLike, split: str, cache: bool = True) -> DatasetIndex:
    """Read, check and index ``split`` (``"train"``, ``"val"`` or ``"test"``) of ``config`` (a ``DataConfig``,
    or what :func:`load_data_config` reads: a data YAML, a darknet ``.data``, a COCO json or a built-in name).

    Corrupt images and bad label rows are dropped and counted in ``index.report`` (a ``DatasetReport``);
    only unusable input (a missing folder or list file, an empty split) raises ``InputError``. With
    ``cache`` the parsed labels are stored in a ``.cache`` file and reused while no file changed.
    """
    if isinstance(config, (str, os.PathLike)):
        config = load_data_config(config)
    spec = config.splits.get(split)
    if spec is None:
        raise InputError(f"no {split!r} split (this data has: {', '.join(config.splits)})", config.source)
    if config.format == "coco":  # a changed json, added/removed image files; edited ones: the cache's ``checked``
        files, stats = [os.path.abspath(p) for p in (spec.annotations, *spec.sources)], None
        images, labels = [], []
    else:
        listed_at: dict[str, tuple[str, int]] = {}  # list-file lines naming no file
        try:
            images = list_images(spec.sources, config.root, listed_at)  # strings until the index is built (speed)
        except InputError as e:  # name the data file that gave the path too
            raise InputError(f"{split}: {e}", config.source) from None
        resolved = [resolve_label(p) for p in images]
        labels = [lab for lab, _ in resolved]
        files, stats = images + labels, [None] * len(images) + [st for _, st in resolved]
        stats[:len(images)] = map(stat_or_none, images)
    key = cache_key(files, f"{config.format}\0{config.names}\0{[os.path.abspath(s) for s in spec.sources]}", stats)
    where = _cache_file(spec)
    note = None
    if cache:
        index, note = load_cache(where, key)
        if index is not None:
            index.report.split, index.report.notes = split, [note]
            index.source = index.report.source = _describe(spec)  # as named now, not by whoever made the cache
            return index
    checked: list[str] = []  # files the key does not cover, whose stats the cache keeps and checks
    if config.format == "coco":
        index, checked = _read_coco_split(config, spec, split)
    else:
        index = _read_yolo_split(config, spec, split, images, labels, listed_at)
    if cache:
        saved = save_cache(where, key, index, checked)
        index.report.notes = [n for n in (note, None if saved else "label cache not writable; not saved") if n]
    return index


def _cache_file(spec: SplitSpec) -> Path:
    """``labels/train.cache`` for ``images/train``; ``x.cache`` beside a list file or a COCO json; several
    sources get a hash of them in the name."""
    first = spec.annotations or spec.sources[0]
    if first.is_dir():
        parts = list(first.parts)
        if "images" in parts:
            i = len(parts) - 1 - parts[::-1].index("images")
            parts[i] = "labels"
        first = Path(*parts)
    if len(spec.sources) > 1:
        digest = hashlib.sha256("\0".join(map(str, spec.sources)).encode()).hexdigest()[:8]
        return first.parent / f"{first.stem}.{digest}.cache"
    return first.parent / f"{first.stem if first.suffix in ('.txt', '.json') else first.name}.cache"


def _read_yolo_split(config: DataConfig, spec: SplitSpec, split: str, images: list[str],
                     label_files: list[str], listed_at: dict[str, tuple[str, int]]) -> DatasetIndex:
    report = DatasetReport(split=split, source=_describe(spec), names=list(config.names))
    kept, labels, shapes = [], [], []
    first: dict[str, tuple[np.ndarray, tuple] | None] = {}  # image -> its first listing's (rows, shape); None: dropped
    reader: dict[str, str] = {}  # label file -> the first image that read it
    parsed: dict[str, np.ndarray | None] = {}  # label file -> its rows (None: no file, or unreadable)
    for image, lab_path in zip(images, label_files):
        if image in first:  # read once: its rows, problems and label counts are the first listing's
            report.repeated += 1
            sample = first[image]
            report.problem("listed again in this split (" + ("kept: one more sample of it)" if sample is not None
                                                             else "dropped, as its first listing)"), image)
            if sample is not None:
                kept.append(Path(image))
                labels.append(sample[0])
                shapes.append(sample[1])
            continue
        first[image] = None
        try:
            shape = image_size(image)
        except CorruptImage as e:
            report.corrupt += 1
            if image in listed_at:  # a list file's line naming no file: say where it is listed
                report.problem(f"listed image not found (dropped): {image}", *listed_at[image])
            elif not os.path.exists(image):
                report.problem("image file not found (dropped)", image)
            else:
                report.problem(f"corrupt image dropped: {e}", image)
            continue
        if lab_path in parsed:  # another image's label file (a.jpg and a.png): read once, its counts once
            rows = parsed[lab_path]
            if rows is not None and not _same_file(reader[lab_path], image):
                report.shared_label_file(image, reader[lab_path], lab_path)
        else:
            rows = parsed[lab_path] = parse_label_file(lab_path, config.nc, report)
            reader[lab_path] = image
            if rows is not None:
                report.labels_found += 1
                report.labels_empty += _blank(lab_path)
        if rows is None:
            if os.path.exists(lab_path):  # unreadable (reported): unknown labels make no negative, drop the image
                continue
            report.no_label_file(image)
            rows = np.zeros((0, 5), np.float32)
        first[image] = (rows, shape)
        kept.append(Path(image))
        labels.append(rows)
        shapes.append(shape)
    return _finish(report, kept, labels, shapes, config, crowd=[np.zeros((0, 5), np.float32) for _ in kept])


def _same_file(a: str, b: str) -> bool:
    """Two spellings of one image (``./images/../images/a.jpg``, a link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _blank(path: str) -> bool:
    with open(path, "rb") as f:
        return not f.read().strip()


def _read_coco_split(config: DataConfig, spec: SplitSpec, split: str) -> tuple[DatasetIndex, list[str]]:
    """The split's index and every image file its json names (the cache checks they are unchanged)."""
    report = DatasetReport(split=split, source=_describe(spec), names=list(config.names))
    # absolute image paths: the cache key holds no working folder (a relative index would be wrong elsewhere)
    coco = read_coco(Path(os.path.abspath(spec.sources[0])), Path(os.path.abspath(spec.annotations)), report)
    if len(coco.names) != config.nc:
        raise InputError(f"the json has {len(coco.names)} categories but the data config names {config.nc}",
                         str(spec.annotations))
    report.labels_found = len(coco.labels)  # every image the json lists has its entry, as a label file found...
    report.labels_empty = sum(len(lab) == 0 for lab in coco.labels)  # ...of which these hold no box
    index = _finish(report, coco.images, coco.labels, coco.shapes, config, crowd=coco.crowd)
    index.image_ids, index.category_ids = coco.image_ids, coco.category_ids
    index.coco_gt, index.coco_crowd = coco.gt, coco.crowd_gt
    return index, [str(p) for p in coco.named]


def _finish(report: DatasetReport, images: list[Path], labels: list[np.ndarray], shapes: list, config: DataConfig,
            crowd: list[np.ndarray]) -> DatasetIndex:
    if not images:
        first = f"; the first: {report.problems[0]}" if report.problems else ""
        raise InputError(f"no usable images in the {report.split} split ({report.corrupt} corrupt or missing"
                         f"{first})", report.source)
    report.images = len(images)
    report.count_instances(labels)
    return DatasetIndex(images=images, labels=labels, names=list(config.names), crowd=crowd,
                        shapes=np.array(shapes, np.int64).reshape(-1, 2), report=report, source=report.source)


def shared_images(index: DatasetIndex, other: DatasetIndex) -> list[Path]:
    """The images of ``index`` that ``other`` holds too (the same file, however its path is spelled and through
    links: one ``stat`` per image, its device and inode; a file that cannot be read, by its normalized absolute
    path), in ``index``'s order: a val split sharing images with the train split scores the model on what it
    learned from, so its metrics read high. (``realpath`` walked every component: 31 against 3.5 us per image,
    3.6 s at every start of a COCO-sized training.)"""
    def identity(p: Path) -> tuple:
        try:
            st = os.stat(p)
        except OSError:
            return (os.path.normpath(os.path.abspath(p)),)
        return st.st_dev, st.st_ino

    theirs = {identity(p) for p in other.images}
    return [p for p in dict.fromkeys(index.images) if identity(p) in theirs]


def describe_shared(split: str, index: DatasetIndex, other_split: str, shared: list[Path]) -> str:
    """``val: 3 of its 50 images are also in the train split (a.jpg, b.jpg, c.jpg): its metrics will read high``."""
    names = ", ".join(p.name for p in shared[:3]) + (f" ... and {len(shared) - 3} more" if len(shared) > 3 else "")
    verb = "is" if len(shared) == 1 else "are"
    return (f"{split}: {len(shared)} of its {count(len(set(index.images)), 'image')} {verb} also in the {other_split} "
            f"split ({names}): its metrics will read high")


def _describe(spec: SplitSpec) -> str:
    if spec.annotations is not None:
        return f"{spec.annotations} + {spec.sources[0]}"
    return ", ".join(map(str, spec.sources))

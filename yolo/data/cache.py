"""Label cache: one ``.cache`` file per split holding the parsed labels, image shapes and the report.

The file is a numpy ``.npz`` (read with ``allow_pickle=False``: no code can run from it) written atomically.
It is trusted only when its version and key match; the key hashes every image and label file's path,
size and modification time, so any added, removed or edited file makes it stale and it is rebuilt. A COCO
split's key hashes its json and image folder only (the json names the images): the cache keeps the list of
image files the json named (``checked``) with the hash of their stats at writing, and is stale when one of
them has changed since (an image replaced in place leaves its folder's time as it was).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from yolo.data.index import DatasetIndex
from yolo.data.report import DatasetReport
from yolo.utils.checkpoint import atomic_write
from yolo.utils.files import cache_dir

CACHE_VERSION = 9  # 2: the report names images without a label file; 3: absolute paths (COCO splits too);
# 4: the report counts images listed again (repeated); 5: COCO areas; 6: COCO images' stats (checked);
# 7: sizes turned by the EXIF orientation of PNG, WebP and big-header JPEG files; COCO annotations as written;
# 8: a COCO split's labels found count its images without boxes (as label files found empty);
# 9: an image listed again is read once (its rows dropped, label files and problems counted once)


def cache_key(files: list[str | Path], extra: str = "", stats: list | None = None) -> str:
    """sha256 over ``extra``, the cache version and each file's (path, size, mtime); missing files count too.
    ``stats[i]`` may give ``os.stat(files[i])`` (``None``: missing) already taken by the caller."""
    h = hashlib.sha256(f"{CACHE_VERSION}\0{extra}".encode())
    for i, f in enumerate(files):
        st = stats[i] if stats is not None else _stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode() if st is not None else f"{f}\0-\n".encode())
    return h.hexdigest()


def _stat(path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def user_cache_path(path: Path) -> Path:
    """Where the cache for ``path`` goes when its folder is not writable: ``labels/`` in the toolkit's cache
    (:func:`yolo.utils.files.cache_dir`)."""
    base = cache_dir() / "labels"
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return base / f"{digest}-{path.name}"


def load_cache(path: Path, key: str) -> tuple[DatasetIndex | None, str | None]:
    """The cached index (``None`` if absent, stale or unreadable) and a note: which file it was read from (the
    one beside the labels or the user cache's copy), or why it was not used. A stale or unreadable file beside
    the labels does not hide a good copy in the user cache (a read-only dataset carrying an old cache: the copy
    is where the rebuilt one went, and it was never read, so every run rebuilt)."""
    note = None
    for p in (path, user_cache_path(path)):
        if not p.is_file():
            continue
        try:
            with np.load(p, allow_pickle=False) as z:
                if int(z["version"]) != CACHE_VERSION or str(z["key"]) != key or not _unchanged(z):
                    note = note or f"label cache {p} is stale; rebuilt"
                    continue
                return _index_from_arrays(z), f"labels read from the cache {p}"
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as e:
            note = note or f"label cache {p} is unreadable ({type(e).__name__}); rebuilt"
    return None, note


def _unchanged(z) -> bool:
    """The files a cache keeps in ``checked`` have the size and modification time they had when it was written."""
    checked = z["checked"].tolist()
    return not checked or cache_key(checked) == str(z["checked_key"])


def save_cache(path: Path, key: str, index: DatasetIndex, checked: list[str] = ()) -> Path | None:
    """Write the cache next to the labels, else in the user cache folder; ``None`` if neither is writable.
    ``checked``: files the key does not cover whose changes must make the cache stale (a COCO split's images)."""
    arrays = _index_to_arrays(index, key)
    arrays.update(checked=np.array(list(checked), dtype=str), checked_key=np.array(cache_key(list(checked))))
    for p in (path, user_cache_path(path)):
        try:
            with atomic_write(p, sweep=True) as f:
                np.savez(f, **arrays)
            return p
        except OSError:
            continue
    return None


def _index_to_arrays(index: DatasetIndex, key: str) -> dict[str, np.ndarray]:
    def stack(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        counts = np.array([len(r) for r in rows], np.int64)
        data = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 5), np.float32)
        return counts, data.reshape(-1, 5)

    counts, labels = stack(index.labels)
    crowd_counts, crowd = stack(index.crowd)
    report = index.report.to_dict() if index.report is not None else {}
    return {
        "version": np.array(CACHE_VERSION), "key": np.array(key), "source": np.array(index.source),
        "images": np.array([str(p) for p in index.images], dtype=str), "names": np.array(index.names, dtype=str),
        "counts": counts, "labels": labels, "crowd_counts": crowd_counts, "crowd": crowd,
        "shapes": np.zeros((0, 2), np.int64) if index.shapes is None else np.asarray(index.shapes, np.int64),
        "image_ids": np.array(index.image_ids, np.int64), "category_ids": np.array(index.category_ids, np.int64),
        "report": np.array(json.dumps(report)),
        **_stacked("coco_gt", index.coco_gt), **_stacked("coco_crowd", index.coco_crowd),
    }


def _stacked(name: str, rows: list[np.ndarray]) -> dict:
    """Per-image ``[M_i, 6]`` arrays -> ``{name: [sum M_i, 6], name_counts: [n]}`` (empty when absent)."""
    if not rows:
        return {name: np.zeros((0, 6)), f"{name}_counts": np.zeros(0, np.int64)}
    return {name: np.concatenate(rows).reshape(-1, 6), f"{name}_counts": np.array([len(r) for r in rows], np.int64)}


def _index_from_arrays(z) -> DatasetIndex:
    def split(counts: np.ndarray, data: np.ndarray) -> list[np.ndarray]:
        if counts.sum() != len(data):
            raise ValueError("row counts disagree")
        ends = np.cumsum(counts).tolist()
        return [data[e - c:e] for c, e in zip(counts.tolist(), ends)]  # views; np.split is slower

    images = list(map(Path, z["images"].tolist()))
    labels = split(z["counts"], z["labels"])
    crowd = split(z["crowd_counts"], z["crowd"])
    if len(labels) != len(images) or (crowd and len(crowd) != len(images)):
        raise ValueError("lengths disagree")
    report = json.loads(str(z["report"]))
    shapes = z["shapes"]
    coco_gt = split(z["coco_gt_counts"], z["coco_gt"]) if len(z["coco_gt_counts"]) else []  # COCO splits only
    coco_crowd = split(z["coco_crowd_counts"], z["coco_crowd"]) if len(z["coco_crowd_counts"]) else []
    if len(coco_gt) not in (0, len(images)) or len(coco_crowd) not in (0, len(images)):
        raise ValueError("lengths disagree")
    return DatasetIndex(
        images=images, labels=labels, names=z["names"].tolist(), crowd=crowd,
        shapes=shapes if len(shapes) == len(images) else None, image_ids=z["image_ids"].tolist(),
        category_ids=z["category_ids"].tolist(), report=DatasetReport.from_dict(report) if report else None,
        source=str(z["source"]), coco_gt=coco_gt, coco_crowd=coco_crowd)

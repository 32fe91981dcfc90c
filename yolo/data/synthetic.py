"""The built-in ``shapes`` dataset: coloured shapes on textured backgrounds, with exact boxes and masks.

Each sample is a pure function of its seed (same seed -> same pixels, bit for bit). Objects are painted
one after another without anti-aliasing, so an object's mask is exactly the pixels painted in its colour.
Occlusion rule: later objects cover earlier ones; a new object is only placed if every object already in
the image keeps at least ``MIN_VISIBLE`` of its own area visible (else another place/size is tried, and
after ``PLACE_TRIES`` failures the object is skipped). So every painted object is labelled, and its box is
the tight box of its VISIBLE mask (pixel edges: a mask spanning columns 3..7 has x1=3, x2=8).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from yolo.errors import InputError
from yolo.utils.files import cache_dir
from yolo.utils.temps import FOLDER_LOCK, end_with_parent, new_temp_folder, remove_abandoned

SHAPES_NAMES: list[str] = ["circle", "rectangle", "triangle", "star", "cross"]
MIN_VISIBLE = 0.6     # fraction of an object's own area that must stay visible under later objects
PLACE_TRIES = 20      # placements tried per object before skipping it
SIZE_RANGE = (0.04, 0.5)  # object extent as a fraction of the image's short side (log-uniform)
MIN_COLOR_DIST = 90.0  # RGB distance between an object's colour and the mean of what it covers
GENERATOR_VERSION = 1  # part of the cache key: bump when the pixels a seed produces change
SPEC_KEYS = {"kind": "shapes", "train": 500, "val": 100, "size": 256, "seed": 0}  # keys and defaults


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured background ``[H, W, 3]`` uint8: a gradient, blurred noise or stripes in muted colours."""
    c1, c2 = rng.uniform(30, 200, 3).astype(np.float32), rng.uniform(30, 200, 3).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    ys, xs = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    t = np.add.outer(ys * np.float32(np.sin(angle)), xs * np.float32(np.cos(angle)))  # [H, W] along a direction
    kind = int(rng.integers(3))
    if kind == 0:  # linear gradient
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    elif kind == 1:  # smooth noise blobs
        t = rng.random((h, w), dtype=np.float32)
        k = int(rng.integers(1, 6)) * 4 + 1
        t = cv2.GaussianBlur(t, (k, k), 0)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    else:  # stripes, sinusoidal or hard
        t = 0.5 + 0.5 * np.sin(t * np.float32(2 * np.pi / rng.uniform(6, 40)))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    img = c1 + (c2 - c1) * t[..., None].astype(np.float32)  # [H, W, 3]
    img += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(2, 12))
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _polygon(rng: np.random.Generator, cls: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Vertices ``[K, 2]`` (x, y) of a triangle (cls 2), star (3) or cross (4) of radius ``r``."""
    rot = rng.uniform(0, 2 * np.pi)
    if cls == 2:
        ang = rot + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
        rad = np.full(3, r)
    elif cls == 3:
        ang = rot + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.5))
    else:
        a = r / 3  # half arm width; arms reach r
        pts = np.array([[a, r], [a, a], [r, a], [r, -a], [a, -a], [a, -r],
                        [-a, -r], [-a, -a], [-r, -a], [-r, a], [-a, a], [-a, r]])
        rot = rng.uniform(0, np.pi / 2)
        c, s = np.cos(rot), np.sin(rot)
        return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)
    return np.stack((cx + rad * np.cos(ang), cy + rad * np.sin(ang)), 1)


def _shape_mask(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """A random shape of class ``cls`` drawn (no anti-aliasing) as an ``[H, W]`` bool mask inside the image."""
    side = min(h, w)
    d = side * float(np.exp(rng.uniform(*np.log(SIZE_RANGE))))  # extent in pixels
    r = max(d / 2, 3.0)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    mask = np.zeros((h, w), np.uint8)
    if cls == 0:
        cv2.circle(mask, (round(cx), round(cy)), round(r), 1, -1, cv2.LINE_8)
    elif cls == 1:
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        hw, hh = r * min(1.0, aspect), r * min(1.0, 1 / aspect)
        cv2.rectangle(mask, (round(cx - hw), round(cy - hh)), (round(cx + hw), round(cy + hh)), 1, -1)
    else:
        pts = np.round(_polygon(rng, cls, cx, cy, r)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, cv2.LINE_8)
    return mask.astype(bool)


def _contrasting_color(rng: np.random.Generator, covered: np.ndarray) -> np.ndarray:
    """An RGB colour ``[3]`` far from the mean of the ``[K, 3]`` pixels it will cover (best of 10 draws)."""
    mean = covered.reshape(-1, 3).mean(0)
    best, best_d = None, -1.0
    for _ in range(10):
        color = rng.integers(0, 256, 3).astype(np.float64)
        dist = float(np.linalg.norm(color - mean))
        if dist > best_d:
            best, best_d = color, dist
        if dist >= MIN_COLOR_DIST:
            break
    return best.astype(np.uint8)


def _place(rng: np.random.Generator, placed: list[tuple[np.ndarray, int]], h: int,
           w: int) -> tuple[int, np.ndarray] | None:
    """Draw a class and an ``[H, W]`` shape mask that leaves every earlier object's visible mask (``placed``:
    pairs of visible mask, full area) at >= MIN_VISIBLE of its full area; None after PLACE_TRIES failures."""
    cls = int(rng.integers(len(SHAPES_NAMES)))
    for _ in range(PLACE_TRIES):
        new = _shape_mask(rng, cls, h, w)
        if all((m & ~new).sum() >= MIN_VISIBLE * full for m, full in placed):
            return cls, new
    return None


def make_sample(seed: int, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic image with its objects, a pure function of ``seed``.

    Returns ``img [H, W, 3]`` uint8 RGB, ``labels [N, 5]`` float32 (class, x1, y1, x2, y2 in pixels, the tight
    box of the visible mask) and ``masks [N, H, W]`` bool (visible pixels of each object).
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 16 or w < 16:
        raise InputError(f"synthetic image size must be >= 16 pixels, got {h}x{w}")
    rng = np.random.default_rng(seed)
    img = _background(rng, h, w)
    placed: list[tuple[np.ndarray, int]] = []  # (visible mask [H, W], full area)
    classes: list[int] = []
    for _ in range(int(rng.integers(1, 7))):
        got = _place(rng, placed, h, w)
        if got is None:
            continue
        cls, new = got
        img[new] = _contrasting_color(rng, img[new])
        placed = [(m & ~new, full) for m, full in placed] + [(new, int(new.sum()))]
        classes.append(cls)
    noise = rng.integers(-2, 3, img.shape, dtype=np.int16)  # faint sensor noise; masks stay exact
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    masks = np.stack([m for m, _ in placed]) if placed else np.zeros((0, h, w), bool)
    labels = np.array([[c, *mask_box(m)] for c, m in zip(classes, masks)], np.float32).reshape(-1, 5)
    return img, labels, masks


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight box (x1, y1, x2, y2) of an ``[H, W]`` bool mask in pixel edges (x2 = last column + 1)."""
    xs, ys = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)


def _sample_seed(seed: int, split: int, i: int) -> int:
    """The seed of sample ``i`` of split 0 (train) or 1 (val): independent streams per (seed, split, i)."""
    return int(np.random.SeedSequence((seed, split, i)).generate_state(1)[0])


def _write_range(tmp: Path, split: str, split_id: int, start: int, stop: int, size, seed: int) -> None:
    """Write samples ``start..stop-1`` as ``images/<split>/NNNNNN.png`` and ``labels/<split>/NNNNNN.txt``."""
    for i in range(start, stop):
        img, labels, _ = make_sample(_sample_seed(seed, split_id, i), size)
        h, w = img.shape[:2]
        if not cv2.imwrite(str(tmp / "images" / split / f"{i:06d}.png"), img[:, :, ::-1]):
            raise OSError(f"could not write {tmp / 'images' / split / f'{i:06d}.png'}")
        lines = [f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
                 for c, x1, y1, x2, y2 in labels.tolist()]
        (tmp / "labels" / split / f"{i:06d}.txt").write_text("".join(lines))


def _write_splits(tmp: Path, counts: dict[str, int], size, seed: int, workers: int) -> None:
    """Fill ``tmp`` with every split, in chunks spread over ``workers`` processes (inline when 1)."""
    jobs = []
    for split_id, (split, n) in enumerate(counts.items()):
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
        jobs += [(tmp, split, split_id, a, min(a + 64, n), size, seed) for a in range(0, n, 64)]
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _write_range(*job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=end_with_parent,
                             initargs=(os.getpid(),)) as pool:  # a SIGKILL of this process ends them too
        for future in [pool.submit(_write_range, *job) for job in jobs]:
            future.result()


def write_dataset(root: str | Path, n_train: int, n_val: int, size: int | tuple[int, int], seed: int,
                  workers: int | None = None) -> Path:
    """Write a shapes dataset in YOLO layout: ``root/images/{train,val}/NNNNNN.png`` and
    ``root/labels/{train,val}/NNNNNN.txt`` (``class cx cy w h`` normalized, 6 decimals) plus ``names.txt``.

    Atomic: everything is written into a temporary sibling folder that is renamed to ``root`` at the end,
    so ``root`` either does not exist or is complete. Refuses to replace an existing ``root``. ``workers``
    processes generate in parallel (default: up to 4, one per CPU, for >= 256 images); the files do not
    depend on it.
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root} exists; not overwriting a dataset")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp, lock = new_temp_folder(root)  # after removing what killed generations of root left
    try:
        if workers is None:  # starting processes costs ~1 s: only worth it for big datasets
            workers = min(4, os.cpu_count() or 1) if n_train + n_val >= 256 else 1
        _write_splits(tmp, {"train": n_train, "val": n_val}, size, seed, workers)
        (tmp / "names.txt").write_text("".join(f"{n}\n" for n in SHAPES_NAMES))
        os.rename(tmp, root)  # atomic on one file system; fails if root appeared meanwhile
        (root / FOLDER_LOCK).unlink(missing_ok=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)
    return root


def _check_int(spec: dict, key: str, low: int, high: int, source: str) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"synthetic.{key}: expected an integer in [{low}, {high}], got {value!r}", source)
    return value


def validate_spec(spec: dict, names: list[str], source: str = "data/shapes.yaml") -> dict:
    """Check a data YAML's ``synthetic:`` mapping; returns it with defaults filled in.

    Keys: ``kind`` (only ``shapes``), ``train``/``val`` (image counts), ``size`` (pixels, or [h, w]), ``seed``.
    """
    if not isinstance(spec, dict):
        raise InputError(f"synthetic: expected a mapping with keys {sorted(SPEC_KEYS)}, got {spec!r}", source)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise InputError(f"synthetic.{unknown[0]}: unknown key (valid: {', '.join(sorted(SPEC_KEYS))})", source)
    spec = {**SPEC_KEYS, **spec}
    if spec["kind"] != "shapes":
        raise InputError(f"synthetic.kind: only 'shapes' is built in, got {spec['kind']!r}", source)
    _check_int(spec, "train", 1, 10_000_000, source)
    _check_int(spec, "val", 0, 10_000_000, source)
    _check_int(spec, "seed", 0, 2**63 - 1, source)
    size = spec["size"]
    sizes = size if isinstance(size, (list, tuple)) and len(size) == 2 else [size]
    for s in sizes:
        _check_int({"size": s}, "size", 16, 8192, source)
    spec["size"] = list(size) if isinstance(size, (list, tuple)) else size
    if list(names) != SHAPES_NAMES:
        raise InputError(f"names: the shapes dataset's classes are {SHAPES_NAMES}, got {list(names)}", source)
    return spec


def ensure_synthetic(spec: dict, names: list[str], source: str = "data/shapes.yaml") -> Path:
    """The dataset that ``spec`` (a data YAML's ``synthetic:`` mapping) describes, generated on first use into
    ``cache_dir()/shapes-<hash of spec>`` and reused afterwards. Safe when several processes (DDP ranks) race:
    each builds its own temporary folder and the first rename wins. Returns the dataset root."""
    spec = validate_spec(spec, names, source)
    key = json.dumps({**spec, "version": GENERATOR_VERSION}, sort_keys=True)
    root = cache_dir() / f"shapes-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if root.is_dir():
        return root
    size = tuple(spec["size"]) if isinstance(spec["size"], list) else spec["size"]
    remove_abandoned(root.parent, ".shapes-*.tmp")  # killed generations of any spec
    try:
        write_dataset(root, spec["train"], spec["val"], size, spec["seed"])
    except OSError as e:  # FileExistsError / rename onto a non-empty folder: another process won the race
        if not root.is_dir():  # or the cache cannot be written: say where, and how to move it
            raise InputError(f"cannot write the generated dataset ({e.strerror or e}); set YOLO_CACHE_DIR to a "
                             "writable folder", str(cache_dir())) from None
    return root

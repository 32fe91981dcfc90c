"""The torch Dataset: images and labels of a ``DatasetIndex``, letterboxed or augmented to the network size."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from yolo.data.augment import (
    AugmentConfig,
    augment_hsv,
    clip_boxes,
    hflip,
    letterbox,
    mixup,
    mosaic4,
    random_affine,
    stretch,
    vflip,
)
from yolo.data.index import DatasetIndex
from yolo.errors import InputError, warn
from yolo.utils.boxes import LetterboxInfo
from yolo.utils.image import UnreadableImage, read_image

MAX_RETRIES = 10  # unreadable training images replaced in a row before giving up


def rect_shapes(shapes: np.ndarray, img_size: int, batch_size: int, stride: int,
                pad: float) -> tuple[np.ndarray, np.ndarray]:
    """Rectangular batches (as ultralytics): sort images ``shapes [n, 2]`` (h, w) by aspect ratio h/w, and give
    each batch of ``batch_size`` one shape ``(h, w)``, a multiple of ``stride`` that fits its images at
    ``img_size``. Returns ``order [n]`` (dataset index of each position) and ``batch_shapes [n_batches, 2]``."""
    aspect = shapes[:, 0] / shapes[:, 1]
    order = np.argsort(aspect, kind="stable")
    aspect = aspect[order]
    n_batches = math.ceil(len(order) / batch_size)
    rel = np.ones((n_batches, 2))  # (h, w) as fractions of img_size
    for b in range(n_batches):
        ar = aspect[b * batch_size:(b + 1) * batch_size]
        if ar.max() < 1:
            rel[b] = ar.max(), 1
        elif ar.min() > 1:
            rel[b] = 1, 1 / ar.min()
    return order, (np.ceil(rel * img_size / stride + pad).astype(int) * stride)


class DetectionDataset(torch.utils.data.Dataset):
    """Samples of a ``DatasetIndex`` for training or validation.

    ``dataset[i]`` -> ``(img [3, S, S] uint8 RGB tensor, labels [N, 6] float32 (0, class, cx, cy, w, h
    normalized to the output image), path, LetterboxInfo)``. The info maps the original image to the output
    exactly without augmentation; for mosaics it is the identity on the output. Position ``i`` is image
    ``order[i]`` of the index (``order`` is sorted by aspect ratio when ``rect``, else 0..n-1).

    Randomness: sample ``i`` at epoch ``e`` draws from ``np.random.default_rng((seed, e, i))``, so batches do
    not depend on the number of workers. The loader passes keys ``(i, epoch, mosaic)`` taken from
    ``epoch`` / ``mosaic_enabled`` in the main process (set them with ``set_epoch`` and, for close-mosaic,
    ``mosaic_enabled = False``); they reach persistent workers that way. A plain ``int`` key uses them too.

    ``letterbox=False`` (validation only) stretches each image to the output shape instead of letterboxing it
    (AlexeyAB darknet's resize for models without ``letter_box=1``); the info still maps boxes back exactly.
    """

    def __init__(self, index: DatasetIndex, img_size: int, augment: AugmentConfig | None = None,
                 train: bool = False, seed: int = 0, rect: bool = False, batch_size: int = 16, stride: int = 32,
                 pad: float = 0.5, letterbox: bool = True):
        if img_size % stride:
            raise InputError(f"image size {img_size} is not a multiple of the stride {stride}")
        if train and not letterbox:
            raise InputError("training letterboxes (or makes mosaics of) its images; stretching is for validation")
        self.index, self.img_size, self.train, self.seed, self.rect = index, img_size, train, seed, rect
        self.letterbox = letterbox
        self.augment = augment if train else None
        self.epoch, self.mosaic_enabled = 0, True
        self.bad_images: list[str] = []  # unreadable images skipped at train time (in this process)
        self._bad: set[int] = set()  # their positions in the index: never drawn again (in this process)
        self.order = np.arange(len(index))
        self.batch_size = batch_size
        self.batch_shapes = None  # [n_batches, 2] (h, w) when rect
        if rect and len(index):
            shapes = index.shapes if index.shapes is not None else self._read_shapes()
            self.order, self.batch_shapes = rect_shapes(np.asarray(shapes, float), img_size, batch_size, stride, pad)

    def _read_shapes(self) -> np.ndarray:
        """``[n, 2]`` (h, w) of every image, read from the files (when the index does not know them)."""
        return np.array([read_image(p, "rgb").shape[:2] for p in self.index.images], float)

    def set_epoch(self, epoch: int) -> None:
        """Pick the random stream of ``epoch`` (call before each epoch; the loader passes it on to workers)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def shape_at(self, i: int) -> tuple[int, int]:
        """Output (h, w) of position ``i``: the rect batch's shape, else (S, S)."""
        if self.batch_shapes is None:
            return self.img_size, self.img_size
        h, w = self.batch_shapes[i // self.batch_size]
        return int(h), int(w)

    def load_image(self, j: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[int, int]]:
        """Image ``j`` of the index resized so its long side is S: ``img [h, w, 3]``, ``labels [N, 5]`` (class,
        xyxy pixels of the resized image), scale (sx, sy) and the original shape (h0, w0)."""
        img = read_image(self.index.images[j], "rgb")
        h0, w0 = img.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            w, h = max(1, round(w0 * r)), max(1, round(h0 * r))
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        labels = np.asarray(self.index.labels[j], np.float32).reshape(-1, 5)
        out = labels.copy()
        out[:, 1] = (labels[:, 1] - labels[:, 3] / 2) * w
        out[:, 2] = (labels[:, 2] - labels[:, 4] / 2) * h
        out[:, 3] = (labels[:, 1] + labels[:, 3] / 2) * w
        out[:, 4] = (labels[:, 2] + labels[:, 4] / 2) * h
        return img, out, (w / w0, h / h0), (h0, w0)

    def _letterboxed(self, j: int, shape: tuple[int, int]):
        """Image ``j`` loaded, then padded (never enlarged again) to ``shape``: img, labels, exact info."""
        img, labels, (sx, sy), shape0 = self.load_image(j)
        img, lb = letterbox(img, shape, scaleup=False)
        labels[:, [1, 3]] = labels[:, [1, 3]] * lb.scale[0] + lb.pad[0]
        labels[:, [2, 4]] = labels[:, [2, 4]] * lb.scale[1] + lb.pad[1]
        return img, labels, LetterboxInfo(shape0, (sx * lb.scale[0], sy * lb.scale[1]), lb.pad)

    def _stretched(self, j: int, shape: tuple[int, int]):
        """Image ``j`` stretched to ``shape`` (h, w): img, labels (class, xyxy pixels), exact info."""
        img, info = stretch(read_image(self.index.images[j], "rgb"), shape)
        labels = np.asarray(self.index.labels[j], np.float32).reshape(-1, 5)
        h, w = shape
        out = labels.copy()
        out[:, 1], out[:, 3] = (labels[:, 1] - labels[:, 3] / 2) * w, (labels[:, 1] + labels[:, 3] / 2) * w
        out[:, 2], out[:, 4] = (labels[:, 2] - labels[:, 4] / 2) * h, (labels[:, 2] + labels[:, 4] / 2) * h
        return img, out, info

    def _mosaic(self, j: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A 4-image mosaic around image ``j`` (3 others drawn at random), cropped to ``[S, S, 3]``."""
        picks = [j, *(self._usable(k, rng) for k in rng.integers(0, len(self.index), 3).tolist())]
        tiles = [self.load_image(k)[:2] for k in picks]
        img, labels, _ = mosaic4(tiles, self.img_size, rng)
        a = self.augment
        border = (-self.img_size // 2, -self.img_size // 2)
        img, labels, _ = random_affine(img, labels, a.degrees, a.translate, a.scale, a.shear, border, rng)
        return img, labels

    def _train_item(self, i: int, j: int, rng: np.random.Generator, mosaic: bool):
        """Augmented sample: mosaic (+ mixup) or letterbox + affine, then HSV and flips."""
        a, size = self.augment, self.img_size
        if mosaic and not self.rect and a.mosaic > 0 and rng.random() < a.mosaic:
            img, labels = self._mosaic(j, rng)
            if a.mixup > 0 and rng.random() < a.mixup:
                other = self._usable(int(rng.integers(len(self.index))), rng)
                img, labels, _ = mixup((img, labels), self._mosaic(other, rng), rng)
            info = LetterboxInfo((size, size), (1.0, 1.0), (0.0, 0.0))
        else:
            img, labels, info = self._letterboxed(j, self.shape_at(i))
            img, labels, _ = random_affine(img, labels, a.degrees, a.translate, a.scale, a.shear, (0, 0), rng)
        augment_hsv(img, a.hsv_h, a.hsv_s, a.hsv_v, rng)
        if rng.random() < a.fliplr:
            img, labels, _ = hflip(img, labels)
        if rng.random() < a.flipud:
            img, labels, _ = vflip(img, labels)
        return img, labels, info

    def _item(self, i: int, j: int, rng: np.random.Generator, mosaic: bool):
        if self.augment is not None:
            return self._train_item(i, j, rng, mosaic)
        if not self.letterbox:
            return self._stretched(j, self.shape_at(i))
        return self._letterboxed(j, self.shape_at(i))

    def __getitem__(self, key):
        """``key``: position ``i``, or ``(i, epoch, mosaic)`` from the loader's sampler."""
        i, epoch, mosaic = (int(key), self.epoch, self.mosaic_enabled) if np.isscalar(key) else key
        rng = np.random.default_rng((self.seed, epoch, i))
        j = self._usable(int(self.order[i]), rng) if self._bad else int(self.order[i])
        for _ in range(MAX_RETRIES):
            try:
                img, labels, info = self._item(i, j, rng, mosaic)
                return _to_output(img, labels, str(self.index.images[j]), info)
            except UnreadableImage as e:
                if not self.train:
                    raise InputError("unreadable image", str(e)) from None
                self._bad.add(self._position(str(e)))
                self.bad_images.append(str(e))
                warn(f"skipping unreadable image {e} (replaced by another sample)", stacklevel=2)
                j = self._usable(int(rng.integers(len(self.index))), rng)
        raise InputError(f"unreadable, the last of {MAX_RETRIES} unreadable images in a row (other samples "
                         f"drawn to replace unreadable ones were unreadable too)", self.bad_images[-1])

    def _usable(self, k: int, rng: np.random.Generator) -> int:
        """Image ``k``, or when it is known to be unreadable another drawn at random that is not (a mosaic tile
        or a replacement sample; the stream of draws is unchanged while no image is bad)."""
        for _ in range(8 * MAX_RETRIES):
            if k not in self._bad:
                break
            k = int(rng.integers(len(self.index)))
        return k

    def _position(self, path: str) -> int:
        """The index position of an image path (only looked up after a failure)."""
        if not hasattr(self, "_row_of"):
            self._row_of = {str(p): k for k, p in enumerate(self.index.images)}
        return self._row_of.get(path, -1)


def _to_output(img: np.ndarray, labels: np.ndarray, path: str, info: LetterboxInfo):
    """``img [H, W, 3]`` + ``labels [N, 5]`` xyxy pixels -> ``[3, H, W]`` uint8 tensor + ``[N, 6]`` (0, class,
    cx, cy, w, h normalized); boxes clipped to the image, empty ones dropped."""
    h, w = img.shape[:2]
    labels = clip_boxes(labels.astype(np.float32, copy=True), (h, w))
    labels = labels[(labels[:, 3] > labels[:, 1]) & (labels[:, 4] > labels[:, 2])]
    out = np.zeros((len(labels), 6), np.float32)
    out[:, 1] = labels[:, 0]
    out[:, 2] = (labels[:, 1] + labels[:, 3]) / 2 / w
    out[:, 3] = (labels[:, 2] + labels[:, 4]) / 2 / h
    out[:, 4] = (labels[:, 3] - labels[:, 1]) / w
    out[:, 5] = (labels[:, 4] - labels[:, 2]) / h
    tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    return tensor, torch.from_numpy(out), path, info

"""Batching: collate, the epoch-aware sampler, the DataLoader, device transfer and multi-scale resizing."""

from __future__ import annotations

import math
import random

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, Sampler


def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[str], list]:
    """``[(img [3, S, S] uint8, labels [N_i, 6], path, info), ...]`` -> ``images [B, 3, S, S]`` uint8,
    ``targets [M, 6]`` float (batch index, class, cx, cy, w, h normalized), paths, infos."""
    imgs, labels, paths, infos = zip(*batch)
    targets = []
    for b, lab in enumerate(labels):
        lab = lab.clone()
        lab[:, 0] = b
        targets.append(lab)
    return torch.stack(imgs), torch.cat(targets, 0), list(paths), list(infos)


class EpochSampler(Sampler):
    """Yields dataset keys ``(i, epoch, mosaic)`` read from the dataset's ``epoch`` and ``mosaic_enabled`` when
    iteration starts (in the main process, so persistent workers see them too). Order: shuffled by
    ``(seed, epoch)`` when ``shuffle``; split over ranks by ``DistributedSampler`` when ``world_size > 1``
    (which pads with repeats so every rank gets the same count). ``skip``: how many keys the next pass leaves
    out at its start (a resumed epoch's batches already trained; samples depend only on (seed, epoch, key), so
    the rest are the same batches)."""

    def __init__(self, dataset, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        self.dataset, self.shuffle, self.seed = dataset, shuffle, seed
        self.dist = DistributedSampler(dataset, world_size, rank, shuffle=shuffle, seed=seed) \
            if world_size > 1 else None
        self.skip = 0  # keys to leave out at the start of the next pass only (a resumed epoch's trained part)

    def __len__(self) -> int:
        return len(self.dist) if self.dist is not None else len(self.dataset)

    def __iter__(self):
        epoch = int(getattr(self.dataset, "epoch", 0))
        mosaic = bool(getattr(self.dataset, "mosaic_enabled", True))
        if self.dist is not None:
            self.dist.set_epoch(epoch)
            order = list(self.dist)
        elif self.shuffle:
            order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + epoch))
            order = order.tolist()
        else:
            order = range(len(self.dataset))
        skip, self.skip = self.skip, 0
        for i in list(order)[skip:]:
            yield int(i), epoch, mosaic


def seed_worker(worker_id: int) -> None:
    """Seed ``random``/``numpy`` in a loader worker from torch's per-worker seed; OpenCV without its thread pool."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(0)  # sequential: a pool inherited through fork from a parent that used it can hang


def build_loader(dataset, batch_size: int, train: bool, workers: int, seed: int, rank: int = 0,
                 world_size: int = 1, pin_memory: bool | None = None) -> DataLoader:
    """A DataLoader over a ``DetectionDataset``: shuffled per epoch when ``train`` (call
    ``dataset.set_epoch(e)`` before each epoch), rank's share under DDP, ``collate`` batches."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=EpochSampler(dataset, train, seed, rank, world_size),
        num_workers=workers, collate_fn=collate, worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory, drop_last=False)


def to_device(images: torch.Tensor, targets: torch.Tensor, device, dtype: torch.dtype = torch.float32):
    """``images [B, 3, H, W]`` uint8 -> ``dtype`` in [0, 1] on ``device`` (converted after the copy, so only
    bytes cross the bus); ``targets [M, 6]`` -> float32 on ``device``."""
    images = images.to(device, non_blocking=True).to(dtype).div_(255)
    return images, targets.to(device, torch.float32, non_blocking=True)


class MultiScale:
    """Multi-scale training, applied by the trainer to each batch right after ``to_device``:
    ``images = multi_scale(images, epoch, step)``. Every ``every`` steps a new size is drawn, a multiple of
    ``stride`` in [low, high] x ``img_size``, from ``(seed, epoch, step // every)`` only, so every DDP rank
    picks the same size. Images are resized bilinearly (aspect kept, long side = size); targets are
    normalized and need no change."""

    def __init__(self, img_size: int, stride: int = 32, every: int = 10, seed: int = 0, low: float = 0.5,
                 high: float = 1.5):
        self.stride, self.every, self.seed = stride, max(1, every), seed
        self.sizes = list(range(max(stride, math.ceil(low * img_size / stride) * stride),
                                math.floor(high * img_size / stride) * stride + 1, stride))

    def size(self, epoch: int, step: int) -> int:
        """The long side used for batch ``step`` of ``epoch``."""
        rng = np.random.default_rng((self.seed, epoch, step // self.every))
        return int(self.sizes[rng.integers(len(self.sizes))])

    def __call__(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        """``[B, 3, H, W]`` float -> ``[B, 3, H', W']`` with max(H', W') = ``size(epoch, step)``."""
        size = self.size(epoch, step)
        h, w = images.shape[-2:]
        r = size / max(h, w)
        new = (max(self.stride, round(h * r / self.stride) * self.stride),
               max(self.stride, round(w * r / self.stride) * self.stride))
        if new == (h, w):
            return images
        return F.interpolate(images, size=new, mode="bilinear", align_corners=False)

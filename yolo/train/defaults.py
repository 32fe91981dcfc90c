"""The default data and validation factories of ``yolo.train.train``.

They import the data layer (``yolo.data.formats``, ``.dataset``, ``.loader``, ``.augment``) and the metrics
(``yolo.val``, ``yolo.runtime``) inside the functions, so the trainer imports and is tested without them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from yolo.errors import InputError, warn
from yolo.train.config import RunConfig
from yolo.utils.dist import DistEnv


@dataclass
class TrainData:
    """Class names, the training loader (batches: images ``[B, 3, S, S]`` uint8, targets ``[M, 6]``, paths,
    infos) and the validation loader (same batches, or None). ``summary``: one line on what the splits hold,
    which the run prints first (``train 12 images, 8 boxes, 4 backgrounds; val ...``; None: nothing said)."""

    names: list[str]
    train_loader: Iterable
    val_loader: Iterable | None = None
    summary: str | None = None


def default_data(cfg: RunConfig, env: DistEnv) -> TrainData:
    """Loaders from the data YAML: the train split (augmented, distributed) and the val split (rank 0 only)."""
    from yolo.data.augment import AugmentConfig
    from yolo.data.dataset import DetectionDataset
    from yolo.data.formats import load_data_config
    from yolo.data.loader import build_loader
    from yolo.data.split import describe_shared, load_split, shared_images

    if cfg.batch_size % env.world_size:
        raise InputError(f"batch_size {cfg.batch_size} does not split evenly over {env.world_size} processes")
    per_process = cfg.batch_size // env.world_size
    config = load_data_config(cfg.data)
    train_index = load_split(config, "train")
    if env.is_main and train_index.report is not None:
        train_index.report.warn_dropped()
    train_set = DetectionDataset(train_index, cfg.img_size, augment=AugmentConfig.from_dict(cfg.augment),
                                 train=True, seed=cfg.seed, batch_size=per_process)
    train_loader = build_loader(train_set, per_process, train=True, workers=cfg.workers, seed=cfg.seed,
                                rank=env.rank, world_size=env.world_size)
    val_loader, summary = None, f"train {train_index.describe()}"
    if env.is_main:
        val_index = load_split(config, "val")
        if val_index.report is not None:
            val_index.report.warn_dropped()
        shared = shared_images(val_index, train_index)
        if shared:
            warn(describe_shared('val', val_index, 'train', shared))
        val_set = DetectionDataset(val_index, cfg.img_size, augment=None, train=False, seed=cfg.seed)
        val_loader = build_loader(val_set, per_process, train=False, workers=cfg.workers, seed=cfg.seed, rank=0,
                                  world_size=1)
        summary += f"; val {val_index.describe()}"
    return TrainData(list(train_index.names), train_loader, val_loader, summary)


def default_validate(cfg: RunConfig, data: TrainData, env: DistEnv) -> Callable | None:
    """``validate(model, epoch) -> metrics`` over ``data.val_loader``, scored as ``yolo val`` scores
    (:func:`yolo.val.run.evaluate_batches`: detections mapped back to each original image and clipped to it,
    against the split's labels), so that results.csv, best.pt and ``yolo val`` of the same weights agree (rank 0).
    The loader's dataset must be a ``DetectionDataset`` (its index and letterbox infos); a data factory with
    other loaders brings its own ``validate_factory``."""
    if data.val_loader is None:
        return None
    from yolo.runtime.backends import TorchBackend
    from yolo.val.run import evaluate_batches

    index = getattr(data.val_loader.dataset, "index", None)
    if index is None:
        raise TypeError("the default validation needs a val_loader over a DetectionDataset (pass validate_factory)")

    @torch.no_grad()
    def validate(model, epoch: int) -> dict:
        model.eval()
        device = next(model.parameters()).device
        backend = TorchBackend(copy.deepcopy(model), device)  # as detection runs it: BN folded, Winograd on CPU
        evaluator, _ = evaluate_batches(backend, data.val_loader, index, cfg.val.conf, cfg.val.iou)
        return {k: v for k, v in evaluator.compute().items() if isinstance(v, (int, float))}

    return validate

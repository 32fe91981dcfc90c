"""The default data and validation factories of ``yolo.train.train``.

They import the data layer (``yolo.data.formats``, ``.dataset``, ``.loader``, ``.augment``) and the metrics
(``yolo.val``, ``yolo.runtime``) inside the functions, so the trainer imports and is tested without them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from yolo.errors import InputError
from yolo.train.config import RunConfig
from yolo.utils.dist import DistEnv


@dataclass
class TrainData:
    """Class names, the training loader (batches: images ``[B, 3, S, S]`` uint8, targets ``[M, 6]``, paths,
    infos) and the validation loader (same batches, or None)."""

    names: list[str]
    train_loader: Iterable
    val_loader: Iterable | None = None


def default_data(cfg: RunConfig, env: DistEnv) -> TrainData:
    """Loaders from the data YAML: the train split (augmented, distributed) and the val split (rank 0 only)."""
    from yolo.data.augment import AugmentConfig
    from yolo.data.dataset import DetectionDataset
    from yolo.data.formats import load_data_config
    from yolo.data.loader import build_loader
    from yolo.data.split import load_split

    if cfg.batch_size % env.world_size:
        raise InputError(f"batch_size {cfg.batch_size} does not split evenly over {env.world_size} processes")
    per_process = cfg.batch_size // env.world_size
    config = load_data_config(cfg.data)
    train_index = load_split(config, "train")
    train_set = DetectionDataset(train_index, cfg.img_size, augment=AugmentConfig.from_dict(cfg.augment),
                                 train=True, seed=cfg.seed, batch_size=per_process)
    train_loader = build_loader(train_set, per_process, train=True, workers=cfg.workers, seed=cfg.seed,
                                rank=env.rank, world_size=env.world_size)
    val_loader = None
    if env.is_main:
        val_set = DetectionDataset(load_split(config, "val"), cfg.img_size, augment=None, train=False, seed=cfg.seed)
        val_loader = build_loader(val_set, per_process, train=False, workers=cfg.workers, seed=cfg.seed, rank=0,
                                  world_size=1)
    return TrainData(list(train_index.names), train_loader, val_loader)


def default_validate(cfg: RunConfig, data: TrainData, env: DistEnv) -> Callable | None:
    """``validate(model, epoch) -> metrics`` over ``data.val_loader`` in letterboxed pixels (rank 0)."""
    if data.val_loader is None:
        return None
    from yolo.runtime.backends import TorchBackend
    from yolo.runtime.postprocess import non_max_suppression
    from yolo.utils.boxes import cxcywh_to_xyxy
    from yolo.val.evaluator import Evaluator

    @torch.no_grad()
    def validate(model, epoch: int) -> dict:
        model.eval()
        device = next(model.parameters()).device
        backend = TorchBackend(copy.deepcopy(model), device)  # as detection runs it: BN folded, Winograd on CPU
        evaluator = Evaluator(len(data.names), data.names)
        for batch in data.val_loader:
            images, targets = batch[0], batch[1]
            images = images.float() / 255 if images.dtype == torch.uint8 else images.float()  # [B, 3, S, S]
            h, w = images.shape[-2:]
            preds = non_max_suppression(backend(images).cpu(), cfg.val.conf, cfg.val.iou,
                                        multi_label=True)  # per image [K, 6] xyxy, score, class
            for i, pred in enumerate(preds):
                t = targets[targets[:, 0] == i]  # [M, 6]
                boxes = cxcywh_to_xyxy(t[:, 2:6] * torch.tensor([w, h, w, h]))  # [M, 4] pixels
                evaluator.update(pred, boxes, t[:, 1].long())
        return {k: v for k, v in evaluator.compute().items() if isinstance(v, (int, float))}

    return validate

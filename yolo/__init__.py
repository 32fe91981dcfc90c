"""YOLOv3 toolkit: darknet cfg/weights in PyTorch.

Public names (imported lazily, so ``import yolo`` and ``yolo --help`` stay fast and import no torch):
``Darknet``, ``load_model``, ``save_checkpoint``, ``convert_weights``, ``profile_model``, ``parse_cfg``,
``DarknetHeader``, ``InputError`` and the names in ``_PUBLIC`` below (README.md, "Python API").
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Darknet": "yolo.model.darknet",
    "load_model": "yolo.model.checkpoint",
    "save_checkpoint": "yolo.model.checkpoint",
    "convert_weights": "yolo.model.convert",
    "profile_model": "yolo.model.profile",
    "parse_cfg": "yolo.model.cfg_parser",
    "DarknetHeader": "yolo.model.weights",
    "InputError": "yolo.errors",
    "DetectionDataset": "yolo.data.dataset",
    "AugmentConfig": "yolo.data.augment",
    "build_loader": "yolo.data.loader",
    "make_sample": "yolo.data.synthetic",
    "write_dataset": "yolo.data.synthetic",
    "ensure_synthetic": "yolo.data.synthetic",
    "load_data_config": "yolo.data.formats",
    "load_split": "yolo.data.split",
    "DataConfig": "yolo.data.formats",
    "DatasetIndex": "yolo.data.index",
    "DatasetReport": "yolo.data.report",
    "plot_labels": "yolo.data.report",
    "kmeans_anchors": "yolo.data.anchors",
    "anchor_fitness": "yolo.data.anchors",
    "export_model": "yolo.export.exporter",
    "ExportResult": "yolo.export.exporter",
    "load_exported": "yolo.runtime.exported",
    "coco_eval": "yolo.val.coco",
    "CocoStats": "yolo.val.coco",
    "Evaluator": "yolo.val.evaluator",
    "evaluate_files": "yolo.val.evaluator",
    "Detector": "yolo.detect.predictor",
    "Detections": "yolo.detect.predictor",
    "RunConfig": "yolo.train.config",
    "load_run_config": "yolo.train.config",
    "YoloLoss": "yolo.train.loss",
    "Trainer": "yolo.train.engine",
    "TrainTask": "yolo.train.engine",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'yolo' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

"""What every task runs a model through: backends, exported files, pre- and post-processing."""

from yolo.runtime.backends import EXPORTED_SUFFIXES, TorchBackend, load_backend, run_backend
from yolo.runtime.exported import ExportedBackend, load_exported
from yolo.runtime.postprocess import check_thresholds, non_max_suppression, postprocess
from yolo.runtime.preprocess import as_image, letterbox_images, preprocess, to_input

__all__ = ["EXPORTED_SUFFIXES", "TorchBackend", "load_backend", "run_backend", "ExportedBackend", "load_exported",
           "check_thresholds", "non_max_suppression", "postprocess", "as_image", "letterbox_images", "preprocess",
           "to_input"]

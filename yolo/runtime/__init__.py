"""What every task runs a model through: backends, exported files, pre- and post-processing.

The functions ``postprocess`` and ``preprocess`` are not handed on here: they share their modules' names
(``yolo.runtime.postprocess.postprocess``, ``yolo.runtime.preprocess.preprocess``).
"""

from yolo.runtime.backends import EXPORTED_SUFFIXES, TorchBackend, load_backend, run_backend
from yolo.runtime.exported import ExportedBackend, load_exported
from yolo.runtime.postprocess import check_thresholds, non_max_suppression
from yolo.runtime.preprocess import as_image, letterbox_images, to_input

__all__ = ["EXPORTED_SUFFIXES", "TorchBackend", "load_backend", "run_backend", "ExportedBackend", "load_exported",
           "check_thresholds", "non_max_suppression", "as_image", "letterbox_images", "to_input"]

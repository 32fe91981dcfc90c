"""The detect task: ``Detector`` (pictures in, ``Detections`` out), its sources, run loop and writers.

``TorchBackend`` and ``load_backend`` live in ``yolo.runtime`` and are handed on here as well."""

from yolo.detect.predictor import Detections, Detector
from yolo.detect.run import format_summary, run_detection
from yolo.detect.sources import Frame, Prefetcher, Source
from yolo.runtime.backends import TorchBackend, load_backend
from yolo.runtime.preprocess import preprocess

__all__ = ["Detections", "Detector", "format_summary", "run_detection", "Frame", "Prefetcher", "Source",
           "TorchBackend", "load_backend", "preprocess"]

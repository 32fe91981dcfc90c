"""Old path, kept because README named it; the new home is ``yolo.runtime.postprocess``."""

from yolo.runtime.postprocess import check_thresholds, non_max_suppression, postprocess

__all__ = ["check_thresholds", "non_max_suppression", "postprocess"]

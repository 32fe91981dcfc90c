"""Old path, kept because README named it; the new home is ``yolo.train.loss``."""

from yolo.train.loss import YoloLoss, iou_loss

__all__ = ["YoloLoss", "iou_loss"]

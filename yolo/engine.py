"""Old path, kept because README named it; the new home is ``yolo.train.engine``."""

from yolo.train.engine import NonFiniteLossError, Trainer, TrainingInterrupted, TrainTask

__all__ = ["NonFiniteLossError", "TrainTask", "Trainer", "TrainingInterrupted"]

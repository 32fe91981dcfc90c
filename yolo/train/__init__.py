"""The train task: ``train(cfg)`` (detection run), the detection-free ``Trainer``, the loss and the run config."""

from yolo.train.config import RunConfig, load_run_config
from yolo.train.defaults import TrainData
from yolo.train.engine import NonFiniteLossError, Trainer, TrainingInterrupted, TrainTask
from yolo.train.loss import YoloLoss
from yolo.train.run import config_for_resume, find_last_checkpoint, train

__all__ = ["RunConfig", "load_run_config", "TrainData", "NonFiniteLossError", "Trainer", "TrainingInterrupted",
           "TrainTask", "YoloLoss", "config_for_resume", "find_last_checkpoint", "train"]

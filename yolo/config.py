"""Old path, kept because README named it; the new home is ``yolo.train.config``."""

from yolo.train.config import EmaConfig, LossConfig, RunConfig, ValConfig, apply_override, load_run_config

__all__ = ["EmaConfig", "LossConfig", "RunConfig", "ValConfig", "apply_override", "load_run_config"]

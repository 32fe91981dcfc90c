"""The val task: COCO-exact evaluation (``Evaluator``, ``coco_eval``) and ``validate_dataset`` (a model over a split)."""

from yolo.val.coco import CocoStats, coco_eval
from yolo.val.evaluator import Evaluator, evaluate_files
from yolo.val.run import ValResult, format_result, save_json, validate_dataset

__all__ = ["CocoStats", "coco_eval", "Evaluator", "evaluate_files", "ValResult", "format_result", "save_json",
           "validate_dataset"]

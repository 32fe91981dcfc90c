"""Old path, kept because README named it; the new home is ``yolo.val.run``."""

from yolo.val.run import ValResult, coco_files, format_result, save_json, validate_dataset

__all__ = ["ValResult", "coco_files", "format_result", "save_json", "validate_dataset"]

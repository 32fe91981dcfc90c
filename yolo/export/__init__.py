"""The export task: ONNX / TorchScript files, verified against PyTorch before they are kept."""

from yolo.export.exporter import ExportResult, ExportVerificationError, export_model
from yolo.runtime.exported import load_exported

__all__ = ["ExportResult", "ExportVerificationError", "export_model", "load_exported"]

"""Export full yolov3 (random weights with BN statistics calibrated on a photo) to ONNX and TorchScript and
print each export's time and verified max difference. Usage: python scripts/export_yolov3.py [OUT_DIR] [SIZE]

Not a unit test (yolov3 is 62M parameters); numbers depend on the machine and its load.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tests.helpers import calibrated_model
    from yolo.export.exporter import export_model
    from yolo.model.checkpoint import save_checkpoint

    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="yolov3-export-"))
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 416
    weights = out_dir / "yolov3.pt"
    save_checkpoint(calibrated_model(ROOT / "cfg" / "yolov3.cfg", size=(size, size)), weights)
    runs = [("onnx", {"nms": True}), ("onnx", {}), ("onnx", {"dynamic": True}), ("onnx", {"half": True}),
            ("torchscript", {}), ("torchscript", {"dynamic": True})]
    for fmt, options in runs:
        name = "-".join(["yolov3", *options]) + (".onnx" if fmt == "onnx" else ".torchscript")
        start = time.perf_counter()
        result = export_model(weights, fmt, out_dir / name, img_size=size, force=True, **options)
        print(f"{fmt:12s} {str(options):18s} {time.perf_counter() - start:6.1f} s  max diff {result.max_diff:.3g} "
              f"(tolerance {result.tolerance:g}; {result.note})", flush=True)


if __name__ == "__main__":
    main()

"""Make the pictures under docs/images/ from the shapes demo, in one command:

    python scripts/make_docs_images.py [--out docs/images] [--epochs 4] [--img-size 160] [--conf 0.05] [--device cpu]
                                       [--set KEY=VALUE ...] [--keep DIR]

A short `yolo train --cfg cfg/train/shapes.yaml` (yolov3-tiny on the built-in synthetic shapes data; with the
defaults about 2 minutes on 2 CPU cores once the data is generated), then `yolo val` on its best.pt (PR curve,
confusion matrix) and `yolo detect` on a freshly generated shapes image. The pictures of those runs are copied
to --out as small PNGs (longest side at most --max-side, palette-quantized, shrunk until under --max-kb).
Rerun it whenever the drawing or plotting code changes. Nothing is downloaded. With --keep DIR the runs stay in
DIR, and a rerun with the same DIR skips the steps whose folder is already there (delete DIR/detect to redo only
the detection, DIR/train to redo everything).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# docs/images/<name>.png <- the run folder's picture
PICTURES = {
    "detect.png": ("detect", "shapes.png"),
    "train_batch.png": ("train", "train_batch0.jpg"),
    "val_pred.png": ("train", "val_batch0_pred.jpg"),
    "labels.png": ("train", "labels.png"),
    "results.png": ("train", "results.png"),
    "pr_curve.png": ("val", "pr_curve.png"),
    "confusion_matrix.png": ("val", "confusion_matrix.png"),
}


def _yolo(*args: str, cwd: Path) -> None:
    cmd = [sys.executable, "-m", "yolo", *args]
    print("+", " ".join(cmd[1:]), flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def small_png(src: Path, dst: Path, max_side: int, max_kb: int) -> int:
    """Write ``src`` as a palette PNG at ``dst``, longest side <= max_side, shrunk by 15% steps until the file
    is at most max_kb KiB. Returns its size in bytes."""
    from PIL import Image

    img = Image.open(src).convert("RGB")
    scale = min(1.0, max_side / max(img.size))
    while True:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        small = img.resize(size, Image.LANCZOS) if size != img.size else img
        buf = io.BytesIO()
        small.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, "PNG", optimize=True)
        if buf.tell() <= max_kb * 1024 or scale < 0.2:
            dst.write_bytes(buf.getvalue())
            return buf.tell()
        scale *= 0.85


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--img-size", type=int, default=160, help="training, validation and detection size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--conf", type=float, default=0.05, help="yolo detect's score threshold (low: a short run is unsure)")
    ap.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                    help="more yolo train --set overrides")
    ap.add_argument("--max-side", type=int, default=800, help="longest side of a picture in pixels")
    ap.add_argument("--max-kb", type=int, default=100, help="largest PNG in KiB")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="docs-images-") as tmp:
        work = Path(args.keep).resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        size = str(args.img_size)
        run = {"train": work / "train", "val": work / "val", "detect": work / "detect"}
        best = run["train"] / "weights" / "best.pt"
        if not best.is_file():
            for d in run.values():
                if d.exists():
                    raise SystemExit(f"{d} exists without a finished training; use an empty --keep folder")
            _yolo("train", "--cfg", str(ROOT / "cfg" / "train" / "shapes.yaml"), "--set", f"epochs={args.epochs}",
                  f"img_size={size}", f"device={args.device}", f"out={run['train']}", *args.overrides, cwd=work)
        if not run["val"].exists():
            _yolo("val", "--weights", str(best), "--data", str(ROOT / "data" / "shapes.yaml"), "--img-size", size,
                  "--device", args.device, "--out", str(run["val"]), cwd=work)
        if not run["detect"].exists():
            import cv2

            from yolo.data.synthetic import make_sample

            # a picture the model has not seen (the dataset's seeds are small), with several objects
            shape = (args.img_size * 2, args.img_size * 3)
            img = next(im for im, labels, _ in (make_sample(s, shape) for s in range(20240, 21240)) if len(labels) >= 5)
            cv2.imwrite(str(work / "shapes.png"), img[:, :, ::-1].copy())
            _yolo("detect", "--weights", str(best), "--source", str(work / "shapes.png"), "--img-size", size,
                  "--conf", str(args.conf), "--device", args.device, "--out", str(run["detect"]), "--no-progress",
                  cwd=work)

        for name, (kind, picture) in PICTURES.items():
            n = small_png(run[kind] / picture, out / name, args.max_side, args.max_kb)
            print(f"{out / name}: {n / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

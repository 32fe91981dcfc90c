#!/usr/bin/env bash
# The GPU checks of issue 18 as one prepared run, for a CUDA machine that has PyTorch, torchvision, OpenCV,
# onnxruntime and pytest (run from the repository root; nothing is downloaded or installed):
#   1. the CUDA tests (tests/test_cuda.py: detect / --half / export / val / profile / AMP training on the GPU
#      against the CPU; and the fp16 agreement test of tests/test_bench.py),
#   2. yolov3 at 416, batch 1 and 32, fp32 and fp16: images/s of forward + NMS (the JSON's
#      forward_nms_images_per_s; issue 18's target: at least 2,000 at fp16 batch 32 on an H100/H200-class card),
#   3. training images/s, float32 against float16 AMP, and mAP50 after the same epochs (bench.py --train-amp).
#
#   bash scripts/gpu_check.sh [OUT]        # logs and JSON under OUT (default ./gpu-check)
#
# The detection tests want the real weights and photos of ../shared/real; where that folder is not beside the
# checkout (a copy of the repository alone), copy it into the checkout and point YOLO_SHARED at its parent
# (.shared is git-ignored: a tool that copies the working tree must be told to take it along):
#   mkdir -p .shared && cp -r ../shared/real .shared/ && YOLO_SHARED=$PWD/.shared bash scripts/gpu_check.sh
# Budget: about 5 minutes on one H100 after PyTorch's first CUDA start. Each step runs even if one before failed;
# the exit code is the number of steps that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=0
step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, count a failure
    local name="$1"; shift
    echo "== $name: $*"
    local t0=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log"
    echo "== $name: exit $rc in $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$PY" -c "import torch, torchvision, cv2; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'opencv', cv2.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$OUT/machine.txt"

step tests "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py \
    "tests/test_bench.py::test_fp16_cuda_detections_match_float32"
step bench "$PY" scripts/bench.py --device cuda --models yolov3 --sizes 416 --batch 1,32 --precisions fp32,fp16 \
    --paths optimized --no-opencv --repeats 5 --images 32 --json "$OUT/bench.json" --force
step train_amp "$PY" scripts/bench.py --device cuda --train-amp-only --train-amp-epochs 3 \
    --json "$OUT/train_amp.json" --force
echo "gpu_check: $failed step(s) failed; logs in $OUT"
exit "$failed"

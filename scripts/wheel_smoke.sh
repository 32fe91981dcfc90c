#!/usr/bin/env bash
# Wheel smoke test (.ci/run calls it after the tests): build the wheel, install it without -e into a virtual
# environment of its own, and from an empty folder run the built-ins by name: yolo cfgs, yolo profile, a
# one-epoch yolo train on the small built-in shapes set, and yolo detect with the resulting best.pt.
#
#   bash scripts/wheel_smoke.sh [PYTHON]     # PYTHON: an interpreter (venv) that has torch & co. (default python)
#
# Torch is not downloaded twice: the new venv is made with --without-pip from the base interpreter, the wheel
# goes in with --no-deps, and a .pth file appends PYTHON's site-packages to the new venv's sys.path. (A venv
# made from a venv's python with --system-site-packages would see the *base* interpreter's packages, not
# the venv's.) Paths in a .pth file are appended after the venv's own site-packages and the .pth files found
# there are not run, so the wheel's yolo wins over any editable install the other venv has.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/yolo-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
step() { echo "wheel-smoke: $*"; }

step "building the wheel"
mkdir "$WORK/src"  # a copy of what the wheel is made of: no build/ or egg-info left in the checkout
cp -r pyproject.toml setup.py MANIFEST.in README.md yolo cfg data "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
ISOLATION=--no-build-isolation  # build with PYTHON's setuptools; without one, pip fetches it as pip install does
"$PY" -c "import setuptools" 2>/dev/null || ISOLATION=
"$PY" -m pip wheel -q --no-deps $ISOLATION -w "$WORK/dist" "$WORK/src" >/dev/null
WHEEL="$(ls "$WORK"/dist/yolo_toolkit-*.whl)"
"$PY" - "$WHEEL" <<'PYEOF'
import collections, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
kinds = collections.Counter("python" if n.endswith(".py") else "cfg" if n.endswith(".cfg") else
                            "run yaml" if "/cfg/train/" in n else "data yaml" if n.endswith(".yaml") else
                            "names" if n.endswith(".names") else "metadata" if ".dist-info/" in n else "other"
                            for n in names)
print(f"wheel-smoke: {sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files:",
      ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())))
assert kinds["cfg"] and kinds["run yaml"] and kinds["data yaml"] and kinds["names"], kinds
PYEOF

step "installing it into a fresh venv (torch from $PY's site-packages)"
"$PY" -m venv --without-pip "$WORK/venv"
# The wheel first, the .pth after: pip must not see (and offer to replace) the other venv's yolo-toolkit.
"$PY" -m pip --python "$WORK/venv/bin/python" install -q --no-deps --no-index "$WHEEL"
SITE="$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" -c 'import site, sysconfig; print("\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], *site.getsitepackages()])))' \
    > "$SITE/yolo-smoke-deps.pth"

mkdir "$WORK/empty"
cd "$WORK/empty"
export PATH="$WORK/venv/bin:$PATH" YOLO_CACHE_DIR="$WORK/cache" OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
unset PYTHONPATH
where="$(python -c 'import yolo, yolo.resources as r; print(yolo.__file__, r.builtin_root())')"
case "$where" in "$WORK/venv/"*) ;; *) echo "wheel-smoke: yolo comes from the wrong place: $where"; exit 1;; esac
[ "$(command -v yolo)" = "$WORK/venv/bin/yolo" ] || { echo "wheel-smoke: yolo is $(command -v yolo)"; exit 1; }

step "yolo cfgs"
yolo cfgs
step "yolo profile --cfg yolov3-tiny.cfg --runs 0 --json"
yolo profile --cfg yolov3-tiny.cfg --runs 0 --json > profile.json
python -c 'import json; r = json.load(open("profile.json")); assert r["params"] > 8_000_000, r; print("params", r["params"])'
step "yolo train (one epoch, the built-in shapes-mini.yaml data)"
yolo train --set data=shapes-mini.yaml epochs=1 img_size=64 batch_size=8 workers=0 val.period=1 2>&1 | tail -4
[ -f runs/train/exp/weights/best.pt ] || { echo "wheel-smoke: no best.pt"; exit 1; }
step "yolo detect with best.pt"
python -c 'import cv2, numpy as np; cv2.imwrite("img.jpg", np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))'
yolo detect --weights runs/train/exp/weights/best.pt --source img.jpg --img-size 64 --save-txt --no-progress
[ -f runs/detect/exp/img.jpg ] && [ -f runs/detect/exp/labels/img.txt ] || { echo "wheel-smoke: no detect output"; exit 1; }
step "ok"

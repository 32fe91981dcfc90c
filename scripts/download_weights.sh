#!/usr/bin/env bash
# Download official darknet weights into the current folder and check their sizes.
#   bash scripts/download_weights.sh yolov3-tiny [yolov3 yolov3-spp darknet53.conv.74]
# Never used by tests; the toolkit itself downloads nothing.
set -euo pipefail
declare -A SIZE=(
    [yolov3.weights]=248007048
    [yolov3-tiny.weights]=35434956
    [yolov3-spp.weights]=252209544
    [darknet53.conv.74]=162482580
)
BASE="${YOLO_WEIGHTS_URL:-https://pjreddie.com/media/files}"
[ $# -gt 0 ] || set -- yolov3-tiny
for name in "$@"; do
    file="$name"; [ -n "${SIZE[$file]:-}" ] || file="$name.weights"
    [ -n "${SIZE[$file]:-}" ] || { echo "unknown weights '$name' (known: ${!SIZE[*]})" >&2; exit 2; }
    if [ -f "$file" ] && [ "$(stat -c %s "$file")" = "${SIZE[$file]}" ]; then
        echo "$file: present"; continue
    fi
    curl -fL --retry 3 -o "$file.part" "$BASE/$file"
    got="$(stat -c %s "$file.part")"
    if [ "$got" != "${SIZE[$file]}" ]; then
        echo "$file: got $got bytes, expected ${SIZE[$file]}; kept as $file.part" >&2; exit 1
    fi
    mv "$file.part" "$file"; echo "$file: ok"
done

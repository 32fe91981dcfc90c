"""``python tests/detect_memory_child.py REPORT -- <yolo detect arguments>``: runs the real ``yolo detect`` and
writes to REPORT the process's resident memory (VmRSS, kB) after each 500 written images. Used by
tests/test_reliability.py to show that detection over a large folder streams."""

from __future__ import annotations

import json
import sys

import yolo.detect.run as detect_io
from yolo.cli import main


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def record_every(n: int, samples: dict) -> None:
    write = detect_io.RunWriter.write
    count = [0]

    def counting_write(self, frame, det):
        write(self, frame, det)
        count[0] += 1
        if count[0] % n == 0:
            samples[count[0]] = rss_kb()

    detect_io.RunWriter.write = counting_write


if __name__ == "__main__":
    samples: dict[int, int] = {}
    record_every(500, samples)
    code = main(sys.argv[3:])
    with open(sys.argv[1], "w") as f:
        json.dump({"code": code, "rss_kb": samples}, f)
    sys.exit(code)

"""``python -m yolo`` (so ``torchrun -m yolo train ...`` works)."""

import sys

from yolo.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m yolo`` (so ``torchrun -m yolo train ...`` works)."""

from yolo.cli import entry

if __name__ == "__main__":
    entry()

"""Helpers shared by the trainer, converter and profiler (stdlib, torch, numpy and cv2 only)."""

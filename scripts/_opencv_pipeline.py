"""OpenCV's DNN detection pipeline (cv2 and numpy only, no torch: ``_opencv_detect.py`` starts as fast as an
OpenCV user's script would). Not part of the ``yolo`` package; scripts import it from their own folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class OpenCVPipeline:
    """The detection pipeline in OpenCV's DNN module (``readNetFromDarknet``), one image at a time:
    ``blob`` (letterbox, grey 114) -> ``forward`` -> ``post`` (score filter, ``NMSBoxesBatched``, boxes back
    to the original pixels). ``pipeline(path)`` runs all three on a file."""

    def __init__(self, cfg: str, weights: Path, size: int, conf: float, iou: float):
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.params = cv2.dnn.Image2BlobParams()
        self.params.scalefactor = (1 / 255, 1 / 255, 1 / 255, 0)  # a Scalar: a bare float scales channel 0 only
        self.params.size, self.params.swapRB = (size, size), True
        self.params.paddingmode, self.params.borderValue = cv2.dnn.DNN_PMODE_LETTERBOX, (114, 114, 114, 0)
        self.size, self.conf, self.iou = size, conf, iou

    def blob(self, img: np.ndarray) -> np.ndarray:
        """BGR ``[h, w, 3]`` uint8 -> ``[1, 3, S, S]`` float32 RGB in [0, 1], letterboxed."""
        return cv2.dnn.blobFromImageWithParams(img, self.params)

    def forward(self, blob: np.ndarray) -> np.ndarray:
        """-> ``[N, 5+C]``: cx, cy, w, h (0-1), obj, obj*cls."""
        self.net.setInput(blob)
        return np.concatenate(self.net.forward(self.outputs))

    def post(self, out: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``[N, 5+C]`` -> ``[K, 6]`` x1, y1, x2, y2 (pixels of the ``shape`` (h, w) image), score, class."""
        scores = out[:, 5:]
        cls = scores.argmax(1)
        score = scores[np.arange(len(out)), cls]
        keep = score > self.conf
        cx, cy, w, h = (out[keep, :4] * self.size).T
        rects = np.clip(np.stack((cx - w / 2, cy - h / 2, w, h), 1), -1e6, 1e6)  # random weights: huge w/h
        idx = np.asarray(cv2.dnn.NMSBoxesBatched(rects.tolist(), score[keep].tolist(), cls[keep].tolist(),
                                                 self.conf, self.iou), dtype=int).reshape(-1)
        if not len(idx):
            return np.zeros((0, 6))
        boxes = self.params.blobRectsToImageRects([tuple(map(int, r)) for r in rects[idx].round()], shape[::-1])
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        return np.column_stack((boxes[:, :2], boxes[:, :2] + boxes[:, 2:], score[keep][idx], cls[keep][idx]))

    def __call__(self, path: Path) -> np.ndarray:
        """A file -> ``[K, 6]`` x1, y1, x2, y2 (original pixels), score, class."""
        img = cv2.imread(str(path))
        return self.post(self.forward(self.blob(img)), img.shape[:2])

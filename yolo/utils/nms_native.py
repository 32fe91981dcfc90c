"""Darknet's greedy DIoU-NMS as a C kernel (built at first use by :mod:`yolo.utils.native`), for
:func:`yolo.utils.nms.diou_nms`.

The NumPy path compares blocks of boxes with whole-matrix operations; on one large category (a single-class
model early in training at ``conf 0.001``: up to 30,000 candidates) it computed 30,000^2 / 2 pairs with many
passes over memory (9.2 s, where torchvision's compiled IoU NMS takes 3.8 s). The kernel runs darknet's own
loop: each box still kept suppresses the later ones, the IoU of 8 pairs at a time in one pass, the distance term
only where the IoU alone passes the threshold (the term only lowers it). It computes what the NumPy path
computes, operation for operation in float32 (no fused multiply-adds), so both keep the same boxes;
:func:`checked_library` holds it to that before it is used.
"""

from __future__ import annotations

import ctypes

import numpy as np

from yolo.utils import native

NAME = "diou_nms"
SOURCE = native.C_PRELUDE + r"""
#include <math.h>
#include <stdlib.h>
#ifdef __clang__
#pragma clang fp contract(off)
#else
#pragma GCC optimize ("fp-contract=off")
#endif

/* boxes [n, 4] x1, y1, x2, y2 in decreasing score -> keep [n] (1 kept, 0 suppressed): a box is suppressed when
   IoU - (d / c)^beta with a kept earlier box is > thr (d: squared distance of the centres, c: squared diagonal
   of the box enclosing both; the IoU alone where c is 0). Returns 0, or -1 when out of memory. */
int diou_greedy(const float *boxes, long n, float thr, float beta, unsigned char *keep) {
    float *x1 = malloc((size_t)n * 6 * sizeof(float));
    if (!x1) return -1;
    float *y1 = x1 + n, *x2 = y1 + n, *y2 = x2 + n, *area = y2 + n, *iou = area + n;
    for (long j = 0; j < n; j++) {
        x1[j] = boxes[4 * j]; y1[j] = boxes[4 * j + 1]; x2[j] = boxes[4 * j + 2]; y2[j] = boxes[4 * j + 3];
        area[j] = (x2[j] - x1[j]) * (y2[j] - y1[j]);
        keep[j] = 1;
    }
    for (long i = 0; i < n; i++) {
        if (!keep[i]) continue;
        const float ax1 = x1[i], ay1 = y1[i], ax2 = x2[i], ay2 = y2[i], aa = area[i];
        const v8 zero = {0}, bx1 = zero + ax1, by1 = zero + ay1, bx2 = zero + ax2, by2 = zero + ay2, ba = zero + aa;
        for (long j = i + 1; j < n; j += CB) {  /* the IoU with every later box, 8 at a time */
            int m = (int)(n - j < CB ? n - j : CB);
            v8 cx1 = ld(x1 + j, m), cy1 = ld(y1 + j, m), cx2 = ld(x2 + j, m), cy2 = ld(y2 + j, m);
            v8 w = sel(bx2 < cx2, bx2, cx2) - sel(bx1 > cx1, bx1, cx1);
            v8 h = sel(by2 < cy2, by2, cy2) - sel(by1 > cy1, by1, cy1);
            w = sel(w > zero, w, zero);
            h = sel(h > zero, h, zero);
            v8 inter = w * h;
            v8 sum = ba + ld(area + j, m);
            v8 uni = sum - inter;
            v8 ok = sel((inter > zero) & (uni > zero), uni, zero + 1.0f);  /* no division by 0 in unused lanes */
            st(iou + j, sel((inter > zero) & (uni > zero), inter / ok, zero), m);
        }
        for (long j = i + 1; j < n; j++) {  /* the distance term where the IoU alone suppresses */
            if (!(iou[j] > thr) || !keep[j]) continue;
            float dx = ((ax1 + ax2 - x1[j]) - x2[j]) / 2.0f, dy = ((ay1 + ay2 - y1[j]) - y2[j]) / 2.0f;
            float dx2 = dx * dx, dy2 = dy * dy;
            float d = dx2 + dy2;
            float cw = fmaxf(ax2, x2[j]) - fminf(ax1, x1[j]), ch = fmaxf(ay2, y2[j]) - fminf(ay1, y1[j]);
            float cw2 = cw * cw, ch2 = ch * ch;
            float c = cw2 + ch2;
            float value = c > 0.0f ? iou[j] - powf(d / c, beta) : iou[j];
            if (value > thr) keep[j] = 0;
        }
    }
    free(x1);
    return 0;
}
"""


def library() -> ctypes.CDLL | None:
    """The built kernel with its signature set, or None (no compiler, build failed, ``YOLO_NATIVE=0``)."""
    lib = native.load_library(NAME, SOURCE, ("diou_greedy",))
    if lib is not None and lib.diou_greedy.argtypes is None:
        lib.diou_greedy.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_float, ctypes.c_float, ctypes.c_void_p]
        lib.diou_greedy.restype = ctypes.c_int
    return lib


def greedy(lib: ctypes.CDLL, boxes: np.ndarray, threshold: float, beta: float) -> np.ndarray:
    """``boxes [N, 4]`` float32 in decreasing score -> ``[N]`` bool, kept (as ``yolo.utils.nms._greedy``)."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    keep = np.empty(len(boxes), dtype=np.uint8)
    if lib.diou_greedy(boxes.ctypes.data, len(boxes), threshold, beta, keep.ctypes.data) != 0:
        raise MemoryError(f"DIoU-NMS of {len(boxes)} boxes: out of memory")
    return keep.view(bool)


def checked_library(agrees) -> ctypes.CDLL | None:
    """:func:`library` once ``agrees(lib)`` found it equal to the NumPy path, else None (decided once per
    process; :func:`yolo.utils.native.forget_loaded` decides again)."""
    return native.checked_library(NAME, library, agrees,
                                  "native DIoU-NMS disagrees with the NumPy path on this machine; not using it")

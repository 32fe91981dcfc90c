"""The Winograd transforms as C kernels (built at first use by :mod:`yolo.utils.native`; see
:mod:`yolo.model.winograd` for the algorithm and the PyTorch path they replace).

PyTorch has no fused op for "cut a channels-last map into overlapping (m+2)x(m+2) tiles and apply B^T . B to
each": the PyTorch path pads, copies the tiles out and multiplies by the dense ``[36, 36]`` Kronecker matrix,
three passes over memory with a matrix product that MKL runs at a few GB/s. These kernels read the map once
(zero padding by pointer, no padded copy), apply the separable transform to 8 channels at a time in registers
(only the non-zero coefficients) and write ``V [(m+2)^2, T, C]`` for the 36 (or 16) matrix products; the output
kernel reads ``M [(m+2)^2, T, C_out]`` and writes ``A^T . A + bias`` (and the fused activation) straight into the
channels-last output, cropping the last tiles. Work is split over tiles between ``threads`` threads (PyTorch's
OpenMP workers, else POSIX threads).
"""

from __future__ import annotations

import ctypes

import torch

from yolo.utils.native import C_PRELUDE, Activation, act_code, load_library

NAME = "winograd"
SOURCE = C_PRELUDE + r"""
typedef struct {
    const float *src; float *dst; const float *zero; const float *bias; float slope; int act;
    long H, W, C, nh, nw, TC;  /* TC: T*C, the stride between the (m+2)^2 matrices */
} args_t;

static const float BT4[6][6] = {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const float AT4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
static const float BT2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const float AT2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};

#define DEFINE(M, A, BT, AT)                                                                                \
static inline __attribute__((always_inline)) void in_block_##M(const float *p[A][A], long c0, int n, float *out, long sk) { \
    v8 d[A][A], t[A][A];                                                                                    \
    _Pragma("GCC unroll 8") for (int i = 0; i < A; i++) _Pragma("GCC unroll 8") for (int j = 0; j < A; j++) d[i][j] = ld(p[i][j] + c0, n); \
    _Pragma("GCC unroll 8") for (int k = 0; k < A; k++) _Pragma("GCC unroll 8") for (int j = 0; j < A; j++) { \
        v8 s = {0}; _Pragma("GCC unroll 8") for (int i = 0; i < A; i++) if (BT[k][i] != 0) s += BT[k][i] * d[i][j]; t[k][j] = s; } \
    _Pragma("GCC unroll 8") for (int k = 0; k < A; k++) _Pragma("GCC unroll 8") for (int l = 0; l < A; l++) { \
        v8 s = {0}; _Pragma("GCC unroll 8") for (int j = 0; j < A; j++) if (BT[l][j] != 0) s += BT[l][j] * t[k][j]; st(out + (k * A + l) * sk, s, n); } \
}                                                                                                           \
static void in_tiles_##M(void *ctx, long t0, long t1, int worker) {                                               \
    const args_t *a = (const args_t *)ctx;                                                                  \
    const long H = a->H, W = a->W, C = a->C, nh = a->nh, nw = a->nw;                                        \
    for (long t = t0; t < t1; t++) {                                                                        \
        long b = t / (nh * nw), r = t % (nh * nw), ty = r / nw, tx = r % nw;                                \
        const float *p[A][A];                                                                               \
        for (int i = 0; i < A; i++) for (int j = 0; j < A; j++) {                                          \
            long y = ty * M - 1 + i, x = tx * M - 1 + j;                                                    \
            p[i][j] = (y >= 0 && y < H && x >= 0 && x < W) ? a->src + ((b * H + y) * W + x) * C : a->zero;    \
        }                                                                                                   \
        float *out = a->dst + t * C;                                                                          \
        long c0 = 0;                                                                                        \
        for (; c0 + CB <= C; c0 += CB) in_block_##M(p, c0, CB, out + c0, a->TC);                            \
        if (c0 < C) in_block_##M(p, c0, (int)(C - c0), out + c0, a->TC);                                    \
    }                                                                                                       \
}                                                                                                           \
static inline __attribute__((always_inline)) void out_block_##M(const float *mk, long sk, int n, const float *bias, float *q[M][M], long c0, int act, float slope) { \
    v8 mm[A][A], t[M][A];                                                                                   \
    _Pragma("GCC unroll 8") for (int k = 0; k < A; k++) _Pragma("GCC unroll 8") for (int l = 0; l < A; l++) mm[k][l] = ld(mk + (k * A + l) * sk, n); \
    _Pragma("GCC unroll 8") for (int p = 0; p < M; p++) _Pragma("GCC unroll 8") for (int l = 0; l < A; l++) { \
        v8 s = {0}; _Pragma("GCC unroll 8") for (int k = 0; k < A; k++) if (AT[p][k] != 0) s += AT[p][k] * mm[k][l]; t[p][l] = s; } \
    v8 bv = ld(bias, n);                                                                                    \
    _Pragma("GCC unroll 8") for (int p = 0; p < M; p++) _Pragma("GCC unroll 8") for (int r = 0; r < M; r++) { \
        if (!q[p][r]) continue;                                                                             \
        v8 s = bv; _Pragma("GCC unroll 8") for (int l = 0; l < A; l++) if (AT[r][l] != 0) s += AT[r][l] * t[p][l]; \
        s = act8(s, act, slope);                                                                            \
        st(q[p][r] + c0, s, n); }                                                                           \
}                                                                                                           \
static void out_tiles_##M(void *ctx, long t0, long t1, int worker) {                                              \
    const args_t *a = (const args_t *)ctx;                                                                  \
    const long H = a->H, W = a->W, C = a->C, nh = a->nh, nw = a->nw;                                        \
    for (long t = t0; t < t1; t++) {                                                                        \
        long b = t / (nh * nw), r = t % (nh * nw), ty = r / nw, tx = r % nw;                                \
        float *q[M][M];                                                                                     \
        for (int i = 0; i < M; i++) for (int j = 0; j < M; j++) {                                          \
            long y = ty * M + i, x = tx * M + j;                                                            \
            q[i][j] = (y < H && x < W) ? a->dst + ((b * H + y) * W + x) * C : NULL;                           \
        }                                                                                                   \
        const float *mk = a->src + t * C;                                                                     \
        long c0 = 0;                                                                                        \
        for (; c0 + CB <= C; c0 += CB) out_block_##M(mk + c0, a->TC, CB, a->bias + c0, q, c0, a->act, a->slope); \
        if (c0 < C) out_block_##M(mk + c0, a->TC, (int)(C - c0), a->bias + c0, q, c0, a->act, a->slope);   \
    }                                                                                                       \
}

DEFINE(4, 6, BT4, AT4)
DEFINE(2, 4, BT2, AT2)


/* x [B, H, W, C] -> v [(m+2)^2, T, C]; zero: C zeros (the padding). 0, or -1 for m not 2 or 4. */
int winograd_input(const float *x, float *v, const float *zero, long B, long H, long W, long C, int m, int nthreads) {
    if (m != 2 && m != 4) return -1;
    args_t a = {x, v, zero, NULL, 0, 0, H, W, C, (H + m - 1) / m, (W + m - 1) / m, 0};
    long T = B * a.nh * a.nw; a.TC = T * C;
    parallel(&a, T, nthreads, m == 4 ? in_tiles_4 : in_tiles_2);
    return 0;
}

/* mprod [(m+2)^2, T, C] -> y [B, H, W, C] = A^T M A + bias, then act8(act, slope). 0, or -1. */
int winograd_output(const float *mprod, float *y, const float *bias, long B, long H, long W, long C, int m,
                    int act, float slope, int nthreads) {
    if (m != 2 && m != 4) return -1;
    args_t a = {mprod, y, NULL, bias, slope, act, H, W, C, (H + m - 1) / m, (W + m - 1) / m, 0};
    long T = B * a.nh * a.nw; a.TC = T * C;
    parallel(&a, T, nthreads, m == 4 ? out_tiles_4 : out_tiles_2);
    return 0;
}
"""
_P, _L, _I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int


def library() -> ctypes.CDLL | None:
    """The built kernels with their signatures set, or None (no compiler, build failed, ``YOLO_NATIVE=0``)."""
    lib = load_library(NAME, SOURCE, ("winograd_input", "winograd_output"))
    if lib is not None and lib.winograd_input.argtypes is None:
        lib.winograd_input.argtypes = [_P, _P, _P, _L, _L, _L, _L, _I, _I]
        lib.winograd_output.argtypes = [_P, _P, _P, _L, _L, _L, _L, _I, _I, ctypes.c_float, _I]
        lib.winograd_input.restype = lib.winograd_output.restype = _I
    return lib


def input_transform(lib: ctypes.CDLL, x: torch.Tensor, v: torch.Tensor, m: int, threads: int) -> None:
    """``x [B, H, W, C]`` float32 contiguous (a channels-last map, permuted) -> ``v [(m+2)^2, T, C]`` contiguous,
    ``T = B * ceil(H/m) * ceil(W/m)`` tiles in (b, tile row, tile column) order."""
    b, h, w, c = x.shape
    zero = torch.zeros(c, dtype=torch.float32)  # what padding pixels point at
    if lib.winograd_input(x.data_ptr(), v.data_ptr(), zero.data_ptr(), b, h, w, c, m, threads) != 0:
        raise ValueError(f"no Winograd kernel for tile size {m}")


def output_transform(lib: ctypes.CDLL, prod: torch.Tensor, y: torch.Tensor, bias: torch.Tensor, m: int,
                     act: Activation, threads: int) -> None:
    """``prod [(m+2)^2, T, C_out]`` -> ``y [B, H, W, C_out]`` (float32 contiguous) = ``A^T M A + bias`` per tile,
    then the activation ``act`` (a leaky ReLU's slope, "mish", "swish", "logistic"; None: none)."""
    b, h, w, c = y.shape
    code, slope = act_code(act)
    if lib.winograd_output(prod.data_ptr(), y.data_ptr(), bias.data_ptr(), b, h, w, c, m, code, slope,
                           threads) != 0:
        raise ValueError(f"no Winograd kernel for tile size {m}")

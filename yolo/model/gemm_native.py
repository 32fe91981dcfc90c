"""A float32 matrix product in C for the convs of inference on CPU (built at first use by
:mod:`yolo.utils.native`): the Winograd convs' 36 (or 16) products and the other convs as implicit GEMMs.

Why not ``torch.bmm`` / oneDNN: MKL's batched product runs the Winograd products at 50-80 GFLOP/s on a 2-core
AVX2 EPYC where a single large product reaches 130, and oneDNN's direct conv spends a separate pass on the
activation. Here the weights are packed once (``[N/16, K, 16]`` panels, zero-padded columns) and the
activations are read in place: each 6-row micro-tile of the output reads its rows through pointers, so a
conv needs no im2col copy (a row of tap ``(dy, dx)`` is the input pixel it covers, or a zero row for the
padding) and a Winograd product reads ``V [T, C]`` as it is. The micro-kernel keeps a ``6 x 16`` block of
the output in 12 vector registers (``6 x 2`` of 8 floats, GCC vector extensions: AVX/AVX2 with FMA, NEON and
others from one source) over a block of up to 256 of ``K``; the last block adds the bias and the block's
activation (leaky, mish, swish, logistic) before storing. Work is split over (matrix, 96-row block, column
block) units between threads.
"""

from __future__ import annotations

import ctypes

import torch

from yolo.utils import native
from yolo.utils.native import C_PRELUDE, Activation, act_code, load_library

NAME = "gemm"
NR = 16  # columns per packed panel (two 8-float vectors)
SOURCE = C_PRELUDE + r"""
#define MR 6
#define KC 256
#define MC 96
#include <stdlib.h>

typedef struct {
    const float *a; long lda, sa;                   /* dense: row m of matrix g at a + g*sa + m*lda */
    const float *x, *zero; long H, W, C, Ho, Wo, kh, kw, stride, pad; int conv;  /* conv: x [B, H, W, C] */
    const float *bp; long sb;                       /* packed B [G][N/16][K][16], matrix stride sb */
    float *c; long ldc, sc;                         /* C rows at c + g*sc + m*ldc */
    long G, M, N, K;
    const float *bias; int act; float slope;        /* after the bias: act8's activation */
    long mblocks, nblocks, ncols, kt, taps, tb, nkb, kcb;
    float *work;                                    /* per worker: MC x KC packed rows */
} gemm_t;

/* C[mr rows, nr cols] (+)= a [kc][6] (a packed 6-row panel) x b [kc][16]; the last block adds the bias, then
   the activation */
static inline __attribute__((always_inline)) void micro(long kc, const float *a, const float *b, float *c,
        long ldc, int mr, int nr, int first, int last, const float *bias, int act, float slope, const float *pf,
        long npf) {
    v8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    v8 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    _Pragma("GCC unroll 4") for (long k = 0; k < kc; k++, a += MR, b += 16) {
        if (k < npf) __builtin_prefetch(pf + 16 * k);  /* this row panel's share of the next column panel */
        v8 b0, b1; memcpy(&b0, b, sizeof b0); memcpy(&b1, b + 8, sizeof b1);
        c00 += a[0] * b0; c01 += a[0] * b1; c10 += a[1] * b0; c11 += a[1] * b1;
        c20 += a[2] * b0; c21 += a[2] * b1; c30 += a[3] * b0; c31 += a[3] * b1;
        c40 += a[4] * b0; c41 += a[4] * b1; c50 += a[5] * b0; c51 += a[5] * b1;
    }
    v8 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    int n0 = nr < CB ? nr : CB, n1 = nr - CB;
    v8 bv0 = {0}, bv1 = {0};
    if (last && bias) { bv0 = ld(bias, n0); bv1 = ld(bias + CB, n1); }
    for (int r = 0; r < mr; r++) {
        float *q = c + r * ldc;
        v8 s0 = acc[r][0], s1 = acc[r][1];
        if (!first) { s0 += ld(q, n0); s1 += ld(q + CB, n1); }
        if (last) { s0 = act8(s0 + bv0, act, slope); s1 = act8(s1 + bv1, act, slope); }
        st(q, s0, n0); st(q + CB, s1, n1);
    }
}

/* the first of kc floats of row m of matrix g for tap t, input channels from k0 (a zero row: padding) */
static const float *row(const gemm_t *g, long grp, long m, long t, long k0) {
    if (!g->conv) return g->a + grp * g->sa + m * g->lda + k0;
    long hw = g->Ho * g->Wo, n = m / hw, r = m % hw, oy = r / g->Wo, ox = r % g->Wo;
    long iy = oy * g->stride - g->pad + t / g->kw, ix = ox * g->stride - g->pad + t % g->kw;
    if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) return g->zero;
    return g->x + ((n * g->H + iy) * g->W + ix) * g->C + k0;
}

/* rows [m0, m1) for taps t0..t0+nt, channels [k0, k0+kc) -> buf: 6-row panels [nt*kc][6] (rows past m1: 0) */
static void pack_a(const gemm_t *g, long grp, long m0, long m1, long t0, int nt, long k0, long kc, float *buf) {
    for (long i = m0; i < m1; i += MR) for (int t = 0; t < nt; t++) {
        const float *s[MR];
        for (int r = 0; r < MR; r++) s[r] = i + r < m1 ? row(g, grp, i + r, t0 + t, k0) : g->zero;
        for (long k = 0; k < kc; k++, buf += MR)  /* in store order: the 6 rows' k-th values side by side */
            for (int r = 0; r < MR; r++) buf[r] = s[r][k];
    }
}

/* one unit: rows [m0, m1) x columns [j0, j1) of matrix grp, over all of K in blocks of taps / channels */
static void unit(const gemm_t *g, long u, float *buf) {
    long nb = u % g->nblocks, mb = (u / g->nblocks) % g->mblocks, grp = u / (g->nblocks * g->mblocks);
    long m0 = mb * MC, m1 = m0 + MC < g->M ? m0 + MC : g->M;
    long j0 = nb * g->ncols, j1 = j0 + g->ncols < g->N ? j0 + g->ncols : g->N;
    const float *bp = g->bp + grp * g->sb;
    float *cg = g->c + grp * g->sc;
    for (long t0 = 0; t0 < g->taps; t0 += g->tb) for (long kb = 0; kb < g->nkb; kb++) {
        int nt = (int)(t0 + g->tb < g->taps ? g->tb : g->taps - t0);
        long k0 = kb * g->kcb, kc = k0 + g->kcb < g->kt ? g->kcb : g->kt - k0, len = nt * kc;
        int first = t0 == 0 && kb == 0, last = t0 + nt == g->taps && kb == g->nkb - 1;
        pack_a(g, grp, m0, m1, t0, nt, k0, kc, buf);
        long panels = (m1 - m0 + MR - 1) / MR;  /* row panels in this block */
        for (long j = j0; j < j1; j += NR_) {
            const float *b = bp + (j / NR_) * g->K * NR_ + (t0 * g->kt + k0) * NR_;  /* nt > 1: kc is all of kt */
            int nr = j1 - j < NR_ ? (int)(j1 - j) : NR_;
            /* the next column panel (for this block of K) is fetched while this one is used: each row panel
               prefetches its share of its lines (B streams from memory when a small M reuses it little) */
            const float *next = b + g->K * NR_;
            long share = j + NR_ < j1 ? (len + panels - 1) / panels : 0;
            for (long i = m0, p = 0; i < m1; i += MR, p++)
                micro(len, buf + (i - m0) * len, b, cg + i * g->ldc + j, g->ldc, m1 - i < MR ? (int)(m1 - i) : MR,
                      nr, first, last, g->bias ? g->bias + j : NULL, g->act, g->slope, next + p * share * NR_,
                      share * (p + 1) <= len ? share : (len - share * p > 0 ? len - share * p : 0));
        }
    }
}

static void units(void *ctx, long u0, long u1, int worker) {
    const gemm_t *g = (const gemm_t *)ctx;
    for (long u = u0; u < u1; u++) unit(g, u, g->work + (long)worker * MC * KC);
}

typedef struct { float *x; long n; int act; float slope; } elementwise_t;

static void act_range(void *ctx, long i0, long i1, int worker) {
    const elementwise_t *e = (const elementwise_t *)ctx;
    for (long i = i0 * 4096; i < i1 * 4096 && i < e->n; i += CB) {
        int k = e->n - i < CB ? (int)(e->n - i) : CB;
        st(e->x + i, act8(ld(e->x + i, k), e->act, e->slope), k);
    }
}

/* x[0..n) = act8(x) in place, in chunks of 4096 over the threads */
void activate(float *x, long n, int act, float slope, int nthreads) {
    elementwise_t e = {x, n, act, slope};
    parallel(&e, (n + 4095) / 4096, nthreads, act_range);
}

typedef struct { const float *x; float *y; long H, W, C, Ho, Wo, size, stride, left; } pool_t;

static void pool_rows(void *ctx, long r0, long r1, int worker) {
    const pool_t *p = (const pool_t *)ctx;
    for (long r = r0; r < r1; r++) {
        long n = r / p->Ho, oy = r % p->Ho;
        long y0 = oy * p->stride - p->left, y1 = y0 + p->size;
        if (y0 < 0) y0 = 0;
        if (y1 > p->H) y1 = p->H;
        for (long ox = 0; ox < p->Wo; ox++) {
            long x0 = ox * p->stride - p->left, x1 = x0 + p->size;
            if (x0 < 0) x0 = 0;
            if (x1 > p->W) x1 = p->W;
            float *q = p->y + ((n * p->Ho + oy) * p->Wo + ox) * p->C;
            for (long c = 0; c < p->C; c += CB) {
                int k = p->C - c < CB ? (int)(p->C - c) : CB;
                v8 m = ld(p->x + ((n * p->H + y0) * p->W + x0) * p->C + c, k);
                for (long y = y0; y < y1; y++) for (long x = (y == y0 ? x0 + 1 : x0); x < x1; x++) {
                    v8 v = ld(p->x + ((n * p->H + y) * p->W + x) * p->C + c, k);
                    m = sel(v > m, v, m);
                }
                st(q + c, m, k);
            }
        }
    }
}

/* darknet's [maxpool]: x [B, H, W, C] -> y [B, Ho, Wo, C], windows of size at stride, starting `left` pixels
   before the edge, clipped to the map (darknet pads with -inf). 0, or -1 for a window that covers nothing. */
int maxpool(const float *x, float *y, long B, long H, long W, long C, long Ho, long Wo, long size, long stride,
            long left, int nthreads) {
    if (left >= size || (Ho - 1) * stride - left >= H || (Wo - 1) * stride - left >= W) return -1;
    pool_t p = {x, y, H, W, C, Ho, Wo, size, stride, left};
    parallel(&p, B * Ho, nthreads, pool_rows);
    return 0;
}

/* K = taps * kt: blocks of whole taps while a tap's channels fit in KC (small C: as many taps per block as
   fit, blocks as even as possible), else one tap per block and its channels in nkb even blocks */
static void plan(gemm_t *g, int nthreads) {
    g->taps = g->conv ? g->kh * g->kw : 1;
    g->kt = g->K / g->taps;
    if (g->kt <= KC) {
        long tb = KC / g->kt;
        long nblk = (g->taps + tb - 1) / tb;
        g->tb = (g->taps + nblk - 1) / nblk; g->nkb = 1; g->kcb = g->kt;
    } else {
        g->tb = 1; g->nkb = (g->kt + KC - 1) / KC; g->kcb = (g->kt + g->nkb - 1) / g->nkb;
    }
    g->mblocks = (g->M + MC - 1) / MC;
    long panels = (g->N + NR_ - 1) / NR_, split = 1;  /* columns split while there are few units per thread */
    while (g->G * g->mblocks * split < 4L * nthreads && panels / (split * 2) >= 4) split *= 2;
    g->ncols = (panels + split - 1) / split * NR_;
    g->nblocks = (g->N + g->ncols - 1) / g->ncols;
}

/* dense: C[g] = A[g] @ B[g] for g < G (A [M, K] rows lda apart); conv: C = conv(x) as [B*Ho*Wo, N].
   0, -1 (bad shape) or -2 (no memory for the packed rows). */
int sgemm(gemm_t *g, int nthreads) {
    if (g->M <= 0 || g->N <= 0 || g->K <= 0 || (g->conv && g->K % (g->kh * g->kw) != 0)) return -1;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    plan(g, nthreads);
    g->work = malloc(sizeof(float) * MC * KC * nthreads);
    if (!g->work) return -2;
    parallel(g, g->G * g->mblocks * g->nblocks, nthreads, units);
    free(g->work);
    return 0;
}
""".replace("NR_", str(NR))
_P, _L, _I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int


class _Gemm(ctypes.Structure):
    """``gemm_t`` in the source above, field for field."""
    _fields_ = [("a", _P), ("lda", _L), ("sa", _L), ("x", _P), ("zero", _P), ("H", _L), ("W", _L), ("C", _L),
                ("Ho", _L), ("Wo", _L), ("kh", _L), ("kw", _L), ("stride", _L), ("pad", _L), ("conv", _I),
                ("bp", _P), ("sb", _L), ("c", _P), ("ldc", _L), ("sc", _L), ("G", _L), ("M", _L), ("N", _L),
                ("K", _L), ("bias", _P), ("act", _I), ("slope", ctypes.c_float)] + [
                (name, _L) for name in ("mblocks", "nblocks", "ncols", "kt", "taps", "tb", "nkb", "kcb")] + [
                ("work", _P)]


def library() -> ctypes.CDLL | None:
    """The built product with its signature set, or None (no compiler, build failed, ``YOLO_NATIVE=0``)."""
    lib = load_library(NAME, SOURCE, ("sgemm", "activate", "maxpool"))
    if lib is not None and lib.sgemm.argtypes is None:
        lib.sgemm.argtypes = [ctypes.POINTER(_Gemm), _I]
        lib.activate.argtypes = [_P, _L, _I, ctypes.c_float, _I]
        lib.maxpool.argtypes = [_P, _P, _L, _L, _L, _L, _L, _L, _L, _L, _L, _I]
        lib.maxpool.restype = _I
        lib.sgemm.restype = _I
        lib.activate.restype = None
    return lib


def pack(b: torch.Tensor) -> torch.Tensor:
    """``B [G, K, N]`` -> ``[G, ceil(N/16), K, 16]`` float32 contiguous: 16-column panels, the last one
    zero-padded (what the kernel reads)."""
    g, k, n = b.shape
    panels = -(-n // NR)
    out = torch.zeros(g, k, panels * NR, dtype=torch.float32, device=b.device)
    out[:, :, :n] = b
    return out.view(g, k, panels, NR).transpose(1, 2).contiguous()


def unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`pack`: ``[G, P, K, 16]`` -> ``B [G, K, n]``."""
    g, panels, k, _ = packed.shape
    return packed.transpose(1, 2).reshape(g, k, panels * NR)[:, :, :n]


def pack_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """``[C_out, C_in, kh, kw]`` -> packed ``[1, ceil(C_out/16), kh*kw*C_in, 16]`` with ``K`` in (tap, input
    channel) order, the order :func:`conv` reads a channels-last input in."""
    c_out = weight.shape[0]
    return pack(weight.detach().float().permute(2, 3, 1, 0).reshape(1, -1, c_out))


def _zero(length: int) -> torch.Tensor:
    return torch.zeros(max(length, 1), dtype=torch.float32)


def _run(lib: ctypes.CDLL, args: _Gemm, threads: int) -> None:
    status = lib.sgemm(ctypes.byref(args), threads)
    if status == -2:
        raise MemoryError("no memory for the matrix product's packed rows")
    if status != 0:
        raise ValueError(f"bad matrix product shape: M={args.M} N={args.N} K={args.K}")


def bmm(lib: ctypes.CDLL, a: torch.Tensor, packed: torch.Tensor, out: torch.Tensor, threads: int) -> None:
    """``out[g] = a[g] @ B[g]``: ``a [G, M, K]`` float32 (rows contiguous, any row stride), ``packed``
    from :func:`pack`, ``out [G, M, N]`` float32 contiguous."""
    g, m, k = a.shape
    n = out.shape[-1]
    if a.stride(-1) != 1 or not out.is_contiguous() or packed.shape[:1] + packed.shape[2:3] != (g, k):
        raise ValueError(f"bmm: a {tuple(a.shape)} / packed {tuple(packed.shape)} / out {tuple(out.shape)}")
    zero = _zero(k)
    _run(lib, _Gemm(a=a.data_ptr(), lda=a.stride(1), sa=a.stride(0), zero=zero.data_ptr(), bp=packed.data_ptr(),
                    sb=packed[0].numel(), c=out.data_ptr(), ldc=n, sc=m * n, G=g, M=m, N=n, K=k), threads)


def conv(lib: ctypes.CDLL, x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor,
         kernel: tuple[int, int], stride: int, pad: int, act: Activation, threads: int) -> None:
    """``out [B, Ho, Wo, C_out]`` = conv(``x [B, H, W, C_in]``) + bias, then the activation ``act`` (a leaky
    ReLU's slope, "mish", "swish", "logistic"; None: none); all float32 contiguous (channels-last maps,
    permuted); ``packed`` from :func:`pack_conv_weight`."""
    b, h, w, c = x.shape
    _, ho, wo, n = out.shape
    if not (x.is_contiguous() and out.is_contiguous()) or packed.shape[2] != kernel[0] * kernel[1] * c:
        raise ValueError(f"conv: x {tuple(x.shape)} / packed {tuple(packed.shape)} / out {tuple(out.shape)}")
    zero = _zero(c)
    code, slope = act_code(act)
    dense = kernel == (1, 1) and stride == 1 and pad == 0  # a 1x1 conv: the map is the matrix [B*H*W, C_in]
    _run(lib, _Gemm(a=x.data_ptr(), lda=c, x=x.data_ptr(), zero=zero.data_ptr(), H=h, W=w, C=c, Ho=ho, Wo=wo,
                    kh=kernel[0], kw=kernel[1], stride=stride, pad=pad, conv=int(not dense), bp=packed.data_ptr(),
                    c=out.data_ptr(), ldc=n, G=1, M=b * ho * wo, N=n, K=packed.shape[2],
                    bias=bias.data_ptr() if bias is not None else None, act=code, slope=slope), threads)


def checked_library() -> ctypes.CDLL | None:
    """:func:`library` once it has been found equal to PyTorch on small awkward cases (rows and columns not
    multiples of the micro-tile, ``K`` past one block, a strided conv with padding and the fused leaky ReLU),
    else None. Checked once per process; :func:`yolo.utils.native.forget_loaded` checks again (tests)."""
    return native.checked_library(NAME, library, _agrees,
                                  "native matrix product disagrees with PyTorch on this machine; not using it")


def _agrees(lib: ctypes.CDLL) -> bool:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 13, 300, generator=gen), torch.randn(3, 300, 21, generator=gen)
    prod = torch.empty(3, 13, 21)
    bmm(lib, a, pack(b), prod, 2)
    x, w, bias = (torch.randn(2, 5, 7, 9, generator=gen), torch.randn(19, 5, 3, 3, generator=gen),
                  torch.randn(19, generator=gen))
    want = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(x, w, bias, 2, 1), 0.1).permute(0, 2, 3, 1)
    y = torch.empty(want.shape)
    conv(lib, x.permute(0, 2, 3, 1).contiguous(), pack_conv_weight(w), bias, y, (3, 3), 2, 1, 0.1, 2)
    if not (torch.allclose(prod, a @ b, rtol=1e-5, atol=1e-4) and torch.allclose(y, want, rtol=1e-5, atol=1e-4)):
        return False
    v = torch.cat((torch.linspace(-100, 100, 801), torch.randn(99, generator=gen) * 4))  # past exp's clamps too
    fn = torch.nn.functional
    for act, ref in (("mish", fn.mish), ("swish", fn.silu), ("logistic", torch.sigmoid)):
        got = v.clone()
        activate(lib, got, act, 2)
        if not torch.allclose(got, ref(v), rtol=1e-5, atol=1e-6):
            return False
    return True


def activate(lib: ctypes.CDLL, x: torch.Tensor, act: Activation, threads: int) -> None:
    """``x`` (float32, densely stored: contiguous in some memory format) = ``act(x)`` in place."""
    lib.activate(x.data_ptr(), x.numel(), *act_code(act), threads)


def maxpool(lib: ctypes.CDLL, x: torch.Tensor, out: torch.Tensor, size: int, stride: int, left: int,
            threads: int) -> None:
    """Darknet's ``[maxpool]`` on channels-last maps: ``x [B, H, W, C]`` -> ``out [B, Ho, Wo, C]`` (float32
    contiguous), each window starting ``left`` pixels before the edge and clipped to the map."""
    b, h, w, c = x.shape
    _, ho, wo, _ = out.shape
    if not (x.is_contiguous() and out.is_contiguous()) or lib.maxpool(
            x.data_ptr(), out.data_ptr(), b, h, w, c, ho, wo, size, stride, left, threads) != 0:
        raise ValueError(f"maxpool: x {tuple(x.shape)} -> {tuple(out.shape)}, size {size} stride {stride}")

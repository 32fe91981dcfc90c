"""Small C kernels built on the user's machine at first use and loaded with ``ctypes``.

The toolkit is pure Python; where a loop that PyTorch has no fused op for is worth a kernel (the Winograd
transforms), its C source ships as a string and :func:`load_library` compiles it once with the system's C
compiler (``$CC``, else ``cc``/``gcc``/``clang``) for the running CPU (``-march=native``) into
``$YOLO_NATIVE_DIR``, else ``native/`` in :func:`yolo.utils.files.cache_dir` (``$YOLO_CACHE_DIR``,
``$XDG_CACHE_HOME/yolo-toolkit`` or ``~/.cache/yolo-toolkit``; one line on
stderr says so when it builds), named by a hash of the source, the flags,
the compiler and the CPU's model and flags: a cache shared by different machines never hands one a library
built for another. The build goes to a temporary name and is renamed into place, so processes that build at
the same moment (DDP ranks, test workers) never load a half-written file. Where the cache cannot be written
(a read-only home), the build goes to an owner-only ``<temp>/yolo-native-<uid>`` instead and is found there
by later processes (a folder there that another user could write is never used).

Nothing here is required: no compiler, a failed build or ``YOLO_NATIVE=0`` makes :func:`load_library` return
None, and callers keep their PyTorch path (a failed build is said once, as a warning).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from yolo.errors import YoloRuntimeWarning, warn
from yolo.utils.files import cache_dir

# What every kernel source starts with: 8-float vectors (GCC/clang vector extensions: one AVX register, two
# NEON ones), loads and stores of the first n lanes (n <= 0: none; the rest of a load is zero), e^x and the
# darknet activations the kernels fuse (``act8``; codes in ``ACTIVATIONS``), and
# ``parallel``, which splits ``n`` work items into contiguous ranges over ``nthreads`` threads (at most 64, at
# most n; each range's call is told its worker number, for per-thread scratch).
C_PRELUDE = r"""
#include <pthread.h>
#include <stddef.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
#define CB 8

static inline v8 ld(const float *p, int n) {
    v8 r; if (n >= CB) { memcpy(&r, p, sizeof r); return r; }
    r = (v8){0}; if (n > 0) memcpy(&r, p, (size_t)n * sizeof(float)); return r;
}
static inline void st(float *p, v8 x, int n) {
    if (n >= CB) memcpy(p, &x, sizeof x); else if (n > 0) memcpy(p, &x, (size_t)n * sizeof(float));
}

static inline v8 sel(v8i m, v8 a, v8 b) { return (v8)(((v8i)a & m) | ((v8i)b & ~m)); }  /* m ? a : b */

/* e^x of 8 floats: Cephes' expf (x = n ln2 + r, a degree-6 polynomial in r; about 1 ulp), x clamped to
   [-87.3, 88] (the result stays a normal float) */
static inline v8 exp8(v8 x) {
    const v8 hi = (v8){0} + 88.0f, lo = (v8){0} - 87.3365447504f;
    x = sel(x > hi, hi, x); x = sel(x < lo, lo, x);
    v8i n = __builtin_convertvector(x * 1.44269504088896341f + 256.5f, v8i) - 256;  /* round(x / ln2) */
    v8 nf = __builtin_convertvector(n, v8);
    v8 r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
    v8 p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f; p = p * r + 4.1665795894e-2f; p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * (v8)((n + 127) << 23);  /* times 2^n, built in the exponent bits */
}

/* darknet activations on 8 floats: 0 none, 1 leaky (slope; ReLU: 0), 2 mish, 3 swish (SiLU), 4 logistic */
enum { ACT_NONE, ACT_LEAKY, ACT_MISH, ACT_SWISH, ACT_LOGISTIC };
static inline v8 act8(v8 s, int act, float slope) {
    const v8 zero = {0}, one = zero + 1.0f, twenty = zero + 20.0f, low = zero - 80.0f;
    if (act == ACT_LEAKY) return sel(s < zero, slope * s, s);
    if (act == ACT_MISH) {  /* x tanh(ln(1 + e^x)) = x n / (n + 2), n = e^x (e^x + 2): the ratio is 1 past
                               x = 20; below -80, x e^x is 0 in float */
        v8 e = exp8(sel(s > twenty, twenty, s)), n = e * (e + 2.0f);
        return sel(s < low, zero, s * (n / (n + 2.0f)));
    }
    if (act == ACT_SWISH) return sel(s < low, zero, s / (one + exp8(-s)));
    if (act == ACT_LOGISTIC) return one / (one + exp8(-s));
    return s;
}

typedef void (*range_fn)(void *ctx, long i0, long i1, int worker);  /* worker: 0 .. nthreads-1 */
#ifndef _OPENMP
typedef struct { void *ctx; long i0, i1; int w; range_fn fn; } job_t;

static void *run_job(void *p) { job_t *j = (job_t *)p; j->fn(j->ctx, j->i0, j->i1, j->w); return NULL; }
#endif

static void parallel(void *ctx, long n, int nthreads, range_fn fn) {
    if (nthreads > 64) nthreads = 64;
    if (nthreads > n) nthreads = (int)n;
    if (nthreads < 1) nthreads = 1;
#ifdef _OPENMP
    /* the process's OpenMP runtime (PyTorch's): its threads are awake after the op before */
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int i = 0; i < nthreads; i++) fn(ctx, n * i / nthreads, n * (i + 1) / nthreads, i);
#else
    pthread_t th[64]; job_t jobs[64]; int started[64] = {0};
    for (int i = 0; i < nthreads; i++) {
        jobs[i].ctx = ctx; jobs[i].fn = fn; jobs[i].w = i;
        jobs[i].i0 = n * i / nthreads; jobs[i].i1 = n * (i + 1) / nthreads;
    }
    for (int i = 1; i < nthreads; i++) started[i] = pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0;
    fn(ctx, jobs[0].i0, jobs[0].i1, 0);
    for (int i = 1; i < nthreads; i++) {
        if (started[i]) pthread_join(th[i], NULL); else fn(ctx, jobs[i].i0, jobs[i].i1, i);
    }
#endif
}
"""
ACTIVATIONS = {"leaky": 1, "mish": 2, "swish": 3, "logistic": 4}  # act8's codes (0: none)
Activation = float | str | None  # a leaky ReLU's slope (ReLU: 0.0), "mish", "swish", "logistic", or None
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-pthread")
# Tried in order: with OpenMP (the kernels then share PyTorch's threads, already awake), then without (POSIX
# threads; a compiler without OpenMP support, such as Apple's clang).
EXTRA_FLAGS = (("-fopenmp",), ())
BUILD_TIMEOUT_S = 120
_LOCK = threading.Lock()
_LOADED: dict[str, ctypes.CDLL | None] = {}
_CHECK_LOCK = threading.Lock()  # apart from _LOCK: a check loads the library first
_CHECKED: dict[str, ctypes.CDLL | None] = {}  # name -> the library once found equal to PyTorch, or None
_STATE: dict[str, bool] = {}  # "said_no_cc": the missing $CC was said


def act_code(act: Activation) -> tuple[int, float]:
    """An activation -> ``(act8's code, slope)``."""
    if act is None:
        return 0, 0.0
    if isinstance(act, str):
        return ACTIVATIONS[act], 0.0
    return ACTIVATIONS["leaky"], float(act)


def native_enabled() -> bool:
    """False when ``YOLO_NATIVE`` is ``0``, ``off``, ``false`` or ``no`` (then only PyTorch code runs)."""
    return os.environ.get("YOLO_NATIVE", "").strip().lower() not in ("0", "off", "false", "no")


def native_dir() -> Path:
    """Where built kernels live: ``$YOLO_NATIVE_DIR``, else ``cache_dir()/native``."""
    return Path(os.environ.get("YOLO_NATIVE_DIR") or cache_dir() / "native").expanduser()


def find_compiler() -> str | None:
    """``$CC``, else the first of cc, gcc, clang on PATH; a command line (``ccache gcc``, ``gcc -m64``: its words
    as make splits them) with its program found on PATH. A ``$CC`` whose program is not found means no build,
    said once."""
    if not os.environ.get("CC", "").strip():
        return next((path for name in ("cc", "gcc", "clang") if (path := shutil.which(name))), None)
    try:
        words = shlex.split(os.environ["CC"])
    except ValueError:  # an unclosed quote
        words = [os.environ["CC"]]
    program = shutil.which(words[0])
    if program is None:
        if not _STATE.get("said_no_cc"):
            _STATE["said_no_cc"] = True
            warn(f"CC={os.environ['CC']}: {words[0]} not found; the native kernels are not built (the PyTorch path "
                 "runs; unset CC to use cc, gcc or clang from PATH)", YoloRuntimeWarning, stacklevel=3)
        return None
    return shlex.join([program, *words[1:]])


def _cpu_signature() -> str:
    """The CPU's model and feature flags (``-march=native`` builds for exactly these)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def library_path(name: str, source: str, compiler: str) -> Path:
    """Where the build of ``source`` for this compiler and CPU lives in the cache."""
    flags = " | ".join(" ".join(FLAGS + extra) for extra in EXTRA_FLAGS)
    program, *options = shlex.split(compiler)
    key = "\0".join((source, flags, shlex.join([os.path.realpath(program), *options]), _cpu_signature(),
                     platform.machine()))
    return native_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def private_temp_dir() -> Path:
    """``<temp>/yolo-native-<user>``, made owner-only; raises ``OSError`` when it exists but is not a folder
    owned by this user that only they can write (another user could have put a library there to be loaded)."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    path = Path(tempfile.gettempdir()) / f"yolo-native-{user}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o022:
        raise OSError(f"{path} is not a private folder of this user")
    return path


def build(name: str, source: str, compiler: str) -> Path:
    """Compile ``source`` into the cache (unless there already); returns the library's path. Where the cache
    cannot be written (a read-only home), the library goes to :func:`private_temp_dir` instead, so that later
    processes find it there. Raises ``RuntimeError`` with the compiler's message when the build fails,
    ``OSError`` when neither folder can be written."""
    path = library_path(name, source, compiler)
    if _usable(path) and not noexec(path.parent):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(path.parent, os.W_OK | os.X_OK)
    except OSError as e:
        writable, why = False, f"is not writable: {e.strerror or e}"
    else:
        why = "is not writable: permission denied"
        if writable and noexec(path.parent):  # it would build there on every run and never load
            writable, why = False, "is on a noexec mount: no library there can be loaded"
    if writable:  # the configured folder first ($YOLO_NATIVE_DIR or the cache), even if the fallback has one
        try:
            return _compile(name, source, compiler, path)
        except OSError as e:  # not writable after all (compiler failures are RuntimeError)
            why = f"is not writable: {e.strerror or e}"
    try:
        fallback = private_temp_dir() / path.name
        if noexec(fallback.parent):
            raise OSError
    except OSError:
        raise OSError(f"{path.parent} {why}, nor is the temporary folder usable") from None
    if _usable(fallback):
        return fallback
    return _compile(name, source, compiler, fallback, f" ({path.parent} {why})")


def noexec(folder: Path) -> bool:
    """``folder`` is on a file system mounted ``noexec`` (hardened /home or /tmp): the loader refuses to map
    libraries from it ("failed to map segment from shared object")."""
    try:
        return bool(os.statvfs(folder).f_flag & getattr(os, "ST_NOEXEC", 0))
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def elf_complete(path: Path) -> bool:
    """False for an ELF library shorter than its own headers say (a copy or write cut short): mapping it would
    end the process with SIGBUS at the first touch of the missing pages, beyond any exception handler. Other
    files (not ELF: macOS, a text file) are left to the loader's own error."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
            if head[:4] != b"\x7fELF" or len(head) < 52:
                return head[:4] != b"\x7fELF"
            wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
            if wide:
                phoff, shoff = struct.unpack_from(order + "QQ", head, 32)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 54)
            else:
                phoff, shoff = struct.unpack_from(order + "II", head, 28)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 42)
            if phoff + phentsize * phnum > size or shoff + shentsize * shnum > size:
                return False
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for k in range(phnum):  # every segment's bytes must be in the file
                if wide:
                    kind, _, offset, _, _, filesz = struct.unpack_from(order + "IIQQQQ", table, k * phentsize)
                else:
                    kind, offset, _, _, filesz = struct.unpack_from(order + "IIIII", table, k * phentsize)
                if kind == 1 and offset + filesz > size:  # PT_LOAD
                    return False
    except (OSError, struct.error):
        return False
    return True


def _usable(path: Path) -> bool:
    """``path`` exists and is a whole library; a damaged one is removed (and built again by the caller)."""
    if not path.is_file():
        return False
    if elf_complete(path):
        return True
    warn(f"native kernels: {path} is damaged (shorter than its headers say); building it again",
         YoloRuntimeWarning, stacklevel=3)
    path.unlink(missing_ok=True)
    return False


def _compile(name: str, source: str, compiler: str, path: Path, why: str = "") -> Path:
    """``source`` -> the library ``path``, built in a temporary folder beside it and renamed into place."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{name}-") as tmp:
        print(f"building the {name} kernels for this CPU (once): {path}{why}", file=sys.stderr, flush=True)
        src, out = Path(tmp, f"{name}.c"), Path(tmp, f"{name}.so")
        src.write_text(source, encoding="utf-8")
        for extra in EXTRA_FLAGS:
            try:
                done = subprocess.run([*shlex.split(compiler), *FLAGS, *extra, str(src), "-o", str(out)], check=False,
                                      capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise RuntimeError(f"{compiler}: {e}") from e
            if done.returncode == 0 and out.is_file():
                break
        else:  # the last attempt's message
            message = (done.stderr or done.stdout).strip().splitlines()
            raise RuntimeError(f"{compiler} exited {done.returncode}: {message[0] if message else 'no output'}")
        os.replace(out, path)  # atomic: another process sees no file or the whole one
    return path


def load_library(name: str, source: str, symbols: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The compiled ``source`` as a ``ctypes.CDLL`` (built at the first call on this machine, then read from
    the cache; once per process), or None when native code is off, no compiler is found or the build fails.
    A cached file that does not load, or lacks one of ``symbols`` (the functions the caller binds), is built
    again, once."""
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        lib = None
        compiler = find_compiler() if native_enabled() else None
        if compiler is not None:
            try:
                path = build(name, source, compiler)
                try:
                    lib = _open(path, symbols)
                except OSError:  # a damaged cached file: build it again, once
                    path.unlink(missing_ok=True)
                    lib = _open(build(name, source, compiler), symbols)
            except (OSError, RuntimeError) as e:
                warn(f"native kernels '{name}' not built ({e}); using the PyTorch path (set YOLO_NATIVE=0 to "
                     "silence this)", YoloRuntimeWarning, stacklevel=2)
        _LOADED[name] = lib
        return lib


def _open(path: Path, symbols: tuple[str, ...]) -> ctypes.CDLL:
    """``ctypes.CDLL(path)``; OSError also when one of ``symbols`` is missing (a file that is not this build)."""
    lib = ctypes.CDLL(str(path))
    missing = [s for s in symbols if not hasattr(lib, s)]
    if missing:
        import _ctypes

        if hasattr(_ctypes, "dlclose"):  # else the loader would hand this one back for the rebuilt file's path
            _ctypes.dlclose(lib._handle)
        raise OSError(f"{path}: no symbol {', '.join(missing)}")
    return lib


def checked_library(name: str, load: Callable[[], ctypes.CDLL | None], agrees: Callable[[ctypes.CDLL], bool],
                    disagreement: str) -> ctypes.CDLL | None:
    """``load()`` once it has been found equal to PyTorch by ``agrees(lib)``, else None (with the warning
    ``disagreement`` when it was built but disagreed). Decided once per process per ``name``;
    :func:`forget_loaded` decides again."""
    with _CHECK_LOCK:
        if name not in _CHECKED:
            lib = load()
            if lib is not None and not agrees(lib):
                warn(disagreement, YoloRuntimeWarning, stacklevel=3)
                lib = None
            _CHECKED[name] = lib
        return _CHECKED[name]


def forget_loaded() -> None:
    """Forget the libraries loaded and checked so far (tests: load and check again under other settings)."""
    with _CHECK_LOCK, _LOCK:
        _CHECKED.clear()
        _LOADED.clear()
        _STATE.clear()

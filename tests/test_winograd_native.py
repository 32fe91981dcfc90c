"""The Winograd transforms' C kernels (yolo.model.winograd_native, built by yolo.utils.native): against torch's
direct convolution (``F.conv2d``, then ``F.leaky_relu``) and against the PyTorch path, on awkward shapes
(partial tiles, channel counts that are not a multiple of the 8-channel block, batches, both tile sizes);
the activation fused into the swapped conv; and the build: cache, a damaged cached file, a failing compiler,
``YOLO_NATIVE=0``, one library per CPU."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import fake_compiler
from yolo.model import winograd, winograd_native
from yolo.model.cfg_specs import ConvSpec
from yolo.model.layers import ConvBlock
from yolo.model.winograd import WinogradConv2d, use_winograd
from yolo.utils import native

HAVE_CC = native.find_compiler() is not None
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler on this machine: the PyTorch path runs")

SHAPES = [(1, 8, 16, 13, 13), (2, 13, 11, 26, 20), (1, 67, 30, 7, 5), (3, 8, 8, 4, 4), (1, 5, 3, 1, 1),
          (1, 8, 9, 2, 9), (2, 128, 64, 52, 52)]



def _run(conv: nn.Conv2d, x: torch.Tensor, m: int, use_native: bool, leaky: float | None = None) -> torch.Tensor:
    module = WinogradConv2d(conv, act=leaky)
    lib = winograd.native_kernels() if use_native else None
    with mock.patch.object(winograd, "tile_size", lambda b, h, w: m), \
            mock.patch.object(winograd, "native_kernels", lambda: lib), torch.inference_mode():
        return module(x)


@needs_cc
def test_kernels_are_built_where_a_compiler_is_found():
    """The fast path is live on this machine (CI has a compiler): a silent fall-back would hide a slowdown."""
    assert winograd.native_kernels() is not None


@needs_cc
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("b,c_in,c_out,h,w", SHAPES)
@pytest.mark.parametrize("leaky", [None, 0.1])
def test_native_equals_direct_conv_and_torch_path(m, b, c_in, c_out, h, w, leaky):
    torch.manual_seed(c_in * 100 + h)
    conv = nn.Conv2d(c_in, c_out, 3, 1, 1)
    x = torch.randn(b, c_in, h, w).contiguous(memory_format=torch.channels_last)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    if leaky is not None:
        ref = F.leaky_relu(ref, leaky)
    fast, slow = _run(conv, x, m, True, leaky), _run(conv, x, m, False, leaky)
    assert fast.shape == ref.shape and fast.is_contiguous(memory_format=torch.channels_last)
    scale = ref.abs().max().item()
    assert (fast - ref).abs().max().item() < 2e-5 * scale
    assert (fast - slow).abs().max().item() < 2e-5 * scale


@needs_cc
def test_native_reads_any_memory_format():
    """A contiguous (NCHW) input is made channels-last for the kernel: same result."""
    torch.manual_seed(1)
    conv = nn.Conv2d(16, 24, 3, 1, 1)
    x = torch.randn(2, 16, 10, 14)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    out = _run(conv, x, 4, True)
    assert (out - ref).abs().max() < 2e-5 * ref.abs().max()


def _block(activation: str, bn: bool) -> ConvBlock:
    spec = ConvSpec(index=0, line=1, in_channels=64, filters=32, size=3, stride=1, padding=1, groups=1,
                    batch_normalize=bn, activation=activation)
    torch.manual_seed(2)
    block = ConvBlock(spec).eval()
    if bn:
        nn.init.uniform_(block.bn.running_var, 0.5, 2)
        nn.init.normal_(block.bn.running_mean)
    return block


@pytest.mark.parametrize("activation,fused", [("leaky", 0.1), ("relu", 0.0), ("mish", "mish"), ("swish", "swish"),
                                              ("logistic", "logistic"), ("linear", None), ("elu", None)])
def test_use_winograd_moves_the_activation_into_the_conv(activation, fused):
    """leaky/ReLU/mish/swish/logistic run inside the kernel (against PyTorch's own modules after BN); others stay."""
    import copy

    block = _block(activation, bn=True)
    x = torch.randn(2, 64, 20, 12)
    with torch.inference_mode():
        ref = block(x)  # BN and the activation as separate modules, direct conv
        folded = copy.deepcopy(block)
        folded.fuse()
        assert use_winograd(folded) == 1
        out = folded(x)
    assert folded.conv.act == fused
    assert type(folded.act) is (nn.Identity if fused is not None else type(block.act))
    assert (out - ref).abs().max() < 1e-4 * ref.abs().max()


def test_activation_is_not_fused_across_batchnorm():
    """BN not folded (between conv and activation): the activation stays where it is."""
    block = _block("leaky", bn=True)
    x = torch.randn(1, 64, 9, 9)
    with torch.inference_mode():
        ref = block(x)
        assert use_winograd(block) == 1
        out = block(x)
    assert block.conv.act is None and isinstance(block.act, nn.LeakyReLU)
    assert (out - ref).abs().max() < 1e-4 * ref.abs().max()


def test_yolo_native_off_uses_the_torch_path(fresh_native, monkeypatch):
    monkeypatch.setenv("YOLO_NATIVE", "0")
    with mock.patch.object(native.subprocess, "run", side_effect=AssertionError("compiled")):
        assert winograd.native_kernels() is None
    assert not fresh_native.exists()


def test_failed_build_warns_once_and_falls_back(fresh_native, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path, refuse_openmp=False)))
    with pytest.warns(RuntimeWarning, match=r"not built .*exited 3: cc: error: no such thing"):
        assert winograd.native_kernels() is None
    assert winograd.native_kernels() is None  # decided once per process: no second warning, no second build
    assert not list(fresh_native.glob("*.so"))  # nothing half-written left in the cache
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, 1, 1)
    x = torch.randn(1, 8, 9, 9)
    with torch.inference_mode():
        out = WinogradConv2d(conv)(x)  # the PyTorch path
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert (out - ref).abs().max() < 2e-5 * ref.abs().max()


@needs_cc
def test_compiler_without_openmp_builds_the_threads_variant(fresh_native, monkeypatch, tmp_path):
    """A compiler that refuses -fopenmp (Apple's clang) still gets kernels: POSIX threads split the tiles."""
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path, refuse_openmp=True)))
    lib = winograd.native_kernels()  # built, and checked against the PyTorch path
    assert lib is not None
    (path,) = fresh_native.glob("winograd-*.so")
    assert b"GOMP_parallel" not in path.read_bytes()  # no OpenMP in this build
    torch.manual_seed(5)
    conv = nn.Conv2d(72, 40, 3, 1, 1)
    x = torch.randn(3, 72, 30, 22).contiguous(memory_format=torch.channels_last)
    ref = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, padding=1), 0.1)
    for m in (2, 4):
        assert (_run(conv, x, m, True, 0.1) - ref).abs().max() < 2e-5 * ref.abs().max()


def test_missing_compiler_means_torch_path_without_a_warning(fresh_native, monkeypatch, recwarn, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang
    assert winograd.native_kernels() is None
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_cc_that_is_not_found_is_said_once(fresh_native, monkeypatch):
    """``CC=nosuchcc`` turned the kernels off without a word (a typo costs 1.6x on yolov3)."""
    from yolo.model import gemm_native

    monkeypatch.setenv("CC", "/nonexistent/cc -O2")
    with pytest.warns(RuntimeWarning) as said:
        assert winograd.native_kernels() is None and gemm_native.library() is None
    assert [str(w.message) for w in said] == [
        "CC=/nonexistent/cc -O2: /nonexistent/cc not found; the native kernels are not built (the PyTorch path "
        "runs; unset CC to use cc, gcc or clang from PATH)"]


@needs_cc
def test_a_cc_command_line_builds(fresh_native, monkeypatch):
    """``CC="ccache gcc"`` / ``CC="gcc -m64"`` (words, as make splits them) ran nothing: which() of the whole
    string found no program, and the kernels were silently off."""
    monkeypatch.setenv("CC", f"env {native.find_compiler()}")  # env as the launcher, as ccache would be
    assert native.find_compiler().split()[1:] == [os.environ["CC"].split()[1]]
    assert winograd.native_kernels() is not None
    assert list(fresh_native.glob("winograd-*.so"))


@needs_cc
def test_cache_is_reused_and_a_damaged_file_rebuilt(fresh_native, monkeypatch, tmp_path, capsys):
    assert native.load_library(winograd_native.NAME, winograd_native.SOURCE) is not None
    (path,) = fresh_native.glob("winograd-*.so")
    assert capsys.readouterr().err == f"building the winograd kernels for this CPU (once): {path}\n"
    native.forget_loaded()
    with mock.patch.object(native.subprocess, "run", side_effect=AssertionError("compiled again")):
        assert native.load_library(winograd_native.NAME, winograd_native.SOURCE) is not None  # from the cache
    assert capsys.readouterr().err == ""
    # A damaged file under the same name in another cache (this process keeps the first one loaded, and the
    # dynamic loader would hand back a library it has loaded from the same path).
    other = tmp_path / "other"
    monkeypatch.setenv("YOLO_NATIVE_DIR", str(other))
    damaged = other / path.name
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a shared library")
    winograd.forget_native()
    assert winograd.native_kernels() is not None  # rebuilt, loaded and checked against the PyTorch path
    assert damaged.stat().st_size > 10_000


@needs_cc
def test_a_cached_library_without_the_kernels_is_built_again(fresh_native, tmp_path):
    """A shared library under the kernels' cache name that is another build (no ``winograd_input``) loads, and
    binding its functions was an unexpected AttributeError ending the command; it is rebuilt, as a damaged one."""
    path = native.library_path(winograd_native.NAME, winograd_native.SOURCE, native.find_compiler())
    path.parent.mkdir(parents=True)
    (tmp_path / "other.c").write_text("int other(void) { return 1; }\n")
    subprocess.run([native.find_compiler(), "-shared", "-fPIC", "-o", str(path), str(tmp_path / "other.c")],
                   check=True)
    assert winograd.native_kernels() is not None  # rebuilt, loaded and checked against the PyTorch path
    assert hasattr(ctypes.CDLL(str(path)), "winograd_input")


def test_kernel_folder_follows_the_cache_unless_set(monkeypatch, tmp_path):
    monkeypatch.delenv("YOLO_NATIVE_DIR")
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path / "c"))
    assert native.native_dir() == tmp_path / "c" / "native"
    monkeypatch.setenv("YOLO_NATIVE_DIR", str(tmp_path / "k"))
    assert native.native_dir() == tmp_path / "k"


def test_library_name_depends_on_cpu_source_and_compiler():
    cc = shutil.which("sh") or "/bin/sh"
    a = native.library_path("k", "int f(void){return 1;}", cc)
    with mock.patch.object(native, "_cpu_signature", lambda: "model name: another CPU\nflags: sse2\n"):
        b = native.library_path("k", "int f(void){return 1;}", cc)
    c = native.library_path("k", "int f(void){return 2;}", cc)
    assert len({a, b, c}) == 3 and a.parent == b.parent == c.parent


@needs_cc
def test_kernels_that_disagree_are_not_used(fresh_native):
    with mock.patch.object(winograd, "_native_agrees", lambda lib: False), \
            pytest.warns(RuntimeWarning, match="disagree"):
        assert winograd.native_kernels() is None


@needs_cc
def test_processes_building_at_once_share_one_library(tmp_path):
    """DDP ranks or test workers may build at the same moment: each loads a whole library, one file remains and
    no temporary is left behind (the build is renamed into place)."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("from yolo.model.winograd import native_kernels\n"
            "print('built' if native_kernels() is not None else 'none')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YOLO_NATIVE_DIR": str(tmp_path / "native")}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["built"] * 3
    assert [p.name for p in (tmp_path / "native").iterdir()] == [next((tmp_path / "native").glob("winograd-*.so")).name]


@needs_cc
def test_unwritable_cache_builds_into_a_private_temp_folder(fresh_native, monkeypatch, tmp_path, capsys):
    """A read-only home: the kernels go to <temp>/yolo-native-<uid> (owner-only) and later processes find
    them there instead of building again (or warning) each time."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("YOLO_NATIVE_DIR", str(blocker / "native"))  # cannot be created (as root too)
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert native.load_library(winograd_native.NAME, winograd_native.SOURCE) is not None
    private = tmp_path / "tmp" / f"yolo-native-{os.getuid()}"
    (path,) = private.glob("winograd-*.so")
    assert oct(private.stat().st_mode & 0o777) == "0o700"
    err = capsys.readouterr().err
    assert err.startswith(f"building the winograd kernels for this CPU (once): {path} (") and "not writable" in err
    native.forget_loaded()
    with mock.patch.object(native.subprocess, "run", side_effect=AssertionError("compiled again")):
        assert native.load_library(winograd_native.NAME, winograd_native.SOURCE) is not None


@needs_cc
def test_a_cache_on_a_noexec_mount_builds_into_the_temp_folder_once(fresh_native, monkeypatch, tmp_path, capsys):
    """A cache on a noexec mount (hardened /home): the library built there never loads ("failed to map
    segment"), so each run built it again (6 s) and warned "not built"; it now goes to the private temp folder,
    once, saying why."""
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real = native.os.statvfs
    flags = {str(fresh_native): native.os.ST_NOEXEC}  # as statvfs reports a noexec mount

    def statvfs(path):
        got = real(path)
        return mock.Mock(f_flag=got.f_flag | flags.get(str(path), 0))

    monkeypatch.setattr(native.os, "statvfs", statvfs)
    assert native.noexec(fresh_native.parent) is False and native.noexec(tmp_path / "tmp") is False
    fresh_native.mkdir()
    assert native.noexec(fresh_native) is True
    assert native.load_library(winograd_native.NAME, winograd_native.SOURCE) is not None
    (path,) = (tmp_path / "tmp" / f"yolo-native-{os.getuid()}").glob("winograd-*.so")
    assert capsys.readouterr().err == (f"building the winograd kernels for this CPU (once): {path} ({fresh_native} "
                                       "is on a noexec mount: no library there can be loaded)\n")
    assert not list(fresh_native.iterdir())
    native.forget_loaded()
    with mock.patch.object(native.subprocess, "run", side_effect=AssertionError("compiled again")):
        assert native.load_library(winograd_native.NAME, winograd_native.SOURCE) is not None
    assert capsys.readouterr().err == ""


def test_a_temp_folder_others_can_write_is_not_used(fresh_native, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("YOLO_NATIVE_DIR", str(blocker / "native"))
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path / "tmp"))
    shared = tmp_path / "tmp" / f"yolo-native-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    with pytest.raises(OSError, match="not a private folder"):
        native.private_temp_dir()
    with mock.patch.object(native.subprocess, "run", side_effect=AssertionError("compiled")), \
            pytest.warns(RuntimeWarning, match="not built"):
        assert native.load_library(winograd_native.NAME, winograd_native.SOURCE) is None
    assert not list(shared.iterdir())


@needs_cc
def test_a_truncated_library_is_built_again_not_mapped(fresh_native, tmp_path):
    """A kernel library cut short (a copy or a disk that filled up) ended every later run with SIGBUS (exit 135,
    no message) when the loader touched its missing pages: it is checked against its own ELF headers and built
    again. In a child process, so that a crash is a failed test."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    assert winograd.native_kernels() is not None
    whole = {p.name: p.read_bytes() for p in fresh_native.glob("*.so")}
    assert whole and all(native.elf_complete(p) for p in fresh_native.glob("*.so"))
    cut = tmp_path / "cut"
    cut.mkdir()
    for name, data in whole.items():
        (cut / name).write_bytes(data[:1000])
        assert not native.elf_complete(cut / name)
        (cut / name).write_bytes(data[:-200])  # only its last bytes missing
        assert not native.elf_complete(cut / name)
    (tmp_path / "text.so").write_text("not a library")
    assert native.elf_complete(tmp_path / "text.so")  # not ELF: the loader's own error handles it
    code = "from yolo.model.winograd import native_kernels\nprint(native_kernels() is not None)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "YOLO_NATIVE_DIR": str(cut)})
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    assert "is damaged (shorter than its headers say); building it again" in done.stderr
    assert all(native.elf_complete(cut / name) for name in whole)


@needs_cc
def test_a_writable_kernel_folder_wins_over_the_temp_fallback(fresh_native, monkeypatch, tmp_path, capsys):
    """A library in <temp>/yolo-native-<uid> (left by a run whose cache could not be written) was used even when
    YOLO_NATIVE_DIR named a writable folder, so pointing it elsewhere could not get around a bad fallback."""
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    private = native.private_temp_dir()
    path = native.library_path(winograd_native.NAME, winograd_native.SOURCE, native.find_compiler())
    native._compile(winograd_native.NAME, winograd_native.SOURCE, native.find_compiler(), private / path.name)
    assert native.load_library(winograd_native.NAME, winograd_native.SOURCE) is not None
    assert path.is_file() and path.parent == fresh_native  # built where it was told, not taken from <temp>

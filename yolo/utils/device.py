"""Device and precision selection."""

from __future__ import annotations

import os
import platform

import torch

from yolo.errors import InputError, option, warn
from yolo.utils.text import count


def select_device(name: str | None = None) -> torch.device:
    """``None``/``""`` -> cuda:0 when available, else cpu; ``cpu``, ``cuda``, ``cuda:N`` or ``N`` as given."""
    name = (name or "").strip().lower()
    if not name:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name.isdigit():
        name = f"cuda:{name}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} requested but CUDA is not available on this machine")
        if (device.index or 0) >= torch.cuda.device_count():
            raise InputError(f"device {name!r} requested but only {count(torch.cuda.device_count(), 'CUDA device')} "
                             "exist")
    elif device.type != "cpu":
        raise InputError(f"unsupported device {name!r}: expected cpu, cuda or cuda:N")
    return device


def half_dtype(device: torch.device) -> torch.dtype:
    """``--half``: bfloat16 on CPU (fast on AVX-512/AMX), float16 on CUDA."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _cpuinfo(key: str) -> str:
    """The first ``key : value`` of ``/proc/cpuinfo`` (``flags``, ``model name``), or "" (no such file or key)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.split(":", 1)[0].strip() == key), "")
    except OSError:
        return ""
    return line.split(":", 1)[1].strip() if ":" in line else ""


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has bfloat16 hardware (AVX512_BF16 or AMX); without it bf16 is far slower than fp32."""
    flags = _cpuinfo("flags").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def describe_device(device: torch.device) -> str:
    """What a timing ran on, in one line: ``AMD EPYC (2 cores, torch threads 2, AVX2), torch 2.5.1`` or
    ``NVIDIA H100 80GB HBM3 (79.1 GiB), CUDA 12.4, torch 2.5.1``."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        memory = props.total_memory / 2**30
        return f"{props.name} ({memory:.1f} GiB), CUDA {torch.version.cuda}, torch {torch.__version__}"
    name = _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"
    isa = torch.backends.cpu.get_cpu_capability()
    isa += ", AVX512_BF16/AMX" if cpu_has_fast_bf16() else ""
    return f"{name} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {isa}), torch {torch.__version__}"


def resolve_amp(amp: bool | str | None, device: torch.device) -> tuple[bool, str]:
    """Training's ``amp`` setting -> (on, why): true/false as given; ``auto`` (or None) on for CUDA (float16) and
    for CPUs with bf16 hardware (bfloat16), off on other CPUs."""
    if isinstance(amp, bool):
        return amp, "as set"
    if device.type == "cuda":
        return True, "auto: float16 on CUDA"
    if cpu_has_fast_bf16():
        return True, "auto: bfloat16, this CPU has AVX512_BF16/AMX"
    return False, "auto: this CPU has no AVX512_BF16/AMX, bfloat16 would be slower than float32"


def warn_slow_half(device: torch.device) -> None:
    """A ``YoloWarning`` when ``--half`` will be slow on ``device``: bfloat16 on a CPU without bf16 hardware."""
    if device.type == "cpu" and not cpu_has_fast_bf16():
        warn(f"{option('half', True)} means bfloat16 on CPU, and this CPU has no bf16 hardware (no AVX512_BF16/AMX): "
             "expect it to be much slower than float32", stacklevel=2)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

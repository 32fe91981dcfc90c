"""Device and precision selection."""

from __future__ import annotations

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


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has bfloat16 hardware (AVX512_BF16 or AMX); without it bf16 is far slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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

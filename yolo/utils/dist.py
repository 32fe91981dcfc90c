"""Distributed training helpers: read the torchrun environment, init/cleanup, reductions, a rank-0 guard."""

from __future__ import annotations

import datetime
import gc
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from yolo.errors import InputError

GLOO_THREADS = ("gloo", "pt_gloo")  # the names gloo gives its threads (gloo_tcp_loop, pt_gloo_runloop)
GLOO_EXIT_WAIT_S = 2.0


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_from_torchrun() -> DistEnv:
    """RANK / LOCAL_RANK / WORLD_SIZE as torchrun sets them (a plain run is rank 0 of 1)."""
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))


DEFAULT_TIMEOUT_S = 600.0
TIMEOUT_ENV = "YOLO_DDP_TIMEOUT"


class PeerLostError(RuntimeError):
    """Another process of a distributed run died or stopped answering; the message is one line."""


def ddp_timeout(configured: float | None = None) -> float:
    """Seconds a collective waits for the other processes: ``$YOLO_DDP_TIMEOUT`` when set, else ``configured``
    (the run config's ``ddp_timeout``), else 600."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            raise InputError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
        return value
    return float(configured) if configured is not None else DEFAULT_TIMEOUT_S


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective that failed because a peer died (connection reset) or hung (timeout)."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("gloo/", "Gloo", "NCCL", "Connection reset", "Connection closed", "Timed out waiting"))


def init_distributed(env: DistEnv, device: torch.device, timeout_s: float | None = None) -> None:
    """Join the process group (nccl on CUDA, gloo on CPU). Collectives give up after ``timeout_s`` (default:
    ``ddp_timeout()``) so a dead or hung rank makes the others fail instead of hanging for ever."""
    if not env.distributed or dist.is_initialized():
        return
    timeout_s = ddp_timeout() if timeout_s is None else timeout_s
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=env.rank,
                            world_size=env.world_size, timeout=datetime.timedelta(seconds=timeout_s))


def cleanup(together: bool = True) -> None:
    """Leave the process group, so that no thread of it is left at interpreter exit. ``together``: meet the
    others at a barrier first; pass False after a failure, where a barrier would wait a full timeout for a peer
    that is gone.

    ``destroy_process_group`` only unregisters the group: its gloo threads (``gloo_tcp_loop``,
    ``pt_gloo_runloop``) stop when the last reference to it goes, and a DistributedDataParallel's reducer holds
    one. Native threads still running at interpreter exit can abort the process ("terminate called without an
    active exception": a thread that must take the GIL during finalization is ended by Python, and that
    unwinding through a C++ destructor calls std::terminate). Trainers let go of their DDP wrapper when
    training ends; the ``gc.collect()`` here frees any that only a reference cycle still holds. The threads
    end a moment after their group (a loaded machine's full test run once listed ``gloo_tcp_loop`` right after
    it): up to ``GLOO_EXIT_WAIT_S`` is given to them."""
    if dist.is_available() and dist.is_initialized():
        if together:
            try:
                dist.barrier()
            except RuntimeError:  # a peer already gone (crashed or timed out): nothing to wait for
                pass
        gc.collect()
        dist.destroy_process_group()
        deadline = time.monotonic() + GLOO_EXIT_WAIT_S
        while time.monotonic() < deadline and any(n.startswith(GLOO_THREADS) for n in native_threads()):
            time.sleep(0.005)


def native_threads() -> list[str]:
    """Names of this process's threads as the OS sees them (Linux ``/proc``; empty elsewhere)."""
    names = []
    try:
        tasks = sorted(os.listdir("/proc/self/task"))
    except OSError:
        return names
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # ended meanwhile
            pass
    return names


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def reduce_mean(values: dict[str, float], device: torch.device | None = None) -> dict[str, float]:
    """The mean of each value over all processes (the values themselves in a single process), in the order of
    ``values`` (reduced in sorted order, the same on every rank; results.csv's columns come from this order)."""
    if world_size() == 1 or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    means = dict(zip(keys, t.tolist()))
    return {k: means[k] / world_size() for k in values}


def all_gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` in a single process)."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()

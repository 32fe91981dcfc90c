"""Darknet ``.weights`` files in and out.

Layout: int32 major, minor, revision; ``seen`` as uint64 when ``major*10+minor >= 2`` else uint32; then
float32 values per conv layer in cfg order: BN beta, gamma, running mean, running variance (or the conv
bias when the layer has no BN), then the weights in OIHW order. All little-endian.

The file's size is checked against the cfg before anything is read, so a bad file cannot make us
allocate more than the cfg asks for.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from yolo.errors import InputError, on_command_line
from yolo.model.cfg_counts import darknet_float_count
from yolo.model.cfg_specs import ConvSpec, ModelSpec
from yolo.utils.checkpoint import atomic_write, foreign_kind
from yolo.utils.text import count

WEIGHTS_SUFFIXES = (".weights",)  # darknet's files (a backbone may also be named like darknet53.conv.74)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")  # PyTorch checkpoints (ours, or another toolkit's)


@dataclass
class DarknetHeader:
    """The header of a ``.weights`` file; kept with the model so a round trip is byte-identical."""

    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_bytes(self) -> int:
        return 8 if self.major * 10 + self.minor >= 2 else 4

    @property
    def nbytes(self) -> int:
        return 12 + self.seen_bytes

    def to_bytes(self) -> bytes:
        head = np.array([self.major, self.minor, self.revision], dtype="<i4").tobytes()
        return head + np.array([self.seen], dtype="<u8" if self.seen_bytes == 8 else "<u4").tobytes()

    def as_dict(self) -> dict:
        return asdict(self)


def _conv_tensors(block, spec: ConvSpec) -> list[torch.Tensor]:
    """The tensors of one conv block in darknet file order."""
    if spec.batch_normalize:
        bn = block.bn
        if bn is None:
            raise ValueError(f"layer {spec.index}: BN was fused into the conv; save darknet weights before fuse()")
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, block.conv.weight]
    return [block.conv.bias, block.conv.weight]


def _conv_specs(spec: ModelSpec, cutoff: int | None, source: str) -> list[ConvSpec]:
    n = len(spec.layers)
    if cutoff is not None and not 0 < cutoff <= n:
        raise InputError(f"cutoff {cutoff} is out of range: the cfg has layers 0..{n - 1} (cutoff 1..{n})", source)
    return [s for s in spec.layers[: cutoff or n] if isinstance(s, ConvSpec)]


def read_header(path: str | Path) -> DarknetHeader:
    """Read and check the header of a ``.weights`` file."""
    path = str(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            raise InputError(f"{count(len(head), 'byte')} is too short for a darknet .weights header (12-20 bytes)",
                             path)
        major, minor, revision = (int(v) for v in np.frombuffer(head, dtype="<i4"))
        if major >= 1000 or minor >= 1000:
            kind = foreign_kind(path)
            if kind is not None:
                raise InputError(f"not a darknet .weights file: it is {kind}", path)
            raise InputError(f"transposed darknet weights (header {major}.{minor}) are not supported", path)
        if major < 0 or minor < 0 or revision < 0:
            raise InputError(f"not a darknet .weights file (header version {major}.{minor}.{revision})", path)
        header = DarknetHeader(major, minor, revision)
        seen = f.read(header.seen_bytes)
        if len(seen) < header.seen_bytes:
            raise InputError(f"file ends inside the darknet header ({header.nbytes} bytes expected)", path)
        header.seen = int(np.frombuffer(seen, dtype="<u8" if header.seen_bytes == 8 else "<u4")[0])
    return header


def _size_error(path: str, convs: list[ConvSpec], found: int, cutoff: int | None) -> InputError:
    counts = [darknet_float_count(s) for s in convs]
    need = sum(counts)
    span = f"layers 0..{convs[-1].index}" if convs else "no layers"
    if found > need:
        return InputError(f"holds {found} float32 values after its header but the cfg ({span}) needs {need}: "
                          f"{found - need} left over; wrong cfg (classes, filters)?", path)
    done = 0
    for s, c in zip(convs, counts):
        if done + c > found:
            hint = ""
            if done == found and cutoff is None:
                how = (f"train from it (cutoff: {s.index} in a run YAML) or convert it with yolo convert-weights "
                       f"--cutoff {s.index}" if on_command_line() else
                       f"read it with cutoff={s.index} (in a run YAML: cutoff: {s.index})")
                hint = f"; the file ends exactly after layer {s.index - 1}: a backbone file? {how}"
            return InputError(f"holds {found} float32 values after its header but the cfg ({span}) needs {need}: "
                              f"layer {s.index} (convolutional, {s.filters} filters) needs {c} from value {done} "
                              f"and runs out{hint}", path)
        done += c
    return InputError(f"holds {found} float32 values but the cfg needs {need}", path)


def read_darknet_weights(path: str | Path, spec: ModelSpec, cutoff: int | None = None
                         ) -> tuple[DarknetHeader, dict[int, list[np.ndarray]]]:
    """Read a ``.weights`` file for ``spec``: the header and, per conv layer index, arrays in file order. With
    ``cutoff`` only the layers before it are read, from a file of just those (a backbone such as
    ``darknet53.conv.74``) or of the whole model (as darknet's ``partial`` cuts one); without it the file must
    hold exactly the cfg's values."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError("darknet weights file not found", path)
    convs = _conv_specs(spec, cutoff, path)
    header = read_header(path)
    payload = os.path.getsize(path) - header.nbytes
    if payload % 4:
        raise InputError(f"size {os.path.getsize(path)} is not a {header.nbytes}-byte header plus float32 values", path)
    found, need = payload // 4, sum(darknet_float_count(s) for s in convs)
    if found < need or (found > need and cutoff is None):  # with a cutoff the file may go on (darknet's partial)
        raise _size_error(path, convs, found, cutoff)
    # mapped, not read: each tensor copies its values straight from the page cache (yolov3's 248 MB: one
    # pass over the bytes instead of two); copy-on-write, so the arrays are writable and the file never changes
    flat = np.memmap(path, dtype="<f4", mode="c", offset=header.nbytes, shape=(need,)) if need else \
        np.zeros(0, "<f4")
    arrays, pos = {}, 0
    for s in convs:
        n, parts = s.filters, []
        weights = s.filters * (s.in_channels // s.groups) * s.size * s.size
        for size in ([n, n, n, n] if s.batch_normalize else [n]) + [weights]:
            parts.append(flat[pos: pos + size])
            pos += size
        arrays[s.index] = parts
    return header, arrays


def load_darknet_weights(model, path: str | Path, cutoff: int | None = None) -> DarknetHeader:
    """Copy a ``.weights`` file into ``model`` (a ``Darknet``); returns the header."""
    header, arrays = read_darknet_weights(path, model.spec, cutoff)
    with torch.no_grad():
        for index, parts in arrays.items():
            block, spec = model.module_list[index], model.spec.layers[index]
            for tensor, array in zip(_conv_tensors(block, spec), parts):
                tensor.copy_(torch.from_numpy(array).view_as(tensor))  # a view of the file's array
    return header


DARKNET_BN_EPS = 1e-5  # AlexeyAB's darknet normalizes by sqrt(var + .00001); the file has no eps field
READER_BN_EPS = (1e-6, 1e-5)  # what the readers of .weights use: OpenCV's importer 1e-6, AlexeyAB's darknet 1e-5


def bn_eps_to_fold(eps: float) -> float:
    """What a BN of epsilon ``eps`` adds to its variances in a ``.weights`` file: nothing inside the readers' own
    span (``READER_BN_EPS``: they disagree among themselves there), else the distance to it (ultralytics' 1e-4:
    ``+9e-5``, so that darknet's ``var + 1e-5`` is the model's ``var + 1e-4``)."""
    low, high = READER_BN_EPS
    return eps - min(max(eps, low), high)


def save_darknet_weights(model, path: str | Path, cutoff: int | None = None,
                         header: DarknetHeader | None = None) -> None:
    """Write ``model`` (the first ``cutoff`` layers when given) as a ``.weights`` file, atomically. A BN whose
    epsilon lies outside what the readers use (ultralytics' 1e-4 or 1e-3) has the difference folded into its
    variance (:func:`bn_eps_to_fold`), so that darknet computes the same function; otherwise the bytes are the
    model's. A checkpoint's name (``.pt``, ``.pth``, ``.ckpt``) is refused: that format is ``save_checkpoint``'s."""
    if Path(path).suffix.lower() in CHECKPOINT_SUFFIXES:
        raise InputError(f"a {Path(path).suffix} name is for a checkpoint: write it with yolo.save_checkpoint(model, "
                         "path), or name the darknet file .weights", str(path))
    header = header or DarknetHeader()
    convs = _conv_specs(model.spec, cutoff, str(path))
    with atomic_write(path, sweep=True) as f:
        f.write(header.to_bytes())
        for s in convs:
            block = model.module_list[s.index]
            extra = bn_eps_to_fold(float(block.bn.eps)) if s.batch_normalize and block.bn is not None else 0.0
            for k, tensor in enumerate(_conv_tensors(block, s)):
                tensor = tensor.detach().to("cpu", torch.float32)
                if k == 3 and extra:  # running_var
                    tensor = (tensor.double() + extra).clamp_(min=0).float()
                f.write(tensor.numpy().astype("<f4", copy=False).tobytes())

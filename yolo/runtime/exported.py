"""Load an exported model (``.onnx`` or ``.torchscript`` written by ``yolo export``) as a detection backend.

``load_exported(path, device)`` returns a callable ``backend(x [B, 3, H, W] float in [0, 1])`` whose output is
what ``Darknet.decode(model(x))`` gives: ``[B, N, 5+C]`` (cx, cy, w, h in input pixels, objectness probability,
class probabilities), or for a file exported with ``--nms`` the detections ``[K, 7]`` (batch index, x1, y1, x2,
y2, score, class). The file's metadata (class names, strides, input size, dynamic flags) comes with it.

A ``.torchscript`` file is a program, not data: loading it runs the TorchScript code inside it (``__setstate__``
methods at load, ``forward`` on every batch) with this process's rights. TorchScript cannot import Python
modules, but it can call any operator torch has registered, file I/O among them. So its metadata is read from
the archive first, without loading it, and a file without ours is refused unless ``trust=True`` (``--trust``).
An ONNX file is a graph of ONNX operators that onnxruntime interprets; it runs no Python.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import torch

from yolo.errors import InputError, option
from yolo.runtime.preprocess import check_input
from yolo.utils.device import select_device

META_FORMAT = "yolo-toolkit-export"
META_VERSION = 1
TS_CONFIG = "config.json"  # TorchScript extra file holding the metadata
SUFFIXES = {".onnx": "onnx", ".torchscript": "torchscript"}
EXTRA_HINT = "pip install 'yolo-toolkit[export]'"
TRUST_PROBE = (1, 3, 416, 416)  # a trusted file without metadata is run once on zeros of this shape


def untrusted() -> str:
    """Why a TorchScript file without our metadata is refused, and the parameter that runs it anyway."""
    return ("no yolo-toolkit export metadata, so not a file written by `yolo export`; a TorchScript file is a "
            f"program that runs its own code when loaded, so it is refused (pass {option('trust', True)} to run it "
            "anyway)")


def require_onnx(need_runtime: bool = True):
    """Import ``onnx`` (and ``onnxruntime``) or raise a one-line InputError naming the extra to install."""
    missing = []
    modules = []
    for name in ("onnx", "onnxruntime") if need_runtime else ("onnx",):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise InputError(f"ONNX needs the optional packages {', '.join(missing)}: {EXTRA_HINT}")
    return modules


def format_of(path: str | Path) -> str:
    """``'onnx'`` or ``'torchscript'`` from the file's suffix, else InputError."""
    fmt = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError("not an exported model: expected a .onnx or .torchscript file", str(path))
    return fmt


def check_metadata(meta: dict | None, source: str) -> dict:
    """The metadata dict if it is ours (format marker, known version), else InputError naming ``source``."""
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise InputError("no yolo-toolkit export metadata: not a file written by `yolo export`", source)
    if int(meta.get("format_version", 0)) > META_VERSION:
        raise InputError(f"export format version {meta['format_version']} is newer than this toolkit "
                         f"understands ({META_VERSION}); upgrade yolo-toolkit", source)
    return meta


def onnx_metadata(props) -> dict:
    """ONNX ``metadata_props`` (key -> JSON text) -> dict; values that are not JSON are kept as text."""
    out = {}
    for p in props:
        try:
            out[p.key] = json.loads(p.value)
        except ValueError:
            out[p.key] = p.value
    return out


class ExportedBackend:
    """Common part of both backends: metadata, shape checks, dtype and device handling.

    Attributes: ``names`` (class names), ``stride`` (max stride), ``strides`` (per head), ``fixed_shape`` (H, W)
    or None when dynamic, ``fixed_batch`` or None, ``letterbox`` (the resize the model wants: True letterbox,
    False stretch), ``device``, ``dtype`` (what the graph computes in; inputs are
    cast to it, outputs are returned as float32 on ``device``), ``has_nms``, ``metadata``, ``path``.
    """

    def __init__(self, meta: dict, path: str, device: torch.device):
        self.metadata = meta
        self.path = path
        self.names = list(meta["names"])
        self.stride = int(meta["stride"])
        self.strides = [int(s) for s in meta.get("strides", [self.stride])]
        self.fixed_shape = None if meta["dynamic"] else tuple(int(v) for v in meta["input_size"])
        self.fixed_batch = None if meta["dynamic"] else int(meta["batch_size"])
        self.has_nms = bool(meta.get("nms", False))
        self.letterbox = bool(meta.get("letterbox", True))  # files of earlier versions: letterbox
        self.diou_beta = meta.get("diou_beta")  # the NMS the model's cfg asks for (None: IoU; earlier files too)
        self.device = device
        self.dtype = torch.float16 if meta.get("half") else torch.float32

    def _check(self, x: torch.Tensor) -> None:
        check_input(x, self.path)
        h, w = x.shape[-2:]
        if self.fixed_shape is not None and (h, w) != self.fixed_shape:
            raise InputError(f"exported for {self.fixed_shape[0]}x{self.fixed_shape[1]} input, got {h}x{w}: use "
                             f"that {option('img_size')} or export with {option('dynamic', True)}", self.path)
        if h % self.stride or w % self.stride:
            raise InputError(f"input size {h}x{w} must be a multiple of {self.stride}", self.path)
        if self.has_nms and self.fixed_batch is not None and x.shape[0] != self.fixed_batch:
            raise InputError(f"exported with NMS for batch {self.fixed_batch}, got {x.shape[0]}", self.path)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, N, 5+C]`` (or ``[K, 7]`` with NMS), float32 on ``self.device``.

        A fixed-batch export without NMS takes any batch: inputs are split into chunks of ``fixed_batch``
        and the last chunk is padded (the padding's rows are dropped).
        """
        self._check(x)
        x = x.to(self.dtype)
        if self.has_nms or self.fixed_batch is None or x.shape[0] == self.fixed_batch:
            return self._run(x).float().to(self.device)
        outs = []
        for chunk in x.split(self.fixed_batch):
            n = chunk.shape[0]
            if n < self.fixed_batch:
                chunk = torch.cat((chunk, chunk.new_zeros((self.fixed_batch - n, *chunk.shape[1:]))))
            outs.append(self._run(chunk)[:n])
        return torch.cat(outs).float().to(self.device)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path!r}, classes={len(self.names)}, fixed_shape={self.fixed_shape}, "
                f"fixed_batch={self.fixed_batch}, dtype={self.dtype}, nms={self.has_nms}, device={self.device})")


class OnnxBackend(ExportedBackend):
    """onnxruntime ``InferenceSession``: CUDA provider when ``device`` is CUDA and onnxruntime has it, else CPU."""

    def __init__(self, source: str | bytes, path: str, device: torch.device):
        onnx, ort = require_onnx()
        model = _onnx_load(onnx, source, path)
        super().__init__(check_metadata(onnx_metadata(model.metadata_props), path), path, device)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        except Exception as e:  # onnxruntime's own error types; keep the first line
            raise InputError(f"onnxruntime cannot load it ({_first_line(e)})", path) from None
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})
        return torch.from_numpy(out)


def torchscript_metadata(source: str | bytes, path: str) -> dict | None:
    """The ``config.json`` extra file of a TorchScript archive, read as a zip without loading (running) it;
    None when it has none or it is not JSON."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as z:
            names = [n for n in z.namelist() if n.count("/") == 2 and n.endswith(f"/extra/{TS_CONFIG}")]
            text = z.read(names[0]) if names else b"null"
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"not a readable TorchScript file ({_first_line(e)})", path) from None
    try:
        return json.loads(text)
    except ValueError:
        return None


def assumed_metadata(module, device: torch.device, path: str) -> dict:
    """For a trusted file without our metadata: Darknet.decode's output layout, any size multiple of 32, the
    class count from one run on zeros of ``TRUST_PROBE``."""
    from yolo.utils.names import default_names

    try:
        out = module(torch.zeros(TRUST_PROBE, device=device))
    except Exception as e:
        raise InputError(f"could not run it on a {'x'.join(map(str, TRUST_PROBE))} input ({_first_line(e)})",
                         path) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[-1] < 6:
        raise InputError("its output is not [B, N, 5+C] (cx, cy, w, h, objectness, class probabilities)", path)
    return {"format": META_FORMAT, "names": default_names(out.shape[-1] - 5), "stride": 32, "dynamic": True,
            "nms": False, "device": device.type, "assumed": True}


class TorchScriptBackend(ExportedBackend):
    """``torch.jit.load(map_location=device)``. A traced graph creates its index grids on the device it was
    traced on, so a file exported on CPU runs on CPU only (export with ``--device cuda`` for CUDA).

    The metadata is read from the archive before anything is loaded; a file without ours is refused unless
    ``trust``, and is then taken to work as ``Darknet.decode`` does (see :func:`assumed_metadata`)."""

    def __init__(self, source: str | bytes, path: str, device: torch.device, trust: bool = False):
        meta = torchscript_metadata(source, path)
        if not (isinstance(meta, dict) and meta.get("format") == META_FORMAT):
            if not trust:
                raise InputError(untrusted(), path)
            meta = None
        else:
            check_metadata(meta, path)
        extra = {TS_CONFIG: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
                module = torch.jit.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                                        map_location=device, _extra_files=extra)
        except Exception as e:  # torch raises RuntimeError with long multi-line texts
            raise InputError(f"not a readable TorchScript file ({_first_line(e)})", path) from None
        if meta is None:
            with torch.no_grad():
                meta = assumed_metadata(module.eval(), device, path)
        super().__init__(meta, path, device)
        traced_on = torch.device(meta.get("device", "cpu")).type
        if traced_on != device.type:
            raise InputError(f"this TorchScript file was traced on {traced_on} and runs only there; load it with "
                             f"device='{traced_on}' or re-export with {option('device', device.type)}", path)
        self.module = module.eval()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.device))


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _onnx_load(onnx, source: str | bytes, path: str):
    try:
        return onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
    except Exception as e:  # protobuf DecodeError and friends
        raise InputError(f"not a readable ONNX file ({_first_line(e)})", path) from None


def load_exported(path: str | Path, device: str | torch.device = "cpu", fmt: str | None = None,
                  trust: bool = False) -> ExportedBackend:
    """Load a ``.onnx`` or ``.torchscript`` file written by ``yolo export`` as a callable backend.

    ``fmt`` overrides the suffix (``'onnx'`` or ``'torchscript'``). A file without our metadata, or one that
    cannot be read, raises InputError naming it; ``trust`` loads a ``.torchscript`` without our metadata
    anyway (it runs the file's code: see the module docstring). See :class:`ExportedBackend` for the attributes.
    """
    path = str(path)
    fmt = fmt or format_of(path)
    if not os.path.isfile(path):
        raise InputError("exported model not found", path)
    device = select_device(str(device))  # a one-line error for an unknown device or a CUDA this machine lacks
    if fmt == "onnx":
        return OnnxBackend(path, path, device)
    if fmt == "torchscript":
        return TorchScriptBackend(path, path, device, trust)
    raise InputError(f"unknown export format {fmt!r}: expected onnx or torchscript", path)
